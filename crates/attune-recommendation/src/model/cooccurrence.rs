//! Item-to-item neighbours from groups of items seen together (a customer's
//! items, a basket, a browsing session): the collaborative model, bought
//! together and viewed together. Counts are normalized so that best-sellers,
//! which co-occur with everything, do not head every list.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::ItemIx;
use super::topk::top_n;

/// Groups of distinct items (sorted), in one flat array.
#[derive(Debug)]
pub(crate) struct Groups {
    offsets: Vec<usize>,
    items: Vec<ItemIx>,
}

impl Default for Groups {
    fn default() -> Self {
        Groups {
            offsets: vec![0],
            items: Vec::new(),
        }
    }
}

impl Groups {
    /// Adds a group of distinct items; a group of one links nothing and is skipped.
    pub(crate) fn push(&mut self, items: &[ItemIx]) {
        if items.len() < 2 {
            return;
        }
        self.items.extend_from_slice(items);
        self.offsets.push(self.items.len());
    }

    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    pub(crate) fn group(&self, g: usize) -> &[ItemIx] {
        &self.items[self.offsets[g]..self.offsets[g + 1]]
    }

    /// Every group's items, one after the other.
    pub(crate) fn all_items(&self) -> &[ItemIx] {
        &self.items
    }
}

/// How a co-occurrence count becomes a similarity.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Normalization {
    /// `c(i, j) / (sqrt(n(i) n(j)) + shrink)`.
    Cosine { shrink: f32 },
    /// RP3beta: each group weighs `len^-alpha`, the walk from `i` is divided by
    /// `n(i)^alpha`, and the target by its popularity `n(j)^beta`.
    Rp3Beta { alpha: f32, beta: f32 },
}

/// Each item's best neighbours, best first, in flat arrays.
#[derive(Debug)]
pub(crate) struct Neighbours {
    offsets: Vec<u32>,
    items: Vec<ItemIx>,
    scores: Vec<f32>,
}

impl Neighbours {
    /// The neighbours of `item` and their similarities; none for an unknown item.
    pub(crate) fn of(&self, item: ItemIx) -> (&[ItemIx], &[f32]) {
        let i = item as usize;
        if i + 1 >= self.offsets.len() {
            return (&[], &[]);
        }
        let range = self.offsets[i] as usize..self.offsets[i + 1] as usize;
        (&self.items[range.clone()], &self.scores[range])
    }

    /// Flattens one list per item (best first already).
    pub(crate) fn from_lists(lists: impl IntoIterator<Item = NeighbourList>) -> Neighbours {
        let mut offsets = vec![0u32];
        let mut items = Vec::new();
        let mut scores = Vec::new();
        for list in lists {
            for (j, s) in list {
                items.push(j);
                scores.push(s);
            }
            offsets.push(u32::try_from(items.len()).unwrap_or(u32::MAX));
        }
        items.shrink_to_fit();
        scores.shrink_to_fit();
        Neighbours {
            offsets,
            items,
            scores,
        }
    }

    /// Item `item`'s list, owned.
    pub(crate) fn list(&self, item: ItemIx) -> NeighbourList {
        let (items, scores) = self.of(item);
        items.iter().copied().zip(scores.iter().copied()).collect()
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.offsets.capacity() * 4 + self.items.capacity() * 4 + self.scores.capacity() * 4
    }

    /// Every pair, as (item, neighbour, similarity): for tests and the version hash.
    #[cfg(test)]
    pub(crate) fn pairs(&self) -> Vec<(ItemIx, ItemIx, f32)> {
        let mut pairs = Vec::new();
        for i in 0..self.offsets.len().saturating_sub(1) {
            let item = ItemIx::try_from(i).expect("item indexes fit u32");
            let (items, scores) = self.of(item);
            pairs.extend(items.iter().zip(scores).map(|(&j, &s)| (item, j, s)));
        }
        pairs
    }
}

/// One item's neighbours and similarities, best first.
pub(crate) type NeighbourList = Vec<(ItemIx, f32)>;

/// Items handed to one worker at a time: small enough to balance skewed items
/// over the threads, large enough to keep the hand-out cheap.
const CHUNK: usize = 256;

