//! The consumer side of a feed: what a consuming service (recommendation, loyalty,
//! delivery following profile's events) runs as a background task to apply every
//! item of a feed to its own database exactly once.
//!
//! - **Cursor in the consumer's database.** Each batch is applied and the cursor
//!   advanced in ONE transaction ([`Apply::apply`] gets that transaction), so a
//!   crash before the commit loses both and the batch comes again; after it,
//!   neither. The table is created by [`CreateFeedCursors`], which each consuming
//!   service's migrator includes.
//! - **One replica at a time.** A lease (holder and expiry in the cursor's row,
//!   renewed while applying, on SQLite and PostgreSQL alike) lets one replica
//!   apply; the others try to take it every third of the lease, so one takes over
//!   within a lease time of the holder's death (at once when the holder stops
//!   cleanly and releases it). The cursor's compare-and-set in every batch keeps
//!   a replica that lost its lease unknowingly from applying anything.
//! - **Resume with backoff.** A stream that ends (the producer's UNAVAILABLE at
//!   shutdown), breaks, or stays silent longer than the lease is reopened after
//!   the stored cursor, after a [`Backoff`]. OUT_OF_RANGE (the producer's
//!   database was replaced, its head is behind the cursor) is logged and retried
//!   the same way: the follower never skips or rewinds on its own.
//! - **Lag** is exported on the global meter (see `metrics`).
//!
//! The source of batches is a trait ([`BatchSource`]): any gRPC stream of a feed
//! plugs in (`consent::ConsentChangeSource` is consent's).
//!
//! The consent checker does not run on this follower: its cursor lives in memory,
//! it starts at the newest change rather than at 0, it resets on OUT_OF_RANGE
//! (the follower must not: skipping would lose items for good), and it confirms
//! freshness per response. A pluggable cursor store would make both harder to
//! read for the sake of one shared loop, so the two share the reconnect core,
//! [`Backoff`], and nothing more.

mod backoff;
mod cursor;
mod metrics;
mod migration;

use std::error::Error as StdError;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures::StreamExt;
use futures::stream::BoxStream;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr, TransactionTrait};
use tokio_util::sync::CancellationToken;
use tonic::Status;
use tracing::Instrument;

pub use backoff::Backoff;
pub use migration::CreateFeedCursors;

use crate::config::FeedConfig;
use metrics::FollowerState;

/// The first wait before reopening a stream; doubled after each failure.
const BACKOFF_MIN: Duration = Duration::from_millis(50);
/// The longest wait before reopening.
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// The shortest lease: renewals run every third of it, and a zero period would
/// make no sense.
const LEASE_MIN: Duration = Duration::from_millis(30);

/// One response of a source: items after the previous batch's position, and the
/// cursor after them. An empty batch is a heartbeat.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceBatch<T> {
    /// The items, in position order.
    pub items: Vec<T>,
    /// Resume after this position.
    pub position: i64,
    /// Whether the producer had nothing newer when it sent the batch (a heartbeat,
    /// or fewer items than its batch limit): the follower is caught up once the
    /// batch is applied.
    pub caught_up: bool,
}

impl<T> SourceBatch<T> {
    /// A batch of a feed served by [`crate::feed`]: a batch short of the
    /// producer's limit means it had nothing newer.
    pub fn from_kit_feed(items: Vec<T>, position: i64) -> Self {
        Self {
            caught_up: u64::try_from(items.len()).is_ok_and(|n| n < crate::feed::BATCH_LIMIT),
            items,
            position,
        }
    }
}

/// The batches of one open stream; an error ends it.
pub type SourceStream<T> = BoxStream<'static, Result<SourceBatch<T>, Status>>;

/// Where a follower reads a feed: typically a gRPC client of the producer.
pub trait BatchSource: Send + Sync + 'static {
    /// One item of the feed.
    type Item: Send + Sync + 'static;

    /// Opens a stream of the batches after position `after` (0: from the start).
    fn open(
        &self,
        after: i64,
    ) -> impl Future<Output = Result<SourceStream<Self::Item>, Status>> + Send;
}

/// The error of a failed [`Apply::apply`]: logged, the batch rolled back and
/// delivered again after a backoff. Being logged, it must name no customer or
/// other personal value.
pub type ApplyError = Box<dyn StdError + Send + Sync>;

