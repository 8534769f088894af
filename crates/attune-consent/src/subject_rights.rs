//! The data subject's rights over consent's data: the Global Privacy Control
//! opt-out, export (GDPR Art. 15/20) and erasure (Art. 17).
//!
//! What erasure keeps, and why. To prove past consent (Art. 7(1)) and to defend
//! legal claims (Art. 17(3)(e)), the ledger keeps each decision (purpose,
//! decision, notice version, channel, times, request id, form hash), with the
//! customer id replaced by a keyed hash (HMAC-SHA256 under a key only this
//! deployment holds, see `domain::pseudonym`), and the audit log keeps its
//! entries, which never held more than that hash. Everything else that
//! identifies the customer goes: the user agent and capturer in the proof, the
//! current-state projection, and the customer's rows in the change stream (an
//! anonymous erasure change replaces them, so caches drop what they hold).

use attune_kit::db::begin_write;
use attune_kit::idempotency::Request;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::domain::{
    AuditEvent, AuditKind, ConsentRecord, ConsentStatus, CustomerId, GPC_PURPOSE, PurposeCode,
    RequestId, gpc_records_withdrawal, gpc_withdrawal,
};
use crate::error::ConsentError;
use crate::service::Consent;
use crate::store::{self, REQUESTS, WRITE_LOCK, changes, erasure, ledger, purposes};

/// What a Global Privacy Control signal did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpcOutcome {
    /// The withdrawal this signal recorded, if it recorded one.
    pub recorded: Option<ConsentRecord>,
    /// The `sale_or_share` status after the signal.
    pub status: ConsentStatus,
}

/// The receipt of an erasure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErasureReceipt {
    pub erased_record_count: i64,
    pub retained: Vec<String>,
    pub erase_time: DateTime<Utc>,
}

/// What erasure keeps, in words a data protection officer can check.
pub const RETAINED_AFTER_ERASURE: [&str; 2] = [
    "consent decisions (purpose, decision, notice version, channel, decision, expiry and \
     record times, request id, form hash) under a keyed hash (HMAC-SHA256) of the customer id \
     instead of the id, to prove past consent (GDPR Art. 7(1)) and defend legal claims \
     (Art. 17(3)(e))",
    "privacy audit log entries, which name the customer only by the same keyed hash, to prove \
     that the consent history was not altered",
];

impl Consent {
    /// Honours a Global Privacy Control signal: withdraws `sale_or_share` unless
    /// the customer already withdrew or denied it. The check and the withdrawal
    /// run under the write lock, so concurrent signals record one withdrawal.
    pub async fn apply_gpc(&self, customer: &CustomerId) -> Result<GpcOutcome, ConsentError> {
        let now = self.now();
        let purpose = PurposeCode::parse(GPC_PURPOSE)
            .map_err(|_| ConsentError::Corrupt("the GPC purpose code".to_owned()))?;
        // Browsers send the signal on every request, and callers may forward it
        // on every check: once it is honoured, answer from the check's cache
        // rather than take the write lock. The rule is checked again under the
        // lock, since the cache may lag another process's grant.
        let (answers, _) = self.check(customer, vec![purpose.clone()]).await?;
        if let Some(answer) = answers.first()
            && matches!(
                answer.status,
                ConsentStatus::Withdrawn | ConsentStatus::Denied
            )
        {
            return Ok(GpcOutcome {
                recorded: None,
                status: answer.status,
            });
        }
        let txn = begin_write(&self.db, WRITE_LOCK).await?;
        let current = ledger::current(&txn, customer, std::slice::from_ref(&purpose))
            .await?
            .remove(purpose.as_ref());
        if !gpc_records_withdrawal(current.as_ref()) {
            txn.commit().await?;
            return Ok(GpcOutcome {
                recorded: None,
                status: ConsentStatus::at(current.as_ref(), now),
            });
        }
        let notice = purposes::get(&txn, &purpose, None)
            .await?
            .ok_or_else(|| ConsentError::PurposeNotFound(GPC_PURPOSE.to_owned()))?;
        let request_id = RequestId::parse(&format!("gpc-{}", uuid::Uuid::new_v4()))
            .map_err(|_| ConsentError::Corrupt("a generated request id".to_owned()))?;
        let command = gpc_withdrawal(customer.clone(), purpose, notice.notice_version, request_id);
        let record = ledger::append(&txn, &command, now)
            .await?
            .pop()
            .ok_or_else(|| ConsentError::Corrupt("a GPC withdrawal left no record".to_owned()))?;
        let event = AuditEvent {
            kind: AuditKind::GpcApplied,
            ..AuditEvent::consent_recorded(self.key.subject(customer), &record)
        };
        store::audit::append(&txn, event, now).await?;
        txn.commit().await?;
        self.committed(customer);
        tracing::info!(
            record_id = record.record_id,
            "GPC signal recorded a withdrawal"
        );
        Ok(GpcOutcome {
            recorded: Some(record),
            status: ConsentStatus::Withdrawn,
        })
    }

