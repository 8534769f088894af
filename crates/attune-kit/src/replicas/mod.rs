//! What one replica of a service changed that the others hold in memory.
//!
//! Replicas of a service share its database, but each keeps copies in memory
//! (a catalogue snapshot, a cache of sessions, the customers a trained model
//! must no longer serve). A write made through one replica is in the database
//! at once, yet the others would go on answering from their copies until those
//! expire: a stale session for a minute, a withdrawn item until the next
//! training, an erased customer's history until the model is retrained.
//!
//! So every write that changes such a copy also appends, in its own
//! transaction, what it changed to `kit_replica_changes` ([`ChangeLog::record`]):
//! a kind and a key (a customer id, an item id), never the data itself. Every
//! replica reads the rows after its cursor every [`ChangeLog`] interval
//! ([`ChangeWatch::run`]) and hands those written by other replicas to the
//! service's [`ChangeHandler`], which drops or reloads its copies. A change
//! reaches the other replicas within one interval (250 ms by default).
//!
//! Positions are handed out as `MAX + 1` by writers that hold the service's
//! write lock ([`crate::db::begin_write`]) until they commit, so they become
//! visible in position order and a reader never moves past a row that commits
//! later (the same rule as the ordered feeds; see [`crate::feed`]). Rows are
//! kept for [`RETENTION`] and then pruned by any replica (never the newest, which
//! carries the next position); a replica that fell further behind than that sees
//! a gap in the positions and is told with [`ChangeHandler::lost`], so it can
//! rebuild everything it holds instead of missing a change.
//!
//! A key that stands for a customer must be a keyed pseudonym
//! ([`crate::secrets::PseudonymKey::digest`]), never the id: the rows outlive an
//! erasure by up to [`RETENTION`], and the replicas of one service share its
//! key, so they can drop a customer they know only by that name.

mod migration;
mod store;

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DatabaseConnection, DbErr};
use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

pub use migration::CreateReplicaChanges;

/// How long a change is kept for replicas that fall behind.
pub const RETENTION: Duration = Duration::from_secs(10 * 60);

/// How often a replica prunes changes older than [`RETENTION`].
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// Most changes read at once.
const BATCH: u64 = 1_000;

/// One change another replica made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// What changed, in the service's own numbering.
    pub kind: i16,
    /// Which one: a customer id, an item id, or empty for a singleton.
    pub key: String,
}

/// What a service does when other replicas changed what it holds in memory.
pub trait ChangeHandler: Send + Sync + 'static {
    /// Drops or reloads what `changes` name. An error keeps the changes: they
    /// are handed over again at the next interval.
    fn apply(&self, changes: &[Change]) -> impl Future<Output = Result<(), DbErr>> + Send;

    /// Changes were pruned before this replica read them: rebuild everything
    /// held in memory from the database.
    fn lost(&self) -> impl Future<Output = Result<(), DbErr>> + Send;
}

/// A service's log of changes, as one replica writes and reads it.
#[derive(Debug, Clone)]
pub struct ChangeLog {
    scope: &'static str,
    origin: i64,
    interval: Duration,
}

impl ChangeLog {
    /// The log of `scope` (the service's name: one database may hold several
    /// services' logs), read every `interval`. Each value is a replica of its
    /// own: its changes are never handed back to it.
    pub fn new(scope: &'static str, interval: Duration) -> Self {
        Self {
            scope,
            origin: random_origin(),
            interval,
        }
    }

    /// Appends that each of `keys` changed in `kind`, in `txn`, which must
    /// hold the service's write lock ([`crate::db::begin_write`]).
    pub async fn record<K: AsRef<str>>(
        &self,
        txn: &impl ConnectionTrait,
        kind: i16,
        keys: impl IntoIterator<Item = K>,
        now: DateTime<Utc>,
    ) -> Result<(), DbErr> {
        let mut keys: Vec<String> = keys.into_iter().map(|k| k.as_ref().to_owned()).collect();
        keys.sort_unstable();
        keys.dedup();
        if keys.is_empty() {
            return Ok(());
        }
        store::append(txn, self.scope, self.origin, kind, &keys, now).await
    }

    /// A watch starting after the newest change now: take it before reading
    /// what the handler will keep fresh, so nothing written in between is
    /// missed.
    pub async fn watch_from_now(&self, db: &DatabaseConnection) -> Result<ChangeWatch, DbErr> {
        Ok(ChangeWatch {
            log: self.clone(),
            db: db.clone(),
            cursor: store::newest(db, self.scope).await?,
        })
    }
}

/// A replica's id, random so that two processes (or two logs in one) never
/// share one.
fn random_origin() -> i64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        // No randomness: the process id and the time still tell replicas apart.
        let time = Utc::now().timestamp_micros().to_le_bytes();
        let pid = u64::from(std::process::id()).to_le_bytes();
        for (n, byte) in bytes.iter_mut().enumerate() {
            *byte = time[n] ^ pid[n];
        }
    }
    i64::from_le_bytes(bytes)
}

/// One replica's reading of a [`ChangeLog`].
#[derive(Debug)]
pub struct ChangeWatch {
    log: ChangeLog,
    db: DatabaseConnection,
    cursor: i64,
}

impl ChangeWatch {
    /// Hands other replicas' changes to `handler` every interval until
    /// `cancel`, and prunes old changes every minute.
    pub async fn run(mut self, handler: impl ChangeHandler, cancel: CancellationToken) {
        let mut ticks = tokio::time::interval(self.log.interval);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut last_prune = tokio::time::Instant::now();
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = ticks.tick() => {}
            }
            if let Err(error) = self.catch_up(&handler).await {
                tracing::warn!(scope = self.log.scope, %error, "reading other replicas' changes failed; retrying");
            }
            if last_prune.elapsed() >= PRUNE_EVERY {
                last_prune = tokio::time::Instant::now();
                let cutoff = Utc::now()
                    - chrono::TimeDelta::from_std(RETENTION).unwrap_or(chrono::TimeDelta::MAX);
                if let Err(error) = store::prune(&self.db, self.log.scope, cutoff).await {
                    tracing::warn!(scope = self.log.scope, %error, "pruning replica changes failed");
                }
            }
        }
    }

    /// Reads and applies every change after the cursor; moves the cursor only
    /// past what was applied.
    async fn catch_up(&mut self, handler: &impl ChangeHandler) -> Result<(), DbErr> {
        loop {
            let rows = store::after(&self.db, self.log.scope, self.cursor, BATCH).await?;
            let Some(last) = rows.last().map(|row| row.position) else {
                return Ok(());
            };
            let full = rows.len() as u64 == BATCH;
            let contiguous = rows
                .iter()
                .zip(self.cursor + 1..)
                .all(|(row, expected)| row.position == expected);
            if !contiguous {
                tracing::warn!(
                    scope = self.log.scope,
                    "replica changes were pruned before this replica read them: rebuilding"
                );
                handler.lost().await?;
            } else {
                let changes: Vec<Change> = rows
                    .into_iter()
                    .filter(|row| row.origin != self.log.origin)
                    .map(|row| Change {
                        kind: row.kind,
                        key: row.key,
                    })
                    .collect();
                if !changes.is_empty() {
                    handler.apply(&changes).await?;
                }
            }
            self.cursor = last;
            if !full {
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests;
