//! The ranking that reads only the head of a history must answer exactly as
//! scoring every item of it did: the reference below is that full ranking
//! (the blend as it was before the head-only reading), compared on random
//! snapshots, sessions, filters and knobs.

use super::*;
use crate::model::config::{Collaborative, ModelConfig};
use crate::model::time::MICROS_PER_DAY;
use crate::model::{Interaction, ItemFacts, Signal, TrainingData};

/// The full ranking: every history row is a candidate.
mod reference {
    use super::super::due_factor;
    use crate::model::IxSet;
    use crate::model::history::Row;
    use crate::model::snapshot::Models;
    use crate::model::topk::{top_n, top_n_kept};
    use crate::model::{Because, ItemIx, Scored, Task, UserIx};
    use std::collections::BTreeMap;

    #[derive(Clone, Copy)]
    struct Seed {
        item: ItemIx,
        weight: f32,
        purchases: u32,
        row: Option<Row>,
    }

    #[derive(Clone, Copy, Default)]
    struct Candidate {
        personal: f32,
        purchases: u32,
        collaborative: f32,
        strongest_seed: Option<(f32, ItemIx)>,
    }

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

    fn candidates(
        models: &Models,
        user: Option<UserIx>,
        recent: &[(ItemIx, f32)],
        task: Task,
        now: i64,
        within: Option<&IxSet<ItemIx>>,
        found: &mut BTreeMap<ItemIx, Candidate>,
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
                let c = found.entry(seed.item).or_default();
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
                let c = found.entry(item).or_default();
                c.collaborative += contribution;
                if c.strongest_seed.is_none_or(|(best, _)| contribution > best) {
                    c.strongest_seed = Some((contribution, seed.item));
                }
            }
        }
        bought
    }

    fn finish(models: &Models, task: Task, found: &BTreeMap<ItemIx, Candidate>) -> Vec<Scored> {
        let config = &models.config;
        let (collaborative_weight, popularity_weight) = match task {
            Task::NextBasket => (config.collaborative_weight, config.popularity_weight),
            Task::Discovery => (
                config.discovery_collaborative_weight,
                config.discovery_popularity_weight,
            ),
        };
        let top_collaborative = found
            .values()
            .map(|c| c.collaborative)
            .fold(0.0f32, f32::max);
        found
            .iter()
            .map(|(&item, c)| {
                let personal = config.personal_weight * c.personal;
                let collaborative = if top_collaborative > 0.0 {
                    collaborative_weight * c.collaborative / top_collaborative
                } else {
                    0.0
                };
                let popular = popularity_weight * models.popularity.normalized(item);
                let because = if personal >= collaborative && personal >= popular && personal > 0.0
                {
                    if c.purchases > 0 {
                        Because::OwnHistory {
                            purchases: c.purchases,
                        }
                    } else {
                        Because::Personal
                    }
                } else if let (true, Some((_, seed))) = (collaborative >= popular, c.strongest_seed)
                {
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

    pub(super) fn recommend(
        models: &Models,
        user: Option<UserIx>,
        recent: &[(ItemIx, f32)],
        task: Task,
        now: i64,
        n: usize,
        exclude: &dyn Fn(ItemIx) -> bool,
    ) -> Vec<Scored> {
        let mut found = BTreeMap::new();
        let bought = candidates(models, user, recent, task, now, None, &mut found);
        let mut ranked = finish(models, task, &found);
        top_n_kept(
            &mut ranked,
            n,
            |s| (s.score, s.item),
            |s| models.is_active(s.item) && !exclude(s.item),
        );
        if ranked.len() < n {
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

    pub(super) fn score(
        models: &Models,
        user: Option<UserIx>,
        recent: &[(ItemIx, f32)],
        now: i64,
        candidates_in: &[ItemIx],
    ) -> Vec<Scored> {
        let within: IxSet<ItemIx> = candidates_in.iter().copied().collect();
        let mut found = BTreeMap::new();
        candidates(
            models,
            user,
            recent,
            Task::NextBasket,
            now,
            Some(&within),
            &mut found,
        );
        for &item in &within {
            if item < models.items() {
                found.entry(item).or_default();
            }
        }
        let mut ranked = finish(models, Task::NextBasket, &found);
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
}

const DAY: i64 = MICROS_PER_DAY;
const NOW: i64 = 20_000 * DAY;
const ITEMS: u32 = 90;
const USERS: u32 = 40;

/// A small deterministic generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// Low indexes far more often than high ones.
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.below(n);
        self.below(a + 1)
    }
}

/// Random customers with long and short histories of every signal, baskets
/// bought whole (so many items tie on weight) and some delisted items.
fn random_models(rng: &mut Rng, config: &ModelConfig) -> Models {
    let mut interactions = Vec::new();
    for user in 0..USERS {
        let baskets = rng.below(if user < 4 { 30 } else { 6 });
        for basket in 1..=baskets {
            let day = rng.below(300) as i64;
            for _ in 0..1 + rng.below(8) {
                interactions.push(Interaction {
                    user,
                    item: rng.skewed(u64::from(ITEMS)) as ItemIx,
                    signal: Signal::Purchase,
                    time: NOW - day * DAY,
                    basket: basket as u32,
                    quantity: 1,
                });
            }
        }
        for _ in 0..rng.below(if user < 4 { 80 } else { 12 }) {
            let signal = match rng.below(10) {
                0..=5 => Signal::View,
                6 | 7 => Signal::CartAdd,
                8 => Signal::CartRemove,
                _ => Signal::Return,
            };
            interactions.push(Interaction {
                user,
                item: rng.skewed(u64::from(ITEMS)) as ItemIx,
                signal,
                time: NOW - rng.below(300 * 24) as i64 * DAY / 24,
                basket: 0,
                quantity: 1,
            });
        }
    }
    let items = (0..ITEMS)
        .map(|i| ItemFacts {
            active: i % 11 != 5,
            ..ItemFacts::default()
        })
        .collect();
    let data = TrainingData {
        users: USERS,
        items,
        interactions,
        now: NOW,
    };
    Models::train(&data, config).expect("random data trains")
}

fn configs() -> Vec<ModelConfig> {
    let base = ModelConfig {
        threads: 1,
        ..ModelConfig::default()
    };
    vec![
        base.clone(),
        ModelConfig {
            seeds: 3,
            neighbours: 3,
            collaborative: Collaborative::ItemKnn { shrink: 1.0 },
            ..base.clone()
        },
        ModelConfig {
            seeds: 1,
            neighbours: 2,
            due_floor: 0.2,
            popularity_weight: 2.0,
            collaborative: Collaborative::Rp3Beta {
                alpha: 1.0,
                beta: 0.3,
            },
            ..base.clone()
        },
        ModelConfig {
            recent_weight: 0.0,
            neighbours: 5,
            personal_weight: 0.1,
            discovery_popularity_weight: 3.0,
            ..base
        },
    ]
}

#[test]
fn reading_the_head_of_the_history_answers_as_scoring_all_of_it() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut compared = 0;
    for config in configs() {
        let models = random_models(&mut rng, &config);
        for user in (0..USERS + 2).map(Some).chain([None]) {
            let recent: Vec<(ItemIx, f32)> = (0..rng.below(5))
                .map(|_| {
                    let item = rng.skewed(u64::from(ITEMS) + 3) as ItemIx;
                    (item, [0.0, 0.5, 1.0, 3.0][rng.below(4) as usize])
                })
                .collect();
            let refused = rng.below(7) + 1;
            let exclude = move |item: ItemIx| u64::from(item) % refused == 0;
            for task in [Task::NextBasket, Task::Discovery] {
                for n in [1, 2, 5, 10, 40, 200] {
                    let expected =
                        reference::recommend(&models, user, &recent, task, NOW, n, &exclude);
                    let got = recommend(&models, user, &recent, task, NOW, n, &exclude);
                    assert_eq!(
                        got, expected,
                        "user {user:?}, task {task:?}, n {n}, {config:?}"
                    );
                    compared += 1;
                }
            }
            let candidates: Vec<ItemIx> = (0..rng.below(30))
                .map(|_| rng.below(u64::from(ITEMS) + 5) as ItemIx)
                .collect();
            assert_eq!(
                score(&models, user, &recent, NOW, &candidates),
                reference::score(&models, user, &recent, NOW, &candidates),
                "user {user:?}, candidates {candidates:?}"
            );
        }
    }
    assert!(compared > 1000);
}
