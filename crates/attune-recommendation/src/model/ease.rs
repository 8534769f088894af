//! EASE (Steck, 2019) over the head of the catalogue: the item-item weights
//! `B = I - P / diag(P)` with `P = (XᵀX + λI)⁻¹`, X the customers' binary
//! item sets. The dense Gram matrix and its inverse cost `head² × 8` bytes
//! while training, so only the `head` items bought by the most customers take
//! part; the snapshot keeps each head item's strongest positive weights as a
//! neighbour list, like item-KNN's, and the tail keeps item-KNN's lists.

use super::ItemIx;
use super::cooccurrence::{Groups, NeighbourList};
use super::topk::top_n;

/// Pivots applied to a row while it stays in cache (see [`invert_spd`]).
const BLOCK: usize = 64;

/// The head: up to `head` items that are in the most groups (ties: smaller
/// index), sorted by index; items in no group never join.
fn head_items(groups: &Groups, n_items: usize, head: usize) -> Vec<ItemIx> {
    let mut count = vec![0u32; n_items];
    for &item in groups.all_items() {
        count[item as usize] += 1;
    }
    let mut items: Vec<ItemIx> = (0..n_items)
        .filter(|&i| count[i] > 0)
        .map(|i| ItemIx::try_from(i).expect("item indexes fit u32"))
        .collect();
    top_n(&mut items, head, |&i| (count[i as usize] as f32, i));
    items.sort_unstable();
    items
}

/// Inverts the symmetric positive definite `n × n` matrix `a` (row major) in
/// place by Gauss-Jordan elimination without pivoting (safe for SPD). Pivots
/// are applied in blocks of [`BLOCK`] so each row is read from memory once per
/// block rather than once per pivot, and rows are shared out over `threads`.
/// Fails on a pivot that is not positive (the matrix is not SPD).
pub(crate) fn invert_spd(a: &mut [f64], n: usize, threads: usize) -> Result<(), String> {
    assert_eq!(a.len(), n * n, "a square matrix");
    // Pivot `k` on a row: `f = row[k]; row[k] = 0; row -= f * pivot_row`,
    // where the pivot row is row k after its own step (scaled by 1/a_kk, with
    // 1/a_kk at k). This is the textbook in-place Gauss-Jordan inverse.
    fn apply(row: &mut [f64], k: usize, pivot_row: &[f64]) {
        let f = row[k];
        if f != 0.0 {
            row[k] = 0.0;
            for (x, p) in row.iter_mut().zip(pivot_row) {
                *x -= f * p;
            }
        }
    }
    let threads = threads.max(1);
    let mut k0 = 0;
    while k0 < n {
        let kb = BLOCK.min(n - k0);
        let mut pivots = vec![0.0f64; kb * n];
        for t in 0..kb {
            let k = k0 + t;
            let mut row = a[k * n..(k + 1) * n].to_vec();
            for s in 0..t {
                apply(&mut row, k0 + s, &pivots[s * n..(s + 1) * n]);
            }
            let pivot = row[k];
            if !(pivot.is_finite() && pivot > 0.0) {
                return Err(format!("the Gram matrix is not positive definite at {k}"));
            }
            let p = 1.0 / pivot;
            row.iter_mut().for_each(|x| *x *= p);
            row[k] = p;
            pivots[t * n..(t + 1) * n].copy_from_slice(&row);
        }
        let rows_per_thread = n.div_ceil(threads).max(1);
        let pivots = &pivots;
        std::thread::scope(|scope| {
            for (chunk, rows) in a.chunks_mut(rows_per_thread * n).enumerate() {
                scope.spawn(move || {
                    for (r, row) in rows.chunks_mut(n).enumerate() {
                        let i = chunk * rows_per_thread + r;
                        let first = if (k0..k0 + kb).contains(&i) {
                            let t = i - k0;
                            row.copy_from_slice(&pivots[t * n..(t + 1) * n]);
                            t + 1
                        } else {
                            0
                        };
                        for t in first..kb {
                            apply(row, k0 + t, &pivots[t * n..(t + 1) * n]);
                        }
                    }
                });
            }
        });
        k0 += kb;
    }
    Ok(())
}

