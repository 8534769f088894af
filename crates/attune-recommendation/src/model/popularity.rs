//! Trending: every interaction weighted by its signal and halved every
//! half-life, so last week's best-sellers beat last year's. Lists are kept
//! sorted, globally and per category (every level of an item's path).

use super::config::ModelConfig;
use super::time::decay;
use super::topk::best_first;
use super::{CategoryIx, Interaction, ItemFacts, ItemIx, Signal};

/// Items sorted best first, per key, in one flat array.
#[derive(Debug, Default)]
pub(crate) struct Lists {
    offsets: Vec<u32>,
    items: Vec<ItemIx>,
}

impl Lists {
    /// Builds one list per key in `0..keys` from (key, item) pairs, each list
    /// ordered by `score` best first.
    pub(crate) fn build(keys: usize, mut pairs: Vec<(u32, ItemIx)>, score: &[f32]) -> Lists {
        pairs.sort_unstable_by(|a, b| {
            a.0.cmp(&b.0)
                .then(score[b.1 as usize].total_cmp(&score[a.1 as usize]))
                .then(a.1.cmp(&b.1))
        });
        pairs.dedup();
        let mut offsets = vec![0u32; keys + 1];
        for &(key, _) in &pairs {
            offsets[key as usize + 1] += 1;
        }
        for k in 0..keys {
            offsets[k + 1] += offsets[k];
        }
        Lists {
            offsets,
            items: pairs.into_iter().map(|(_, item)| item).collect(),
        }
    }

    pub(crate) fn of(&self, key: u32) -> &[ItemIx] {
        let k = key as usize;
        if k + 1 >= self.offsets.len() {
            return &[];
        }
        &self.items[self.offsets[k] as usize..self.offsets[k + 1] as usize]
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.offsets.capacity() * 4 + self.items.capacity() * 4
    }
}

#[derive(Debug, Default)]
pub(crate) struct Popularity {
    /// Per item, never negative.
    pub score: Vec<f32>,
    /// The highest score (1.0 when nothing scored, so dividing by it is safe).
    pub max: f32,
    /// Active items with a score, best first.
    pub global: Vec<ItemIx>,
    /// Per category: its active items (scored or not: a new item still
    /// belongs to its category), best first.
    pub by_category: Lists,
}

impl Popularity {
    pub(crate) fn train(
        items: &[ItemFacts],
        interactions: &[Interaction],
        config: &ModelConfig,
        now: i64,
    ) -> Popularity {
        let signals = &config.signals;
        let mut score = vec![0.0f32; items.len()];
        for event in interactions {
            let weight = match event.signal {
                Signal::View => signals.view,
                Signal::CartAdd => signals.cart_add,
                Signal::CartRemove => signals.cart_remove,
                Signal::Purchase => signals.purchase,
                Signal::Return => -signals.purchase,
                Signal::RecommendationClick => signals.recommendation_click,
            };
            score[event.item as usize] +=
                weight * decay(now - event.time, config.popularity_half_life_days);
        }
        for s in &mut score {
            *s = s.max(0.0);
        }
        let max = score.iter().copied().fold(0.0f32, f32::max);
        let mut global: Vec<ItemIx> = (0..items.len())
            .filter(|&i| items[i].active && score[i] > 0.0)
            .filter_map(|i| ItemIx::try_from(i).ok())
            .collect();
        best_first(&mut global, |&i| (score[i as usize], i));
        let categories = items
            .iter()
            .flat_map(|facts| facts.categories.iter().map(|&c| c as usize + 1))
            .max()
            .unwrap_or(0);
        let pairs: Vec<(CategoryIx, ItemIx)> = items
            .iter()
            .enumerate()
            .filter(|(_, facts)| facts.active)
            .flat_map(|(i, facts)| {
                let item = ItemIx::try_from(i).unwrap_or(ItemIx::MAX);
                facts.categories.iter().map(move |&c| (c, item))
            })
            .collect();
        let by_category = Lists::build(categories, pairs, &score);
        Popularity {
            score,
            max: if max > 0.0 { max } else { 1.0 },
            global,
            by_category,
        }
    }

    /// The score in `[0, 1]`.
    pub(crate) fn normalized(&self, item: ItemIx) -> f32 {
        self.score.get(item as usize).map_or(0.0, |s| s / self.max)
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.score.capacity() * 4 + self.global.capacity() * 4 + self.by_category.memory_bytes()
    }
}
