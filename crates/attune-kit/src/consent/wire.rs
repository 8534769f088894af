//! Reading consent's wire messages into the rule's types. Anything the checker
//! cannot read (an unknown decision value, a malformed time) yields `None`, and
//! the callers then refuse to answer from it rather than guess.

use std::collections::HashMap;

use attune_proto::consent::v1 as pb;
use attune_proto::prost_types::Timestamp;
use chrono::{DateTime, Utc};

use super::rule::{CurrentDecision, Decision};
use super::source::CustomerState;

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
        decision: decision(record.decision)?,
        notice_version: record.notice_version,
        expire_time: optional_time(record.expire_time.as_ref())?,
    })
}

/// The decision a change summary carries (`ConsentDecisionChange.current`).
pub(crate) fn summary(summary: &pb::DecisionSummary) -> Option<CurrentDecision> {
    Some(CurrentDecision {
        record_id: summary.record_id,
        decision: decision(summary.decision)?,
        notice_version: summary.notice_version,
        expire_time: optional_time(summary.expire_time.as_ref())?,
    })
}

fn decision(raw: i32) -> Option<Decision> {
    match pb::Decision::try_from(raw).ok()? {
        pb::Decision::Granted => Some(Decision::Granted),
        pb::Decision::Denied => Some(Decision::Denied),
        pb::Decision::Withdrawn => Some(Decision::Withdrawn),
        pb::Decision::Unspecified => None,
    }
}

/// `Some(None)` for an absent time, `None` for a present but invalid one.
fn optional_time(time: Option<&Timestamp>) -> Option<Option<DateTime<Utc>>> {
    match time {
        None => Some(None),
        Some(time) => {
            let nanos = u32::try_from(time.nanos).ok()?;
            DateTime::from_timestamp(time.seconds, nanos).map(Some)
        }
    }
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
        assert_eq!(
            current.expire_time,
            DateTime::from_timestamp(2_000_000_000, 5)
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
}
