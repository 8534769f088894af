//! Training, and the immutable snapshot the server swaps in and `attune eval`
//! scores: every part in flat arrays, nothing shared, nothing locked.

use super::blend;
use super::config::{Collaborative, ModelConfig};
use super::content::Content;
use super::cooccurrence::{Groups, Neighbours, Normalization, neighbours};
use super::ease::ease;
use super::history::{Histories, summarize};
use super::popularity::Popularity;
use super::time::{MICROS_PER_DAY, day_of};
use super::topk::{top_n, top_n_kept};
use super::{
    Because, BrandIx, BuyAgain, CategoryIx, Interaction, ItemIx, IxMap, Scored, Task, TrainingData,
    TrainingError, UserIx,
};

/// Bought-together and viewed-together: cosine, lightly shrunk so a pair seen
/// once in a small shop still links its items.
const COOCCURRENCE: Normalization = Normalization::Cosine { shrink: 1.0 };

/// A snapshot's resident size in bytes, split by what it grows with.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MemoryUse {
    /// Per-customer data: each customer's history rows (and, in the served
    /// snapshot, the index of their ids).
    pub customers: usize,
    /// Everything else: per-item neighbour lists, popularity, content.
    pub items: usize,
}

impl MemoryUse {
    pub fn total(&self) -> usize {
        self.customers + self.items
    }
}

/// An immutable snapshot of every model, `Send + Sync`, compact: per-customer
/// data lives in flat arrays ([`Histories`]), per-item data in neighbour lists.
#[derive(Debug)]
pub struct Models {
    version: String,
    pub(crate) config: ModelConfig,
    /// The training's clock (microseconds since the epoch).
    now: i64,
    active: Vec<bool>,
    pub(crate) histories: Histories,
    pub(crate) popularity: Popularity,
    content: Content,
    pub(crate) collaborative: Neighbours,
    bought_together: Neighbours,
    viewed_together: Neighbours,
}

impl Models {
    /// Trains every model from `data`. Fails, changing nothing, on an
    /// interaction naming an unknown customer or item or on bad knobs.
    pub fn train(data: &TrainingData, config: &ModelConfig) -> Result<Models, TrainingError> {
        config.check().map_err(TrainingError)?;
        let n_items = data.items.len();
        if u32::try_from(n_items).is_err() {
            return Err(TrainingError("too many items".into()));
        }
        if let Some(bad) = data
            .interactions
            .iter()
            .find(|e| e.user >= data.users || e.item as usize >= n_items)
        {
            return Err(TrainingError(format!(
                "an interaction names customer {} or item {} beyond the {} customers and {} items",
                bad.user, bad.item, data.users, n_items
            )));
        }
        let threads = match config.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };

        let mut order: Vec<Interaction> = data.interactions.clone();
        order.sort_unstable_by_key(|e| (e.user, e.time, e.item));
        let base_day = order
            .iter()
            .map(|e| day_of(e.time))
            .min()
            .unwrap_or(day_of(data.now));
        let mut histories = Histories::with_base_day(base_day);
        let mut customers = Groups::default();
        let mut baskets = Groups::default();
        let mut sessions = Groups::default();
        let mut events = order.as_slice();
        for user in 0..data.users {
            let split = events.partition_point(|e| e.user == user);
            let (mine, rest) = events.split_at(split);
            events = rest;
            let summary = summarize(mine, config, data.now);
            histories.push_user(&summary.rows);
            customers.push(&summary.recent_items);
            for basket in &summary.baskets {
                baskets.push(basket);
            }
            for session in &summary.sessions {
                sessions.push(session);
            }
        }
        let version = version(data, &order, config);
        drop(order);
        histories.shrink_to_fit();

