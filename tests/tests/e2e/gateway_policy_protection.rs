//! What the gateway's policy does beyond who may call: Global Privacy Control
//! recorded once whichever RPC carries it, rate limits per caller, per address
//! (callers without credentials) and per customer that trigger and recover, and
//! the bound on calls in progress, which a stream counts against until it ends.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::net::IpAddr;
use std::time::Duration;

use attune_kit::config::Config;
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use attune_proto::loyalty::v1 as loyalty_pb;
use attune_tests::gateway_policy::{
    CHECKOUT_KEY, Credential, OPS_KEY, check_consent, customer_token, secured_app, with_credential,
};
use attune_tests::profile_events::event;
use attune_tests::{Backend, TestApp, consent_pb, profile_pb};
use chrono::Utc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request, Response, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;
use tonic_types::StatusExt as _;

/// `message` from `credential`, carrying the browser's `Sec-GPC: 1`.
fn signalled<T>(message: T, credential: &Credential) -> Request<T> {
    let mut request = with_credential(message, credential);
    request
        .metadata_mut()
        .insert("sec-gpc", MetadataValue::from_static("1"));
    request
}

attune_tests::secured_tests! {
    async fn global_privacy_control_is_recorded_once_whichever_rpc_carries_it(app) {
        let customer = "gpc-alice";
        let alice = Credential::Bearer(customer_token(customer));
        for _ in 0..2 {
            let _ = app
                .profiles()
                .get_profile(signalled(
                    profile_pb::GetProfileRequest {
                        customer_id: customer.into(),
                    },
                    &alice,
                ))
                .await;
            let _ = app
                .consent()
                .check_consent(signalled(
                    consent_pb::CheckConsentRequest {
                        customer_id: customer.into(),
                        purpose_codes: vec!["sale_or_share".into()],
                    },
                    &alice,
                ))
                .await;
            let _ = loyalty_pb::loyalty_service_client::LoyaltyServiceClient::new(app.channel.clone())
                .get_account(signalled(
                    loyalty_pb::GetAccountRequest {
                        customer_id: customer.into(),
                    },
                    &alice,
                ))
                .await;
        }
        // A service forwarding the signal for a customer it names.
        let _ = app
            .events()
            .get_traits(signalled(
                profile_pb::GetTraitsRequest {
                    customer_id: "gpc-bob".into(),
                },
                &Credential::ApiKey(OPS_KEY),
            ))
            .await;
        // A request the service refuses as bad input records nothing.
        let refused = loyalty_pb::loyalty_service_client::LoyaltyServiceClient::new(app.channel.clone())
            .redeem_points(signalled(
                loyalty_pb::RedeemPointsRequest {
                    customer_id: "gpc-carol".into(),
                    ..Default::default()
                },
                &Credential::ApiKey(OPS_KEY),
            ))
            .await
            .unwrap_err();
        assert_eq!(refused.code(), Code::InvalidArgument, "{refused:?}");
        let history = |customer: &'static str| {
            let app = &app;
            async move {
                app.consent()
                    .list_consent_history(with_credential(
                        consent_pb::ListConsentHistoryRequest {
                            customer_id: customer.into(),
                            purpose_code: "sale_or_share".into(),
                            page_size: 100,
                            page_token: String::new(),
                        },
                        &Credential::ApiKey(OPS_KEY),
                    ))
                    .await
                    .unwrap()
                    .into_inner()
                    .records
            }
        };
        assert_eq!(history(customer).await.len(), 1, "one withdrawal for alice");
        assert_eq!(history("gpc-bob").await.len(), 1, "one withdrawal for bob");
        assert!(history("gpc-carol").await.is_empty(), "nothing for a bad request");
        let status = app
            .consent()
            .check_consent(with_credential(
                consent_pb::CheckConsentRequest {
                    customer_id: customer.into(),
                    purpose_codes: vec!["sale_or_share".into()],
                },
                &alice,
            ))
            .await
            .unwrap()
            .into_inner();
        assert!(!status.checks[0].granted, "sale or share is off");
    }
}

