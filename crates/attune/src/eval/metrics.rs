//! Ranking quality at a cut-off: NDCG, precision, recall and hit rate (binary
//! relevance, averaged over users) and catalogue coverage.

use attune_recommendation::model::ItemIx;

/// The averages over every user a model was asked about.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub ndcg: f64,
    pub precision: f64,
    pub recall: f64,
    pub hit_rate: f64,
    /// Distinct items recommended, over the catalogue.
    pub coverage: f64,
    pub users: usize,
}

/// Sums as users are scored.
#[derive(Debug)]
pub struct Tally {
    k: usize,
    users: usize,
    ndcg: f64,
    precision: f64,
    recall: f64,
    hits: usize,
    recommended: Vec<bool>,
}

impl Tally {
    pub fn new(k: usize, catalogue: usize) -> Tally {
        Tally {
            k,
            users: 0,
            ndcg: 0.0,
            precision: 0.0,
            recall: 0.0,
            hits: 0,
            recommended: vec![false; catalogue],
        }
    }

    /// Scores one user's ranking against the items that count (sorted, non-empty).
    pub fn add(&mut self, ranked: &[ItemIx], relevant: &[ItemIx]) {
        let top = &ranked[..ranked.len().min(self.k)];
        let mut dcg = 0.0;
        let mut hits = 0;
        for (rank, item) in top.iter().enumerate() {
            if let Some(seen) = self.recommended.get_mut(*item as usize) {
                *seen = true;
            }
            if relevant.binary_search(item).is_ok() {
                hits += 1;
                dcg += discount(rank);
            }
        }
        let ideal: f64 = (0..relevant.len().min(self.k)).map(discount).sum();
        self.users += 1;
        self.ndcg += if ideal > 0.0 { dcg / ideal } else { 0.0 };
        self.precision += hits as f64 / self.k as f64;
        self.recall += if relevant.is_empty() {
            0.0
        } else {
            hits as f64 / relevant.len() as f64
        };
        self.hits += usize::from(hits > 0);
    }

    pub fn summary(&self) -> Summary {
        let users = self.users.max(1) as f64;
        let catalogue = self.recommended.len().max(1) as f64;
        Summary {
            ndcg: self.ndcg / users,
            precision: self.precision / users,
            recall: self.recall / users,
            hit_rate: self.hits as f64 / users,
            coverage: self.recommended.iter().filter(|&&r| r).count() as f64 / catalogue,
            users: self.users,
        }
    }
}

/// `1 / log2(rank + 2)` for a 0-based rank.
fn discount(rank: usize) -> f64 {
    1.0 / ((rank + 2) as f64).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_match_a_hand_computation() {
        let mut tally = Tally::new(3, 10);
        // Relevant {1, 2}: hit at ranks 0 and 2. DCG = 1 + 1/2; IDCG = 1 + 1/log2(3).
        tally.add(&[1, 5, 2, 7], &[1, 2]);
        // Relevant {9}: missed.
        tally.add(&[3], &[9]);
        let s = tally.summary();
        let first = 1.5 / (1.0 + 1.0 / 3f64.log2());
        assert!((s.ndcg - first / 2.0).abs() < 1e-12);
        assert!((s.precision - (2.0 / 3.0) / 2.0).abs() < 1e-12);
        assert!((s.recall - 0.5).abs() < 1e-12);
        assert!((s.hit_rate - 0.5).abs() < 1e-12);
        // Items 1, 5, 2 and 3 were shown (7 was past the cut-off).
        assert!((s.coverage - 0.4).abs() < 1e-12);
        assert_eq!(s.users, 2);
    }
}
