//! Each data-subject request's outcome in consent's tamper-evident audit log
//! (`attune.consent.v1.ConsentService/AuditDataSubjectRequest`): who asked, the
//! request id, completed or which services failed. Consent keeps only its keyed
//! pseudonym of the customer. Consent appends each outcome of a request once,
//! so the gateway asks after every run, and a run whose audit failed (consent
//! down) is audited by the next run of the same request.

use attune_kit::telemetry::TraceContextInterceptor;
use attune_proto::consent::v1 as consent;
use attune_proto::consent::v1::consent_service_client::ConsentServiceClient;
use tonic::metadata::MetadataMap;

use super::fanout::outgoing;
use super::status::Kind;
use crate::access_log::Caller;
use crate::backend::Backend;

/// The package whose audit log records data-subject requests.
pub(super) const CONSENT_PACKAGE: &str = "attune.consent.v1";

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

/// Appends the outcome of a run of `request_id` to consent's audit log: every
/// service of `failed` failed, none when empty. A failure is logged, never
/// returned: the request's own answer does not depend on it.
pub(super) async fn record(
    consent_backend: Option<&Backend>,
    kind: Kind,
    customer_id: &str,
    request_id: &str,
    caller: &Caller,
    failed: Vec<String>,
    metadata: &MetadataMap,
) {
    let Some(backend) = consent_backend else {
        tracing::warn!("no consent backend: a data-subject request is not in the audit log");
        return;
    };
    let outcome = if failed.is_empty() {
        consent::DataSubjectRequestOutcome::Completed
    } else {
        consent::DataSubjectRequestOutcome::PartiallyFailed
    };
    let kind = match kind {
        Kind::Export => consent::DataSubjectRequestKind::Export,
        Kind::Erasure => consent::DataSubjectRequestKind::Erasure,
    };
    let mut client =
        ConsentServiceClient::with_interceptor(backend.transport(), TraceContextInterceptor);
    let answer = client
        .audit_data_subject_request(outgoing(
            consent::AuditDataSubjectRequestRequest {
                customer_id: customer_id.to_owned(),
                request_id: request_id.to_owned(),
                kind: kind.into(),
                requested_by: requested_by(caller),
                outcome: outcome.into(),
                failed_services: failed,
            },
            metadata,
        ))
        .await;
    if let Err(status) = answer {
        tracing::warn!(
            code = ?status.code(),
            "consent did not audit a data-subject request; the next run of it will"
        );
    }
}
