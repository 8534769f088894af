//! Upgrading a database written before issue 8 (consent migrations up to m0003):
//! migration m0004 keeps every stored request answerable (its string outcomes
//! become the JSON the kit's idempotency combinator reads) and recomputes which
//! decision counts, so a grant stamped in the future no longer outranks a
//! withdrawal received after it.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune::Role;
use attune_consent::domain::{
    Channel, CustomerId, Decision, DecisionInput, Proof, PurposeCode, RecordConsent, RequestId,
};
use attune_kit::config::Config;
use attune_kit::db::{Backend, connect, fresh_test_database_on};
use attune_kit::sea_orm::{ConnectionTrait, DatabaseConnection};
use attune_kit::sea_orm_migration::MigratorTrait;
use attune_kit::secrets::PseudonymKey;
use attune_tests::consent_requests::{
    TEST_CAPTURED_BY, TEST_FORM_HASH, TEST_USER_AGENT, decision, record, timestamp,
};
use attune_tests::{consent_pb as pb, privacy_pb};
use chrono::{DateTime, Duration, SubsecRound, Utc};
use tonic::transport::Channel as GrpcChannel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

const KEY: [u8; 32] = [42; 32];
const PURPOSE: &str = "personalization";

/// The request that recorded the old, future-stamped grant.
fn old_grant(stated: DateTime<Utc>) -> RecordConsent {
    RecordConsent {
        customer: CustomerId::parse("cust-up").unwrap(),
        decisions: vec![DecisionInput {
            purpose: PurposeCode::parse(PURPOSE).unwrap(),
            decision: Decision::Granted,
            notice_version: 1,
        }],
        channel: Channel::Web,
        proof: Proof {
            form_hash: Some(TEST_FORM_HASH.into()),
            user_agent: Some(TEST_USER_AGENT.into()),
            captured_by: Some(TEST_CAPTURED_BY.into()),
        },
        decide_time: Some(stated),
        expire_time: None,
        request_id: RequestId::parse("old-grant").unwrap(),
    }
}

/// Appends one old-era ledger record and returns its id.
async fn insert_record(
    db: &DatabaseConnection,
    decision: &str,
    decide_time: DateTime<Utc>,
    record_time: DateTime<Utc>,
    request_id: &str,
) -> i64 {
    db.execute_unprepared(&format!(
        "INSERT INTO consent_records (customer_id, purpose_code, decision, notice_version, \
         channel, form_hash, user_agent, captured_by, decide_time, expire_time, record_time, \
         request_id) VALUES ('cust-up', '{PURPOSE}', '{decision}', 1, 'web', \
         '{TEST_FORM_HASH}', '{TEST_USER_AGENT}', '{TEST_CAPTURED_BY}', {}, NULL, {}, \
         '{request_id}')",
        decide_time.timestamp_micros(),
        record_time.timestamp_micros(),
    ))
    .await
    .unwrap();
    let row = db
        .query_one_raw(attune_kit::sea_orm::Statement::from_string(
            db.get_database_backend(),
            format!("SELECT id FROM consent_records WHERE request_id = '{request_id}'"),
        ))
        .await
        .unwrap()
        .unwrap();
    row.try_get("", "id").unwrap()
}

async fn insert_request(db: &DatabaseConnection, operation: &str, id: &str, fp: &str, out: &str) {
    db.execute_unprepared(&format!(
        "INSERT INTO consent_requests (operation, request_id, fingerprint, outcome, create_time) \
         VALUES ('{operation}', '{id}', '{fp}', '{out}', 0)"
    ))
    .await
    .unwrap();
}

/// Writes what consent before issue 8 would have left: a grant stamped 50 s
/// ahead and received 10 s ago, a withdrawal received 5 s ago that lost to it,
/// and string outcomes of a record, an export and an erasure.
async fn write_old_era(db: &DatabaseConnection, now: DateTime<Utc>) -> (i64, i64, DateTime<Utc>) {
    let key = PseudonymKey::new(KEY);
    db.execute_unprepared(&format!(
        "INSERT INTO consent_secrets (name, value) VALUES ('pseudonym_key', '{}')",
        key.to_hex()
    ))
    .await
    .unwrap();
    let stated = now + Duration::seconds(50);
    let grant = insert_record(
        db,
        "granted",
        stated,
        now - Duration::seconds(10),
        "old-grant",
    )
    .await;
    let five_ago = now - Duration::seconds(5);
    let withdrawal = insert_record(db, "withdrawn", five_ago, five_ago, "old-withdrawal").await;
    // The old projection: the grant's later decision time outranked the withdrawal.
    db.execute_unprepared(&format!(
        "INSERT INTO consent_states (customer_id, purpose_code, record_id, decision, precedence, \
         notice_version, decide_time, expire_time) VALUES ('cust-up', '{PURPOSE}', {grant}, \
         'granted', 1, 1, {}, NULL)",
        stated.timestamp_micros()
    ))
    .await
    .unwrap();
    let customer = CustomerId::parse("cust-up").unwrap();
    let gone = CustomerId::parse("cust-gone").unwrap();
    let erase_time = now - Duration::days(1);
    let receipt = format!("3:{}", erase_time.timestamp_micros());
    let grant_fp = key.fingerprint(&old_grant(stated));
    insert_request(
        db,
        "record_consent",
        "old-grant",
        &grant_fp,
        &grant.to_string(),
    )
    .await;
    insert_request(
        db,
        "export_customer_data",
        "old-export",
        &key.fingerprint(&customer),
        "",
    )
    .await;
    insert_request(
        db,
        "erase_customer",
        "old-erase",
        &key.fingerprint(&gone),
        &receipt,
    )
    .await;
    (grant, withdrawal, erase_time)
}