/// EASE's strongest `k` positive weights from each head item (a seed) to other
/// head items, indexed by item (empty lists for the tail), and which items are
/// in the head.
pub(crate) fn ease(
    groups: &Groups,
    n_items: usize,
    lambda: f64,
    head: usize,
    k: usize,
    threads: usize,
) -> Result<(Vec<NeighbourList>, Vec<bool>), String> {
    let items = head_items(groups, n_items, head);
    let n = items.len();
    let mut at = vec![u32::MAX; n_items];
    for (h, &item) in items.iter().enumerate() {
        at[item as usize] = u32::try_from(h).expect("head fits u32");
    }
    let mut gram = vec![0.0f64; n * n];
    let mut mine: Vec<usize> = Vec::new();
    for g in 0..groups.len() {
        mine.clear();
        mine.extend(
            groups
                .group(g)
                .iter()
                .map(|&i| at[i as usize])
                .filter(|&h| h != u32::MAX)
                .map(|h| h as usize),
        );
        for &a in &mine {
            let row = &mut gram[a * n..(a + 1) * n];
            for &b in &mine {
                row[b] += 1.0;
            }
        }
    }
    for h in 0..n {
        gram[h * n + h] += lambda;
    }
    invert_spd(&mut gram, n, threads)?;
    let p = gram;
    let mut lists: Vec<NeighbourList> = vec![Vec::new(); n_items];
    let mut in_head = vec![false; n_items];
    for (i, &seed) in items.iter().enumerate() {
        in_head[seed as usize] = true;
        let row = &p[i * n..(i + 1) * n];
        let mut list: NeighbourList = items
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != i)
            .map(|(j, &target)| (target, (-row[j] / p[j * n + j]) as f32))
            .filter(|&(_, w)| w > 0.0)
            .collect();
        top_n(&mut list, k, |&(j, w)| (w, j));
        lists[seed as usize] = list;
    }
    Ok((lists, in_head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gauss_jordan_inverts_a_positive_definite_matrix() {
        // A = MᵀM + I for a fixed M, larger than one block of pivots.
        let n = 150;
        let m: Vec<f64> = (0..n * n)
            .map(|x| ((x * 37 % 101) as f64) / 101.0)
            .collect();
        let mut a = vec![0.0f64; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|r| m[r * n + i] * m[r * n + j]).sum::<f64>()
                    + if i == j { 1.0 } else { 0.0 };
            }
        }
        for threads in [1, 3] {
            let mut inverse = a.clone();
            invert_spd(&mut inverse, n, threads).expect("SPD");
            for i in 0..n {
                for j in 0..n {
                    let product: f64 = (0..n).map(|r| a[i * n + r] * inverse[r * n + j]).sum();
                    let expected = if i == j { 1.0 } else { 0.0 };
                    assert!((product - expected).abs() < 1e-8, "({i}, {j}): {product}");
                }
            }
        }
        let mut not_spd = vec![0.0, 1.0, 1.0, 0.0];
        assert!(invert_spd(&mut not_spd, 2, 1).is_err());
    }

    #[test]
    fn ease_links_items_bought_by_the_same_customers_within_the_head() {
        let mut groups = Groups::default();
        for _ in 0..5 {
            groups.push(&[0, 1]);
        }
        for _ in 0..5 {
            groups.push(&[2, 3]);
        }
        groups.push(&[0, 4]); // 4 is bought once: the tail when the head is 4 items
        let (lists, in_head) = ease(&groups, 6, 1.0, 4, 10, 2).expect("trains");
        assert_eq!(in_head, vec![true, true, true, true, false, false]);
        assert_eq!(lists[0].first().map(|&(j, _)| j), Some(1));
        assert_eq!(lists[2].first().map(|&(j, _)| j), Some(3));
        assert!(lists[0].iter().all(|&(j, _)| j != 2 && j != 3 && j != 4));
        assert!(lists[4].is_empty() && lists[5].is_empty());
    }
}
