//! Consent's helpers for end-to-end tests: calls through the public port that
//! a test needs to set up or read back consent state. Requests come ready-made
//! from [`crate::consent_requests`].

use attune_proto::consent::v1 as consent_pb;
use sea_orm::{ConnectionTrait, Statement, TransactionTrait};
use tokio_stream::StreamExt;
use tonic::Streaming;

use crate::{TestApp, every_page};

impl TestApp {
    /// A customer's whole consent history (every page), optionally for one purpose.
    pub async fn consent_history(
        &self,
        customer: &str,
        purpose: &str,
    ) -> Vec<consent_pb::ConsentRecord> {
        self.consent_history_paged(customer, purpose, 0).await
    }

    /// The same history read in pages of `page_size` (0: the server's default).
    pub async fn consent_history_paged(
        &self,
        customer: &str,
        purpose: &str,
        page_size: i32,
    ) -> Vec<consent_pb::ConsentRecord> {
        every_page(async |page_token| {
            let page = self
                .consent()
                .list_consent_history(consent_pb::ListConsentHistoryRequest {
                    customer_id: customer.into(),
                    purpose_code: purpose.into(),
                    page_size,
                    page_token,
                })
                .await
                .expect("history can be listed")
                .into_inner();
            (page.records, page.next_page_token)
        })
        .await
    }

    /// Grants `customer` each of `purposes` (the default catalogue's codes, for
    /// example "personalization": browsing, purchases and preferences) at notice
    /// version 1.
    pub async fn grant(&self, customer: &str, purposes: &[&str]) {
        let decisions = purposes
            .iter()
            .map(|code| crate::consent_requests::decision(code, consent_pb::Decision::Granted))
            .collect();
        self.record_consent(crate::consent_requests::record(customer, decisions))
            .await;
    }

    /// Records `request`, which must succeed; returns the ledger records it holds.
    pub async fn record_consent(
        &self,
        request: consent_pb::RecordConsentRequest,
    ) -> Vec<consent_pb::ConsentRecord> {
        self.consent()
            .record_consent(request)
            .await
            .expect("the decision is recorded")
            .into_inner()
            .records
    }

    /// CheckConsent's answers for `customer` on `codes`, in the order asked.
    pub async fn check_consent(
        &self,
        customer: &str,
        codes: &[&str],
    ) -> Vec<consent_pb::PurposeCheck> {
        self.consent()
            .check_consent(consent_pb::CheckConsentRequest {
                customer_id: customer.into(),
                purpose_codes: codes.iter().map(|code| (*code).into()).collect(),
            })
            .await
            .expect("check succeeds")
            .into_inner()
            .checks
    }

    /// The change stream from just after `after_position` (0: from the start).
    pub async fn watch_changes(
        &self,
        after_position: i64,
    ) -> Streaming<consent_pb::WatchConsentChangesResponse> {
        self.consent()
            .watch_consent_changes(consent_pb::WatchConsentChangesRequest {
                after_position,
                start_at_newest: false,
            })
            .await
            .expect("the change stream opens")
            .into_inner()
    }

    /// The newest change position, as the first response of a watch at the newest says.
    pub async fn newest_change_position(&self) -> i64 {
        let mut stream = self
            .consent()
            .watch_consent_changes(consent_pb::WatchConsentChangesRequest {
                after_position: 0,
                start_at_newest: true,
            })
            .await
            .expect("the change stream opens")
            .into_inner();
        let first = stream
            .next()
            .await
            .expect("the stream sends a first response")
            .expect("the first response is not an error");
        assert!(
            first.changes.is_empty(),
            "a watch at the newest starts with a heartbeat"
        );
        first.position
    }

    /// VerifyAuditLog's verdict on the whole audit log.
    pub async fn verify_audit_log(&self) -> consent_pb::VerifyAuditLogResponse {
        self.consent()
            .verify_audit_log(consent_pb::VerifyAuditLogRequest {})
            .await
            .expect("verification answers")
            .into_inner()
    }

    /// Holds the write path busy from outside the server, so a RecordConsent call stays
    /// in flight: on SQLite by holding the write lock, on PostgreSQL by holding an
    /// uncommitted claim on the call's request id.
    pub async fn hold_consent_write_path(&self, request_id: &str) -> sea_orm::DatabaseTransaction {
        let db = attune_kit::db::connect(&self.config.database)
            .await
            .expect("the test database accepts connections");
        let txn = db
            .begin_with_options(sea_orm::TransactionOptions {
                sqlite_transaction_mode: Some(sea_orm::SqliteTransactionMode::Immediate),
                ..Default::default()
            })
            .await
            .expect("a transaction can begin");
        let backend = txn.get_database_backend();
        let sql = match backend {
            sea_orm::DbBackend::Postgres => {
                "INSERT INTO consent_requests (operation, request_id, fingerprint, outcome, create_time) VALUES ('record_consent', $1, 'held', '', 0)"
            }
            _ => {
                "INSERT INTO consent_requests (operation, request_id, fingerprint, outcome, create_time) VALUES ('record_consent', ?, 'held', '', 0)"
            }
        };
        txn.execute_raw(Statement::from_sql_and_values(
            backend,
            sql,
            [request_id.into()],
        ))
        .await
        .expect("the claim is inserted");
        txn
    }
}