        let collaborative = collaborative(&customers, n_items, config, threads)?;
        let popularity = Popularity::train(&data.items, &data.interactions, config, data.now);
        let content = Content::train(&data.items, &popularity, data.now);
        Ok(Models {
            version,
            config: config.clone(),
            now: data.now,
            active: data.items.iter().map(|facts| facts.active).collect(),
            collaborative,
            bought_together: neighbours(
                &baskets,
                n_items,
                COOCCURRENCE,
                config.cooccurrence_neighbours,
                threads,
            ),
            viewed_together: neighbours(
                &sessions,
                n_items,
                COOCCURRENCE,
                config.cooccurrence_neighbours,
                threads,
            ),
            histories,
            popularity,
            content,
        })
    }

    /// Names this snapshot: the model, the training's clock and a hash of what
    /// it learned from, e.g. `tifu-item-knn-2026-11-29T21:40:00Z-1f2e3d4c5b6a7988`.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The training's clock (microseconds since the epoch).
    pub fn trained_at(&self) -> i64 {
        self.now
    }

    /// Resident size estimate of the snapshot, in bytes.
    pub fn memory_bytes(&self) -> usize {
        self.memory_use().total()
    }

    /// Resident size estimate of the snapshot, split by what it grows with.
    pub fn memory_use(&self) -> MemoryUse {
        MemoryUse {
            customers: self.histories.memory_bytes(),
            items: std::mem::size_of::<Models>()
                + self.version.capacity()
                + self.active.capacity()
                + self.popularity.memory_bytes()
                + self.content.memory_bytes()
                + self.collaborative.memory_bytes()
                + self.bought_together.memory_bytes()
                + self.viewed_together.memory_bytes(),
        }
    }

    pub fn users(&self) -> u32 {
        self.histories.users()
    }

    pub fn items(&self) -> u32 {
        u32::try_from(self.active.len()).unwrap_or(u32::MAX)
    }

    pub(crate) fn is_active(&self, item: ItemIx) -> bool {
        self.active.get(item as usize).copied().unwrap_or(false)
    }

    /// Time-decayed popularity (trending), best first; per category when given.
    pub fn popular(
        &self,
        category: Option<CategoryIx>,
        n: usize,
        exclude: &dyn Fn(ItemIx) -> bool,
    ) -> Vec<Scored> {
        let (list, because) = match category {
            Some(c) => (self.popularity.by_category.of(c), Because::PopularIn(c)),
            None => (self.popularity.global.as_slice(), Because::Popular),
        };
        list.iter()
            .copied()
            .filter(|&item| !exclude(item))
            .take(n)
            .map(|item| Scored {
                item,
                score: self.popularity.normalized(item),
                because,
            })
            .collect()
    }

    /// The customer's own repeat purchases, best first: frequency and recency
    /// (the time-decayed share of their baskets), damped while an item bought
    /// at a steady cadence is not yet due, with the expected next date.
    pub fn buy_again(
        &self,
        user: UserIx,
        now: i64,
        n: usize,
        exclude: &dyn Fn(ItemIx) -> bool,
    ) -> Vec<BuyAgain> {
        let mut found: Vec<BuyAgain> = self
            .histories
            .rows(user)
            .filter(|row| row.purchases > 0 && self.is_active(row.item) && !exclude(row.item))
            .map(|row| {
                let interval = row
                    .interval_days()
                    .map(|days| (days * MICROS_PER_DAY as f64).round() as i64);
                BuyAgain {
                    item: row.item,
                    score: row.weight * blend::due_factor(self, &row, now),
                    purchases: row.purchases,
                    last: row.last_micros(),
                    interval,
                    expected_next: interval.map(|i| row.last_micros() + i),
                }
            })
            .collect();
        top_n(&mut found, n, |b| (b.score, b.item));
        found
    }

    /// When the customer last bought `item` (microseconds, day resolution),
    /// unless never (or every purchase was returned).
    pub fn last_purchase(&self, user: UserIx, item: ItemIx) -> Option<i64> {
        self.histories
            .find(user, item)
            .filter(|row| row.purchases > 0)
            .map(|row| row.last_micros())
    }

    /// The customer's `n` strongest items (time-decayed interest), best first.
    pub fn strongest(&self, user: UserIx, n: usize) -> Vec<ItemIx> {
        self.histories
            .strongest_first(user)
            .take(n)
            .map(|row| row.item)
            .collect()
    }

    /// Items bought in the same baskets as `items`, normalized (cosine) so
    /// best-sellers do not dominate; never one of `items`.
    pub fn bought_together(
        &self,
        items: &[ItemIx],
        n: usize,
        exclude: &dyn Fn(ItemIx) -> bool,
    ) -> Vec<Scored> {
        self.neighbours_of(
            &self.bought_together,
            items,
            n,
            exclude,
            Because::BoughtTogether,
        )
    }

    /// Items viewed in the same browsing sessions as `items`.
    pub fn viewed_together(
        &self,
        items: &[ItemIx],
        n: usize,
        exclude: &dyn Fn(ItemIx) -> bool,
    ) -> Vec<Scored> {
        self.neighbours_of(
            &self.viewed_together,
            items,
            n,
            exclude,
            Because::ViewedTogether,
        )
    }

    /// Items the same customers liked (the collaborative model's neighbours).
    pub fn similar(&self, item: ItemIx, n: usize, exclude: &dyn Fn(ItemIx) -> bool) -> Vec<Scored> {
        self.neighbours_of(&self.collaborative, &[item], n, exclude, Because::SimilarTo)
    }

    fn neighbours_of(
        &self,
        table: &Neighbours,
        items: &[ItemIx],
        n: usize,
        exclude: &dyn Fn(ItemIx) -> bool,
        because: fn(ItemIx) -> Because,
    ) -> Vec<Scored> {
        // Summed over the given items; the reason names the one that linked most.
        let mut found: IxMap<ItemIx, (f32, f32, ItemIx)> = IxMap::default();
        for &seed in items {
            let (neighbours, similarities) = table.of(seed);
            for (&item, &similarity) in neighbours.iter().zip(similarities) {
                let entry = found.entry(item).or_insert((0.0, 0.0, seed));
                entry.0 += similarity;
                if similarity > entry.1 {
                    entry.1 = similarity;
                    entry.2 = seed;
                }
            }
        }
        let mut scored: Vec<Scored> = found
            .into_iter()
            .filter(|(item, _)| !items.contains(item))
            .map(|(item, (score, _, seed))| Scored {
                item,
                score,
                because: because(seed),
            })
            .collect();
        top_n_kept(
            &mut scored,
            n,
            |s| (s.score, s.item),
            |s| self.is_active(s.item) && !exclude(s.item),
        );
        scored
    }

    /// THE ranking both the server and `attune eval` use: the customer's
    /// history in the snapshot (None for a customer unknown to it) plus
    /// `recent` session items with weights (so the last event counts before
    /// retraining), blended with the collaborative model and popularity.
    /// Discovery never returns an item the customer bought before.
    pub fn recommend(
        &self,
        user: Option<UserIx>,
        recent: &[(ItemIx, f32)],
        task: Task,
        now: i64,
        n: usize,
        exclude: &dyn Fn(ItemIx) -> bool,
    ) -> Vec<Scored> {
        blend::recommend(self, user, recent, task, now, n, exclude)
    }

    /// Scores for a caller's candidates (each once, unknown items last), same
    /// blend as [`Models::recommend`] for the next-basket task, best first.
    pub fn score(
        &self,
        user: Option<UserIx>,
        recent: &[(ItemIx, f32)],
        now: i64,
        candidates: &[ItemIx],
    ) -> Vec<Scored> {
        blend::score(self, user, recent, now, candidates)
    }

    /// Content fallback for new customers and new items: items matching the
    /// category and brand affinities, newer and more popular first among equals.
    pub fn content(
        &self,
        categories: &[(CategoryIx, f32)],
        brands: &[(BrandIx, f32)],
        n: usize,
        exclude: &dyn Fn(ItemIx) -> bool,
    ) -> Vec<Scored> {
        self.content
            .rank(&self.popularity, categories, brands, n, exclude)
    }
}

