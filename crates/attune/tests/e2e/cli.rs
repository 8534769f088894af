//! The real `attune` binary: migrate, serve one service from flags and environment,
//! answer over gRPC, run consent and the gateway as two processes, and stop
//! cleanly on SIGTERM.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use crate::support::{EveryServiceApart, Process, attune, postgres_database, sqlite_url};

/// A temporary SQLite database that `attune migrate` has set up, and its URL.
fn migrated_sqlite() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    let migrated = attune()
        .args(["migrate", "--database-url", &url])
        .status()
        .unwrap();
    assert!(migrated.success());
    (dir, url)
}

#[test]
fn migrate_then_serve_one_service_and_stop_on_sigterm() {
    let (_dir, url) = migrated_sqlite();

    // The database from the environment, the service and the port from flags.
    let consent = Process::start(
        attune()
            .args(["serve", "--service", "consent", "--listen", "127.0.0.1:0"])
            .env("ATTUNE_DATABASE__URL", &url),
    );
    let address = consent.address().to_owned();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let purposes = runtime.block_on(async {
        let mut client =
            attune_proto::consent::v1::consent_service_client::ConsentServiceClient::connect(
                format!("http://{address}"),
            )
            .await
            .unwrap();
        client
            .list_purposes(attune_proto::consent::v1::ListPurposesRequest {
                page_size: 0,
                page_token: String::new(),
            })
            .await
            .unwrap()
            .into_inner()
            .purposes
    });
    assert_eq!(purposes.len(), 7, "migrate seeded the catalogue once");

    consent.terminate();
}

#[test]
fn a_bad_setting_is_refused_with_its_name() {
    let output = attune()
        .args(["serve"])
        .env("ATTUNE_DATABASE__MAX_CONNECTIONS", "many")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("database.max_connections"), "{stderr}");
}

#[test]
fn a_gateway_without_a_backend_address_names_the_setting() {
    let output = attune()
        .args(["serve", "--service", "gateway", "--listen", "127.0.0.1:0"])
        .env_remove("ATTUNE_GATEWAY__BACKENDS__CONSENT")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ATTUNE_GATEWAY__BACKENDS__CONSENT"),
        "{stderr}"
    );
}

#[test]
fn an_unknown_service_is_refused_listing_the_known_ones() {
    let output = attune()
        .args(["serve", "--service", "nosuch"])
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("consent") && stderr.contains("gateway"),
        "{stderr}"
    );
}

fn database(url: &str) -> attune_kit::config::DatabaseConfig {
    attune_kit::config::DatabaseConfig {
        url: url.to_owned(),
        ..Default::default()
    }
}

/// Appends three catalogue events to the audit log at `url`, as the service would.
async fn append_audit_entries(url: &str) -> attune_kit::sea_orm::DatabaseConnection {
    use attune_consent::domain::{AuditEvent, default_catalogue};
    use attune_kit::sea_orm::TransactionTrait;

    let db = attune_kit::db::connect(&database(url)).await.unwrap();
    let txn = db.begin().await.unwrap();
    for purpose in default_catalogue().iter().take(3) {
        let event = AuditEvent::purpose_created(purpose);
        attune_consent::store::audit::append(&txn, event, chrono::Utc::now())
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
    db
}

fn audit_verify(url: &str) -> (Option<i32>, String, String) {
    let output = attune()
        .args(["audit", "verify", "--database-url", url])
        .output()
        .unwrap();
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr),
    )
}

#[test]
fn audit_verify_exits_0_when_intact_and_1_naming_the_altered_entry() {
    use attune_consent::store::entity::audit;
    use attune_kit::sea_orm::sea_query::Expr;
    use attune_kit::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

    let (_dir, url) = migrated_sqlite();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(append_audit_entries(&url));
    let head = runtime
        .block_on(audit::Entity::find_by_id(3).one(&db))
        .unwrap()
        .unwrap()
        .hash;

    let (code, stdout, stderr) = audit_verify(&url);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("intact: 3 entries"), "{stdout}");
    assert!(stdout.contains(&head), "the head hash is printed: {stdout}");

    runtime
        .block_on(
            audit::Entity::update_many()
                .col_expr(audit::Column::Detail, Expr::value("{}"))
                .filter(audit::Column::Sequence.eq(2))
                .exec(&db),
        )
        .unwrap();
    let (code, stdout, stderr) = audit_verify(&url);
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("BROKEN at entry 2: altered"), "{stdout}");
    assert!(stdout.contains("purpose_created"), "{stdout}");
}

#[test]
fn audit_verify_neither_creates_nor_migrates_a_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("absent.db");
    let (code, stdout, stderr) = audit_verify(&format!("sqlite://{}?mode=rwc", path.display()));
    assert_eq!(code, Some(2), "{stdout}{stderr}");
    assert!(stderr.contains("must already exist"), "{stderr}");
    assert!(!path.exists(), "verification created the database");

    let other = dir.path().join("other.db");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let url = format!("sqlite://{}?mode=rwc", other.display());
        attune_kit::db::connect(&database(&url))
            .await
            .unwrap()
            .close()
            .await
            .unwrap();
    });
    let (code, _, stderr) = audit_verify(&format!("sqlite://{}", other.display()));
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("no consent audit log"), "{stderr}");
}

