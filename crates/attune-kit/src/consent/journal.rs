//! The writer side's memory of the change stream: the cursor, the last changes
//! applied, and the last erasure. It exists for one race.
//!
//! A miss is filled by `GetConsentState`, which answers as of some stream position
//! `f`. While that call is in flight, the stream may apply changes up to `a > f`;
//! changes in `(f, a]` for the customer being filled were skipped, since the
//! customer was not cached yet. Inserting the fill as it is would then lose them:
//! a withdrawal at a position in `(f, a]` would be forgotten for good.
//!
//! So the journal keeps the last changes applied (a bounded buffer), and a fill
//! older than the cursor is brought forward by replaying the customer's buffered
//! changes after `f`. When that is impossible the fill is rejected and the caller
//! fetches again, which then reads at or past the cursor:
//! - the buffer no longer reaches back to `f` (more changes than it holds
//!   arrived during the call), or
//! - an erasure happened in `(f, a]`: erasures name nobody, so the fill may be
//!   of the erased customer and nothing in the buffer says so.
//!
//! A fill at or past the cursor needs nothing: the stream will deliver every change
//! after the cursor, and the entry's position makes it skip those up to `f`.

use std::collections::VecDeque;

use super::rule::CurrentDecision;
use super::source::CustomerState;

/// Why a fill cannot be cached as it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unreconciled {
    /// The stream has not started (or restarted after a reset): there is no cursor
    /// to reconcile against, and no check may be answered yet anyway.
    NoCursor,
    /// The fill was read before the cache was reset; it may describe another database.
    Reset,
    /// The fill is older than the cursor and cannot be brought forward (see the
    /// module documentation); fetching again will read a newer state.
    Stale,
    /// A buffered change for the customer could not be read.
    Unreadable,
}

/// One decision change applied by the stream, kept for reconciliation.
#[derive(Debug)]
struct RecentChange {
    position: i64,
    customer_id: String,
    purpose_code: String,
    /// The decision that counts after the change; `None` if it could not be read.
    current: Option<CurrentDecision>,
}

/// The cursor and the last changes applied; only ever touched under the writer lock.
#[derive(Debug)]
pub(crate) struct Journal {
    /// The position the cache reflects: the `position` of the last response applied.
    cursor: Option<i64>,
    recent: VecDeque<RecentChange>,
    capacity: usize,
    /// `recent` holds every decision change after this position (up to the cursor).
    complete_after: i64,
    /// The position of the newest erasure applied.
    last_erasure: Option<i64>,
}

