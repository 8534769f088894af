//! The kinds of ledger entries and correction reasons, as stored.

use serde::{Deserialize, Serialize};

/// What an entry did (see `attune.loyalty.v1.EntryKind` for each kind's signs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Earn,
    Pending,
    Release,
    Redeem,
    Expire,
    Adjust,
    Reversal,
    Debt,
    DebtPayment,
}

impl EntryKind {
    pub const ALL: [Self; 9] = [
        Self::Earn,
        Self::Pending,
        Self::Release,
        Self::Redeem,
        Self::Expire,
        Self::Adjust,
        Self::Reversal,
        Self::Debt,
        Self::DebtPayment,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Earn => "earn",
            Self::Pending => "pending",
            Self::Release => "release",
            Self::Redeem => "redeem",
            Self::Expire => "expire",
            Self::Adjust => "adjust",
            Self::Reversal => "reversal",
            Self::Debt => "debt",
            Self::DebtPayment => "debt_payment",
        }
    }

    /// The kind a stored name names.
    pub fn from_stored(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.as_str() == name)
    }
}

/// Why a correction was booked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ReasonCode {
    Goodwill,
    Promotion,
    Correction,
    Migration,
    Fraud,
}

impl ReasonCode {
    pub const ALL: [Self; 5] = [
        Self::Goodwill,
        Self::Promotion,
        Self::Correction,
        Self::Migration,
        Self::Fraud,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Goodwill => "goodwill",
            Self::Promotion => "promotion",
            Self::Correction => "correction",
            Self::Migration => "migration",
            Self::Fraud => "fraud",
        }
    }

    /// The reason a stored name names.
    pub fn from_stored(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_names_read_back() {
        for kind in EntryKind::ALL {
            assert_eq!(EntryKind::from_stored(kind.as_str()), Some(kind));
        }
        for reason in ReasonCode::ALL {
            assert_eq!(ReasonCode::from_stored(reason.as_str()), Some(reason));
        }
        assert_eq!(EntryKind::from_stored("gift"), None);
    }
}