/// The best `k` neighbours of every item in `0..n_items`.
pub(crate) fn neighbours(
    groups: &Groups,
    n_items: usize,
    normalization: Normalization,
    k: usize,
    threads: usize,
) -> Neighbours {
    let mut count = vec![0u32; n_items];
    for &item in &groups.items {
        count[item as usize] += 1;
    }
    // Item -> the groups it is in.
    let mut starts = vec![0usize; n_items + 1];
    for i in 0..n_items {
        starts[i + 1] = starts[i] + count[i] as usize;
    }
    let mut fill = starts.clone();
    let mut memberships = vec![0u32; groups.items.len()];
    for g in 0..groups.len() {
        for &item in groups.group(g) {
            memberships[fill[item as usize]] = u32::try_from(g).unwrap_or(u32::MAX);
            fill[item as usize] += 1;
        }
    }
    let group_weight: Vec<f32> = (0..groups.len())
        .map(|g| match normalization {
            Normalization::Cosine { .. } => 1.0,
            Normalization::Rp3Beta { alpha, .. } => (groups.group(g).len() as f32).powf(-alpha),
        })
        .collect();

    let next = AtomicUsize::new(0);
    let done: Mutex<Vec<(usize, Vec<NeighbourList>)>> = Mutex::new(Vec::new());
    let threads = threads.max(1).min(n_items.div_ceil(CHUNK).max(1));
    std::thread::scope(|scope| {
        for _ in 0..threads {
            scope.spawn(|| {
                let mut scratch = vec![0.0f32; n_items];
                let mut touched: Vec<ItemIx> = Vec::new();
                loop {
                    let start = next.fetch_add(CHUNK, Ordering::Relaxed);
                    if start >= n_items {
                        break;
                    }
                    let end = (start + CHUNK).min(n_items);
                    let mut lists = Vec::with_capacity(end - start);
                    for i in start..end {
                        for &g in &memberships[starts[i]..starts[i + 1]] {
                            let weight = group_weight[g as usize];
                            for &j in groups.group(g as usize) {
                                if j as usize != i {
                                    if scratch[j as usize] == 0.0 {
                                        touched.push(j);
                                    }
                                    scratch[j as usize] += weight;
                                }
                            }
                        }
                        let mut list: NeighbourList = touched
                            .drain(..)
                            .map(|j| {
                                let together = std::mem::take(&mut scratch[j as usize]);
                                let (ci, cj) = (count[i] as f32, count[j as usize] as f32);
                                let score = match normalization {
                                    Normalization::Cosine { shrink } => {
                                        together / ((ci * cj).sqrt() + shrink)
                                    }
                                    Normalization::Rp3Beta { alpha, beta } => {
                                        together * ci.powf(-alpha) * cj.powf(-beta)
                                    }
                                };
                                (j, score)
                            })
                            .collect();
                        top_n(&mut list, k, |&(j, s)| (s, j));
                        lists.push(list);
                    }
                    done.lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner)
                        .push((start, lists));
                }
            });
        }
    });
    let mut chunks = done
        .into_inner()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    chunks.sort_unstable_by_key(|(start, _)| *start);

    let mut offsets = Vec::with_capacity(n_items + 1);
    offsets.push(0u32);
    let mut items = Vec::new();
    let mut scores = Vec::new();
    for list in chunks.into_iter().flat_map(|(_, lists)| lists) {
        for (j, s) in list {
            items.push(j);
            scores.push(s);
        }
        offsets.push(u32::try_from(items.len()).unwrap_or(u32::MAX));
    }
    // Items past the last chunk (none) and an empty catalogue still get rows.
    offsets.resize(n_items + 1, u32::try_from(items.len()).unwrap_or(u32::MAX));
    items.shrink_to_fit();
    scores.shrink_to_fit();
    Neighbours {
        offsets,
        items,
        scores,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn groups(lists: &[&[ItemIx]]) -> Groups {
        let mut groups = Groups::default();
        for list in lists {
            groups.push(list);
        }
        groups
    }

    #[test]
    fn cosine_keeps_a_best_seller_from_heading_every_list() {
        // 0 and 1 go together twice; 9 (a best-seller) is in every basket.
        let g = groups(&[&[0, 1, 9], &[0, 1, 9], &[0, 9], &[2, 9], &[3, 9], &[4, 9]]);
        let n = neighbours(&g, 10, Normalization::Cosine { shrink: 0.0 }, 5, 2);
        let (items, scores) = n.of(0);
        assert_eq!(items, &[1, 9]);
        // c(0,1) = 2, n(0) = 3, n(1) = 2: 2 / sqrt(6); c(0,9) = 3, n(9) = 6: 3 / sqrt(18).
        assert!((scores[0] - 2.0 / 6f32.sqrt()).abs() < 1e-6);
        assert!((scores[1] - 3.0 / 18f32.sqrt()).abs() < 1e-6);
        assert_eq!(n.of(5), (&[][..], &[][..]));
        assert_eq!(n.of(42), (&[][..], &[][..]));
    }

    #[test]
    fn rp3beta_divides_by_the_target_popularity() {
        let g = groups(&[&[0, 1], &[0, 9], &[2, 9], &[3, 9]]);
        let n = neighbours(
            &g,
            10,
            Normalization::Rp3Beta {
                alpha: 1.0,
                beta: 1.0,
            },
            5,
            1,
        );
        let (items, scores) = n.of(0);
        assert_eq!(items, &[1, 9]);
        // Each walk: group weight 1/2, from 0 (n = 2) 1/2, to 1 (n = 1) or 9 (n = 3).
        assert!((scores[0] - 0.25).abs() < 1e-6);
        assert!((scores[1] - 0.25 / 3.0).abs() < 1e-6);
    }

    #[test]
    fn threads_do_not_change_the_answer() {
        let mut g = Groups::default();
        for u in 0..2000u32 {
            let mut items: Vec<ItemIx> = (0..5).map(|k| (u * 7 + k * 13) % 900).collect();
            items.sort_unstable();
            items.dedup();
            g.push(&items);
        }
        let one = neighbours(&g, 1000, Normalization::Cosine { shrink: 1.0 }, 10, 1);
        let two = neighbours(&g, 1000, Normalization::Cosine { shrink: 1.0 }, 10, 2);
        assert_eq!(one.pairs(), two.pairs());
        assert_eq!(one.of(999), (&[][..], &[][..]));
    }
}