impl Journal {
    /// An empty journal, keeping at most `capacity` changes.
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            cursor: None,
            recent: VecDeque::new(),
            capacity,
            complete_after: i64::MAX,
            last_erasure: None,
        }
    }

    /// Where the stream should resume: after this position, or at the newest when
    /// `None`.
    pub(crate) fn cursor(&self) -> Option<i64> {
        self.cursor
    }

    /// Starts over at `position`, the first response of a stream opened at the
    /// newest change: nothing before it is known.
    pub(crate) fn start_at(&mut self, position: i64) {
        self.cursor = Some(position);
        self.recent.clear();
        self.complete_after = position;
        self.last_erasure = None;
    }

    /// Forgets everything: the next stream starts at the newest change.
    pub(crate) fn clear(&mut self) {
        *self = Self::new(self.capacity);
    }

    /// Whether a change at `position` was applied already (a redelivery).
    pub(crate) fn has_applied(&self, position: i64) -> bool {
        self.cursor.is_some_and(|cursor| position <= cursor)
    }

    /// Remembers a decision change the stream applied.
    pub(crate) fn record_decision(
        &mut self,
        position: i64,
        customer_id: &str,
        purpose_code: &str,
        current: Option<CurrentDecision>,
    ) {
        if self.capacity == 0 {
            self.complete_after = self.complete_after.max(position);
            return;
        }
        if self.recent.len() == self.capacity
            && let Some(oldest) = self.recent.pop_front()
        {
            self.complete_after = self.complete_after.max(oldest.position);
        }
        self.recent.push_back(RecentChange {
            position,
            customer_id: customer_id.to_owned(),
            purpose_code: purpose_code.to_owned(),
            current,
        });
    }

    /// Remembers an erasure the stream applied.
    pub(crate) fn record_erasure(&mut self, position: i64) {
        self.last_erasure = Some(position);
    }

    /// Moves the cursor to the `position` of a response just applied.
    pub(crate) fn advance(&mut self, position: i64) {
        self.cursor = Some(self.cursor.map_or(position, |cursor| cursor.max(position)));
    }

    /// Brings a fill of `customer_id` up to the cursor, or says why it cannot be.
    pub(crate) fn reconcile(
        &self,
        customer_id: &str,
        mut fill: CustomerState,
    ) -> Result<CustomerState, Unreconciled> {
        let cursor = self.cursor.ok_or(Unreconciled::NoCursor)?;
        if fill.position >= cursor {
            return Ok(fill);
        }
        let erased_since = self
            .last_erasure
            .is_some_and(|erasure| erasure > fill.position);
        if erased_since || self.complete_after > fill.position {
            return Err(Unreconciled::Stale);
        }
        for change in &self.recent {
            if change.position <= fill.position || change.customer_id != customer_id {
                continue;
            }
            let current = change.current.ok_or(Unreconciled::Unreadable)?;
            fill.purposes.insert(change.purpose_code.clone(), current);
        }
        fill.position = cursor;
        Ok(fill)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::consent::rule::Decision;

    fn decided(record_id: i64, decision: Decision) -> CurrentDecision {
        CurrentDecision {
            record_id,
            decision,
            notice_version: 1,
            expire_time: None,
        }
    }

    fn fill(position: i64) -> CustomerState {
        CustomerState {
            position,
            purposes: HashMap::from([("ads".to_owned(), decided(1, Decision::Granted))]),
        }
    }

    #[test]
    fn an_older_fill_gets_the_customers_later_changes() {
        let mut journal = Journal::new(10);
        journal.start_at(4);
        journal.record_decision(5, "c1", "ads", Some(decided(2, Decision::Denied)));
        journal.record_decision(6, "c2", "ads", Some(decided(3, Decision::Withdrawn)));
        journal.record_decision(7, "c1", "ads", Some(decided(4, Decision::Withdrawn)));
        journal.advance(8);

        let reconciled = journal
            .reconcile("c1", fill(5))
            .expect("the buffer reaches back to 5");
        assert_eq!(reconciled.position, 8);
        assert_eq!(reconciled.purposes["ads"], decided(4, Decision::Withdrawn));

        // A fill at or past the cursor is taken as it is.
        assert_eq!(journal.reconcile("c1", fill(9)), Ok(fill(9)));
    }

    #[test]
    fn a_fill_older_than_the_buffer_or_an_erasure_is_refused() {
        let mut journal = Journal::new(2);
        assert_eq!(
            journal.reconcile("c1", fill(0)),
            Err(Unreconciled::NoCursor)
        );

        journal.start_at(10);
        // Before the stream's start nothing is known.
        assert_eq!(journal.reconcile("c1", fill(9)), Err(Unreconciled::Stale));

        for position in 11..=13 {
            journal.record_decision(position, "c2", "ads", None);
        }
        journal.advance(13);
        // Position 11 fell out of the buffer: a fill at 10 cannot be brought forward…
        assert_eq!(journal.reconcile("c1", fill(10)), Err(Unreconciled::Stale));
        // …one at 11 can, and only the customer's own changes count.
        assert_eq!(
            journal.reconcile("c1", fill(11)).map(|f| f.position),
            Ok(13)
        );
        // An unreadable change of the customer itself refuses the fill.
        assert_eq!(
            journal.reconcile("c2", fill(11)),
            Err(Unreconciled::Unreadable)
        );

        journal.record_erasure(14);
        journal.advance(14);
        assert_eq!(journal.reconcile("c1", fill(13)), Err(Unreconciled::Stale));
        assert_eq!(
            journal.reconcile("c1", fill(14)).map(|f| f.position),
            Ok(14)
        );
    }
}
