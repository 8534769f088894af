//! The customers the checker has seen, in memory.
//!
//! Readers never lock: entries live in a `moka` concurrent cache, bounded by
//! `max_customers`, as immutable `Arc<CustomerEntry>` values; an update builds a
//! new entry and swaps it in (copy-on-write per customer).
//!
//! Writers (the stream follower applying changes, and checks inserting a miss's
//! fill) serialize on one mutex around the [`Journal`], so that a fill is
//! reconciled against exactly the changes applied before it, and no change is
//! applied to an entry between its read and its replacement.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use attune_proto::consent::v1 as pb;
use moka::sync::Cache;

use super::journal::{Journal, Unreconciled};
use super::rule::CurrentDecision;
use super::source::CustomerState;
use super::wire;

/// How many applied changes the journal keeps for reconciling fills: far more than
/// commit during one `GetConsentState` call, at about 100 bytes each.
const JOURNAL_CAPACITY: usize = 10_000;

/// How many recent forgets are remembered for refusing fills: far more than
/// happen during one load. A fill older than the oldest one remembered is
/// refused whoever it is for.
const FORGETS_CAPACITY: usize = 10_000;

/// One customer's consent as the cache knows it. Never changed once built.
#[derive(Debug)]
pub(crate) struct CustomerEntry {
    /// The stream position the entry reflects; changes at or before it are in it.
    position: i64,
    /// The cache generation the entry belongs to (see [`ConsentCache::get`]).
    generation: u64,
    /// The decision that counts, per purpose; an absent purpose is "not given".
    purposes: HashMap<String, CurrentDecision>,
}

impl CustomerEntry {
    /// The decision that counts for `purpose_code`, if any.
    pub(crate) fn current(&self, purpose_code: &str) -> Option<&CurrentDecision> {
        self.purposes.get(purpose_code)
    }
}

/// What applying one stream response did, for the metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Applied {
    /// Changes newer than the cursor (cached customer or not).
    pub(crate) changes: u64,
    /// Erasures among them, each of which emptied the cache.
    pub(crate) erasures: u64,
    /// The cursor after the response.
    pub(crate) cursor: i64,
}

/// The cache, its generation and the writer side's journal.
pub(crate) struct ConsentCache {
    entries: Cache<String, Arc<CustomerEntry>>,
    /// Bumped (under the writer lock) whenever every entry is dropped. An entry of
    /// an older generation is never returned, so dropping all is exact and
    /// immediate, whatever moka's lazy `invalidate_all` does with entries inserted
    /// at the same clock tick.
    generation: AtomicU64,
    /// Bumped (under the writer lock) at every reset; a fill started before a
    /// reset may describe the replaced database and is refused.
    epoch: AtomicU64,
    /// Numbers the [`forget`](Self::forget)s; a fill's ticket holds the number of
    /// the last forget before it started.
    forget_count: AtomicU64,
    /// The writer side: the journal, and the recent forgets.
    journal: Mutex<Writer>,
}

