//! The content fallback for customers and items without history: items that
//! match a customer's category and brand affinities (from traits and what
//! they told us), newer and more popular ones first among equals.

use std::collections::HashMap;

use super::popularity::{Lists, Popularity};
use super::time::decay;
use super::topk::top_n;
use super::{Because, BrandIx, CategoryIx, ItemFacts, ItemIx, Scored};

/// How long a launch counts as new: its bonus halves every this many days.
const NEWNESS_HALF_LIFE_DAYS: f32 = 30.0;
/// Popularity and newness only order items of equal affinity.
const TIE_BREAK: f32 = 0.1;

#[derive(Debug, Default)]
pub(crate) struct Content {
    /// Per brand: its active items, most popular first.
    pub by_brand: Lists,
    /// Per item: how new it is at training time, in `[0, 1]`.
    pub newness: Vec<f32>,
}

impl Content {
    pub(crate) fn train(items: &[ItemFacts], popularity: &Popularity, now: i64) -> Content {
        let brands = items
            .iter()
            .filter_map(|facts| facts.brand.map(|b| b as usize + 1))
            .max()
            .unwrap_or(0);
        let pairs: Vec<(BrandIx, ItemIx)> = items
            .iter()
            .enumerate()
            .filter(|(_, facts)| facts.active)
            .filter_map(|(i, facts)| Some((facts.brand?, ItemIx::try_from(i).ok()?)))
            .collect();
        let newness = items
            .iter()
            .map(|facts| {
                facts.launch.map_or(0.0, |launch| {
                    if launch > now {
                        0.0
                    } else {
                        decay(now - launch, NEWNESS_HALF_LIFE_DAYS)
                    }
                })
            })
            .collect();
        Content {
            by_brand: Lists::build(brands, pairs, &popularity.score),
            newness,
        }
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.by_brand.memory_bytes() + self.newness.capacity() * 4
    }

    /// Items matching the affinities, best first.
    pub(crate) fn rank(
        &self,
        popularity: &Popularity,
        categories: &[(CategoryIx, f32)],
        brands: &[(BrandIx, f32)],
        n: usize,
        exclude: &dyn Fn(ItemIx) -> bool,
    ) -> Vec<Scored> {
        // Each list is sorted by popularity; walking its head is enough for the
        // top `n` once ties are broken by popularity.
        let depth = (n * 10).max(200);
        #[derive(Default)]
        struct Match {
            affinity: f32,
            category: Option<(f32, CategoryIx)>,
            brand: Option<(f32, BrandIx)>,
        }
        let mut matches: HashMap<ItemIx, Match> = HashMap::new();
        for &(category, affinity) in categories.iter().filter(|(_, a)| *a > 0.0) {
            for &item in popularity.by_category.of(category).iter().take(depth) {
                let m = matches.entry(item).or_default();
                m.affinity += affinity;
                if m.category.is_none_or(|(best, _)| affinity > best) {
                    m.category = Some((affinity, category));
                }
            }
        }
        for &(brand, affinity) in brands.iter().filter(|(_, a)| *a > 0.0) {
            for &item in self.by_brand.of(brand).iter().take(depth) {
                let m = matches.entry(item).or_default();
                m.affinity += affinity;
                if m.brand.is_none_or(|(best, _)| affinity > best) {
                    m.brand = Some((affinity, brand));
                }
            }
        }
        let mut scored: Vec<Scored> = matches
            .into_iter()
            .filter(|(item, _)| !exclude(*item))
            .map(|(item, m)| {
                let newness = self.newness.get(item as usize).copied().unwrap_or(0.0);
                let tie_break = TIE_BREAK * (popularity.normalized(item) + newness) / 2.0;
                Scored {
                    item,
                    score: m.affinity + tie_break,
                    because: Because::Content {
                        category: m.category.map(|(_, c)| c),
                        brand: m.brand.map(|(_, b)| b),
                    },
                }
            })
            .collect();
        top_n(&mut scored, n, |s| (s.score, s.item));
        scored
    }
}