/// `<model>-<training clock>-<hash of the data and knobs>`.
/// `sorted` are the interactions in training order, so the same data in any
/// order gets the same version.
fn version(data: &TrainingData, sorted: &[Interaction], config: &ModelConfig) -> String {
    // FNV-1a: stable across builds and platforms, unlike std's hasher.
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut feed = |bytes: &[u8]| {
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    feed(&data.users.to_le_bytes());
    feed(&(data.items.len() as u64).to_le_bytes());
    for e in sorted {
        feed(&e.user.to_le_bytes());
        feed(&e.item.to_le_bytes());
        feed(&[e.signal as u8]);
        feed(&e.time.to_le_bytes());
        feed(&e.basket.to_le_bytes());
        feed(&e.quantity.to_le_bytes());
    }
    feed(format!("{config:?}").as_bytes());
    let at = chrono::DateTime::from_timestamp_micros(data.now)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_else(|| data.now.to_string());
    format!("tifu-{}-{at}-{hash:016x}", config.collaborative.name())
}

/// The collaborative model's neighbour lists from the customers' item sets.
fn collaborative(
    customers: &Groups,
    n_items: usize,
    config: &ModelConfig,
    threads: usize,
) -> Result<Neighbours, TrainingError> {
    let k = config.neighbours;
    Ok(match config.collaborative {
        Collaborative::ItemKnn { shrink } => neighbours(
            customers,
            n_items,
            Normalization::Cosine { shrink },
            k,
            threads,
        ),
        Collaborative::Rp3Beta { alpha, beta } => neighbours(
            customers,
            n_items,
            Normalization::Rp3Beta { alpha, beta },
            k,
            threads,
        ),
        Collaborative::Ease {
            lambda,
            head,
            tail_weight,
        } => {
            let (mut lists, in_head) =
                ease(customers, n_items, f64::from(lambda), head, k, threads)
                    .map_err(TrainingError)?;
            let tail = neighbours(customers, n_items, EASE_TAIL, k, threads);
            for (item, list) in lists.iter_mut().enumerate() {
                if !in_head[item] {
                    let item = ItemIx::try_from(item).expect("item indexes fit u32");
                    *list = tail
                        .list(item)
                        .into_iter()
                        .map(|(j, s)| (j, s * tail_weight))
                        .filter(|&(_, s)| s > 0.0)
                        .collect();
                }
            }
            Neighbours::from_lists(lists)
        }
    })
}

/// Item-KNN for the items outside EASE's head.
const EASE_TAIL: Normalization = Normalization::Cosine { shrink: 20.0 };

#[cfg(test)]
mod tests;
