//! THE ranking: the customer's own items (time-decayed frequency, with the
//! session's recent items on top), what the collaborative neighbours of those
//! items add, and popularity as the fallback and tie-breaker. The server and
//! `attune eval` both call it through [`Models::recommend`] and [`Models::score`].
//!
//! A call's work does not grow with the customer's history: the snapshot keeps
//! each customer's items strongest first, so the seeds of the collaborative
//! part are a prefix of that order, and an item the neighbours did not touch
//! scores at most its personal weight plus the largest popularity part; the
//! ranking reads that order only until the next item cannot beat the last one
//! it keeps (the answer is the one scoring every item would give).

use std::cell::RefCell;

use super::IxSet;
use super::history::Row;
use super::snapshot::Models;
use super::time::day_of;
use super::topk::{top_n, top_n_kept};
use super::{Because, ItemIx, Scored, Task, UserIx};

/// One of the customer's items seeding the collaborative part.
#[derive(Clone, Copy, Debug)]
struct Seed {
    item: ItemIx,
    /// In `[0, 1]` for trained items (the strongest is 1), plus recent weights.
    weight: f32,
}

/// A recent session item, with its trained row if the customer has one.
#[derive(Clone, Copy, Debug)]
struct Recent {
    item: ItemIx,
    weight: f32,
    row: Option<Row>,
}

/// What a candidate collected from each part of the blend.
#[derive(Clone, Copy, Debug, Default)]
struct Candidate {
    personal: f32,
    purchases: u32,
    collaborative: f32,
    strongest_seed: Option<(f32, ItemIx)>,
    /// A recent session item: its personal part comes from the session.
    recent: bool,
    /// Discovery never recommends an item bought before.
    excluded: bool,
}

/// Every candidate's parts, one slot per item of the catalogue, kept per
/// thread and reused: a hash map of them (grown, rehashed and freed on every
/// call) cost more than the scoring itself. Only the touched slots are reset.
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

    /// The slot of `item` if it was touched.
    fn existing(&mut self, item: ItemIx) -> Option<&mut Candidate> {
        let i = item as usize;
        self.present[i].then(|| &mut self.slots[i])
    }

    fn contains(&self, item: ItemIx) -> bool {
        self.present[item as usize]
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

/// The customer's trained items, as one ranking reads them.
struct History<'a> {
    models: &'a Models,
    user: Option<UserIx>,
    /// The weight of the strongest row: every row's weight is divided by it.
    strongest: f32,
}

impl<'a> History<'a> {
    fn of(models: &'a Models, user: Option<UserIx>) -> Self {
        let strongest = user
            .and_then(|u| models.histories.strongest_first(u).next())
            .map_or(0.0, |row| row.weight.max(0.0));
        History {
            models,
            user,
            strongest,
        }
    }

    /// A row's weight in `[0, 1]`.
    fn normalized(&self, row: &Row) -> f32 {
        if self.strongest > 0.0 {
            row.weight / self.strongest
        } else {
            0.0
        }
    }

    fn find(&self, item: ItemIx) -> Option<Row> {
        self.user.and_then(|u| self.models.histories.find(u, item))
    }

    fn strongest_first(&self) -> impl Iterator<Item = Row> + 'a {
        let models = self.models;
        self.user
            .into_iter()
            .flat_map(move |u| models.histories.strongest_first(u))
    }

    fn len(&self) -> usize {
        self.user.map_or(0, |u| self.models.histories.len(u))
    }
}

/// The session's recent items, each once (weights of repeats added in order).
fn recent_items(models: &Models, history: &History, recent: &[(ItemIx, f32)]) -> Vec<Recent> {
    let mut merged: Vec<Recent> = Vec::with_capacity(recent.len());
    for &(item, weight) in recent {
        if item >= models.items() || !(weight.is_finite() && weight > 0.0) {
            continue;
        }
        let added = weight * models.config.recent_weight;
        match merged.iter_mut().find(|r| r.item == item) {
            Some(seen) => seen.weight += added,
            None => {
                let row = history.find(item);
                merged.push(Recent {
                    item,
                    weight: row.map_or(added, |row| history.normalized(&row) + added),
                    row,
                });
            }
        }
    }
    merged
}