#[test]
fn a_database_that_cannot_be_reached_is_named_once_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let missing_dir = dir.path().join("no-such-dir").join("attune.db");
    let sqlite = format!("sqlite://{}?mode=rwc", missing_dir.display());
    for (url, shown, cause) in [
        (
            "postgres://bob:hunter2@127.0.0.1:1/attune".to_owned(),
            "postgres://bob@127.0.0.1:1/attune".to_owned(),
            "Connection refused",
        ),
        (sqlite.clone(), sqlite, "unable to open database file"),
    ] {
        let output = attune()
            .args(["migrate", "--database-url", &url])
            .env("RUST_BACKTRACE", "1")
            .output()
            .unwrap();
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.matches(&shown).count(), 1, "{stderr}");
        assert_eq!(stderr.matches(cause).count(), 1, "{stderr}");
        assert!(!stderr.contains("hunter2"), "{stderr}");
        assert!(!stderr.contains("Caused by"), "{stderr}");
        assert!(!stderr.contains("stack backtrace"), "{stderr}");
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    }
}

#[test]
fn human_logs_carry_no_colour_codes_when_stderr_is_not_a_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}?mode=rwc", dir.path().join("a.db").display());
    let output = attune()
        .args(["migrate", "--database-url", &url])
        .env("ATTUNE_TELEMETRY__LOG_FORMAT", "human")
        .output()
        .unwrap();
    assert!(output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("migrations applied"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "colour codes in {stderr:?}");
}

#[test]
fn help_lists_every_setting_with_its_default_and_variable() {
    for command in ["serve", "migrate"] {
        let output = attune().args([command, "--help"]).output().unwrap();
        assert!(output.status.success());
        let help = String::from_utf8_lossy(&output.stdout);
        for (key, default) in attune_kit::config::default_settings() {
            let variable = attune_kit::config::env_var(&key);
            if attune_kit::config::SETTINGS_WITHOUT_FLAG.contains(&key.as_str()) {
                assert!(
                    help.contains(&variable),
                    "`{command} --help` lacks {variable}"
                );
                continue;
            }
            let line = format!("[default: {default}] [env: {variable}]");
            assert!(
                help.contains(&line),
                "`{command} --help` lacks {line}:\n{help}"
            );
        }
    }
}

/// Every service and the gateway as processes of the real binary, as pods run
/// them: each service on its own port over `database_url`, calling the services
/// registered before it at `peers.<name>`, and the gateway in front of them from
/// `gateway.backends.*`. Consent's API and the data-subject requests work through
/// the gateway's port only.
fn every_service_as_its_own_process(database_url: &str) {
    use attune_proto::consent::v1 as consent_pb;
    use attune_proto::gateway::v1 as gateway_pb;

    let apart = EveryServiceApart::start(database_url, &[]);
    let gateway_address = apart.gateway.url();

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut consent_api =
            consent_pb::consent_service_client::ConsentServiceClient::connect(
                gateway_address.clone(),
            )
            .await
            .unwrap();
        consent_api
            .record_consent(consent_pb::RecordConsentRequest {
                customer_id: "cust-two-processes".into(),
                decisions: vec![consent_pb::PurposeDecision {
                    purpose_code: "personalization".into(),
                    decision: consent_pb::Decision::Granted.into(),
                    notice_version: 1,
                }],
                channel: attune_proto::common::v1::Channel::Web.into(),
                request_id: "two-processes-grant".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        let checks = consent_api
            .check_consent(consent_pb::CheckConsentRequest {
                customer_id: "cust-two-processes".into(),
                purpose_codes: vec!["personalization".into()],
            })
            .await
            .unwrap()
            .into_inner()
            .checks;
        assert!(checks[0].granted, "the grant made through the gateway counts");

        let mut requests =
            gateway_pb::data_subject_request_service_client::DataSubjectRequestServiceClient::connect(
                gateway_address.clone(),
            )
            .await
            .unwrap();
        let mut export = requests
            .export_customer(gateway_pb::ExportCustomerRequest {
                customer_id: "cust-two-processes".into(),
                request_id: "two-processes-export".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let (mut records, mut accesses) = (0, 0);
        let mut receipts = Vec::new();
        while let Some(message) = export.message().await.unwrap() {
            if message.service == attune_gateway::ACCESS_LOG_PACKAGE {
                accesses += message.records.len();
            } else {
                records += message.records.len();
            }
            receipts.extend(message.receipt);
        }
        assert_eq!(records, 1, "the export holds the one decision");
        // The gateway's log holds the consent check above and the export itself.
        assert_eq!(accesses, 2, "the gateway records each read of the customer's data");
        let services: Vec<_> = receipts.iter().map(|r| r.service.as_str()).collect();
        assert_eq!(
            services,
            attune::data_subject_receipts(),
            "one receipt per data-holding service"
        );
        assert!(
            receipts
                .iter()
                .all(|r| r.status() == gateway_pb::ReceiptStatus::Succeeded)
        );

        let erased = requests
            .erase_customer(gateway_pb::EraseCustomerRequest {
                customer_id: "cust-two-processes".into(),
                request_id: "two-processes-erase".into(),
            })
            .await
            .unwrap()
            .into_inner();
        assert!(erased.complete, "{erased:?}");
        assert_eq!(erased.receipts.len(), attune::data_subject_receipts().len());
        assert!(erased.receipts[0].record_count > 0, "{erased:?}");
    });

    apart.terminate();
}

#[test]
fn every_service_and_the_gateway_run_as_separate_processes_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(&dir);
    every_service_as_its_own_process(&url);
}

#[test]
#[cfg_attr(
    not(attune_test_postgres),
    ignore = "set ATTUNE_TEST_DATABASE_URL to run on PostgreSQL"
)]
fn every_service_and_the_gateway_run_as_separate_processes_on_postgres() {
    let database = postgres_database("two_processes");
    every_service_as_its_own_process(&database.config.url);
    drop(database);
}
