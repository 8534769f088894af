//! Consent's wire messages and the rule's types: the [`Decision`] conversions the
//! consent service and the checker share, and the checker's reading of
//! `GetConsentState` answers and change summaries. Anything the checker cannot
//! read (an unknown decision value, a malformed time) yields `None`, and the
//! callers then refuse to answer from it rather than guess.

use std::collections::HashMap;

use attune_proto::consent::v1 as pb;
use attune_proto::prost_types::Timestamp;
use chrono::{DateTime, Utc};

use super::rule::{CurrentDecision, Decision};
use super::source::CustomerState;
use crate::types::time;

/// Parses a required wire decision: `DECISION_UNSPECIFIED` and numbers this
/// build does not know are rejected, saying why.
pub fn decision_from_proto(raw: i32) -> Result<Decision, String> {
    match pb::Decision::try_from(raw) {
        Ok(pb::Decision::Unspecified) => Err("must be set".into()),
        Ok(pb::Decision::Granted) => Ok(Decision::Granted),
        Ok(pb::Decision::Denied) => Ok(Decision::Denied),
        Ok(pb::Decision::Withdrawn) => Ok(Decision::Withdrawn),
        Err(_) => Err(format!("{raw} is not a known decision")),
    }
}

/// The wire decision.
pub fn decision_to_proto(decision: Decision) -> pb::Decision {
    match decision {
        Decision::Granted => pb::Decision::Granted,
        Decision::Denied => pb::Decision::Denied,
        Decision::Withdrawn => pb::Decision::Withdrawn,
    }
}

/// A `GetConsentState` answer as a [`CustomerState`]; `None` when a record in it
/// cannot be read.
pub(crate) fn customer_state(response: pb::GetConsentStateResponse) -> Option<CustomerState> {
    let pb::GetConsentStateResponse {
        states,
        change_position,
    } = response;
    let mut purposes = HashMap::with_capacity(states.len());
    for state in states {
        // No `latest` means the customer never decided: "not given", which an
        // absent purpose already means.
        if let Some(latest) = &state.latest {
            purposes.insert(state.purpose_code, record(latest)?);
        }
    }
    Some(CustomerState {
        position: change_position,
        purposes,
    })
}

/// The decision a ledger record carries.
fn record(record: &pb::ConsentRecord) -> Option<CurrentDecision> {
    Some(CurrentDecision {
        record_id: record.record_id,
        decision: decision_from_proto(record.decision).ok()?,
        notice_version: record.notice_version,
        expire_time: optional_time(record.expire_time.as_ref())?,
    })
}

/// The decision a change summary carries (`ConsentDecisionChange.current`).
pub(crate) fn summary(summary: &pb::DecisionSummary) -> Option<CurrentDecision> {
    Some(CurrentDecision {
        record_id: summary.record_id,
        decision: decision_from_proto(summary.decision).ok()?,
        notice_version: summary.notice_version,
        expire_time: optional_time(summary.expire_time.as_ref())?,
    })
}

/// `Some(None)` for an absent time, `None` for a present but invalid one.
fn optional_time(timestamp: Option<&Timestamp>) -> Option<Option<DateTime<Utc>>> {
    time::from_proto_optional(timestamp.copied()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(code: &str, latest: Option<pb::ConsentRecord>) -> pb::PurposeState {
        pb::PurposeState {
            purpose_code: code.into(),
            status: pb::ConsentStatus::NotGiven.into(),
            latest,
        }
    }

    fn granted_record(expire_time: Option<(i64, i32)>) -> pb::ConsentRecord {
        pb::ConsentRecord {
            record_id: 7,
            decision: pb::Decision::Granted.into(),
            notice_version: 2,
            expire_time: expire_time.map(|(seconds, nanos)| Timestamp { seconds, nanos }),
            ..Default::default()
        }
    }

    #[test]
    fn purposes_without_a_latest_record_are_left_out() {
        let read = customer_state(pb::GetConsentStateResponse {
            states: vec![
                state("analytics", None),
                state(
                    "personalization",
                    Some(granted_record(Some((2_000_000_000, 5)))),
                ),
            ],
            change_position: 42,
        })
        .expect("valid records are readable");
        assert_eq!(read.position, 42);
        assert_eq!(read.purposes.len(), 1);
        let current = read.purposes["personalization"];
        assert_eq!(current.decision, Decision::Granted);
        assert_eq!(current.notice_version, 2);
        // Times are read at microsecond precision, as every Attune time is.
        assert_eq!(
            current.expire_time,
            DateTime::from_timestamp(2_000_000_000, 0)
        );
    }

    #[test]
    fn an_unreadable_record_makes_the_whole_answer_unreadable() {
        let mut unknown = granted_record(None);
        unknown.decision = 99;
        let mut unspecified = granted_record(None);
        unspecified.decision = pb::Decision::Unspecified.into();
        for bad in [unknown, unspecified, granted_record(Some((0, -1)))] {
            let response = pb::GetConsentStateResponse {
                states: vec![state("analytics", Some(bad))],
                change_position: 1,
            };
            assert_eq!(customer_state(response), None);
        }
    }

    #[test]
    fn decisions_round_trip_through_the_wire() {
        for decision in [Decision::Granted, Decision::Denied, Decision::Withdrawn] {
            assert_eq!(
                decision_from_proto(decision_to_proto(decision).into()),
                Ok(decision)
            );
        }
    }

    #[test]
    fn an_unspecified_or_unknown_decision_is_rejected() {
        assert_eq!(
            decision_from_proto(pb::Decision::Unspecified.into()),
            Err("must be set".to_owned())
        );
        assert_eq!(
            decision_from_proto(99),
            Err("99 is not a known decision".to_owned())
        );
    }
}