impl std::fmt::Debug for ConsentCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // No keys: they are customer ids.
        f.debug_struct("ConsentCache")
            .field("entries", &self.entries.entry_count())
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl ConsentCache {
    /// An empty cache of at most `max_customers` entries.
    pub(crate) fn new(max_customers: u64) -> Self {
        Self {
            entries: Cache::builder().max_capacity(max_customers).build(),
            generation: AtomicU64::new(0),
            epoch: AtomicU64::new(0),
            forget_count: AtomicU64::new(0),
            journal: Mutex::new(Writer {
                journal: Journal::new(JOURNAL_CAPACITY),
                forgets: RecentForgets::default(),
            }),
        }
    }

    /// The customer's entry, without taking any lock.
    pub(crate) fn get(&self, customer_id: &str) -> Option<Arc<CustomerEntry>> {
        let generation = self.generation.load(Ordering::Acquire);
        self.entries
            .get(customer_id)
            .filter(|entry| entry.generation == generation)
    }

    /// Taken before a fill's RPC, handed back to [`insert_fill`](Self::insert_fill).
    pub(crate) fn fill_ticket(&self) -> FillTicket {
        FillTicket {
            epoch: self.epoch.load(Ordering::Acquire),
            forgets: self.forget_count.load(Ordering::Acquire),
        }
    }

    /// Caches a fill read after `ticket` was taken, brought up to the cursor (see
    /// [`Journal`]), and returns the entry as cached.
    pub(crate) fn insert_fill(
        &self,
        customer_id: &str,
        fill: CustomerState,
        ticket: FillTicket,
    ) -> Result<Arc<CustomerEntry>, Unreconciled> {
        let writer = self.lock_journal();
        if ticket.epoch != self.epoch.load(Ordering::Acquire) {
            return Err(Unreconciled::Reset);
        }
        if writer.forgets.forgotten_since(customer_id, ticket.forgets) {
            return Err(Unreconciled::Stale);
        }
        let CustomerState { position, purposes } = writer.journal.reconcile(customer_id, fill)?;
        let entry = Arc::new(CustomerEntry {
            position,
            generation: self.generation.load(Ordering::Acquire),
            purposes,
        });
        self.entries
            .insert(customer_id.to_owned(), Arc::clone(&entry));
        Ok(entry)
    }

    /// Where the stream should resume (after this position), or `None` to start at
    /// the newest change.
    pub(crate) fn cursor(&self) -> Option<i64> {
        self.lock_journal().journal.cursor()
    }

    /// Applies one stream response: each change newer than the cursor, then the
    /// response's position as the new cursor.
    pub(crate) fn apply(&self, response: &pb::WatchConsentChangesResponse) -> Applied {
        let mut writer = self.lock_journal();
        let journal = &mut writer.journal;
        let mut applied = Applied::default();
        if journal.cursor().is_none() {
            // The first response of a stream opened at the newest change. The cache
            // is empty (fills are refused without a cursor), so any change in it
            // concerns nobody cached; what matters is where the stream starts.
            journal.start_at(response.position);
            applied.cursor = response.position;
            return applied;
        }
        for change in &response.changes {
            if journal.has_applied(change.position) {
                continue;
            }
            applied.changes += 1;
            match &change.change {
                Some(pb::consent_change::Change::Decision(decided)) => {
                    self.apply_decision(journal, change.position, decided);
                }
                Some(pb::consent_change::Change::CustomerErased(pb::CustomerErased {})) => {
                    applied.erasures += 1;
                    self.drop_all();
                    journal.record_erasure(change.position);
                }
                None => {
                    // A kind of change this checker does not know (a newer
                    // contract): it may concern anyone, so forget everyone, as
                    // for an erasure.
                    self.drop_all();
                    journal.record_erasure(change.position);
                }
            }
            journal.advance(change.position);
        }
        journal.advance(response.position);
        applied.cursor = journal.cursor().unwrap_or(response.position);
        applied
    }

    /// Forgets one customer at once, and refuses that customer's fills in flight,
    /// which may have read the customer before the change that caused the forget.
    /// Other customers' fills go on.
    pub(crate) fn forget(&self, customer_id: &str) {
        let mut writer = self.lock_journal();
        let number = self.forget_count.fetch_add(1, Ordering::AcqRel) + 1;
        writer.forgets.remember(number, customer_id);
        self.entries.invalidate(customer_id);
    }

    /// Forgets every customer and the cursor: the stream starts again at the newest
    /// change (consent's database was replaced).
    pub(crate) fn reset(&self) {
        let mut writer = self.lock_journal();
        self.epoch.fetch_add(1, Ordering::AcqRel);
        writer.journal.clear();
        self.drop_all();
    }

    /// How many customers are cached (approximately: moka counts lazily).
    pub(crate) fn entry_count(&self) -> u64 {
        self.entries.entry_count()
    }

    fn apply_decision(
        &self,
        journal: &mut Journal,
        position: i64,
        decided: &pb::ConsentDecisionChange,
    ) {
        let current = decided.current.as_ref().and_then(wire::summary);
        journal.record_decision(
            position,
            &decided.customer_id,
            &decided.purpose_code,
            current,
        );
        let Some(entry) = self.get(&decided.customer_id) else {
            // Not cached: nothing to update; a fill in flight replays it.
            return;
        };
        if position <= entry.position {
            // The entry was filled from a state that already includes this change.
            return;
        }
        let Some(current) = current else {
            // Unreadable: forget the customer, so the next check reloads it.
            self.entries.invalidate(&decided.customer_id);
            return;
        };
        let mut purposes = entry.purposes.clone();
        purposes.insert(decided.purpose_code.clone(), current);
        self.entries.insert(
            decided.customer_id.clone(),
            Arc::new(CustomerEntry {
                position,
                generation: entry.generation,
                purposes,
            }),
        );
    }

    /// Drops every entry. Only under the writer lock.
    fn drop_all(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
        self.entries.invalidate_all();
    }

    fn lock_journal(&self) -> MutexGuard<'_, Writer> {
        // Nothing in this module panics while holding the lock; should something
        // still do, refusing every later write would stop the stream for good.
        self.journal.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Proof of when a fill started, relative to resets and forgets.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FillTicket {
    epoch: u64,
    /// The number of the last forget before the fill started.
    forgets: u64,
}

/// What only writers touch, under one lock.
#[derive(Debug)]
struct Writer {
    journal: Journal,
    forgets: RecentForgets,
}

/// The last forgets, numbered, so that a write refuses only the fills of its own
/// customer: at hundreds of writes a second, refusing every fill in flight made
/// most loads of other customers fail.
#[derive(Debug, Default)]
struct RecentForgets {
    /// `(number, customer)`, oldest first.
    recent: VecDeque<(u64, String)>,
    /// Every forget numbered above this is in `recent`.
    complete_after: u64,
}

impl RecentForgets {
    fn remember(&mut self, number: u64, customer_id: &str) {
        if self.recent.len() == FORGETS_CAPACITY
            && let Some((oldest, _)) = self.recent.pop_front()
        {
            self.complete_after = oldest;
        }
        self.recent.push_back((number, customer_id.to_owned()));
    }

    /// Whether `customer_id` was forgotten after forget number `since`; true too
    /// when the forgets after it are no longer all remembered.
    fn forgotten_since(&self, customer_id: &str, since: u64) -> bool {
        if since < self.complete_after {
            return true;
        }
        self.recent
            .iter()
            .rev()
            .take_while(|(number, _)| *number > since)
            .any(|(_, forgotten)| forgotten == customer_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn started_at(position: i64) -> ConsentCache {
        let cache = ConsentCache::new(100);
        cache.apply(&pb::WatchConsentChangesResponse {
            changes: Vec::new(),
            position,
            send_time: None,
        });
        cache
    }

    fn empty_state(position: i64) -> CustomerState {
        CustomerState {
            position,
            purposes: HashMap::new(),
        }
    }

    #[test]
    fn a_fill_started_before_a_forget_is_refused() {
        let cache = started_at(5);
        let ticket = cache.fill_ticket();
        cache.forget("c-1");
        assert_eq!(
            cache.insert_fill("c-1", empty_state(5), ticket).map(|_| ()),
            Err(Unreconciled::Stale)
        );
        // A fill that starts after the forget is cached.
        let ticket = cache.fill_ticket();
        assert!(cache.insert_fill("c-1", empty_state(5), ticket).is_ok());
        assert!(cache.get("c-1").is_some());
    }

    #[test]
    fn a_forget_refuses_only_its_own_customers_fills() {
        let cache = started_at(5);
        let ticket = cache.fill_ticket();
        cache.forget("c-1");
        assert!(cache.insert_fill("c-2", empty_state(5), ticket).is_ok());
        assert_eq!(
            cache.insert_fill("c-1", empty_state(5), ticket).map(|_| ()),
            Err(Unreconciled::Stale)
        );
    }

    #[test]
    fn a_fill_older_than_the_forgets_remembered_is_refused() {
        let mut forgets = RecentForgets::default();
        for number in 1..=u64::try_from(FORGETS_CAPACITY).unwrap() + 1 {
            forgets.remember(number, "c-1");
        }
        assert!(forgets.forgotten_since("c-2", 0));
        assert!(!forgets.forgotten_since("c-2", 1));
        assert!(forgets.forgotten_since("c-1", 1));
    }

    #[test]
    fn forget_drops_only_that_customer() {
        let cache = started_at(5);
        for customer in ["c-1", "c-2"] {
            let ticket = cache.fill_ticket();
            cache
                .insert_fill(customer, empty_state(5), ticket)
                .map(|_| ())
                .unwrap();
        }
        cache.forget("c-1");
        assert!(cache.get("c-1").is_none());
        assert!(cache.get("c-2").is_some());
    }
}