    /// One page of a customer's consent records, after record id `after`. The
    /// request is audited once, on its first page (a retried first page finds
    /// its claim); later pages continue it and take no write lock.
    pub async fn export(
        &self,
        customer: &CustomerId,
        request_id: &RequestId,
        after: Option<i64>,
        limit: u32,
    ) -> Result<Vec<ConsentRecord>, ConsentError> {
        if after.is_none() {
            self.audit_export(customer, request_id).await?;
        }
        ledger::history(&self.db, customer, None, after, u64::from(limit)).await
    }

    /// Claims an export's request id and audits it, unless it was done before.
    async fn audit_export(
        &self,
        customer: &CustomerId,
        request_id: &RequestId,
    ) -> Result<(), ConsentError> {
        let now = self.now();
        let txn = begin_write(&self.db, WRITE_LOCK).await?;
        let request = Request {
            operation: "export_customer_data",
            request_id: request_id.as_ref(),
            fingerprint: &self.key.fingerprint(customer),
        };
        REQUESTS
            .idempotent(&txn, request, now, async |txn| {
                let event = AuditEvent {
                    kind: AuditKind::DataExported,
                    subject: Some(self.key.subject(customer)),
                    detail: json!({ "request_id": request_id.as_ref() }),
                };
                store::audit::append(txn, event, now).await
            })
            .await?;
        txn.commit().await?;
        Ok(())
    }

    /// Erases a customer (see the module documentation for what is kept). A
    /// retry with the same request id returns the original receipt.
    pub async fn erase(
        &self,
        customer: &CustomerId,
        request_id: &RequestId,
    ) -> Result<ErasureReceipt, ConsentError> {
        let now = self.now();
        let txn = begin_write(&self.db, WRITE_LOCK).await?;
        let request = Request {
            operation: "erase_customer",
            request_id: request_id.as_ref(),
            fingerprint: &self.key.fingerprint(customer),
        };
        let stored = REQUESTS
            .idempotent(&txn, request, now, async |txn| {
                let subject = self.key.subject(customer);
                let records = erasure::pseudonymise_records(txn, customer, &subject).await?;
                let states = erasure::delete_states(txn, customer).await?;
                let changes = changes::erase_customer(txn, customer, now).await?;
                let event = AuditEvent {
                    kind: AuditKind::CustomerErased,
                    subject: Some(subject),
                    detail: json!({
                        "request_id": request_id.as_ref(),
                        "records_pseudonymised": records,
                        "states_deleted": states,
                        "changes_deleted": changes,
                    }),
                };
                store::audit::append(txn, event, now).await?;
                tracing::info!(records, states, changes, "customer erased from consent");
                Ok::<_, ConsentError>(StoredReceipt {
                    erased_record_count: i64::try_from(records + states + changes)
                        .map_err(|_| ConsentError::Corrupt("an erasure count".to_owned()))?,
                    erase_time_micros: now.timestamp_micros(),
                })
            })
            .await?
            .into_inner();
        txn.commit().await?;
        self.committed(customer);
        Ok(ErasureReceipt {
            erased_record_count: stored.erased_record_count,
            retained: RETAINED_AFTER_ERASURE.map(str::to_owned).to_vec(),
            erase_time: attune_kit::db::micros::from_micros(stored.erase_time_micros)?,
        })
    }
}

/// What an erasure's request log keeps to answer a retry (migration m0004
/// converted the receipts stored before as `count:micros`).
#[derive(Debug, Serialize, Deserialize)]
struct StoredReceipt {
    erased_record_count: i64,
    erase_time_micros: i64,
}
