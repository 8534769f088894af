//! The best `n` of many scored items, deterministic on ties (lower index first).

use super::ItemIx;

/// Sorts best first: higher score, then lower item index.
pub(crate) fn best_first<T>(items: &mut [T], key: impl Fn(&T) -> (f32, ItemIx)) {
    items.sort_unstable_by(|a, b| {
        let (sa, ia) = key(a);
        let (sb, ib) = key(b);
        sb.total_cmp(&sa).then(ia.cmp(&ib))
    });
}

/// Keeps the best `n` of `items`, best first.
pub(crate) fn top_n<T>(items: &mut Vec<T>, n: usize, key: impl Fn(&T) -> (f32, ItemIx) + Copy) {
    if items.len() > n && n > 0 {
        items.select_nth_unstable_by(n - 1, |a, b| {
            let (sa, ia) = key(a);
            let (sb, ib) = key(b);
            sb.total_cmp(&sa).then(ia.cmp(&ib))
        });
    }
    items.truncate(n);
    best_first(items, key);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_best_and_breaks_ties_by_index() {
        let mut items = vec![(3, 0.5), (1, 0.9), (2, 0.5), (0, 0.1)];
        top_n(&mut items, 3, |&(i, s)| (s, i));
        assert_eq!(items, vec![(1, 0.9), (2, 0.5), (3, 0.5)]);
    }
}
