//! How a part says what happened to it: OK with the data it used, DEGRADED when
//! its service failed or was late, OMITTED when it was left out on purpose.

use attune_kit::peer::Within;
use attune_kit::types::DataCategory;
use attune_proto::gateway::v1 as pb;

/// A part that came out whole, having used `categories` under `purposes`.
pub(crate) fn ok(service: &str, categories: &[DataCategory], purposes: &[&str]) -> pb::PartStatus {
    let mut categories: Vec<i32> = categories.iter().map(|c| c.to_proto() as i32).collect();
    categories.sort_unstable();
    categories.dedup();
    let mut purposes: Vec<String> = purposes.iter().map(|p| (*p).to_owned()).collect();
    purposes.sort();
    purposes.dedup();
    pb::PartStatus {
        state: pb::PartState::Ok.into(),
        reason: pb::PartReason::Unspecified.into(),
        missing_purpose_codes: Vec::new(),
        service: service.to_owned(),
        detail: String::new(),
        data_categories: categories,
        purpose_codes: purposes,
    }
}

/// A part left out on purpose.
pub(crate) fn omitted(service: &str, reason: pb::PartReason) -> pb::PartStatus {
    pb::PartStatus {
        state: pb::PartState::Omitted.into(),
        reason: reason.into(),
        ..ok(service, &[], &[])
    }
}

/// A part left out because the customer has not granted `missing`.
pub(crate) fn no_consent(service: &str, missing: Vec<String>) -> pb::PartStatus {
    pb::PartStatus {
        missing_purpose_codes: missing,
        ..omitted(service, pb::PartReason::NoConsent)
    }
}

/// A part its service did not deliver.
pub(crate) fn degraded(service: &str, reason: pb::PartReason, detail: String) -> pb::PartStatus {
    pb::PartStatus {
        state: pb::PartState::Degraded.into(),
        reason: reason.into(),
        detail,
        ..ok(service, &[], &[])
    }
}

/// The status of a call that brought no answer; `None` when it did. A refusal
/// the part does not expect counts as the service failing its part.
pub(crate) fn failure<T>(service: &str, outcome: &Within<T>) -> Option<pb::PartStatus> {
    match outcome {
        Within::Answered(_) => None,
        Within::TimedOut => Some(degraded(
            service,
            pb::PartReason::DeadlineExceeded,
            "no answer within the part's budget".into(),
        )),
        Within::Unavailable(status) | Within::Refused(status) => {
            tracing::warn!(service, code = ?status.code(), "a page part's service failed");
            Some(degraded(
                service,
                pb::PartReason::ServiceUnavailable,
                format!("the service answered {:?}", status.code()),
            ))
        }
    }
}

/// Whether a part ended OK.
pub(crate) fn is_ok(status: &pb::PartStatus) -> bool {
    status.state == pb::PartState::Ok as i32
}