/// What the consuming service does with each batch.
pub trait Apply<T>: Send + Sync + 'static {
    /// Begins the transaction a batch is applied in. By default a plain one; a
    /// service whose writes hold a write lock (to hand out its own positions in
    /// commit order) begins it the way its other writes do.
    fn begin(
        &self,
        db: &DatabaseConnection,
    ) -> impl Future<Output = Result<DatabaseTransaction, DbErr>> + Send {
        db.begin()
    }

    /// Applies `items` inside `txn`, the transaction that also advances the cursor:
    /// write through `txn` only, so the effect commits with the cursor or not at all.
    fn apply(
        &self,
        txn: &DatabaseTransaction,
        items: &[T],
    ) -> impl Future<Output = Result<(), ApplyError>> + Send;
}

/// How one period of holding the lease ended.
#[derive(Debug)]
enum Ended {
    /// Another replica holds the lease.
    NotHolder,
    /// The lease was taken by another replica while this one held it.
    LostLease,
    /// The producer closed the stream (at its shutdown: UNAVAILABLE) or it broke.
    Stream(Status),
    /// Nothing arrived for longer than the lease: reopen.
    Silent,
    /// The stream ended without a status.
    Closed,
    /// The consumer's apply failed; the batch was rolled back.
    Apply(ApplyError),
    /// The consumer's database failed.
    Database(DbErr),
}

/// A background task applying one feed to the consumer's database.
///
/// ```ignore
/// let follower = Follower::new("loyalty:profile-events", db, source, applier, &config.feeds);
/// server.spawn_background("loyalty-profile-events", |cancel| follower.run(cancel));
/// ```
#[derive(Debug)]
pub struct Follower<S, A> {
    name: String,
    holder: String,
    db: DatabaseConnection,
    source: S,
    apply: A,
    lease: Duration,
    state: Arc<FollowerState>,
}

/// Makes holder ids unique within the process; the process id and start time
/// make them unique across replicas.
static NEXT_HOLDER: AtomicU64 = AtomicU64::new(0);

impl<S: BatchSource, A: Apply<S::Item>> Follower<S, A> {
    /// A follower named `name` (unique among the consumers sharing `db`, e.g.
    /// `"loyalty:profile-events"`) applying what `source` delivers with `apply`.
    /// Its lease lasts `settings.follower_lease`.
    pub fn new(
        name: impl Into<String>,
        db: DatabaseConnection,
        source: S,
        apply: A,
        settings: &FeedConfig,
    ) -> Self {
        let name = name.into();
        let holder = format!(
            "{}-{}-{}",
            std::process::id(),
            chrono::Utc::now().timestamp_micros(),
            NEXT_HOLDER.fetch_add(1, Ordering::Relaxed)
        );
        let state = Arc::new(FollowerState::new(name.clone()));
        metrics::register(Arc::downgrade(&state));
        Self {
            name,
            holder,
            db,
            source,
            apply,
            lease: settings.follower_lease.max(LEASE_MIN),
            state,
        }
    }

    /// A handle reporting this follower's progress, usable after [`run`](Self::run)
    /// took the follower.
    pub fn progress(&self) -> Progress {
        Progress {
            state: Arc::clone(&self.state),
        }
    }

