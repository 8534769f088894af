//! Training in the background: on a schedule (`recommendation.train_interval`),
//! at start, and on demand (`TrainModel`). The data is read from the database
//! (interactions a page at a time, the catalogue as stored), mapped to dense
//! indexes, and trained on a blocking thread, so serving never waits; a success
//! swaps the snapshot in, a failure keeps the one served and is reported by
//! `GetModelStatus`. One training runs at a time.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::app::Recommendation;
use crate::catalogue::{self, Catalogue};
use crate::customer_index::CustomerIndex;
use crate::domain::Signal;
use crate::model::{self, ItemFacts, TrainingData};
use crate::served::{Indexes, Snapshot};
use crate::store;

/// Interactions read per query.
const PAGE: u64 = 10_000;

/// What `GetModelStatus` reports about training.
#[derive(Debug, Clone, Default)]
pub struct TrainingStatus {
    pub training: bool,
    pub last_attempt: Option<DateTime<Utc>>,
    pub last_error: Option<String>,
    pub next_train: Option<DateTime<Utc>>,
}

/// The trainer's shared state: its status, and the bell that starts a
/// training now.
#[derive(Debug, Default)]
pub struct Trainer {
    status: Mutex<TrainingStatus>,
    wake: Notify,
}

impl Trainer {
    /// The status now.
    pub fn status(&self) -> TrainingStatus {
        self.status
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asks for a training now; a training already running is not started
    /// twice (the request is remembered and runs after it only if asked again
    /// after it started). Returns the status with `training` set.
    pub fn request(&self) -> TrainingStatus {
        let mut status = self.status.lock().unwrap_or_else(PoisonError::into_inner);
        if !status.training {
            status.training = true;
            self.wake.notify_one();
        }
        status.clone()
    }

    fn update(&self, change: impl FnOnce(&mut TrainingStatus)) {
        change(&mut self.status.lock().unwrap_or_else(PoisonError::into_inner));
    }
}

/// Trains at start, then every `interval` and whenever asked, until `cancel`.
pub async fn run(app: Recommendation, interval: Duration, cancel: CancellationToken) {
    app.trainer.update(|s| s.training = true);
    loop {
        train_once(&app).await;
        let next = app.clock.now() + chrono::TimeDelta::from_std(interval).unwrap_or_default();
        app.trainer.update(|s| s.next_train = Some(next));
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(interval) => app.trainer.update(|s| s.training = true),
            () = app.trainer.wake.notified() => {}
        }
    }
}

/// One training: read, train on a blocking thread, swap in or keep the old.
pub async fn train_once(app: &Recommendation) {
    let started = app.clock.now();
    app.trainer.update(|s| {
        s.training = true;
        s.last_attempt = Some(started);
    });
    let outcome = train(app, started).await;
    app.trainer.update(|s| {
        s.training = false;
        s.last_error = outcome.err();
    });
}

async fn train(app: &Recommendation, started: DateTime<Utc>) -> Result<(), String> {
    let generation = app.served.erased().generation();
    // The items as stored now, not as this replica holds them: another
    // replica's upsert may still be on its way through the change log. Read,
    // not swapped in: the served catalogue follows every change as it lands,
    // and a swap here could undo one applied while this read ran.
    let stored = store::items::all(&app.db)
        .await
        .map_err(|e| format!("reading the catalogue failed: {e}"))?;
    let catalogue = Catalogue::new(stored);
    let (data, indexes, count) = gather(app, &catalogue, started.timestamp_micros()).await?;
    let config = app.model_config.clone();
    let clock = Instant::now();
    let models = tokio::task::spawn_blocking(move || model::Models::train(&data, &config))
        .await
        .map_err(|e| format!("training stopped: {e}"))?
        .map_err(|e| format!("training failed: {e}"))?;
    let snapshot = Snapshot {
        models,
        indexes,
        train_time: started,
        train_duration: clock.elapsed(),
        interaction_count: count,
    };
    tracing::info!(
        version = snapshot.models.version(),
        interactions = count,
        seconds = snapshot.train_duration.as_secs_f64(),
        "recommendation models trained"
    );
    app.served.swap(snapshot, generation);
    Ok(())
}

