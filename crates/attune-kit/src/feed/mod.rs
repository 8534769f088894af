//! The producer side of an ordered, resumable feed: any table of positioned rows
//! served as a stream of batches (consent's `WatchConsentChanges`, profile's event
//! feed).
//!
//! The service owns the table and implements [`FeedStore`] over it (newest
//! position; rows after a cursor). Its writers hand out positions in commit order:
//! they hold the service's write lock from before they take a position until they
//! commit. So every position up to the newest one seen is committed, and a watcher
//! may move its cursor there even when rows in between are gone (erasure deletes
//! rows), without ever skipping a row that commits later.
//!
//! One [`Feed`] per process: a poller ([`Feed::follow_database`]) learns the newest
//! position (other processes write too; this process's own commits wake it at once
//! through [`Feed::committed`]), and each watcher's producer reads the rows after
//! its cursor. A quiet stream sends a heartbeat (an empty batch with the cursor)
//! every `heartbeat_interval`, so a watcher can tell quiet from broken. When the
//! server shuts down, every stream ends with [`StreamError::ShuttingDown`]
//! (UNAVAILABLE), never with OK: a client must reconnect, to this replica once
//! restarted or to another.

use std::future::Future;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::config::FeedConfig;
use crate::error::{ApiError, FieldViolation};

/// Most rows sent in one batch.
pub const BATCH_LIMIT: u64 = 500;

/// A row of a feed: its position, unique and increasing in commit order.
pub trait Positioned {
    /// The row's position (1 or more).
    fn position(&self) -> i64;
}

/// The table a [`Feed`] serves, as its service reads it.
pub trait FeedStore: Send + Sync + 'static {
    /// One row, as the service's API converts it.
    type Row: Positioned + Send + 'static;
    /// The service's error for a failed read.
    type Error: std::error::Error + Send + 'static;

    /// The newest position, or 0 while the table is empty.
    fn newest_position(&self) -> impl Future<Output = Result<i64, Self::Error>> + Send;

    /// Up to `limit` rows after position `cursor`, in position order.
    fn after(
        &self,
        cursor: i64,
        limit: u64,
    ) -> impl Future<Output = Result<Vec<Self::Row>, Self::Error>> + Send;
}

/// Where a watcher starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// After this position (0: from the first row).
    After(i64),
    /// After the newest row.
    Newest,
}

/// One response of a stream: rows, or a heartbeat when `changes` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<T> {
    /// The rows after the previous batch's position, in position order.
    pub changes: Vec<T>,
    /// The cursor after this batch: resume after it.
    pub position: i64,
    /// When the batch was sent (microsecond precision, as stored times).
    pub send_time: DateTime<Utc>,
}

/// Why a watch cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError<E> {
    /// A cursor is never negative (INVALID_ARGUMENT).
    #[error("after_position {0} is negative")]
    NegativeCursor(i64),
    /// The cursor is beyond the newest row: the watcher followed another database
    /// (OUT_OF_RANGE).
    #[error("after_position {asked} is beyond the newest change ({newest})")]
    BeyondNewest {
        /// The cursor asked for.
        asked: i64,
        /// The newest position.
        newest: i64,
    },
    /// The store failed.
    #[error(transparent)]
    Store(E),
}

/// Why an open stream ended.
#[derive(Debug, thiserror::Error)]
pub enum StreamError<E> {
    /// The server is shutting down: reconnect after the cursor (UNAVAILABLE).
    #[error("the server is shutting down; resume after the last position received")]
    ShuttingDown,
    /// The store failed.
    #[error(transparent)]
    Store(E),
}

impl<E: Into<ApiError> + std::fmt::Display> From<StartError<E>> for ApiError {
    fn from(error: StartError<E>) -> Self {
        match error {
            StartError::NegativeCursor(_) => ApiError::InvalidArgument(vec![FieldViolation::new(
                "after_position",
                "must be 0 or a position from an earlier response",
            )]),
            StartError::BeyondNewest { .. } => ApiError::OutOfRange(error.to_string()),
            StartError::Store(error) => error.into(),
        }
    }
}

impl<E: Into<ApiError> + std::fmt::Display> From<StreamError<E>> for ApiError {
    fn from(error: StreamError<E>) -> Self {
        match error {
            StreamError::ShuttingDown => ApiError::Unavailable(error.to_string()),
            StreamError::Store(error) => error.into(),
        }
    }
}

/// So a handler maps a stream's items with `map_err(Status::from)`.
impl<E: Into<ApiError> + std::fmt::Display> From<StreamError<E>> for tonic::Status {
    fn from(error: StreamError<E>) -> Self {
        ApiError::from(error).into()
    }
}

/// One item of a watcher's stream.
pub type BatchResult<T, E> = Result<Batch<T>, StreamError<E>>;

/// The batches of one watcher.
pub type BatchStream<T, E> = ReceiverStream<BatchResult<T, E>>;

