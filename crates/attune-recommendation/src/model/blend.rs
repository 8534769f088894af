//! THE ranking: the customer's own items (time-decayed frequency, with the
//! session's recent items on top), what the collaborative neighbours of those
//! items add, and popularity as the fallback and tie-breaker. The server and
//! `attune eval` both call it through [`Models::recommend`] and [`Models::score`].

use std::cell::RefCell;

use super::IxSet;
use super::history::Row;
use super::snapshot::Models;
use super::time::day_of;
use super::topk::{top_n, top_n_kept};
use super::{Because, ItemIx, Scored, Task, UserIx};

/// One item of the customer's personal vector.
#[derive(Clone, Copy, Debug)]
struct Seed {
    item: ItemIx,
    /// In `[0, 1]` for trained items (the strongest is 1), plus recent weights.
    weight: f32,
    purchases: u32,
    row: Option<Row>,
}

/// What a candidate collected from each part of the blend.
#[derive(Clone, Copy, Debug, Default)]
struct Candidate {
    personal: f32,
    purchases: u32,
    collaborative: f32,
    strongest_seed: Option<(f32, ItemIx)>,
}

/// Every candidate's parts, one slot per item of the catalogue, kept per
/// thread and reused: a heavy customer's ranking touches thousands of items,
/// and a hash map of them (grown, rehashed and freed on every call) cost more
/// than the scoring itself. Only the touched slots are reset.
#[derive(Default)]
struct Found {
    slots: Vec<Candidate>,
    present: Vec<bool>,
    /// The items touched, in the order first touched.
    touched: Vec<ItemIx>,
}

impl Found {
    /// Empties the slots of the previous use and sizes them for `items`.
    fn reset(&mut self, items: usize) {
        for &item in &self.touched {
            self.slots[item as usize] = Candidate::default();
            self.present[item as usize] = false;
        }
        self.touched.clear();
        if self.slots.len() != items {
            self.slots = vec![Candidate::default(); items];
            self.present = vec![false; items];
        }
    }

    /// The slot of `item` (an index below the catalogue's size).
    fn entry(&mut self, item: ItemIx) -> &mut Candidate {
        let i = item as usize;
        if !self.present[i] {
            self.present[i] = true;
            self.touched.push(item);
        }
        &mut self.slots[i]
    }

    /// The touched items with their parts, in the order first touched.
    fn iter(&self) -> impl Iterator<Item = (ItemIx, &Candidate)> {
        self.touched
            .iter()
            .map(|&item| (item, &self.slots[item as usize]))
    }
}

thread_local! {
    static FOUND: RefCell<Found> = RefCell::default();
}

/// Runs `f` with this thread's [`Found`], emptied and sized for `models`.
fn with_found<R>(models: &Models, f: impl FnOnce(&mut Found) -> R) -> R {
    FOUND.with(|found| {
        let mut found = found.borrow_mut();
        found.reset(models.items() as usize);
        f(&mut found)
    })
}

/// The customer's personal vector: trained history, normalized, plus `recent`.
fn seeds(models: &Models, user: Option<UserIx>, recent: &[(ItemIx, f32)]) -> Vec<Seed> {
    let rows: Vec<Row> = user
        .map(|u| models.histories.rows(u).collect())
        .unwrap_or_default();
    let strongest = rows.iter().map(|r| r.weight).fold(0.0f32, f32::max);
    let mut seeds: Vec<Seed> = rows
        .into_iter()
        .map(|row| Seed {
            item: row.item,
            weight: if strongest > 0.0 {
                row.weight / strongest
            } else {
                0.0
            },
            purchases: row.purchases,
            row: Some(row),
        })
        .collect();
    for &(item, weight) in recent {
        if item >= models.items() || !(weight.is_finite() && weight > 0.0) {
            continue;
        }
        let added = weight * models.config.recent_weight;
        match seeds.binary_search_by_key(&item, |s| s.item) {
            Ok(at) => seeds[at].weight += added,
            Err(at) => seeds.insert(
                at,
                Seed {
                    item,
                    weight: added,
                    purchases: 0,
                    row: None,
                },
            ),
        }
    }
    seeds
}

/// Buy-again's damping of an item bought at a steady cadence but not yet due.
pub(crate) fn due_factor(models: &Models, row: &Row, now: i64) -> f32 {
    let floor = models.config.due_floor;
    if floor >= 1.0 {
        return 1.0;
    }
    match row.interval_days() {
        Some(interval) => {
            let elapsed = (day_of(now) - row.last_day).max(0) as f64;
            ((elapsed / interval) as f32).clamp(floor, 1.0)
        }
        None => 1.0,
    }
}

