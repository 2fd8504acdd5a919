//! The off-diagonal blocks Z_i' W Z_j (i > j) of the cross-product while rows are still
//! arriving: one q_i x q_j block per pair of levels that some row carries together.
//!
//! A block is identified by its key, level_j n_i + level_i: the column-major position of the
//! block in the (levels_i x levels_j) block matrix, so that keys sorted ascending are the
//! blocks in compressed-column order (what `SparseBlocks` stores). A chunk of rows is turned
//! into sorted blocks by sorting its rows by key (a least-significant-digit radix sort, stable,
//! so rows with equal keys stay in row order) and summing runs of equal keys; its blocks then
//! join the accumulated ones by a linear merge of two sorted lists. No hashing, and the sums
//! run in a fixed order, so the result depends on the rows and the chunking only.
//!
//! MixedModels.jl forms the same blocks from its `ReMat`s at construction (`*(A::ReMat,
//! B::ReMat)`, a sparse product); lme4 through the sparse Z' Z of `Matrix`.
//!
//! All working memory (the sort's items and buffer, a chunk's blocks, the merge's output) lives
//! in a `PairScratch` that an accumulation lane keeps for its whole pass: after the first few
//! chunks, adding a chunk allocates nothing.

use crate::model::source::{Layout, RowChunk};

/// Z_i' W Z_j for one pair of terms (i > j): its blocks sorted by key, each q_i x q_j
/// column-major.
#[derive(Clone, Default, Debug, PartialEq)]
pub struct PairAccumulator {
    pub(crate) keys: Vec<u64>,
    pub(crate) values: Vec<f64>,
}

/// Reusable working memory of the pair products (see the module's documentation).
#[derive(Default)]
pub struct PairScratch {
    /// (key, row) of a chunk's rows, and the radix sort's buffer.
    rows: Vec<(u64, u32)>,
    rows_tmp: Vec<(u64, u32)>,
    /// (key, product) of a chunk's rows when the blocks are scalars, and the sort's buffer.
    scalars: Vec<(u64, f64)>,
    scalars_tmp: Vec<(u64, f64)>,
    /// A chunk's blocks, sorted by key.
    keys: Vec<u64>,
    values: Vec<f64>,
    /// The merge writes here, then swaps with the accumulator's lists.
    spare_keys: Vec<u64>,
    spare_values: Vec<f64>,
}

impl PairAccumulator {
    /// Number of blocks.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Adds a sorted list of blocks of `bs` values each; `spare` is the merge's output buffer
    /// (swapped with this accumulator's lists, so that its capacity is reused next time).
    fn merge_sorted(
        &mut self,
        keys: &[u64],
        values: &[f64],
        bs: usize,
        spare: (&mut Vec<u64>, &mut Vec<f64>),
    ) {
        if keys.is_empty() {
            return;
        }
        // Rows sorted by the second factor give chunks whose blocks all come after the
        // accumulated ones: append.
        if self.keys.last().is_none_or(|&last| last < keys[0]) {
            self.keys.extend_from_slice(keys);
            self.values.extend_from_slice(values);
            return;
        }
        let (out_keys, out_values) = spare;
        out_keys.clear();
        out_values.clear();
        out_keys.reserve(self.keys.len() + keys.len());
        out_values.reserve(self.values.len() + values.len());
        let (mut a, mut b) = (0, 0);
        while a < self.keys.len() && b < keys.len() {
            let (ka, kb) = (self.keys[a], keys[b]);
            match ka.cmp(&kb) {
                std::cmp::Ordering::Less => {
                    out_keys.push(ka);
                    out_values.extend_from_slice(&self.values[a * bs..(a + 1) * bs]);
                    a += 1;
                }
                std::cmp::Ordering::Greater => {
                    out_keys.push(kb);
                    out_values.extend_from_slice(&values[b * bs..(b + 1) * bs]);
                    b += 1;
                }
                std::cmp::Ordering::Equal => {
                    out_keys.push(ka);
                    let theirs = &values[b * bs..(b + 1) * bs];
                    let ours = &self.values[a * bs..(a + 1) * bs];
                    out_values.extend(ours.iter().zip(theirs).map(|(x, y)| x + y));
                    a += 1;
                    b += 1;
                }
            }
        }
        out_keys.extend_from_slice(&self.keys[a..]);
        out_values.extend_from_slice(&self.values[a * bs..]);
        out_keys.extend_from_slice(&keys[b..]);
        out_values.extend_from_slice(&values[b * bs..]);
        std::mem::swap(&mut self.keys, out_keys);
        std::mem::swap(&mut self.values, out_values);
    }

