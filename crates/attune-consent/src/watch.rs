//! Serving the change stream: one poller per process learns the newest committed
//! position, and each watcher's producer reads the changes after its cursor.
//!
//! Positions follow commit order (every consent write holds the write lock from
//! before it takes a position until it commits), so every position up to the
//! newest one seen is committed: a watcher may move its cursor to that position
//! even when the rows in between are gone (erasure deletes a customer's changes),
//! and it never skips a row that commits later.

use std::sync::Arc;

use attune_kit::config::FeedConfig;
use chrono::{SubsecRound, Utc};
use sea_orm::DatabaseConnection;
use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;

use crate::domain::Change;
use crate::error::ConsentError;
use crate::store::changes;

/// Most changes sent in one response.
const BATCH: u64 = 500;

/// Where a watcher starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// After this position (0: from the first change).
    After(i64),
    /// After the newest change.
    Newest,
}

/// One response of the stream: changes, or a heartbeat when `changes` is empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub changes: Vec<Change>,
    /// The cursor after this batch.
    pub position: i64,
    pub send_time: chrono::DateTime<Utc>,
}

/// Why a watch cannot start.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("after_position {asked} is beyond the newest change ({newest})")]
    BeyondNewest { asked: i64, newest: i64 },
    #[error(transparent)]
    Consent(#[from] ConsentError),
}

/// The change stream of one process.
#[derive(Debug)]
pub struct ChangeFeed {
    db: DatabaseConnection,
    settings: FeedConfig,
    newest: watch::Sender<i64>,
    committed: Notify,
    stop: CancellationToken,
}

impl ChangeFeed {
    /// A feed over `db`; its streams end when `stop` (the server's shutdown) fires.
    pub fn new(db: DatabaseConnection, settings: FeedConfig, stop: CancellationToken) -> Arc<Self> {
        Arc::new(Self {
            db,
            settings,
            newest: watch::Sender::new(0),
            committed: Notify::new(),
            stop,
        })
    }

    /// Tells watchers that this process committed a change, so they need not wait
    /// for the next poll.
    pub fn committed(&self) {
        self.committed.notify_one();
    }

    /// Keeps the newest position current: polls the database (other processes
    /// write too) and wakes at once on this process's own commits. A background
    /// task, until `cancel`.
    pub async fn follow_database(self: Arc<Self>, cancel: CancellationToken) {
        loop {
            match changes::newest_position(&self.db).await {
                Ok(newest) => {
                    self.newest.send_if_modified(|known| {
                        let newer = newest > *known;
                        if newer {
                            *known = newest;
                        }
                        newer
                    });
                }
                Err(error) => tracing::warn!(%error, "cannot read the newest consent change"),
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
    ) -> Result<ReceiverStream<Result<Batch, ConsentError>>, WatchError> {
        let newest = changes::newest_position(&self.db).await?;
        let cursor = match start {
            StartAt::Newest => newest,
            StartAt::After(asked) if asked > newest => {
                return Err(WatchError::BeyondNewest { asked, newest });
            }
            StartAt::After(asked) => asked,
        };
        let (sender, receiver) = mpsc::channel(2);
        tokio::spawn(Arc::clone(self).produce(cursor, sender));
        Ok(ReceiverStream::new(receiver))
    }

    /// Sends every change after `cursor`, then each new one, with a heartbeat
    /// whenever nothing was sent for a heartbeat interval; stops when the watcher
    /// goes away or the server shuts down.
    async fn produce(
        self: Arc<Self>,
        mut cursor: i64,
        sender: mpsc::Sender<Result<Batch, ConsentError>>,
    ) {
        let mut newest = self.newest.subscribe();
        let heartbeat = self.settings.heartbeat_interval;
        // The first response goes out at once, so the watcher learns its cursor.
        let mut heartbeat_due = Instant::now();
        loop {
            // Everything up to `horizon` is committed; read after taking it.
            let horizon = *newest.borrow_and_update();
            let batch = match changes::after(&self.db, cursor, BATCH).await {
                Ok(batch) => batch,
                Err(error) => {
                    let _ = sender.send(Err(error)).await;
                    return;
                }
            };
            let full = u64::try_from(batch.len()).is_ok_and(|n| n == BATCH);
            match batch.last() {
                Some(last) => cursor = last.position,
                // Rows up to the horizon that the read did not see were deleted.
                None => cursor = cursor.max(horizon),
            }
            if !batch.is_empty() || Instant::now() >= heartbeat_due {
                let response = Batch {
                    changes: batch,
                    position: cursor,
                    send_time: Utc::now().trunc_subsecs(6),
                };
                if sender.send(Ok(response)).await.is_err() {
                    return;
                }
                heartbeat_due = Instant::now() + heartbeat;
            }
            if full {
                continue;
            }
            tokio::select! {
                () = self.stop.cancelled() => return,
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
