//! The data subject's rights over consent's data, over real gRPC: Global Privacy
//! Control, export and erasure. Export and erasure go through the gateway's public
//! DataSubjectRequestService; consent's own paging and validation are tested on
//! its internal DataSubjectService, which a consent pod serves.

#![allow(clippy::unwrap_used)] // a panic is how a test fails

use attune_kit::db;
use attune_kit::sea_orm::{ConnectionTrait, DbBackend, Statement};
use attune_tests::consent_requests::{TEST_USER_AGENT, decision, record, request_id};
use attune_tests::{
    TestApp, backend_tests, common_pb, consent_pb as pb, every_page, gateway_pb, privacy_pb,
};
use prost_types::value::Kind;
use tokio_stream::StreamExt;
use tonic::{Code, Request};

const SALE: &str = "sale_or_share";

/// Records `customer`'s grant of `purpose`.
async fn grant(app: &TestApp, customer: &str, purpose: &str) {
    let decisions = vec![decision(purpose, pb::Decision::Granted)];
    app.record_consent(record(customer, decisions)).await;
}

/// Whether `customer` has granted `purpose`, as CheckConsent answers.
async fn granted(app: &TestApp, customer: &str, purpose: &str) -> bool {
    app.check_consent(customer, &[purpose]).await[0].granted
}

async fn gpc(app: &TestApp, customer: &str) -> pb::ApplyGlobalPrivacyControlResponse {
    app.consent()
        .apply_global_privacy_control(pb::ApplyGlobalPrivacyControlRequest {
            customer_id: customer.into(),
        })
        .await
        .unwrap()
        .into_inner()
}

/// A CheckConsent carrying the browser's signal as metadata.
fn check_with_gpc(customer: &str, signal: &str) -> Request<pb::CheckConsentRequest> {
    let mut request = Request::new(pb::CheckConsentRequest {
        customer_id: customer.into(),
        purpose_codes: vec![SALE.into(), "analytics".into()],
    });
    request
        .metadata_mut()
        .insert("sec-gpc", signal.parse().unwrap());
    request
}

