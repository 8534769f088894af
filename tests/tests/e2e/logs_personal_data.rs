//! No personal value reaches the logs: a whole consent and profile journey runs
//! with every log line at debug level captured (JSON, with span fields), and the
//! capture is searched for the customer id (an e-mail address here, as some shops
//! use), the proof values the customer's device and the shop's staff sent, and
//! what profile was given: an e-mail and a loyalty card, a search, zero-party
//! free text, and the anonymous id merged into the customer.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use attune_tests::consent_requests::{
    TEST_CAPTURED_BY, TEST_USER_AGENT, decision, new_purpose, record, request_id,
};
use attune_tests::profile_events::{eur, event, item, purchase};
use attune_tests::{Backend, TestApp, consent_pb, profile_pb};
use tokio_stream::StreamExt;
use tonic::Request;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

/// Every log line written since the process started.
fn captured() -> &'static Arc<Mutex<Vec<u8>>> {
    static LOGS: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    LOGS.get_or_init(|| {
        let logs = Arc::new(Mutex::new(Vec::new()));
        let sink = logs.clone();
        tracing_subscriber::registry()
            .with(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_current_span(true)
                    .with_span_list(true)
                    .with_writer(move || Sink(sink.clone()))
                    .with_filter(EnvFilter::new("debug")),
            )
            .try_init()
            .expect("the capture is the process's only subscriber: run with cargo nextest (a process per test), as the README says");
        logs
    })
}

struct Sink(Arc<Mutex<Vec<u8>>>);

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The journey of one customer through every consent API.
async fn journey(app: &TestApp, customer: &str) {
    let mut consent = app.consent();
    consent
        .create_purpose(new_purpose("birthday_surprises"))
        .await
        .expect("the purpose is created");
    app.record_consent(record(
        customer,
        vec![
            decision("birthday_surprises", consent_pb::Decision::Granted),
            decision("marketing_email", consent_pb::Decision::Granted),
        ],
    ))
    .await;
    // A retry of the same request, and a refused one, log too.
    let request = record(
        customer,
        vec![decision("personalization", consent_pb::Decision::Granted)],
    );
    consent
        .record_consent(request.clone())
        .await
        .expect("recorded");
    consent
        .record_consent(request.clone())
        .await
        .expect("a retry answers as first recorded");
    let reused = consent_pb::RecordConsentRequest {
        decisions: vec![decision("personalization", consent_pb::Decision::Denied)],
        ..request
    };
    consent
        .record_consent(reused)
        .await
        .expect_err("a reused request id is refused");
    let mut watch = app.watch_changes(0).await;
    let first = watch
        .next()
        .await
        .expect("the stream answers")
        .expect("the stream works");
    assert!(!first.changes.is_empty());
    app.check_consent(customer, &["birthday_surprises", "marketing_email"])
        .await;
    consent
        .get_consent_state(consent_pb::GetConsentStateRequest {
            customer_id: customer.into(),
            purpose_codes: vec![],
        })
        .await
        .expect("state is read");
    app.consent_history(customer, "").await;

    let mut signalled = Request::new(consent_pb::CheckConsentRequest {
        customer_id: customer.into(),
        purpose_codes: vec!["marketing_email".into()],
    });
    signalled
        .metadata_mut()
        .insert("sec-gpc", "1".parse().expect("ASCII"));
    consent
        .check_consent(signalled)
        .await
        .expect("a check with GPC works");
    consent
        .apply_global_privacy_control(consent_pb::ApplyGlobalPrivacyControlRequest {
            customer_id: customer.into(),
        })
        .await
        .expect("GPC applies");

    profile_journey(app, customer).await;

    // Data-subject requests through the gateway, which fans out to every service.
    let export = app.export_customer(customer, &request_id()).await;
    assert!(!export.is_empty(), "the export works");
    let receipts = app.erase_customer(customer, &request_id()).await;
    assert!(receipts.complete, "the erasure works");
    app.check_consent(customer, &["marketing_email"]).await;
}