    /// Adds another accumulator's blocks.
    pub fn merge(&mut self, other: &PairAccumulator, bs: usize, scratch: &mut PairScratch) {
        self.merge_sorted(
            &other.keys,
            &other.values,
            bs,
            (&mut scratch.spare_keys, &mut scratch.spare_values),
        );
    }
}

/// Sorts (key, item) pairs by key, stably, least significant digit first, 11 bits a pass, over
/// the bits that `max_key` needs; `tmp` is scratch of the same length.
fn radix_sort<T: Copy + Default>(items: &mut Vec<(u64, T)>, tmp: &mut Vec<(u64, T)>, max_key: u64) {
    const BITS: u32 = 11;
    const MASK: u64 = (1 << BITS) - 1;
    let bits = 64 - max_key.leading_zeros();
    tmp.clear();
    tmp.resize(items.len(), (0, T::default()));
    let mut shift = 0;
    while shift < bits {
        let mut count = [0usize; 1 << BITS];
        for &(k, _) in items.iter() {
            count[((k >> shift) & MASK) as usize] += 1;
        }
        let mut sum = 0;
        for c in &mut count {
            let v = *c;
            *c = sum;
            sum += v;
        }
        for &item in items.iter() {
            let d = ((item.0 >> shift) & MASK) as usize;
            tmp[count[d]] = item;
            count[d] += 1;
        }
        std::mem::swap(items, tmp);
        shift += BITS;
    }
}

/// The key of level `lj` of term j and level `lk` of term k (k > j), with n_k levels.
fn key(lj: i32, lk: i32, nk: u64) -> u64 {
    lj as u64 * nk + lk as u64
}

/// One pair of terms (k > j) as the chunk products see it: numbers of levels and columns, and
/// the leading dimensions of the two Z views.
pub(crate) struct PairShape {
    pub k: usize,
    pub j: usize,
    pub nk: u64,
    pub nj: u64,
    pub qk: usize,
    pub qj: usize,
    /// The factor of every prior weight (`Transform::w_scale`, a power of four).
    pub w_scale: f64,
}

