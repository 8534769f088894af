//! One position of the consent change stream, as watchers see it.

use chrono::{DateTime, Utc};

use super::ConsentRecord;

/// A committed change at one stream position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// Unique and increasing in commit order.
    pub position: i64,
    pub change_time: DateTime<Utc>,
    pub kind: ChangeKind,
}

/// What a change did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeKind {
    /// A decision was recorded; `current` is the decision that counts for its
    /// customer and purpose afterwards (not `recorded` when that one arrived late).
    Decision {
        recorded: Box<ConsentRecord>,
        current: Box<ConsentRecord>,
    },
    /// A customer was erased. Deliberately anonymous: the id must not outlive the
    /// erasure, not even in the stream.
    Erasure,
}
