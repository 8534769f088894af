//! What the gateway's policy does beyond who may call: Global Privacy Control
//! recorded once whichever RPC carries it, and rate limits per caller and per
//! customer that trigger and recover.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use std::time::Duration;

use attune_proto::loyalty::v1 as loyalty_pb;
use attune_tests::gateway_policy::{
    CHECKOUT_KEY, Credential, OPS_KEY, customer_token, secured_app, with_credential,
};
use attune_tests::{Backend, TestApp, consent_pb, profile_pb};
use tonic::metadata::MetadataValue;
use tonic::{Code, Request, Status};
use tonic_types::StatusExt as _;

/// Runs `$name(app)` against a secured monolith on SQLite, and on PostgreSQL
/// when it is configured.
macro_rules! secured_tests {
    ($(async fn $name:ident($app:ident) $body:block)*) => {$(
        mod $name {
            use super::*;

            async fn run($app: TestApp) $body

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                run(secured_app(Backend::Sqlite, |_| {}).await.unwrap()).await;
            }

            attune_tests::postgres_test! {
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    run(secured_app(Backend::Postgres, |_| {}).await.unwrap()).await;
                }
            }
        }
    )*};
}

/// `message` from `credential`, carrying the browser's `Sec-GPC: 1`.
fn signalled<T>(message: T, credential: &Credential) -> Request<T> {
    let mut request = with_credential(message, credential);
    request
        .metadata_mut()
        .insert("sec-gpc", MetadataValue::from_static("1"));
    request
}

async fn check_consent(
    app: &TestApp,
    customer: &str,
    credential: &Credential,
) -> Result<(), Status> {
    app.consent()
        .check_consent(with_credential(
            consent_pb::CheckConsentRequest {
                customer_id: customer.into(),
                purpose_codes: vec!["personalization".into()],
            },
            credential,
        ))
        .await
        .map(drop)
}

secured_tests! {
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