/// Z_k' W Z_j of one checked chunk, merged into `acc`. Rows of weight zero are left out.
pub(crate) fn add_chunk(
    acc: &mut PairAccumulator,
    pair: &PairShape,
    chunk: &RowChunk,
    layout: &Layout,
    scratch: &mut PairScratch,
) {
    let (k, j, nk) = (pair.k, pair.j, pair.nk);
    let (ck, cj) = (chunk.codes[k], chunk.codes[j]);
    let max_key = (pair.nj * nk).saturating_sub(1);
    let bs = pair.qk * pair.qj;
    scratch.keys.clear();
    scratch.values.clear();
    if bs == 1 {
        // Scalar blocks (two scalar terms, as crossed intercepts): sort the products
        // themselves, so that the sums read no row again. A block starts from 0.0, as below.
        let (zj, zk) = (chunk.z[j], chunk.z[k]);
        let items = &mut scratch.scalars;
        items.clear();
        let c = pair.w_scale;
        match chunk.weights {
            None if c != 1.0 => {
                items.extend(
                    (0..chunk.nrows()).map(|r| (key(cj[r], ck[r], nk), zk[r] * (c * zj[r]))),
                );
            }
            None => {
                items.extend((0..chunk.nrows()).map(|r| (key(cj[r], ck[r], nk), zk[r] * zj[r])));
            }
            Some(w) => items.extend(
                (0..chunk.nrows())
                    .filter(|&r| w[r] != 0.0)
                    .map(|r| (key(cj[r], ck[r], nk), zk[r] * (w[r] * c * zj[r]))),
            ),
        }
        radix_sort(items, &mut scratch.scalars_tmp, max_key);
        for &(key, v) in items.iter() {
            match scratch.values.last_mut() {
                Some(last) if scratch.keys.last() == Some(&key) => *last += v,
                _ => {
                    scratch.keys.push(key);
                    scratch.values.push(0.0 + v);
                }
            }
        }
    } else {
        let items = &mut scratch.rows;
        items.clear();
        items.extend(
            (0..chunk.nrows())
                .filter(|&r| chunk.weights.is_none_or(|w| w[r] != 0.0))
                .map(|r| (key(cj[r], ck[r], nk), r as u32)),
        );
        radix_sort(items, &mut scratch.rows_tmp, max_key);
        let (ldj, ldk) = (layout.z[j].1, layout.z[k].1);
        let (zj, zk) = (chunk.z[j], chunk.z[k]);
        for &(key, r) in items.iter() {
            let r = r as usize;
            if scratch.keys.last() != Some(&key) {
                scratch.keys.push(key);
                scratch.values.extend(std::iter::repeat_n(0.0, bs));
            }
            let w = chunk.weights.map_or(1.0, |w| w[r]) * pair.w_scale;
            let start = scratch.values.len() - bs;
            let blk = &mut scratch.values[start..];
            for b in 0..pair.qj {
                let wzb = w * zj[r + b * ldj];
                for a in 0..pair.qk {
                    blk[a + b * pair.qk] += zk[r + a * ldk] * wzb;
                }
            }
        }
    }
    acc.merge_sorted(
        &scratch.keys,
        &scratch.values,
        bs,
        (&mut scratch.spare_keys, &mut scratch.spare_values),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn radix_sort_is_stable_and_sorts_every_bit() {
        let keys: Vec<u64> = (0..5000u64)
            .map(|i| (i * 2_654_435_761) % 40_000_000_007)
            .collect();
        let mut items: Vec<(u64, u32)> = keys.iter().map(|&k| (k % 97, 0)).collect();
        for (i, it) in items.iter_mut().enumerate() {
            it.1 = i as u32;
        }
        let mut tmp = Vec::new();
        radix_sort(&mut items, &mut tmp, 96);
        assert!(items
            .windows(2)
            .all(|w| w[0].0 < w[1].0 || (w[0].0 == w[1].0 && w[0].1 < w[1].1)));
        let mut wide: Vec<(u64, f64)> = keys.iter().map(|&k| (k, k as f64)).collect();
        let mut tmp = Vec::new();
        radix_sort(&mut wide, &mut tmp, 40_000_000_006);
        assert!(wide.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(wide.iter().all(|&(k, v)| k as f64 == v));
    }

    #[test]
    fn merge_adds_equal_keys_and_keeps_order() {
        let mut acc = PairAccumulator::default();
        let mut spare = (Vec::new(), Vec::new());
        acc.merge_sorted(
            &[1, 4, 9],
            &[1.0, 1.5, 4.0, 4.5, 9.0, 9.5],
            2,
            (&mut spare.0, &mut spare.1),
        );
        // Appended after the last key.
        acc.merge_sorted(&[10], &[10.0, 10.5], 2, (&mut spare.0, &mut spare.1));
        // Interleaved, one key in common.
        acc.merge_sorted(
            &[0, 4, 12],
            &[0.0, 0.5, 1.0, 1.0, 12.0, 12.5],
            2,
            (&mut spare.0, &mut spare.1),
        );
        assert_eq!(acc.keys, vec![0, 1, 4, 9, 10, 12]);
        assert_eq!(
            acc.values,
            vec![0.0, 0.5, 1.0, 1.5, 5.0, 5.5, 9.0, 9.5, 10.0, 10.5, 12.0, 12.5]
        );
    }
}
