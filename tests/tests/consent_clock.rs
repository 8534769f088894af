//! Consent reads "now" from an injectable clock (`attune_kit::clock`), so rules
//! about time are tested by moving a clock rather than by sleeping. Until
//! `TestApp` can hand a clock to the server, this mounts consent's API itself
//! over `Consent::open(.., clock)`, on a `GrpcServer` and a real database. Its
//! cached checker never follows a stream here, so checks read the database (the
//! path consent takes while its cache cannot vouch for an answer).

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_consent::{Consent, ConsentApi, Migrator, change_feed};
use attune_kit::GrpcServer;
use attune_kit::clock::ManualClock;
use attune_kit::config::Config;
use attune_kit::consent::ConsentChecker;
use attune_kit::db::{Backend, TestDatabase, connect, fresh_test_database_on};
use attune_kit::in_process;
use attune_kit::sea_orm_migration::MigratorTrait;
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use attune_proto::consent::v1::consent_service_server::ConsentServiceServer;
use attune_tests::consent_pb as pb;
use attune_tests::consent_requests::{decision, record, timestamp};
use chrono::{Duration, SubsecRound, Utc};
use tokio::sync::oneshot;
use tonic::transport::Channel;

struct ClockedConsent {
    client: ConsentServiceClient<Channel>,
    clock: ManualClock,
    _stop: oneshot::Sender<()>,
    _database: TestDatabase,
}

async fn consent_on_a_manual_clock(backend: Backend) -> Option<ClockedConsent> {
    attune_kit::telemetry::init_for_tests();
    let database = fresh_test_database_on(backend, "clock").await.unwrap()?;
    let db = connect(&database.config).await.unwrap();
    Migrator::up(&db, None).await.unwrap();
    let config = Config::default();
    let clock = ManualClock::starting_at(Utc::now().trunc_subsecs(6));
    let mut server = GrpcServer::new(config.limits.clone());
    let feed = change_feed(db.clone(), config.feeds.clone(), server.shutdown_token());
    let (unserved, _incoming) = in_process::pipe();
    let cache = ConsentChecker::new(unserved, &config.consent_checker);
    let consent = Consent::open(db, feed, cache, &config.secrets, clock.clock())
        .await
        .unwrap();
    server.add_service(ConsentServiceServer::new(ConsentApi::new(consent)));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    tokio::spawn(server.serve(listener, async move {
        let _ = stopped.await;
    }));
    let channel = Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    Some(ClockedConsent {
        client: ConsentServiceClient::new(channel),
        clock,
        _stop: stop,
        _database: database,
    })
}

async fn status(app: &mut ClockedConsent) -> pb::ConsentStatus {
    let checks = app
        .client
        .check_consent(pb::CheckConsentRequest {
            customer_id: "cust-clock".into(),
            purpose_codes: vec!["analytics".into()],
        })
        .await
        .unwrap()
        .into_inner()
        .checks;
    checks[0].status()
}

async fn expiring(app: &mut ClockedConsent) -> usize {
    let listed = app
        .client
        .list_expiring_consents(pb::ListExpiringConsentsRequest {
            within_days: 1,
            purpose_code: String::new(),
            page_size: 0,
            page_token: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    listed.consents.len()
}

async fn a_grant_expires_when_the_clock_reaches_its_expiry(backend: Backend) {
    let Some(mut app) = consent_on_a_manual_clock(backend).await else {
        return;
    };
    let start = app.clock.clock().now();
    let expire_time = start + Duration::hours(2);
    let mut grant = record(
        "cust-clock",
        vec![decision("analytics", pb::Decision::Granted)],
    );
    grant.expire_time = Some(timestamp(expire_time));
    let recorded = app.client.record_consent(grant).await.unwrap().into_inner();
    // Decided on receipt: receipt is the clock's time, not the system's.
    assert_eq!(recorded.records[0].decide_time, Some(timestamp(start)));
    assert_eq!(status(&mut app).await, pb::ConsentStatus::Granted);
    assert_eq!(expiring(&mut app).await, 1);

    app.clock
        .advance(Duration::hours(2) - Duration::microseconds(1));
    assert_eq!(status(&mut app).await, pb::ConsentStatus::Granted);
    // At its expiry instant exactly, the grant no longer counts.
    app.clock.advance(Duration::microseconds(1));
    assert_eq!(status(&mut app).await, pb::ConsentStatus::Expired);
    assert_eq!(expiring(&mut app).await, 0);

    // The skew rule reads the same clock: a minute ahead of it is the limit.
    let mut ahead = record(
        "cust-clock",
        vec![decision("analytics", pb::Decision::Granted)],
    );
    ahead.decide_time = Some(timestamp(app.clock.clock().now() + Duration::minutes(2)));
    let status = app.client.record_consent(ahead).await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grant_expires_when_the_clock_reaches_its_expiry_on_sqlite() {
    a_grant_expires_when_the_clock_reaches_its_expiry(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn a_grant_expires_when_the_clock_reaches_its_expiry_on_postgres() {
    a_grant_expires_when_the_clock_reaches_its_expiry(Backend::Postgres).await;
}
