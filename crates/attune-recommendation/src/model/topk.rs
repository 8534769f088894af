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

/// The best `n` of `items` that `keep` admits, best first: the same list as
/// filtering every item and then taking [`top_n`], but `keep` runs only on
/// the best few (doubling the window while too many are refused), because on
/// the serving path it reads the catalogue and is far dearer than a score.
pub(crate) fn top_n_kept<T>(
    items: &mut Vec<T>,
    n: usize,
    key: impl Fn(&T) -> (f32, ItemIx) + Copy,
    mut keep: impl FnMut(&T) -> bool,
) {
    let order = |a: &T, b: &T| {
        let (sa, ia) = key(a);
        let (sb, ib) = key(b);
        sb.total_cmp(&sa).then(ia.cmp(&ib))
    };
    let mut window = (2 * n).max(16);
    let mut judged = 0;
    let mut kept = 0;
    while kept < n && judged < items.len() {
        let end = window.min(items.len());
        // items[judged..] hold the unjudged rest; bring its best (end - judged)
        // to the front of that rest, in order.
        let rest = &mut items[judged..];
        let take = end - judged;
        if rest.len() > take {
            rest.select_nth_unstable_by(take - 1, order);
        }
        rest[..take].sort_unstable_by(order);
        for i in judged..end {
            if kept < n && keep(&items[i]) {
                items.swap(kept, i);
                kept += 1;
            }
        }
        judged = end;
        window *= 2;
    }
    items.truncate(kept);
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

    #[test]
    fn keeping_lazily_equals_filtering_first() {
        // Scores with ties, and a filter refusing runs of the best items, so
        // the window has to grow several times.
        let all: Vec<(ItemIx, f32)> = (0..500u32)
            .map(|i| (i, ((i * 7919) % 97) as f32 / 10.0))
            .collect();
        for n in [1, 5, 16, 40, 499, 600] {
            for refused in [0u32, 3, 60, 400] {
                let keep = |&(i, s): &(ItemIx, f32)| !(s > 5.0 && i % 500 < refused) && i % 3 != 0;
                let mut expected: Vec<_> = all.iter().copied().filter(|x| keep(x)).collect();
                top_n(&mut expected, n, |&(i, s)| (s, i));
                let mut lazy = all.clone();
                top_n_kept(&mut lazy, n, |&(i, s)| (s, i), keep);
                assert_eq!(lazy, expected, "n {n}, refused {refused}");
            }
        }
    }
}
