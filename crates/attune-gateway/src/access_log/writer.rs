//! The log's writer: stores recorded entries in batches, one transaction per
//! batch, so recording costs a call no database round trip.
//!
//! A batch is a group commit: after its first entry the writer gathers for up
//! to [`GATHER`] (or [`BATCH`] entries, or until somebody waits for a flush)
//! before it writes. Writing whatever happened to be queued made a busy
//! gateway commit a few entries at a time, hundreds of times a second, and on
//! SQLite those commits and their checkpoints took more of the server's CPU
//! than the calls they recorded. A crash may lose what was gathered, as it
//! could lose the batch in flight before; a graceful stop loses nothing.

use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::store::{self, Entry};

/// Entries written in one transaction at most.
const BATCH: usize = 500;

/// How long a batch gathers entries after its first one.
const GATHER: Duration = Duration::from_millis(10);

/// What the writer is asked to do, in the order asked.
#[derive(Debug)]
pub(super) enum Job {
    /// Store an entry.
    Write(Entry),
    /// Answer once every entry sent before this is stored (or failed).
    Flush(oneshot::Sender<()>),
}

/// Waits for the entries recorded so far to be stored: an erasure flushes first,
/// so no entry recorded before it is written after it.
#[derive(Clone, Debug)]
pub(super) struct Flush(mpsc::Sender<Job>);

impl Flush {
    pub(super) fn new(jobs: mpsc::Sender<Job>) -> Self {
        Self(jobs)
    }

    /// Returns once the writer has handled every entry recorded before this
    /// call; at once when the writer has stopped (nothing is pending then).
    pub(super) async fn pending_entries(&self) {
        let (done, written) = oneshot::channel();
        if self.0.send(Job::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

/// Writes jobs until `cancel`, then what is still queued, and stops.
pub(super) async fn run(
    db: DatabaseConnection,
    mut jobs: mpsc::Receiver<Job>,
    cancel: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut flushes = Vec::new();
    loop {
        let first = tokio::select! {
            job = jobs.recv() => job,
            () = cancel.cancelled() => {
                // In-flight calls have drained: take what they recorded.
                jobs.close();
                jobs.recv().await
            }
        };
        let Some(first) = first else { break };
        take(first, &mut batch, &mut flushes);
        gather(&mut jobs, &mut batch, &mut flushes, &cancel).await;
        write(&db, &mut batch).await;
        for done in flushes.drain(..) {
            let _ = done.send(());
        }
    }
}

/// Adds to the batch what arrives within [`GATHER`], stopping early when the
/// batch is full, a flush is waited for, the queue closes, or the server stops.
async fn gather(
    jobs: &mut mpsc::Receiver<Job>,
    batch: &mut Vec<Entry>,
    flushes: &mut Vec<oneshot::Sender<()>>,
    cancel: &CancellationToken,
) {
    let until = tokio::time::Instant::now() + GATHER;
    while batch.len() < BATCH && flushes.is_empty() {
        let job = match jobs.try_recv() {
            Ok(job) => job,
            Err(mpsc::error::TryRecvError::Disconnected) => return,
            Err(mpsc::error::TryRecvError::Empty) => tokio::select! {
                job = jobs.recv() => match job {
                    Some(job) => job,
                    None => return,
                },
                () = tokio::time::sleep_until(until) => return,
                () = cancel.cancelled() => return,
            },
        };
        take(job, batch, flushes);
    }
}

fn take(job: Job, batch: &mut Vec<Entry>, flushes: &mut Vec<oneshot::Sender<()>>) {
    match job {
        Job::Write(entry) => batch.push(entry),
        Job::Flush(done) => flushes.push(done),
    }
}

/// Stores `batch`, retrying a failed transaction a few times (the database may
/// be restarting); entries that still cannot be stored are counted in the log
/// and dropped, so the writer never grows without bound.
async fn write(db: &DatabaseConnection, batch: &mut Vec<Entry>) {
    if batch.is_empty() {
        return;
    }
    let mut delay = std::time::Duration::from_millis(50);
    for attempt in 1..=5 {
        match store::insert(db, batch).await {
            Ok(()) => {
                batch.clear();
                return;
            }
            Err(error) if attempt < 5 => {
                tracing::warn!(%error, attempt, "cannot store data-access entries; retrying");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            Err(error) => {
                tracing::error!(%error, lost = batch.len(), "data-access entries not stored");
            }
        }
    }
    batch.clear();
}