    /// Applies the feed until `cancel` fires, then gives the lease up.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Backoff::new(BACKOFF_MIN, BACKOFF_MAX);
        loop {
            let ended = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                ended = self.hold_and_follow(&mut backoff) => ended,
            };
            self.state.set_holding(false);
            let wait = match ended {
                // Not an error: try again every third of the lease, so this replica
                // takes over within a lease time of the holder's death.
                Ended::NotHolder => self.lease / 3,
                Ended::LostLease => {
                    tracing::info!(feed = %self.name, "feed lease taken by another replica");
                    self.lease / 3
                }
                Ended::Stream(status) if status.code() == tonic::Code::Unavailable => {
                    tracing::info!(feed = %self.name, message = status.message(), "feed stream closed; resuming");
                    backoff.next_wait()
                }
                Ended::Stream(status) => {
                    tracing::warn!(feed = %self.name, code = ?status.code(), message = status.message(), "feed stream failed; resuming");
                    backoff.next_wait()
                }
                Ended::Silent => {
                    tracing::warn!(feed = %self.name, "feed stream went silent; resuming");
                    backoff.next_wait()
                }
                Ended::Closed => {
                    tracing::info!(feed = %self.name, "feed stream ended; resuming");
                    backoff.next_wait()
                }
                Ended::Apply(error) => {
                    tracing::warn!(feed = %self.name, %error, "applying a feed batch failed; rolled back, retrying");
                    backoff.next_wait()
                }
                Ended::Database(error) => {
                    tracing::warn!(feed = %self.name, %error, "feed cursor unavailable; retrying");
                    backoff.next_wait()
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(wait) => {}
            }
        }
        self.state.set_holding(false);
        if let Err(error) = cursor::release(&self.db, &self.name, &self.holder).await {
            tracing::warn!(feed = %self.name, %error, "cannot release the feed lease; it expires by itself");
        }
    }

    /// Takes the lease, then applies batches while it holds it.
    async fn hold_and_follow(&self, backoff: &mut Backoff) -> Ended {
        let (name, holder) = (self.name.as_str(), self.holder.as_str());
        let taken = async {
            cursor::ensure(&self.db, name).await?;
            cursor::acquire(&self.db, name, holder, self.lease).await
        };
        match taken.await {
            Ok(true) => {}
            Ok(false) => return Ended::NotHolder,
            Err(error) => return Ended::Database(error),
        }
        let mut position = match cursor::position(&self.db, name).await {
            Ok(position) => position,
            Err(error) => return Ended::Database(error),
        };
        self.state.set_holding(true);
        self.state.at(position, false);
        // A span of its own, so the stream's call carries a trace context.
        let span = tracing::info_span!("feed_follower_open", feed = %self.name);
        let opened = self.source.open(position).instrument(span);
        let mut stream = match tokio::time::timeout(self.lease, opened).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(status)) => return Ended::Stream(status),
            Err(_elapsed) => return Ended::Silent,
        };
        let mut renewal = tokio::time::interval(self.lease / 3);
        loop {
            tokio::select! {
                _ = renewal.tick() => {
                    match cursor::renew(&self.db, name, holder, self.lease).await {
                        Ok(true) => {}
                        Ok(false) => return Ended::LostLease,
                        Err(error) => return Ended::Database(error),
                    }
                }
                next = tokio::time::timeout(self.lease, stream.next()) => {
                    let batch = match next {
                        Ok(Some(Ok(batch))) => batch,
                        Ok(Some(Err(status))) => return Ended::Stream(status),
                        Ok(None) => return Ended::Closed,
                        Err(_elapsed) => return Ended::Silent,
                    };
                    backoff.reset();
                    if batch.position <= position {
                        // A heartbeat at the cursor: nothing to store.
                        self.state.at(position, batch.caught_up);
                        continue;
                    }
                    if let Err(ended) = self.apply_batch(position, &batch).await {
                        return ended;
                    }
                    position = batch.position;
                    self.state.at(position, batch.caught_up);
                }
            }
        }
    }

    /// Applies one batch and moves the cursor past it, in one transaction.
    async fn apply_batch(&self, from: i64, batch: &SourceBatch<S::Item>) -> Result<(), Ended> {
        let txn = self.apply.begin(&self.db).await.map_err(Ended::Database)?;
        let moved = cursor::advance(
            &txn,
            &self.name,
            &self.holder,
            self.lease,
            from,
            batch.position,
        )
        .await
        .map_err(Ended::Database)?;
        if !moved {
            // Dropping `txn` rolls back.
            return Err(Ended::LostLease);
        }
        self.apply
            .apply(&txn, &batch.items)
            .await
            .map_err(Ended::Apply)?;
        txn.commit().await.map_err(Ended::Database)?;
        self.state
            .applied(u64::try_from(batch.items.len()).unwrap_or(u64::MAX));
        Ok(())
    }
}

/// A follower's progress, for tests and health reporting.
#[derive(Debug, Clone)]
pub struct Progress {
    state: Arc<FollowerState>,
}

impl Progress {
    /// Whether this follower holds the feed's lease now.
    pub fn is_holding(&self) -> bool {
        self.state.is_holding()
    }

    /// The position up to which this follower has applied (while it held the lease).
    pub fn position(&self) -> i64 {
        self.state.position()
    }

    /// How many items this follower applied since it was created.
    pub fn applied(&self) -> u64 {
        self.state.applied_items()
    }

    /// Time since this follower was last caught up with the feed.
    pub fn lag(&self) -> Duration {
        self.state.lag()
    }
}