/// Every candidate's parts, into `found`; only `within` when given. Returns
/// the items bought (for discovery, which never recommends them).
fn candidates(
    models: &Models,
    user: Option<UserIx>,
    recent: &[(ItemIx, f32)],
    task: Task,
    now: i64,
    within: Option<&IxSet<ItemIx>>,
    found: &mut Found,
) -> IxSet<ItemIx> {
    let seeds = seeds(models, user, recent);
    let bought: IxSet<ItemIx> = match task {
        Task::NextBasket => IxSet::default(),
        Task::Discovery => seeds
            .iter()
            .filter(|s| s.purchases > 0)
            .map(|s| s.item)
            .collect(),
    };
    let allowed =
        |item: ItemIx| within.is_none_or(|w| w.contains(&item)) && !bought.contains(&item);
    for seed in &seeds {
        if allowed(seed.item) {
            let due = seed.row.map_or(1.0, |row| due_factor(models, &row, now));
            let c = found.entry(seed.item);
            c.personal = seed.weight * due;
            c.purchases = seed.purchases;
        }
    }
    let mut strongest: Vec<&Seed> = seeds.iter().filter(|s| s.weight > 0.0).collect();
    top_n(&mut strongest, models.config.seeds, |s| (s.weight, s.item));
    for seed in strongest {
        let (items, similarities) = models.collaborative.of(seed.item);
        for (&item, &similarity) in items.iter().zip(similarities) {
            if !allowed(item) {
                continue;
            }
            let contribution = seed.weight * similarity;
            let c = found.entry(item);
            c.collaborative += contribution;
            if c.strongest_seed.is_none_or(|(best, _)| contribution > best) {
                c.strongest_seed = Some((contribution, seed.item));
            }
        }
    }
    bought
}

/// Turns a candidate's parts into one score and the reason that weighed most.
fn finish(models: &Models, task: Task, found: &Found) -> Vec<Scored> {
    let config = &models.config;
    let (collaborative_weight, popularity_weight) = match task {
        Task::NextBasket => (config.collaborative_weight, config.popularity_weight),
        Task::Discovery => (
            config.discovery_collaborative_weight,
            config.discovery_popularity_weight,
        ),
    };
    let top_collaborative = found
        .iter()
        .map(|(_, c)| c.collaborative)
        .fold(0.0f32, f32::max);
    found
        .iter()
        .map(|(item, c)| {
            let personal = config.personal_weight * c.personal;
            let collaborative = if top_collaborative > 0.0 {
                collaborative_weight * c.collaborative / top_collaborative
            } else {
                0.0
            };
            let popular = popularity_weight * models.popularity.normalized(item);
            let because = if personal >= collaborative && personal >= popular && personal > 0.0 {
                if c.purchases > 0 {
                    Because::OwnHistory {
                        purchases: c.purchases,
                    }
                } else {
                    Because::Personal
                }
            } else if let (true, Some((_, seed))) = (collaborative >= popular, c.strongest_seed) {
                Because::SimilarTo(seed)
            } else {
                Because::Popular
            };
            Scored {
                item,
                score: personal + collaborative + popular,
                because,
            }
        })
        .collect()
}

pub(crate) fn recommend(
    models: &Models,
    user: Option<UserIx>,
    recent: &[(ItemIx, f32)],
    task: Task,
    now: i64,
    n: usize,
    exclude: &dyn Fn(ItemIx) -> bool,
) -> Vec<Scored> {
    let (mut ranked, bought) = with_found(models, |found| {
        let bought = candidates(models, user, recent, task, now, None, found);
        (finish(models, task, found), bought)
    });
    top_n_kept(
        &mut ranked,
        n,
        |s| (s.score, s.item),
        |s| models.is_active(s.item) && !exclude(s.item),
    );
    if ranked.len() < n {
        // Too little history: popularity fills the rest, after what is personal.
        let taken: IxSet<ItemIx> = ranked.iter().map(|s| s.item).collect();
        let fill = models
            .popularity
            .global
            .iter()
            .copied()
            .filter(|item| !taken.contains(item) && !bought.contains(item) && !exclude(*item))
            .take(n - ranked.len())
            .map(|item| Scored {
                item,
                score: models.config.popularity_weight * models.popularity.normalized(item),
                because: Because::Popular,
            })
            .collect::<Vec<_>>();
        ranked.extend(fill);
    }
    ranked
}

pub(crate) fn score(
    models: &Models,
    user: Option<UserIx>,
    recent: &[(ItemIx, f32)],
    now: i64,
    candidates_in: &[ItemIx],
) -> Vec<Scored> {
    let within: IxSet<ItemIx> = candidates_in.iter().copied().collect();
    let mut ranked = with_found(models, |found| {
        candidates(
            models,
            user,
            recent,
            Task::NextBasket,
            now,
            Some(&within),
            found,
        );
        for &item in &within {
            if item < models.items() {
                found.entry(item);
            }
        }
        finish(models, Task::NextBasket, found)
    });
    // An item newer than the model has no slot: it is kept, with nothing to
    // say for it (a re-rank returns every candidate it was given).
    ranked.extend(
        within
            .iter()
            .filter(|&&item| item >= models.items())
            .map(|&item| Scored {
                item,
                score: 0.0,
                because: Because::Popular,
            }),
    );
    let n = ranked.len();
    top_n(&mut ranked, n, |s| (s.score, s.item));
    ranked
}
