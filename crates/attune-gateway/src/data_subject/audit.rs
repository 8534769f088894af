//! Each data-subject request's outcome in consent's tamper-evident audit log
//! (`attune.consent.v1.ConsentService/AuditDataSubjectRequest`): who asked, the
//! request id, completed or which services failed. Consent keeps only its keyed
//! pseudonym of the customer and appends each outcome of a request once, so an
//! entry can be sent again safely. One consent did not take is kept pending
//! ([`PendingAudits`](super::pending_audits::PendingAudits)) and sent again in
//! the background until consent takes it: the entry is never lost.

use std::time::Duration;

use attune_kit::telemetry::TraceContextInterceptor;
use attune_proto::consent::v1 as consent;
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use tonic::Status;
use tonic::metadata::MetadataMap;

use super::fanout::outgoing;
use super::pending_audits::PendingAudits;
use super::status::Kind;
use crate::access_log::Caller;
use crate::backend::Backend;

/// The package whose audit log records data-subject requests.
pub(super) const CONSENT_PACKAGE: &str = "attune.consent.v1";

/// The longest an audit call may take when the caller set no deadline (the
/// background retry): a consent that hangs must not hold the retries up.
const AUDIT_TIMEOUT: Duration = Duration::from_secs(5);

/// Who asked, as the audit log names them: the caller's kind and name (and a
/// store associate's store), never a customer's id, in printable ASCII.
fn requested_by(caller: &Caller) -> String {
    let kind = caller
        .kind
        .as_str_name()
        .trim_start_matches("CALLER_KIND_")
        .to_ascii_lowercase();
    let mut text = format!("{kind}:{}", caller.name);
    if !caller.store_id.is_empty() {
        text.push('@');
        text.push_str(&caller.store_id);
    }
    text.chars()
        .map(|c| if c.is_ascii_graphic() { c } else { '_' })
        .take(128)
        .collect()
}

/// One outcome of one request, as consent's audit log takes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Audit {
    pub kind: Kind,
    pub customer_id: String,
    pub request_id: String,
    /// Who asked ([`requested_by`]).
    pub requested_by: String,
    /// The services that failed; none: completed.
    pub failed: Vec<String>,
}

impl Audit {
    /// The outcome of a run of `request_id` by `caller`: every service of
    /// `failed` failed, none when empty.
    pub(super) fn new(
        kind: Kind,
        customer_id: &str,
        request_id: &str,
        caller: &Caller,
        failed: Vec<String>,
    ) -> Self {
        Self {
            kind,
            customer_id: customer_id.to_owned(),
            request_id: request_id.to_owned(),
            requested_by: requested_by(caller),
            failed,
        }
    }

    fn outcome(&self) -> consent::DataSubjectRequestOutcome {
        if self.failed.is_empty() {
            consent::DataSubjectRequestOutcome::Completed
        } else {
            consent::DataSubjectRequestOutcome::PartiallyFailed
        }
    }

    /// The outcome's stored name.
    pub(super) fn outcome_name(&self) -> &'static str {
        match self.outcome() {
            consent::DataSubjectRequestOutcome::Completed => "completed",
            _ => "partially_failed",
        }
    }

    /// Asks consent to append the entry (a second time appends nothing).
    pub(super) async fn send(
        &self,
        consent: &Backend,
        metadata: &MetadataMap,
    ) -> Result<(), Status> {
        let kind = match self.kind {
            Kind::Export => consent::DataSubjectRequestKind::Export,
            Kind::Erasure => consent::DataSubjectRequestKind::Erasure,
        };
        let mut client =
            ConsentServiceClient::with_interceptor(consent.transport(), TraceContextInterceptor);
        let call = client.audit_data_subject_request(outgoing(
            consent::AuditDataSubjectRequestRequest {
                customer_id: self.customer_id.clone(),
                request_id: self.request_id.clone(),
                kind: kind.into(),
                requested_by: self.requested_by.clone(),
                outcome: self.outcome().into(),
                failed_services: self.failed.clone(),
            },
            metadata,
        ));
        match tokio::time::timeout(AUDIT_TIMEOUT, call).await {
            Ok(answer) => answer.map(drop),
            Err(_) => Err(Status::deadline_exceeded("consent did not answer in time")),
        }
    }
}

/// Appends `audit` to consent's audit log; when consent does not take it, it
/// is kept in `pending` and sent again in the background. Never the request's
/// failure: its answer does not depend on the audit.
pub(super) async fn record(
    consent_backend: Option<&Backend>,
    pending: &PendingAudits,
    audit: Audit,
    metadata: &MetadataMap,
) {
    let Some(backend) = consent_backend else {
        tracing::warn!("no consent backend: a data-subject request is not in the audit log");
        return;
    };
    if let Err(status) = audit.send(backend, metadata).await {
        tracing::warn!(
            code = ?status.code(),
            "consent did not audit a data-subject request; it is kept pending and sent again"
        );
        pending.keep(audit).await;
    }
}