/// The catalogue and interactions as dense training data.
async fn gather(
    app: &Recommendation,
    catalogue: &Catalogue,
    now: i64,
) -> Result<(TrainingData, Indexes, u64), String> {
    let mut indexes = Indexes::default();
    let mut items = Vec::with_capacity(catalogue.len());
    // In id order, so indexes compare as ids do (see `Indexes::items`).
    for item in catalogue.iter() {
        let ix = dense(&mut indexes.item_ix, &mut indexes.items, &item.item_id);
        debug_assert_eq!(ix as usize, items.len());
        let categories = item
            .category_path
            .iter()
            .map(|c| {
                dense(
                    &mut indexes.category_ix,
                    &mut indexes.categories,
                    &c.category_id,
                )
            })
            .collect();
        let brand = (!item.brand.is_empty())
            .then(|| dense(&mut indexes.brand_ix, &mut indexes.brands, &item.brand));
        items.push(ItemFacts {
            categories,
            brand,
            launch: item
                .launch_time
                .and_then(|t| attune_kit::types::time::from_proto(t).ok())
                .map(|t| t.timestamp_micros()),
            active: catalogue::is_active(item),
        });
    }
    debug_assert!(indexes.items.is_sorted(), "items are numbered in id order");
    let mut users: Vec<String> = Vec::new();
    let mut user_ix: crate::idmap::IdMap<String, u32> = crate::idmap::IdMap::default();
    let mut interactions = Vec::new();
    // Orders per customer, to number each customer's baskets in time order.
    let mut orders: HashMap<u32, Vec<(i64, String)>> = HashMap::new();
    let mut after = 0;
    let mut count = 0u64;
    loop {
        let page = store::interactions::page(&app.db, after, PAGE)
            .await
            .map_err(|e| format!("reading interactions failed: {e}"))?;
        let Some((last, _)) = page.last() else { break };
        after = *last;
        for (_, row) in page {
            count += 1;
            // Items no longer (or not yet) in the catalogue cannot be served.
            let Some(&item) = indexes.item_ix.get(&row.item_id) else {
                continue;
            };
            let user = dense(&mut user_ix, &mut users, &row.customer_id);
            if let (Signal::Purchase, Some(order)) = (row.signal, &row.order_id) {
                orders
                    .entry(user)
                    .or_default()
                    .push((row.occur_time, order.clone()));
            }
            interactions.push((
                row.order_id,
                model::Interaction {
                    user,
                    item,
                    signal: row.signal.model(),
                    time: row.occur_time,
                    basket: 0,
                    quantity: row.quantity.max(1),
                },
            ));
        }
    }
    let ordinals: HashMap<(u32, String), u32> = orders
        .into_iter()
        .flat_map(|(user, mut placed)| {
            placed.sort();
            placed.dedup_by(|a, b| a.1 == b.1);
            placed.into_iter().enumerate().map(move |(n, (_, order))| {
                ((user, order), u32::try_from(n + 1).unwrap_or(u32::MAX))
            })
        })
        .collect();
    let interactions = interactions
        .into_iter()
        .map(|(order, mut interaction)| {
            if let (model::Signal::Purchase, Some(order)) = (interaction.signal, order) {
                interaction.basket = ordinals
                    .get(&(interaction.user, order))
                    .copied()
                    .unwrap_or(0);
            }
            interaction
        })
        .collect();
    drop(user_ix);
    indexes.user_ix = CustomerIndex::new(&users)?;
    let data = TrainingData {
        users: u32::try_from(users.len()).map_err(|_| "too many customers".to_owned())?,
        items,
        interactions,
        now,
    };
    Ok((data, indexes, count))
}

/// The dense index of `id`, assigned at its first sight.
fn dense(ix: &mut crate::idmap::IdMap<String, u32>, ids: &mut Vec<String>, id: &str) -> u32 {
    if let Some(&existing) = ix.get(id) {
        return existing;
    }
    let next = u32::try_from(ids.len()).expect("fewer than 4 billion ids");
    ids.push(id.to_owned());
    ix.insert(id.to_owned(), next);
    next
}

/// The status as the API reports it, with the served snapshot's facts.
pub fn model_status(app: &Recommendation) -> attune_proto::recommendation::v1::ModelStatus {
    let status = app.trainer.status();
    let served = app.served.load();
    let to_proto = attune_kit::types::time::to_proto;
    attune_proto::recommendation::v1::ModelStatus {
        model_version: served
            .as_ref()
            .map(|s| s.models.version().to_owned())
            .unwrap_or_default(),
        train_time: served.as_ref().map(|s| to_proto(s.train_time)),
        training: status.training,
        last_attempt_time: status.last_attempt.map(to_proto),
        last_error: status.last_error.unwrap_or_default(),
        customer_count: served.as_ref().map_or(0, |s| i64::from(s.models.users())),
        item_count: served.as_ref().map_or(0, |s| i64::from(s.models.items())),
        interaction_count: served.as_ref().map_or(0, |s| {
            i64::try_from(s.interaction_count).unwrap_or(i64::MAX)
        }),
        memory_bytes: served.as_ref().map_or(0, |s| {
            i64::try_from(s.memory_use().total()).unwrap_or(i64::MAX)
        }),
        customer_memory_bytes: served.as_ref().map_or(0, |s| {
            i64::try_from(s.memory_use().customers).unwrap_or(i64::MAX)
        }),
        train_duration: served
            .as_ref()
            .and_then(|s| prost_types::Duration::try_from(s.train_duration).ok()),
        next_train_time: status.next_train.map(to_proto),
    }
}