/// Profile's part: a visitor browses and searches, the customer signs up with
/// an e-mail address and a loyalty card, shares free text, buys, and the visitor
/// is merged into them; then traits, a segment, the feed and an erasure.
async fn profile_journey(app: &TestApp, customer: &str) {
    let visitor = format!("{VISITOR}-{}", customer.len());
    app.grant(customer, &["personalization", "profiling"]).await;
    app.grant(&visitor, &["personalization"]).await;
    let now = chrono::Utc::now() - chrono::TimeDelta::minutes(5);
    let mut search = event(profile_pb::EventKind::Search, "log-ev-1", &visitor, now);
    search.search_query = SEARCH.into();
    search.new_profile_kind = profile_pb::ProfileKind::Anonymous.into();
    let answer = app.ingest(vec![search]).await;
    assert_eq!(answer.accepted_count, 1, "{answer:?}");
    let identity = |kind: profile_pb::IdentityType, value: &str| profile_pb::Identity {
        identity_type: kind.into(),
        value: value.into(),
        ..Default::default()
    };
    app.profiles()
        .link_identity(profile_pb::LinkIdentityRequest {
            customer_id: visitor.clone(),
            identity: Some(identity(profile_pb::IdentityType::CookieId, COOKIE)),
            request_id: request_id(),
        })
        .await
        .expect("the cookie is linked");
    app.profiles()
        .create_profile(profile_pb::CreateProfileRequest {
            customer_id: customer.into(),
            kind: profile_pb::ProfileKind::Known.into(),
            identities: vec![
                identity(profile_pb::IdentityType::Email, EMAIL),
                identity(profile_pb::IdentityType::LoyaltyCard, CARD),
            ],
            channel: attune_tests::common_pb::Channel::Web.into(),
            request_id: request_id(),
        })
        .await
        .expect("the profile is created");
    app.profiles()
        .lookup_profile(profile_pb::LookupProfileRequest {
            identity: Some(identity(profile_pb::IdentityType::Email, EMAIL)),
        })
        .await
        .expect("found by e-mail");
    app.profiles()
        .set_zero_party_data(profile_pb::SetZeroPartyDataRequest {
            customer_id: customer.into(),
            data: Some(profile_pb::ZeroPartyData {
                preferred_name: FREE_TEXT.into(),
                ..Default::default()
            }),
            update_mask: None,
            channel: attune_tests::common_pb::Channel::App.into(),
            request_id: request_id(),
        })
        .await
        .expect("zero-party data is stored");
    let order = purchase(
        "log-ev-2",
        customer,
        now,
        vec![item("sku-1", 1, Some(eur(4200)), &["shoes"], "acme")],
        eur(4200),
    );
    app.ingest(vec![order]).await;
    app.profiles()
        .merge_profiles(profile_pb::MergeProfilesRequest {
            source_customer_id: visitor.clone(),
            target_customer_id: customer.into(),
            request_id: request_id(),
        })
        .await
        .expect("the visitor is merged");
    app.traits(customer).await;
    app.feed_to_head(0).await;
}

/// Personal values profile is given in the journey.
const EMAIL: &str = "Jane.Doe.Private@Example.org";
const CARD: &str = "LOYALTY-CARD-555123";
const COOKIE: &str = "cookie-9f8e7d6c";
const SEARCH: &str = "pregnancy test discreet";
const FREE_TEXT: &str = "Janey Secretname";
const VISITOR: &str = "anon-visitor-4711";

async fn no_personal_value_is_logged(backend: Backend) {
    let logs = captured();
    let app = TestApp::spawn(backend)
        .await
        .expect("the PostgreSQL variant runs only when a server is configured");
    let customer = format!("jane.doe+{}@example.com", backend_name(backend));
    journey(&app, &customer).await;
    drop(app);

    let text =
        String::from_utf8_lossy(&logs.lock().unwrap_or_else(PoisonError::into_inner)).into_owned();
    assert!(
        text.contains("consent recorded"),
        "the capture holds the journey's logs"
    );
    assert!(
        text.contains("attune.profile.v1"),
        "the capture holds profile's calls"
    );
    for personal in [
        customer.as_str(),
        "jane.doe",
        TEST_USER_AGENT,
        TEST_CAPTURED_BY,
        "Jane.Doe.Private",
        "jane.doe.private",
        CARD,
        COOKIE,
        SEARCH,
        FREE_TEXT,
        VISITOR,
    ] {
        let lines: Vec<&str> = text.lines().filter(|l| l.contains(personal)).collect();
        assert!(lines.is_empty(), "`{personal}` is logged: {lines:#?}");
    }
}

fn backend_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whole_journey_logs_no_personal_value_on_sqlite() {
    no_personal_value_is_logged(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn a_whole_journey_logs_no_personal_value_on_postgres() {
    no_personal_value_is_logged(Backend::Postgres).await;
}
