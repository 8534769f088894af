//! From the ledger to an answer: which decision counts, and what it means now.

use chrono::{DateTime, Utc};

use super::Decision;

/// The decision that currently counts for one customer and purpose: the most
/// recent by decision time, the more protective one at the same instant (a
/// withdrawal beats a denial beats a grant), and among equals the one recorded last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurrentDecision {
    pub record_id: i64,
    pub decision: Decision,
    pub notice_version: i32,
    pub expire_time: Option<DateTime<Utc>>,
}

/// The effective state of one purpose for one customer at a moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentStatus {
    NotGiven,
    Granted,
    Denied,
    Withdrawn,
    Expired,
}

impl ConsentStatus {
    /// The status that the current decision gives at `now`. A grant stops counting
    /// at its expiry instant exactly: at `expire_time` it is already expired.
    pub fn at(current: Option<&CurrentDecision>, now: DateTime<Utc>) -> Self {
        let Some(record) = current else {
            return Self::NotGiven;
        };
        match record.decision {
            Decision::Granted => match record.expire_time {
                Some(expire_time) if now >= expire_time => Self::Expired,
                _ => Self::Granted,
            },
            Decision::Denied => Self::Denied,
            Decision::Withdrawn => Self::Withdrawn,
        }
    }

    /// Whether the purpose may be used.
    pub fn is_granted(self) -> bool {
        self == Self::Granted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(expire_micros: Option<i64>) -> CurrentDecision {
        CurrentDecision {
            record_id: 1,
            decision: Decision::Granted,
            notice_version: 1,
            expire_time: expire_micros.map(at),
        }
    }

    fn at(micros: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_micros(micros).unwrap()
    }

    #[test]
    fn a_grant_expires_at_its_expiry_instant() {
        let expiring = grant(Some(2_000));
        assert_eq!(
            ConsentStatus::at(Some(&expiring), at(1_999)),
            ConsentStatus::Granted
        );
        assert_eq!(
            ConsentStatus::at(Some(&expiring), at(2_000)),
            ConsentStatus::Expired
        );
        assert_eq!(ConsentStatus::at(None, at(0)), ConsentStatus::NotGiven);
        assert_eq!(
            ConsentStatus::at(Some(&grant(None)), at(1_000_000_000_000_000)),
            ConsentStatus::Granted
        );
    }
}
