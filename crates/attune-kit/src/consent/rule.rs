//! The consent rule every Attune service applies the same way: which decision
//! counts for a customer and purpose, and what it means at a given moment. The
//! consent service computes it from its ledger; the cached checker from the
//! change stream. Keeping it here means both answer identically, to the instant.

use chrono::{DateTime, Utc};
use serde::Serialize;

/// A customer's decision about one purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Decision {
    Granted,
    Denied,
    Withdrawn,
}

impl Decision {
    const ALL: [Self; 3] = [Self::Granted, Self::Denied, Self::Withdrawn];

    /// The stable name stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Granted => "granted",
            Self::Denied => "denied",
            Self::Withdrawn => "withdrawn",
        }
    }

    /// Reads a stored name back.
    pub fn from_stored(name: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|decision| decision.as_str() == name)
    }

    /// Which decision wins when two carry the same decision time: the one that
    /// protects the customer more, so a withdrawal beats a denial beats a grant.
    pub fn precedence(self) -> i16 {
        match self {
            Self::Granted => 1,
            Self::Denied => 2,
            Self::Withdrawn => 3,
        }
    }
}

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

    #[test]
    fn withdrawal_beats_grant_at_the_same_instant() {
        assert!(Decision::Withdrawn.precedence() > Decision::Granted.precedence());
        assert!(Decision::Denied.precedence() > Decision::Granted.precedence());
    }
}
