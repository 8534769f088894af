//! Data-subject requests handled across every service (the gateway's export and
//! erasure) in the privacy audit log: who asked, the request id, the outcome,
//! and the services that failed, under the customer's keyed pseudonym (the one
//! erasure keeps), so the entry outlives the erasure it records and never names
//! the customer.

use attune_kit::db::begin_write;
use attune_kit::error::{ApiError, FieldViolation, Violations};
use attune_kit::idempotency::Request;
use attune_proto::consent::v1 as pb;
use serde_json::json;

use crate::domain::{AuditEvent, AuditKind, CustomerId, RequestId};
use crate::error::ConsentError;
use crate::service::Consent;
use crate::store::{self, REQUESTS, WRITE_LOCK};

/// The most failed services one entry names (more than Attune has services).
const MAX_FAILED_SERVICES: usize = 32;

/// A data-subject request's end, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataSubjectRequestEnded {
    pub customer: CustomerId,
    pub request_id: RequestId,
    pub kind: &'static str,
    pub requested_by: String,
    pub outcome: &'static str,
    pub failed_services: Vec<String>,
}

/// 1 to 128 printable ASCII characters: names of callers and services.
fn label(field: &str, value: &str) -> Result<String, FieldViolation> {
    if value.is_empty() || value.len() > 128 || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(FieldViolation::new(
            field,
            "must be 1 to 128 printable ASCII characters without spaces",
        ));
    }
    Ok(value.to_owned())
}

impl DataSubjectRequestEnded {
    /// Checks every field; INVALID_ARGUMENT naming each bad one.
    pub fn parse(request: pb::AuditDataSubjectRequestRequest) -> Result<Self, ApiError> {
        let pb::AuditDataSubjectRequestRequest {
            customer_id,
            request_id,
            kind,
            requested_by,
            outcome,
            failed_services,
        } = request;
        let mut v = Violations::default();
        let customer = v.check("customer_id", CustomerId::parse(&customer_id));
        let request_id = v.check("request_id", RequestId::parse(&request_id));
        let kind = match pb::DataSubjectRequestKind::try_from(kind) {
            Ok(pb::DataSubjectRequestKind::Export) => Some("export"),
            Ok(pb::DataSubjectRequestKind::Erasure) => Some("erasure"),
            _ => {
                v.add("kind", "must be EXPORT or ERASURE");
                None
            }
        };
        let outcome = match pb::DataSubjectRequestOutcome::try_from(outcome) {
            Ok(pb::DataSubjectRequestOutcome::Completed) => Some("completed"),
            Ok(pb::DataSubjectRequestOutcome::PartiallyFailed) => Some("partially_failed"),
            _ => {
                v.add("outcome", "must be COMPLETED or PARTIALLY_FAILED");
                None
            }
        };
        let requested_by = v.check_field(label("requested_by", &requested_by));
        if failed_services.len() > MAX_FAILED_SERVICES {
            v.add(
                "failed_services",
                format!("must name at most {MAX_FAILED_SERVICES} services"),
            );
        }
        let failed: Vec<_> = failed_services
            .iter()
            .enumerate()
            .filter_map(|(index, service)| {
                v.check_field(label(&format!("failed_services[{index}]"), service))
            })
            .collect();
        if outcome == Some("completed") && !failed_services.is_empty() {
            v.add(
                "failed_services",
                "must be empty when the outcome is COMPLETED",
            );
        }
        if outcome == Some("partially_failed") && failed_services.is_empty() {
            v.add(
                "failed_services",
                "must name a service when the outcome is PARTIALLY_FAILED",
            );
        }
        v.finish()?;
        Ok(Self {
            customer: attune_kit::error::checked(customer),
            request_id: attune_kit::error::checked(request_id),
            kind: attune_kit::error::checked(kind),
            requested_by: attune_kit::error::checked(requested_by),
            outcome: attune_kit::error::checked(outcome),
            failed_services: failed,
        })
    }
}

impl Consent {
    /// Appends `ended` to the audit log unless this outcome of this request was
    /// appended before; whether it appended.
    pub async fn audit_data_subject_request(
        &self,
        ended: DataSubjectRequestEnded,
    ) -> Result<bool, ConsentError> {
        let now = self.now();
        // One entry per kind and outcome of a request id: a partial failure,
        // then the completion after a re-run, are two entries.
        let operation = format!("dsr_{}_{}", ended.kind, ended.outcome);
        let txn = begin_write(&self.db, WRITE_LOCK).await?;
        let request = Request {
            operation: &operation,
            request_id: ended.request_id.as_ref(),
            fingerprint: &self.key.fingerprint(&ended.customer),
        };
        let appended = REQUESTS
            .idempotent(&txn, request, now, async |txn| {
                let event = AuditEvent {
                    kind: AuditKind::DataSubjectRequest,
                    subject: Some(self.key.subject(&ended.customer)),
                    detail: json!({
                        "request_id": ended.request_id.as_ref(),
                        "kind": ended.kind,
                        "requested_by": ended.requested_by,
                        "outcome": ended.outcome,
                        "failed_services": ended.failed_services,
                    }),
                };
                store::audit::append(txn, event, now).await
            })
            .await?
            .is_fresh();
        txn.commit().await?;
        Ok(appended)
    }
}