/// The wait RESOURCE_EXHAUSTED asks for.
fn retry_delay(status: &Status) -> Duration {
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    status
        .get_details_retry_info()
        .and_then(|info| info.retry_delay)
        .expect("RetryInfo says when to retry")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_per_caller_and_per_customer_trigger_and_recover() {
    let app = secured_app(Backend::Sqlite, |config| {
        let protection = &mut config.security.protection;
        protection.caller_rate = 1;
        protection.caller_burst = 3;
        protection.customer_rate = 1;
        protection.customer_burst = 2;
    })
    .await
    .unwrap();

    // Per customer: two calls about alice at once, the third waits.
    let alice = Credential::Bearer(customer_token("rate-alice"));
    check_consent(&app, "rate-alice", &alice).await.unwrap();
    check_consent(&app, "rate-alice", &alice).await.unwrap();
    let refused = check_consent(&app, "rate-alice", &alice).await.unwrap_err();
    let wait = retry_delay(&refused);
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    // Another customer is not held up by alice.
    check_consent(&app, "rate-bob", &Credential::ApiKey(OPS_KEY))
        .await
        .unwrap();
    tokio::time::sleep(wait).await;
    check_consent(&app, "rate-alice", &alice).await.unwrap();

    // Per caller: the checkout service's key, about a different customer each time.
    let checkout = Credential::ApiKey(CHECKOUT_KEY);
    for index in 0..3 {
        check_consent(&app, &format!("rate-c{index}"), &checkout)
            .await
            .unwrap();
    }
    let refused = check_consent(&app, "rate-c3", &checkout).await.unwrap_err();
    let wait = retry_delay(&refused);
    tokio::time::sleep(wait).await;
    check_consent(&app, "rate-c3", &checkout).await.unwrap();
}

/// A connection to `app` from `source`, another loopback address: its calls
/// count under an address of their own, apart from the test kit's.
async fn channel_from(app: &TestApp, source: [u8; 4]) -> Channel {
    Endpoint::from_shared(format!("http://{}", app.address))
        .unwrap()
        .local_address(Some(IpAddr::from(source)))
        .connect()
        .await
        .unwrap()
}

async fn list_purposes(channel: &Channel, credential: &Credential) -> Result<(), Status> {
    ConsentServiceClient::new(channel.clone())
        .list_purposes(with_credential(
            consent_pb::ListPurposesRequest::default(),
            credential,
        ))
        .await
        .map(drop)
}

/// The rate limit of callers without credentials: at most `address_burst`
/// calls at once from one address, then one per second.
fn address_limited(config: &mut Config) {
    let protection = &mut config.security.protection;
    protection.address_rate = 1;
    // Room for the test kit's own health checks while the app starts.
    protection.address_burst = 20;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callers_without_credentials_are_limited_by_address_and_recover() {
    // Development mode: nobody has credentials, every call counts by address.
    let app = TestApp::spawn_configured(Backend::Sqlite, address_limited)
        .await
        .unwrap();
    let here = channel_from(&app, [127, 0, 0, 2]).await;
    for _ in 0..20 {
        list_purposes(&here, &Credential::None).await.unwrap();
    }
    let refused = list_purposes(&here, &Credential::None).await.unwrap_err();
    let wait = retry_delay(&refused);
    assert!(wait <= Duration::from_secs(1), "{wait:?}");
    // Another address is not held up.
    let elsewhere = channel_from(&app, [127, 0, 0, 3]).await;
    list_purposes(&elsewhere, &Credential::None).await.unwrap();
    tokio::time::sleep(wait).await;
    list_purposes(&here, &Credential::None).await.unwrap();

    // With authentication configured: calls without (valid) credentials and
    // the open methods count by address; an authenticated caller by itself.
    let app = secured_app(Backend::Sqlite, address_limited).await.unwrap();
    let here = channel_from(&app, [127, 0, 0, 2]).await;
    for _ in 0..10 {
        let status = list_purposes(&here, &Credential::None).await.unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
        let status = list_purposes(&here, &Credential::ApiKey("test-only-wrong-key"))
            .await
            .unwrap_err();
        assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    }
    let refused = list_purposes(&here, &Credential::None).await.unwrap_err();
    let wait = retry_delay(&refused);
    let health = HealthClient::new(here.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap_err();
    retry_delay(&health);
    list_purposes(&here, &Credential::ApiKey(CHECKOUT_KEY))
        .await
        .unwrap();
    tokio::time::sleep(wait).await;
    HealthClient::new(here.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .unwrap();
}

/// Retries `call` until it succeeds (a place freed by a stream's end is freed
/// as the server's side of it ends, just after the client's).
async fn eventually_admitted<F, Fut>(mut call: F) -> Result<(), Status>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Status>>,
{
    let mut last = Ok(());
    for _ in 0..200 {
        last = call().await;
        match &last {
            Err(status) if status.code() == Code::ResourceExhausted => {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            _ => return last,
        }
    }
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_holds_its_place_until_it_ends_and_watches_have_their_own() {
    let app = TestApp::spawn_configured(Backend::Sqlite, |config| {
        config.security.protection.max_concurrent_calls = 1;
        config.security.protection.max_long_lived_streams = 1;
    })
    .await
    .unwrap();
    let unary = || list_purposes(&app.channel, &Credential::None);

    // A stream of event batches: its answer streams until the sender ends it.
    let (batches, receiver) = tokio::sync::mpsc::channel(4);
    let mut acks = app
        .events()
        .ingest_event_stream(ReceiverStream::new(receiver))
        .await
        .unwrap()
        .into_inner();
    batches
        .send(profile_pb::IngestEventStreamRequest {
            events: vec![event(
                profile_pb::EventKind::CheckoutStarted,
                "permit-e1",
                "permit-alice",
                Utc::now(),
            )],
        })
        .await
        .unwrap();
    acks.message()
        .await
        .unwrap()
        .expect("the first batch is acknowledged");
    // Its headers and a message are sent, and it still counts.
    let busy = unary().await.unwrap_err();
    retry_delay(&busy);
    drop(batches);
    assert!(acks.message().await.unwrap().is_none(), "the stream ended");
    eventually_admitted(unary).await.unwrap();

    // A watch holds a place among the long-lived streams, not the calls'.
    let watch = || async {
        ConsentServiceClient::new(app.channel.clone())
            .watch_consent_changes(consent_pb::WatchConsentChangesRequest {
                after_position: 0,
                start_at_newest: true,
            })
            .await
            .map(Response::into_inner)
    };
    let open = watch().await.unwrap();
    retry_delay(&watch().await.unwrap_err());
    unary().await.unwrap();
    unary().await.unwrap();
    drop(open);
    eventually_admitted(|| async { watch().await.map(drop) })
        .await
        .unwrap();
}