/// Serves consent alone (as its pod does, with its internal data-subject API) on
/// the upgraded database until the returned sender is dropped.
async fn serve(config: Config) -> (GrpcChannel, tokio::sync::oneshot::Sender<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(attune::serve(
        config,
        Role::named(Some("consent")).unwrap(),
        listener,
        async move {
            let _ = stopped.await;
        },
    ));
    let channel = GrpcChannel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut health = HealthClient::new(channel.clone());
    for _ in 0..500 {
        let request = HealthCheckRequest {
            service: String::new(),
        };
        if let Ok(response) = health.check(request).await
            && response.into_inner().status == ServingStatus::Serving as i32
        {
            return (channel, stop);
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("the upgraded server did not report SERVING");
}

async fn upgrade_keeps_replays_and_lets_the_withdrawal_win(backend: Backend) {
    attune_kit::telemetry::init_for_tests();
    let Some(database) = fresh_test_database_on(backend, "upgrade").await.unwrap() else {
        return;
    };
    let now = Utc::now().trunc_subsecs(6);
    let db = connect(&database.config).await.unwrap();
    attune_consent::Migrator::up(&db, Some(3)).await.unwrap();
    let (grant, withdrawal, erase_time) = write_old_era(&db, now).await;
    db.close().await.unwrap();

    let mut config = Config::default();
    config.database = database.config.clone();
    let (channel, _stop) = serve(config).await;
    let mut consent = pb::consent_service_client::ConsentServiceClient::new(channel.clone());
    let mut privacy =
        privacy_pb::data_subject_service_client::DataSubjectServiceClient::new(channel);

    // The withdrawal, received after the grant, counts now.
    let check = consent
        .check_consent(pb::CheckConsentRequest {
            customer_id: "cust-up".into(),
            purpose_codes: vec![PURPOSE.into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(check.checks[0].status(), pb::ConsentStatus::Withdrawn);
    let state = consent
        .get_consent_state(pb::GetConsentStateRequest {
            customer_id: "cust-up".into(),
            purpose_codes: vec![PURPOSE.into()],
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        state.states[0].latest.as_ref().unwrap().record_id,
        withdrawal
    );

    // A retry of the old grant gets its record back, recorded nothing new.
    let mut retry = record("cust-up", vec![decision(PURPOSE, pb::Decision::Granted)]);
    retry.decide_time = Some(timestamp(now + Duration::seconds(50)));
    retry.request_id = "old-grant".into();
    let replayed = consent
        .record_consent(retry)
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(
        replayed.iter().map(|r| r.record_id).collect::<Vec<_>>(),
        [grant]
    );

    // A retried erasure returns its original receipt and a retried export's first
    // page its records, neither audited again.
    let receipt = privacy
        .erase_customer(privacy_pb::EraseCustomerRequest {
            customer_id: "cust-gone".into(),
            request_id: "old-erase".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(receipt.erased_record_count, 3);
    assert_eq!(receipt.erase_time, Some(timestamp(erase_time)));
    let export = privacy
        .export_customer_data(privacy_pb::ExportCustomerDataRequest {
            customer_id: "cust-up".into(),
            request_id: "old-export".into(),
            page_token: String::new(),
            page_size: 0,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(export.records.len(), 2);
    let audit = consent
        .verify_audit_log(pb::VerifyAuditLogRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        audit.entry_count, 0,
        "replays are not audited again: {audit:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upgraded_database_replays_old_requests_and_lets_the_withdrawal_win_on_sqlite() {
    upgrade_keeps_replays_and_lets_the_withdrawal_win(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
)]
async fn an_upgraded_database_replays_old_requests_and_lets_the_withdrawal_win_on_postgres() {
    upgrade_keeps_replays_and_lets_the_withdrawal_win(Backend::Postgres).await;
}