/// The whole export for `customer` under `request_id` from consent's internal
/// DataSubjectService (`pod` serves it), read one record a page.
async fn export_all(
    pod: &TestApp,
    customer: &str,
    request_id: &str,
) -> Vec<privacy_pb::DataRecord> {
    every_page(async |page_token| {
        let page = pod
            .internal_data_subject()
            .export_customer_data(privacy_pb::ExportCustomerDataRequest {
                customer_id: customer.into(),
                request_id: request_id.into(),
                page_token,
                page_size: 1,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(page.service, "attune.consent.v1");
        (page.records, page.next_page_token)
    })
    .await
}

/// Erases `customer` through the gateway, which must succeed; returns consent's receipt.
async fn erase(app: &TestApp, customer: &str, request_id: &str) -> gateway_pb::ServiceReceipt {
    let answer = app.erase_customer(customer, request_id).await;
    assert!(answer.complete, "{answer:?}");
    assert_eq!(answer.customer_ids, [customer]);
    assert!(
        answer
            .receipts
            .iter()
            .all(|r| r.status == gateway_pb::ReceiptStatus::Succeeded as i32)
    );
    answer
        .receipts
        .into_iter()
        .find(|r| r.service == "attune.consent.v1")
        .expect("consent gives a receipt")
}

async fn audit_entries(app: &TestApp) -> i64 {
    app.verify_audit_log().await.entry_count
}

/// Every (table, column) of the database, on either backend.
async fn columns(db: &impl ConnectionTrait) -> Vec<(String, String)> {
    let sql = match db.get_database_backend() {
        DbBackend::Sqlite => {
            "SELECT m.name AS t, p.name AS c FROM sqlite_master m \
             JOIN pragma_table_info(m.name) p WHERE m.type = 'table'"
        }
        _ => {
            "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns \
             WHERE table_schema = current_schema()"
        }
    };
    db.query_all_raw(Statement::from_string(db.get_database_backend(), sql))
        .await
        .unwrap()
        .into_iter()
        .map(|row| (row.try_get("", "t").unwrap(), row.try_get("", "c").unwrap()))
        .collect()
}

/// The columns of any table in which some value contains `needle`.
async fn columns_containing(app: &TestApp, needle: &str) -> Vec<String> {
    let db = db::connect(&app.config.database).await.unwrap();
    let mut found = Vec::new();
    for (table, column) in columns(&db).await {
        let sql = format!(
            "SELECT COUNT(*) AS n FROM \"{table}\" WHERE CAST(\"{column}\" AS TEXT) LIKE '%{needle}%'"
        );
        let row = db
            .query_one_raw(Statement::from_string(db.get_database_backend(), sql))
            .await
            .unwrap()
            .unwrap();
        if row.try_get::<i64>("", "n").unwrap() > 0 {
            found.push(format!("{table}.{column}"));
        }
    }
    db.close().await.unwrap();
    found
}

backend_tests! {
    async fn a_gpc_signal_withdraws_sale_or_share_once(app) {
        grant(&app, "gpc-1", SALE).await;
        let first = gpc(&app, "gpc-1").await;
        assert!(first.recorded);
        assert_eq!(first.status, pb::ConsentStatus::Withdrawn as i32);
        let withdrawal = first.record.unwrap();
        assert_eq!(withdrawal.decision, pb::Decision::Withdrawn as i32);
        assert_eq!(withdrawal.channel, common_pb::Channel::Web as i32);
        assert_eq!(withdrawal.proof.unwrap().captured_by, "global-privacy-control");

        let repeat = gpc(&app, "gpc-1").await;
        assert!(!repeat.recorded && repeat.record.is_none());
        assert_eq!(repeat.status, pb::ConsentStatus::Withdrawn as i32);
        assert_eq!(app.consent_history("gpc-1", SALE).await.len(), 2, "one grant, one withdrawal");
        assert!(!granted(&app, "gpc-1", SALE).await);
    }

    async fn concurrent_gpc_signals_record_one_withdrawal(app) {
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let mut consent = app.consent();
                tokio::spawn(async move {
                    consent
                        .apply_global_privacy_control(pb::ApplyGlobalPrivacyControlRequest {
                            customer_id: "gpc-2".into(),
                        })
                        .await
                        .unwrap()
                        .into_inner()
                        .recorded
                })
            })
            .collect();
        let mut recorded = 0;
        for call in calls {
            recorded += usize::from(call.await.unwrap());
        }
        assert_eq!(recorded, 1);
        assert_eq!(app.consent_history("gpc-2", SALE).await.len(), 1);
    }

    async fn the_sec_gpc_metadata_is_honoured_on_checks_once(app) {
        grant(&app, "gpc-3", SALE).await;
        grant(&app, "gpc-3", "analytics").await;
        // Only "1" is a signal.
        app.consent().check_consent(check_with_gpc("gpc-3", "0")).await.unwrap();
        assert!(granted(&app, "gpc-3", SALE).await);

        let answer = app
            .consent()
            .check_consent(check_with_gpc("gpc-3", "1"))
            .await
            .unwrap()
            .into_inner();
        assert!(!answer.checks[0].granted, "the signal counts for the very request carrying it");
        assert_eq!(answer.checks[0].status, pb::ConsentStatus::Withdrawn as i32);
        assert!(answer.checks[1].granted, "other purposes are untouched");
        app.consent().check_consent(check_with_gpc("gpc-3", "1")).await.unwrap();
        assert_eq!(app.consent_history("gpc-3", SALE).await.len(), 2, "one grant, one withdrawal");
    }

    async fn a_new_grant_after_gpc_is_withdrawn_by_the_next_signal(app) {
        gpc(&app, "gpc-4").await;
        grant(&app, "gpc-4", SALE).await;
        assert!(granted(&app, "gpc-4", SALE).await);
        assert!(gpc(&app, "gpc-4").await.recorded);
        assert!(!granted(&app, "gpc-4", SALE).await);
    }

    async fn gpc_on_a_bad_request_changes_nothing(app) {
        let mut request = Request::new(pb::CheckConsentRequest {
            customer_id: "gpc-5".into(),
            purpose_codes: vec![],
        });
        request.metadata_mut().insert("sec-gpc", "1".parse().unwrap());
        let error = app.consent().check_consent(request).await.unwrap_err();
        assert_eq!(error.code(), Code::InvalidArgument);
        assert!(app.consent_history("gpc-5", "").await.is_empty());
        for customer in ["", "has space", &"x".repeat(129)] {
            let error = app
                .consent()
                .apply_global_privacy_control(pb::ApplyGlobalPrivacyControlRequest {
                    customer_id: customer.into(),
                })
                .await
                .unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{customer:?}");
            assert!(error.message().contains("customer_id"), "{error:?}");
        }
    }

    async fn export_returns_every_decision_in_pages_and_is_audited_once(app) {
        grant(&app, "dsr-1", "analytics").await;
        grant(&app, "dsr-1", "personalization").await;
        app.record_consent(record("dsr-1", vec![decision("analytics", pb::Decision::Withdrawn)])).await;
        let before = audit_entries(&app).await;
        let pod = app.pod("consent").await;
        let id = request_id();
        let exported = export_all(&pod, "dsr-1", &id).await;
        assert_eq!(exported.len(), 3);
        assert!(exported.iter().all(|r| r.kind == "consent_decision" && r.update_time.is_some()));
        let data = exported[2].data.as_ref().unwrap();
        let field = |name: &str| data.fields[name].kind.clone().unwrap();
        assert_eq!(field("customer_id"), Kind::StringValue("dsr-1".into()));
        assert_eq!(field("decision"), Kind::StringValue("withdrawn".into()));
        let Kind::StructValue(proof) = field("proof") else { panic!("proof is a struct") };
        assert_eq!(
            proof.fields["user_agent"].kind,
            Some(Kind::StringValue(TEST_USER_AGENT.into()))
        );
        // Three pages, one request: one audit entry; the same id replays.
        assert_eq!(audit_entries(&app).await, before + 1);
        assert_eq!(export_all(&pod, "dsr-1", &id).await, exported);
        assert_eq!(audit_entries(&app).await, before + 1);
        // Unknown customers export nothing, without error.
        assert!(export_all(&pod, "nobody", &request_id()).await.is_empty());
        // The same request id for another customer is a different request.
        let reused = pod
            .internal_data_subject()
            .export_customer_data(privacy_pb::ExportCustomerDataRequest {
                customer_id: "dsr-other".into(),
                request_id: id,
                page_token: String::new(),
                page_size: 0,
            })
            .await
            .unwrap_err();
        assert_eq!(reused.code(), Code::AlreadyExists);
    }

    async fn erasure_keeps_only_the_keyed_proof(app) {
        let customer = "erase-me-4711";
        grant(&app, customer, "analytics").await;
        grant(&app, customer, SALE).await;
        gpc(&app, customer).await;
        let mut bystander = record("bystander-1", vec![decision("analytics", pb::Decision::Granted)]);
        bystander.proof.as_mut().unwrap().user_agent = "UA-someone-else".into();
        app.record_consent(bystander).await;
        let id = request_id();
        let receipt = erase(&app, customer, &id).await;
        assert_eq!(receipt.service, "attune.consent.v1");
        assert!(receipt.record_count >= 3, "{receipt:?}");
        assert_eq!(receipt.retained.len(), 2);
        assert!(receipt.retained[0].contains("keyed hash"));

        // Nothing identifying is left anywhere, in any table.
        assert_eq!(columns_containing(&app, customer).await, Vec::<String>::new());
        assert_eq!(
            columns_containing(&app, TEST_USER_AGENT).await,
            Vec::<String>::new()
        );
        // The decisions themselves are kept, under the keyed hash.
        assert!(columns_containing(&app, "hmac-sha256:").await.contains(&"consent_records.customer_id".to_owned()));

        // The erased id is simply not granted, never an error.
        let after = &app.check_consent(customer, &["analytics"]).await[0];
        assert!(!after.granted);
        assert_eq!(after.status, pb::ConsentStatus::NotGiven as i32);
        assert!(app.consent_history(customer, "").await.is_empty());
        // Nothing is exported but the gateway's record of this very export.
        let exported = app.export_customer(customer, &request_id()).await;
        assert!(
            exported.iter().all(|message| message.records.is_empty()
                || message.service == attune_gateway::ACCESS_LOG_PACKAGE),
            "{exported:?}"
        );
        // Others are untouched.
        assert!(granted(&app, "bystander-1", "analytics").await);
        // A retry returns the original receipt; the chain still verifies.
        assert_eq!(erase(&app, customer, &id).await, receipt);
        let verification = app.verify_audit_log().await;
        assert!(verification.intact, "{verification:?}");
        // Erasing an unknown customer succeeds and erases nothing.
        assert_eq!(erase(&app, "never-seen", &request_id()).await.record_count, 0);
    }

    async fn erasure_tells_watchers_without_naming_the_customer(app) {
        grant(&app, "erase-w", "analytics").await;
        let start = app.newest_change_position().await;
        let mut stream = app.watch_changes(start).await;
        erase(&app, "erase-w", &request_id()).await;
        let changes = loop {
            let response = stream.next().await.unwrap().unwrap();
            if !response.changes.is_empty() {
                break response.changes;
            }
        };
        assert_eq!(changes.len(), 1);
        assert!(changes[0].position > start);
        assert_eq!(
            changes[0].change,
            Some(pb::consent_change::Change::CustomerErased(pb::CustomerErased {}))
        );
        // A watcher replaying from the start no longer sees the customer's changes.
        let mut replay = app.watch_changes(0).await;
        let first = replay.next().await.unwrap().unwrap();
        assert!(first.changes.iter().all(|change| !matches!(
            &change.change,
            Some(pb::consent_change::Change::Decision(d)) if d.customer_id == "erase-w"
        )));
    }

    async fn consents_internal_data_subject_api_rejects_bad_input(app) {
        let pod = app.pod("consent").await;
        let cases = [
            ("", "r-1", 0, "", "customer_id"),
            ("c 1", "r-1", 0, "", "customer_id"),
            ("c-1", "", 0, "", "request_id"),
            ("c-1", &"r".repeat(65), 0, "", "request_id"),
            ("c-1", "r-1", -1, "", "page_size"),
            ("c-1", "r-1", 1001, "", "page_size"),
            ("c-1", "r-1", 0, "not-a-token", "page_token"),
        ];
        for (customer, request, size, token, field) in cases {
            let error = pod
                .internal_data_subject()
                .export_customer_data(privacy_pb::ExportCustomerDataRequest {
                    customer_id: customer.into(),
                    request_id: request.into(),
                    page_token: token.into(),
                    page_size: size,
                })
                .await
                .unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{field}: {error:?}");
            assert!(error.message().contains(field), "{field}: {error:?}");
        }
        for (customer, request, field) in [("", "r-1", "customer_id"), ("c-1", "", "request_id")] {
            let error = pod
                .internal_data_subject()
                .erase_customer(privacy_pb::EraseCustomerRequest {
                    customer_id: customer.into(),
                    request_id: request.into(),
                })
                .await
                .unwrap_err();
            assert_eq!(error.code(), Code::InvalidArgument, "{field}: {error:?}");
            assert!(error.message().contains(field), "{field}: {error:?}");
        }
    }
}
