//! The impression log (which variant of the running experiment served which
//! recommendation id, for attribution) written off the request path: an answer
//! queues its impression without waiting, and one writer stores whatever has
//! queued in one transaction per batch. Under load the batches grow, so the
//! write lock is taken once per batch instead of once per answer.
//!
//! What a crash may lose: the impressions queued but not yet committed, at most
//! [`CAPACITY`] rows and in practice those of the batch in flight (a few
//! milliseconds of traffic). A graceful shutdown loses nothing: the writer
//! drains the queue before it stops. When the queue is full (the database
//! cannot keep up) an impression is dropped rather than slowing the answer,
//! and counted in the log; attribution then under-counts impressions, never
//! invents them.

use std::sync::atomic::{AtomicU64, Ordering};

use sea_orm::DbErr;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::app::Recommendation;
use crate::store;

/// How many impressions may wait for the writer.
pub const CAPACITY: usize = 20_000;
/// The most rows one insert writes (4 parameters each, far under either
/// database's limit on parameters).
const BATCH: usize = 500;

/// One answer served under an experiment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impression {
    pub recommendation_id: String,
    pub experiment_id: String,
    pub variant: String,
    /// Microseconds since the epoch.
    pub create_time: i64,
}

/// The queue answers put their impressions on.
#[derive(Debug)]
pub struct ImpressionLog {
    queue: mpsc::Sender<Impression>,
    dropped: AtomicU64,
}

impl ImpressionLog {
    /// A log and the receiving end its [`write`] task drains.
    pub fn new() -> (Self, mpsc::Receiver<Impression>) {
        let (queue, receiver) = mpsc::channel(CAPACITY);
        (
            Self {
                queue,
                dropped: AtomicU64::new(0),
            },
            receiver,
        )
    }

    /// Queues `impression` without waiting.
    pub fn record(&self, impression: Impression) {
        if self.queue.try_send(impression).is_err() {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            if dropped.is_power_of_two() {
                tracing::warn!(
                    dropped,
                    "the impression queue is full: impressions are dropped, attribution under-counts"
                );
            }
        }
    }
}

/// Stores queued impressions until `cancel`, then what is still queued.
pub async fn write(
    app: Recommendation,
    mut receiver: mpsc::Receiver<Impression>,
    cancel: CancellationToken,
) {
    let mut batch = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            () = cancel.cancelled() => break,
            received = receiver.recv_many(&mut batch, BATCH) => {
                if received == 0 {
                    return;
                }
                store_batch(&app, &mut batch).await;
            }
        }
    }
    receiver.close();
    while receiver.recv_many(&mut batch, BATCH).await > 0 {
        store_batch(&app, &mut batch).await;
    }
}

async fn store_batch(app: &Recommendation, batch: &mut Vec<Impression>) {
    let written = async {
        let txn = app.begin_write().await?;
        store::experiments::record_impressions(&txn, batch).await?;
        txn.commit().await
    };
    let result: Result<(), DbErr> = written.await;
    if let Err(error) = result {
        tracing::warn!(%error, lost = batch.len(), "experiment impressions were not recorded");
    }
    batch.clear();
}