/// The feed of one table in one process.
#[derive(Debug)]
pub struct Feed<S> {
    store: S,
    settings: FeedConfig,
    newest: watch::Sender<i64>,
    committed: Notify,
    stop: CancellationToken,
}

impl<S: FeedStore> Feed<S> {
    /// A feed over `store`; its streams end (UNAVAILABLE) when `stop`, the server's
    /// shutdown, fires.
    pub fn new(store: S, settings: FeedConfig, stop: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            store,
            settings,
            newest: watch::Sender::new(0),
            committed: Notify::new(),
            stop,
        })
    }

    /// The table this feed serves.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Tells watchers that this process committed a row, so they need not wait
    /// for the next poll.
    pub fn committed(&self) {
        self.committed.notify_one();
    }

    /// Keeps the newest position current: polls the store (other processes write
    /// too) and wakes at once on this process's own commits. A background task,
    /// until `cancel`.
    pub async fn follow_database(self: Arc<Self>, cancel: CancellationToken) {
        // Polls run every `poll_interval` (100 ms): during a database outage a
        // warning per poll would flood the log, so only the first failure and the
        // recovery are logged.
        let mut failing = false;
        loop {
            match self.store.newest_position().await {
                Ok(newest) => {
                    if std::mem::take(&mut failing) {
                        tracing::info!("a feed's newest position can be read again");
                    }
                    self.newest.send_if_modified(|known| {
                        let newer = newest > *known;
                        if newer {
                            *known = newest;
                        }
                        newer
                    });
                }
                Err(error) if !failing => {
                    failing = true;
                    tracing::warn!(%error, "cannot read a feed's newest position; retrying every poll");
                }
                Err(_) => {}
            }
            tokio::select! {
                () = cancel.cancelled() => return,
                () = self.committed.notified() => {}
                () = tokio::time::sleep(self.settings.poll_interval) => {}
            }
        }
    }

    /// Opens a stream of batches starting at `start`.
    pub async fn watch(
        self: &Arc<Self>,
        start: StartAt,
    ) -> Result<BatchStream<S::Row, S::Error>, StartError<S::Error>> {
        if let StartAt::After(asked) = start
            && asked < 0
        {
            return Err(StartError::NegativeCursor(asked));
        }
        let newest = self
            .store
            .newest_position()
            .await
            .map_err(StartError::Store)?;
        let cursor = match start {
            StartAt::Newest => newest,
            StartAt::After(asked) if asked > newest => {
                return Err(StartError::BeyondNewest { asked, newest });
            }
            StartAt::After(asked) => asked,
        };
        let (sender, receiver) = mpsc::channel(2);
        tokio::spawn(Arc::clone(self).produce(cursor, sender));
        Ok(ReceiverStream::new(receiver))
    }

    /// Sends every row after `cursor`, then each new one, with a heartbeat whenever
    /// nothing was sent for a heartbeat interval; stops when the watcher goes away,
    /// and ends the stream with [`StreamError::ShuttingDown`] when the server stops.
    async fn produce(
        self: Arc<Self>,
        mut cursor: i64,
        sender: mpsc::Sender<BatchResult<S::Row, S::Error>>,
    ) {
        let mut newest = self.newest.subscribe();
        let heartbeat = self.settings.heartbeat_interval;
        // The first response goes out at once, so the watcher learns its cursor.
        let mut heartbeat_due = Instant::now();
        loop {
            if self.stop.is_cancelled() {
                let _ = sender.send(Err(StreamError::ShuttingDown)).await;
                return;
            }
            // Everything up to `horizon` is committed; read after taking it.
            let horizon = *newest.borrow_and_update();
            let rows = match self.store.after(cursor, BATCH_LIMIT).await {
                Ok(rows) => rows,
                Err(error) => {
                    let _ = sender.send(Err(StreamError::Store(error))).await;
                    return;
                }
            };
            let full = u64::try_from(rows.len()).is_ok_and(|n| n == BATCH_LIMIT);
            match rows.last() {
                Some(last) => cursor = last.position(),
                // Rows up to the horizon that the read did not see were deleted.
                None => cursor = cursor.max(horizon),
            }
            if !rows.is_empty() || Instant::now() >= heartbeat_due {
                let batch = Batch {
                    changes: rows,
                    position: cursor,
                    send_time: Utc::now().trunc_subsecs(6),
                };
                if sender.send(Ok(batch)).await.is_err() {
                    return;
                }
                heartbeat_due = Instant::now() + heartbeat;
            }
            if full {
                continue;
            }
            tokio::select! {
                () = self.stop.cancelled() => {}
                () = sender.closed() => return,
                changed = newest.wait_for(|newest| *newest > cursor) => {
                    if changed.is_err() {
                        return;
                    }
                }
                () = tokio::time::sleep_until(heartbeat_due) => {}
            }
        }
    }
}
