//! Consent requests as the end-to-end tests build them: valid as they stand, each
//! under a fresh request id, for a test to adjust field by field.

use attune_proto::common::v1 as common_pb;
use attune_proto::consent::v1 as pb;
use chrono::{DateTime, SubsecRound, Utc};
use prost_types::Timestamp;

/// The form hash of the proof [`record`] attaches.
pub const TEST_FORM_HASH: &str = "sha256:banner-v1";
/// The user agent of the proof [`record`] attaches: distinctive, so that finding it
/// anywhere is no coincidence.
pub const TEST_USER_AGENT: &str = "UA-private-device-fingerprint";
/// Who captured the proof [`record`] attaches: distinctive too.
pub const TEST_CAPTURED_BY: &str = "store-employee-77";

/// A fresh request id.
pub fn request_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `time` as a protobuf timestamp, cut to the microseconds the store keeps, so that
/// it compares equal to the time read back.
pub fn timestamp(time: DateTime<Utc>) -> Timestamp {
    attune_kit::types::time::to_proto(time.trunc_subsecs(6))
}

/// `decision` on the purpose `code`, under its first notice.
pub fn decision(code: &str, decision: pb::Decision) -> pb::PurposeDecision {
    pb::PurposeDecision {
        purpose_code: code.into(),
        decision: decision.into(),
        notice_version: 1,
    }
}

/// `customer`'s `decisions`, made on the web on receipt, never expiring, with the
/// test proof ([`TEST_FORM_HASH`], [`TEST_USER_AGENT`], [`TEST_CAPTURED_BY`]).
pub fn record(customer: &str, decisions: Vec<pb::PurposeDecision>) -> pb::RecordConsentRequest {
    pb::RecordConsentRequest {
        customer_id: customer.into(),
        decisions,
        channel: common_pb::Channel::Web.into(),
        proof: Some(pb::ConsentProof {
            form_hash: TEST_FORM_HASH.into(),
            user_agent: TEST_USER_AGENT.into(),
            captured_by: TEST_CAPTURED_BY.into(),
        }),
        decide_time: None,
        expire_time: None,
        request_id: request_id(),
    }
}

/// A new consent-based purpose `code`, "Birthday surprises", on demographics.
pub fn new_purpose(code: &str) -> pb::CreatePurposeRequest {
    pb::CreatePurposeRequest {
        code: code.into(),
        display_name: "Birthday surprises".into(),
        description: "We use your birthday to send you a gift voucher.".into(),
        legal_basis: pb::LegalBasis::Consent.into(),
        data_categories: vec![common_pb::DataCategory::Demographics.into()],
        request_id: request_id(),
    }
}