/// The `config.seeds` strongest of the customer's items (recent weights
/// included), best first. Only a prefix of the history is read: a row past
/// it is weaker than `seeds` rows before it, and recent weights only add.
fn strongest_seeds(models: &Models, history: &History, recent: &[Recent]) -> Vec<Seed> {
    let wanted = models.config.seeds;
    let mut seeds: Vec<Seed> = recent
        .iter()
        .filter(|r| r.weight > 0.0)
        .map(|r| Seed {
            item: r.item,
            weight: r.weight,
        })
        .collect();
    let mut last = f32::INFINITY;
    for (read, row) in history.strongest_first().enumerate() {
        let weight = history.normalized(&row);
        // Rows tied with the last one read are read too: ties go to the lower item.
        if weight <= 0.0 || (read >= wanted && weight < last) {
            break;
        }
        last = weight;
        if !recent.iter().any(|r| r.item == row.item) {
            seeds.push(Seed {
                item: row.item,
                weight,
            });
        }
    }
    top_n(&mut seeds, wanted, |s| (s.weight, s.item));
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

/// Whether this ranking may recommend an item the customer has `row` of.
fn admitted(task: Task, row: Option<&Row>) -> bool {
    task == Task::NextBasket || row.is_none_or(|row| row.purchases == 0)
}

/// Fills in the personal part of every touched item: recent items from the
/// session (and their rows), the others from their row, if any.
fn personal_parts(
    models: &Models,
    history: &History,
    recent: &[Recent],
    task: Task,
    now: i64,
    found: &mut Found,
) {
    for r in recent {
        if let Some(c) = found.existing(r.item) {
            c.recent = true;
            c.personal = r.weight * r.row.map_or(1.0, |row| due_factor(models, &row, now));
            c.purchases = r.row.map_or(0, |row| row.purchases);
            c.excluded = !admitted(task, r.row.as_ref());
        }
    }
    let apply = |found: &mut Found, row: Row| {
        if let Some(c) = found.existing(row.item).filter(|c| !c.recent) {
            c.personal = history.normalized(&row) * due_factor(models, &row, now);
            c.purchases = row.purchases;
            c.excluded = !admitted(task, Some(&row));
        }
    };
    let Some(user) = history.user else {
        return;
    };
    // Few touched items against a long history: look each up; otherwise one
    // pass over the history's item column.
    let rows = history.len();
    let lookups = found.touched.len() * (usize::BITS - rows.leading_zeros()) as usize;
    if lookups < rows {
        for i in 0..found.touched.len() {
            let item = found.touched[i];
            if let Some(row) = models.histories.find(user, item) {
                apply(found, row);
            }
        }
    } else {
        for (at, &item) in models.histories.items(user).iter().enumerate() {
            if found.contains(item) {
                apply(found, models.histories.row_at(user, at));
            }
        }
    }
}

/// The collaborative part: each seed's neighbours, weighted by the seed.
/// With `only_touched`, only items already in `found` collect it.
fn collaborative_parts(models: &Models, seeds: &[Seed], only_touched: bool, found: &mut Found) {
    for seed in seeds {
        let (items, similarities) = models.collaborative.of(seed.item);
        for (&item, &similarity) in items.iter().zip(similarities) {
            let contribution = seed.weight * similarity;
            let c = if only_touched {
                match found.existing(item) {
                    Some(c) => c,
                    None => continue,
                }
            } else {
                found.entry(item)
            };
            c.collaborative += contribution;
            if c.strongest_seed.is_none_or(|(best, _)| contribution > best) {
                c.strongest_seed = Some((contribution, seed.item));
            }
        }
    }
}

/// The weights of the blend's three parts for `task`.
struct Blend {
    personal: f32,
    collaborative: f32,
    popularity: f32,
    /// The largest collaborative part among the candidates (it normalizes them).
    top_collaborative: f32,
}

impl Blend {
    fn new(models: &Models, task: Task, found: &Found) -> Self {
        let config = &models.config;
        let (collaborative, popularity) = match task {
            Task::NextBasket => (config.collaborative_weight, config.popularity_weight),
            Task::Discovery => (
                config.discovery_collaborative_weight,
                config.discovery_popularity_weight,
            ),
        };
        Blend {
            personal: config.personal_weight,
            collaborative,
            popularity,
            top_collaborative: found
                .iter()
                .filter(|(_, c)| !c.excluded)
                .map(|(_, c)| c.collaborative)
                .fold(0.0f32, f32::max),
        }
    }

    /// A candidate's parts as one score and the reason that weighed most.
    fn score(&self, models: &Models, item: ItemIx, c: &Candidate) -> Scored {
        let personal = self.personal * c.personal;
        let collaborative = if self.top_collaborative > 0.0 {
            self.collaborative * c.collaborative / self.top_collaborative
        } else {
            0.0
        };
        let popular = self.popularity * models.popularity.normalized(item);
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
    }

    /// The most a history item the neighbours did not touch can score, with
    /// `weight` its normalized weight (the cadence damping is at most 1 and
    /// popularity's part is at most its weight).
    fn bound(&self, weight: f32) -> f32 {
        self.personal * weight + 0.0 + self.popularity
    }

    fn all(&self, models: &Models, found: &Found) -> Vec<Scored> {
        found
            .iter()
            .filter(|(_, c)| !c.excluded)
            .map(|(item, c)| self.score(models, item, c))
            .collect()
    }
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
    if n == 0 {
        return Vec::new();
    }
    let history = History::of(models, user);
    let recent = recent_items(models, &history, recent);
    let mut ranked = with_found(models, |found| {
        let seeds = strongest_seeds(models, &history, &recent);
        for r in &recent {
            found.entry(r.item);
        }
        collaborative_parts(models, &seeds, false, found);
        personal_parts(models, &history, &recent, task, now, found);
        let blend = Blend::new(models, task, found);
        let touched = blend.all(models, found);
        // The rest of the history, strongest first, read only as far as needed.
        let mut rest = history
            .strongest_first()
            .filter(|row| !found.contains(row.item) && admitted(task, Some(row)))
            .peekable();
        let mut read = (2 * n).max(16);
        let mut pool = touched;
        loop {
            for row in rest.by_ref().take(read) {
                let candidate = Candidate {
                    personal: history.normalized(&row) * due_factor(models, &row, now),
                    purchases: row.purchases,
                    ..Candidate::default()
                };
                pool.push(blend.score(models, row.item, &candidate));
            }
            let mut ranked = pool.clone();
            top_n_kept(
                &mut ranked,
                n,
                |s| (s.score, s.item),
                |s| models.is_active(s.item) && !exclude(s.item),
            );
            let settled = match rest.peek() {
                None => true,
                Some(next) => {
                    ranked.len() == n
                        && ranked
                            .last()
                            .is_some_and(|s| s.score > blend.bound(history.normalized(next)))
                }
            };
            if settled {
                return ranked;
            }
            read *= 2;
        }
    });
    if ranked.len() < n {
        // Too little history: popularity fills the rest, after what is personal.
        let taken: IxSet<ItemIx> = ranked.iter().map(|s| s.item).collect();
        let fill = models
            .popularity
            .global
            .iter()
            .copied()
            .filter(|&item| {
                !taken.contains(&item)
                    && admitted(task, history.find(item).as_ref())
                    && !exclude(item)
            })
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
    candidates: &[ItemIx],
) -> Vec<Scored> {
    let history = History::of(models, user);
    let recent = recent_items(models, &history, recent);
    let mut ranked = with_found(models, |found| {
        for &item in candidates {
            if item < models.items() {
                found.entry(item);
            }
        }
        let seeds = strongest_seeds(models, &history, &recent);
        collaborative_parts(models, &seeds, true, found);
        personal_parts(models, &history, &recent, Task::NextBasket, now, found);
        Blend::new(models, Task::NextBasket, found).all(models, found)
    });
    // An item newer than the model has no slot: it is kept, with nothing to
    // say for it (a re-rank returns every candidate it was given).
    let newer: IxSet<ItemIx> = candidates
        .iter()
        .copied()
        .filter(|&item| item >= models.items())
        .collect();
    ranked.extend(newer.into_iter().map(|item| Scored {
        item,
        score: 0.0,
        because: Because::Popular,
    }));
    let n = ranked.len();
    top_n(&mut ranked, n, |s| (s.score, s.item));
    ranked
}

#[cfg(test)]
mod tests;
