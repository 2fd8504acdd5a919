//! The blocked cross-product A = [Z X y]' W [Z X y], built by an accumulator over row chunks.
//!
//! The data enter a linear mixed model only through A (Bates et al. 2015, section 3; the
//! `A` field of MixedModels.jl's `LinearMixedModel`). A is a sum over rows, so an accumulator
//! that takes rows in chunks and merges with another accumulator gives the same A, up to
//! rounding, whatever the chunking and the merge order: the in-memory fit is one chunk (or one
//! per thread), a streaming or distributed fit is many.
//!
//! Blocks, for random-effects terms i > j and the dense block D = [X y]:
//! - A[i][i] = Z_i' W Z_i: block diagonal, one q_i x q_i block per level (each row has one level);
//! - A[i][j] = Z_i' W Z_j: sparse, one q_i x q_j block per observed pair of levels;
//! - A[D][j] = D' W Z_j: dense, (p + 1) x (levels_j q_j);
//! - A[D][D] = D' W D: dense, (p + 1) x (p + 1).
//!
//! Prior weights w scale each row's contribution; an offset is subtracted from y.
//!
//! A chunk's Z_i' W Z_j is formed by sorting its rows by (level j, level i) (a radix sort) and
//! summing runs of equal keys; accumulators keep these blocks sorted by key, so that adding a
//! chunk or merging another accumulator is a linear merge, without hashing.
//!
//! Chunks come from a row source (`model::source`) as views: the parallel pass cuts a chunk
//! into pieces of rows that index the caller's column-major arrays through their leading
//! dimensions, so no row is copied. The pieces depend on the number of rows only
//! (`balanced_piece_rows`) and merge in row order, so A is the same to the last bit for any
//! number of threads.

use crate::error::{LmmError, Result};
use crate::exec::Exec;
use crate::linalg::blocks::SparseBlocks;
use crate::model::remat::ReTermShape;
pub use crate::model::source::RowChunk;
use crate::model::source::{Layout, RowSource};

/// Z_i' W Z_j for one pair of terms (i > j) while rows are still arriving: its blocks sorted by
/// key = level_j * n_i + level_i (column-major order), each qi x qj column-major.
#[derive(Clone, Default)]
struct PairAccumulator {
    keys: Vec<u64>,
    values: Vec<f64>,
}

impl PairAccumulator {
    /// Adds another sorted list of blocks of `bs` values each.
    fn merge_sorted(&mut self, keys: &[u64], values: &[f64], bs: usize) {
        if keys.is_empty() {
            return;
        }
        if self.keys.is_empty() {
            self.keys = keys.to_vec();
            self.values = values.to_vec();
            return;
        }
        let mut out_keys = Vec::with_capacity(self.keys.len() + keys.len());
        let mut out_values = Vec::with_capacity(self.values.len() + values.len());
        let (mut a, mut b) = (0, 0);
        while a < self.keys.len() || b < keys.len() {
            let take_a = b == keys.len() || (a < self.keys.len() && self.keys[a] <= keys[b]);
            let take_b = a == self.keys.len() || (b < keys.len() && keys[b] <= self.keys[a]);
            if take_a && take_b {
                out_keys.push(keys[b]);
                let start = out_values.len();
                out_values.extend_from_slice(&self.values[a * bs..(a + 1) * bs]);
                add_into(&mut out_values[start..], &values[b * bs..(b + 1) * bs]);
                a += 1;
                b += 1;
            } else if take_a {
                out_keys.push(self.keys[a]);
                out_values.extend_from_slice(&self.values[a * bs..(a + 1) * bs]);
                a += 1;
            } else {
                out_keys.push(keys[b]);
                out_values.extend_from_slice(&values[b * bs..(b + 1) * bs]);
                b += 1;
            }
        }
        self.keys = out_keys;
        self.values = out_values;
    }
}

/// Sorts (key, row) pairs by key, least significant digit first, 11 bits a pass, over the bits
/// that `max_key` needs; `tmp` is scratch of the same length.
fn radix_sort(items: &mut Vec<(u64, u32)>, tmp: &mut Vec<(u64, u32)>, max_key: u64) {
    const BITS: u32 = 11;
    let bits = 64 - max_key.leading_zeros();
    tmp.resize(items.len(), (0, 0));
    let mut shift = 0;
    while shift < bits {
        let mut count = [0usize; 1 << BITS];
        for &(k, _) in items.iter() {
            count[((k >> shift) as usize) & ((1 << BITS) - 1)] += 1;
        }
        let mut sum = 0;
        for c in &mut count {
            let v = *c;
            *c = sum;
            sum += v;
        }
        for &item in items.iter() {
            let d = ((item.0 >> shift) as usize) & ((1 << BITS) - 1);
            tmp[count[d]] = item;
            count[d] += 1;
        }
        std::mem::swap(items, tmp);
        shift += BITS;
    }
}

/// The accumulator: feed it chunks, merge it with others, then `finish` it.
#[derive(Clone)]
pub struct CrossProdAccumulator {
    shapes: Vec<ReTermShape>,
    p: usize,
    nobs: usize,
    sum_log_w: f64,
    diag: Vec<Vec<f64>>,
    pairs: Vec<Vec<PairAccumulator>>,
    dz: Vec<Vec<f64>>,
    dd: Vec<f64>,
}

impl CrossProdAccumulator {
    pub fn new(shapes: &[ReTermShape], p: usize) -> Self {
        let pd = p + 1;
        CrossProdAccumulator {
            shapes: shapes.to_vec(),
            p,
            nobs: 0,
            sum_log_w: 0.0,
            diag: shapes
                .iter()
                .map(|s| vec![0.0; s.n_levels * s.q * s.q])
                .collect(),
            pairs: (0..shapes.len())
                .map(|i| vec![PairAccumulator::default(); i])
                .collect(),
            dz: shapes.iter().map(|s| vec![0.0; pd * s.size()]).collect(),
            dd: vec![0.0; pd * pd],
        }
    }

    /// Adds the rows of one chunk.
    pub fn add(&mut self, chunk: &RowChunk) -> Result<()> {
        let layout = chunk.check(&self.shapes, self.p)?;
        self.add_checked(chunk, &layout);
        Ok(())
    }

    /// Adds the rows of a chunk already checked against this model (`layout` from its check).
    // Index loops mirror the block formulas (several arrays indexed by the same level and term).
    #[allow(clippy::needless_range_loop)]
    fn add_checked(&mut self, chunk: &RowChunk, layout: &Layout) {
        let n = chunk.nrows();
        let ldx = layout.ldx;
        let p = self.p;
        let pd = p + 1;
        let nt = self.shapes.len();
        let mut d = vec![0.0; pd];
        let mut zrow: Vec<Vec<f64>> = self.shapes.iter().map(|s| vec![0.0; s.q]).collect();
        let mut level = vec![0usize; nt];
        for r in 0..n {
            let w = chunk.weights.map_or(1.0, |w| w[r]);
            if w == 0.0 {
                continue;
            }
            self.nobs += 1;
            // log 1 = 0 exactly: unweighted rows add nothing (and cost no logarithm).
            if w != 1.0 {
                self.sum_log_w += w.ln();
            }
            for (j, dj) in d.iter_mut().take(p).enumerate() {
                *dj = chunk.x[r + j * ldx];
            }
            d[p] = chunk.y[r] - chunk.offset.map_or(0.0, |o| o[r]);
            for k in 0..nt {
                let (q, ld) = layout.z[k];
                level[k] = chunk.codes[k][r] as usize;
                for a in 0..q {
                    zrow[k][a] = chunk.z[k][r + a * ld];
                }
            }
            // D'WD, lower triangle (mirrored in `finish`).
            for j in 0..pd {
                let wdj = w * d[j];
                for i in j..pd {
                    self.dd[i + j * pd] += d[i] * wdj;
                }
            }
            for k in 0..nt {
                let q = self.shapes[k].q;
                let z = &zrow[k];
                let l = level[k];
                let blk = &mut self.diag[k][l * q * q..(l + 1) * q * q];
                for b in 0..q {
                    let wzb = w * z[b];
                    for a in 0..q {
                        blk[a + b * q] += z[a] * wzb;
                    }
                }
                let dz = &mut self.dz[k];
                for b in 0..q {
                    let col = (l * q + b) * pd;
                    let wzb = w * z[b];
                    for i in 0..pd {
                        dz[col + i] += d[i] * wzb;
                    }
                }
            }
        }
        self.add_pairs(chunk, layout);
    }

    /// Z_i' W Z_j of a chunk for every pair of terms i > j, merged into the accumulator.
    fn add_pairs(&mut self, chunk: &RowChunk, layout: &Layout) {
        let n = chunk.nrows();
        let nt = self.shapes.len();
        let mut items: Vec<(u64, u32)> = Vec::with_capacity(n);
        let mut tmp = Vec::new();
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for k in 1..nt {
            let (nk, qk) = (self.shapes[k].n_levels as u64, self.shapes[k].q);
            for j in 0..k {
                let (nj, qj) = (self.shapes[j].n_levels as u64, self.shapes[j].q);
                let bs = qk * qj;
                items.clear();
                for r in 0..n {
                    if chunk.weights.is_some_and(|w| w[r] == 0.0) {
                        continue;
                    }
                    let key = chunk.codes[j][r] as u64 * nk + chunk.codes[k][r] as u64;
                    items.push((key, r as u32));
                }
                radix_sort(&mut items, &mut tmp, (nj * nk).saturating_sub(1));
                keys.clear();
                values.clear();
                if bs == 1 {
                    // Scalar blocks (two scalar terms, as in crossed intercepts): the same
                    // operations as below, without the block loops (a new block starts from
                    // 0.0, hence `0.0 + v`).
                    let (zj, zk) = (chunk.z[j], chunk.z[k]);
                    for &(key, r) in &items {
                        let r = r as usize;
                        let w = chunk.weights.map_or(1.0, |w| w[r]);
                        let v = zk[r] * (w * zj[r]);
                        match values.last_mut() {
                            Some(last) if keys.last() == Some(&key) => *last += v,
                            _ => {
                                keys.push(key);
                                values.push(0.0 + v);
                            }
                        }
                    }
                } else {
                    let (ldj, ldk) = (layout.z[j].1, layout.z[k].1);
                    for &(key, r) in &items {
                        let r = r as usize;
                        if keys.last() != Some(&key) {
                            keys.push(key);
                            values.extend(std::iter::repeat_n(0.0, bs));
                        }
                        let w = chunk.weights.map_or(1.0, |w| w[r]);
                        let blk = &mut values[(keys.len() - 1) * bs..];
                        for b in 0..qj {
                            let wzb = w * chunk.z[j][r + b * ldj];
                            for a in 0..qk {
                                blk[a + b * qk] += chunk.z[k][r + a * ldk] * wzb;
                            }
                        }
                    }
                }
                self.pairs[k][j].merge_sorted(&keys, &values, bs);
            }
        }
    }

    /// Adds another accumulator's rows to this one.
    pub fn merge(&mut self, other: &CrossProdAccumulator) -> Result<()> {
        if other.shapes != self.shapes || other.p != self.p {
            return Err(LmmError::Shape(
                "merging accumulators of different models".into(),
            ));
        }
        self.nobs += other.nobs;
        self.sum_log_w += other.sum_log_w;
        add_into(&mut self.dd, &other.dd);
        for k in 0..self.shapes.len() {
            add_into(&mut self.diag[k], &other.diag[k]);
            add_into(&mut self.dz[k], &other.dz[k]);
            for j in 0..k {
                let bs = self.shapes[k].q * self.shapes[j].q;
                let theirs = &other.pairs[k][j];
                self.pairs[k][j].merge_sorted(&theirs.keys, &theirs.values, bs);
            }
        }
        Ok(())
    }

    /// The finished cross-products, with the sparse blocks in column-major block order.
    pub fn finish(self) -> CrossProducts {
        let pd = self.p + 1;
        let mut dd = self.dd;
        for j in 0..pd {
            for i in j + 1..pd {
                dd[j + i * pd] = dd[i + j * pd];
            }
        }
        let shapes = self.shapes;
        let pairs = self
            .pairs
            .into_iter()
            .enumerate()
            .map(|(k, row)| {
                row.into_iter()
                    .enumerate()
                    .map(|(j, acc)| {
                        let nk = shapes[k].n_levels as u64;
                        let triplets: Vec<(u32, u32)> = acc
                            .keys
                            .iter()
                            .map(|&key| ((key % nk) as u32, (key / nk) as u32))
                            .collect();
                        SparseBlocks::from_triplets(
                            shapes[k].n_levels,
                            shapes[j].n_levels,
                            shapes[k].q,
                            shapes[j].q,
                            &triplets,
                            &acc.values,
                        )
                    })
                    .collect()
            })
            .collect();
        CrossProducts {
            shapes,
            p: self.p,
            nobs: self.nobs,
            sum_log_w: self.sum_log_w,
            diag: self.diag,
            pairs,
            dz: self.dz,
            dd,
        }
    }
}

fn add_into(a: &mut [f64], b: &[f64]) {
    for (x, y) in a.iter_mut().zip(b) {
        *x += *y;
    }
}

/// The finished blocked cross-product A.
#[derive(Clone, Debug)]
pub struct CrossProducts {
    pub shapes: Vec<ReTermShape>,
    /// Number of fixed-effect columns (D has p + 1 columns: X and y).
    pub p: usize,
    /// Rows with a non-zero weight.
    pub nobs: usize,
    /// sum of log prior weights (lme4's ldW).
    pub sum_log_w: f64,
    /// Per term, levels x (q x q) column-major blocks of Z_k' W Z_k.
    pub diag: Vec<Vec<f64>>,
    /// pairs[i][j], j < i: Z_i' W Z_j.
    pub pairs: Vec<Vec<SparseBlocks>>,
    /// Per term, (p + 1) x (levels q) column-major D' W Z_k.
    pub dz: Vec<Vec<f64>>,
    /// (p + 1) x (p + 1) column-major D' W D.
    pub dd: Vec<f64>,
}

/// Most rows per piece when a chunk's cross-products are accumulated in parallel (see
/// `balanced_piece_rows`).
pub const PIECE_ROWS: usize = 1 << 16;

/// Rows per piece for `accumulate_parallel` on `n` rows: pieces of at most `max_rows` rows, in
/// an even number (both of two threads get the same share), of equal size. It depends on n
/// only, so the result does not depend on the machine. With fixed pieces of `max_rows`, the
/// 73,421 rows of InstEval split 65,536 + 7,885 and the second thread had little to do.
pub fn balanced_piece_rows(n: usize, max_rows: usize) -> usize {
    let max_rows = max_rows.max(1);
    let pieces = n.div_ceil(max_rows).max(1);
    let pieces = if pieces > 1 {
        pieces + pieces % 2
    } else {
        pieces
    };
    n.div_ceil(pieces).max(1)
}

/// Accumulates a chunk split into pieces of `piece_rows` rows in parallel (rayon, in the pool
/// the caller installed), merging the pieces in row order so that the result does not depend on
/// the number of threads. Each piece is a view of the chunk's rows (`RowChunk::rows`), not a
/// copy.
pub fn accumulate_parallel(
    shapes: &[ReTermShape],
    p: usize,
    chunk: &RowChunk,
    piece_rows: usize,
) -> Result<CrossProdAccumulator> {
    use rayon::prelude::*;
    let n = chunk.nrows();
    let piece_rows = piece_rows.max(1);
    let starts: Vec<usize> = (0..n).step_by(piece_rows).collect();
    if starts.len() <= 1 {
        let mut acc = CrossProdAccumulator::new(shapes, p);
        acc.add(chunk)?;
        return Ok(acc);
    }
    let layout = chunk.check(shapes, p)?;
    let pieces: Vec<CrossProdAccumulator> = starts
        .par_iter()
        .map(|&start| {
            let end = (start + piece_rows).min(n);
            // The whole chunk was checked above, so the pieces need not be again.
            let mut acc = CrossProdAccumulator::new(shapes, p);
            acc.add_checked(&chunk.rows(&layout, start, end), &layout);
            acc
        })
        .collect();
    let mut iter = pieces.into_iter();
    let mut total = iter.next().expect("at least one piece");
    for piece in iter {
        total.merge(&piece)?;
    }
    Ok(total)
}

/// The cross-product pass over a row source: each chunk the source hands out (the in-memory
/// source gives one) is accumulated in parallel pieces of `balanced_piece_rows` rows on
/// `exec`'s threads, and the chunks are merged in row order. For one chunk the result is the
/// chunk's accumulator itself, bit for bit.
pub fn accumulate(source: &dyn RowSource, exec: &Exec) -> Result<CrossProdAccumulator> {
    let (shapes, p) = (source.shapes(), source.p());
    let mut total: Option<CrossProdAccumulator> = None;
    source.for_each_chunk(usize::MAX, &mut |chunk| {
        let piece_rows = balanced_piece_rows(chunk.nrows(), PIECE_ROWS);
        let acc = exec.install(|| accumulate_parallel(shapes, p, chunk, piece_rows))?;
        if let Some(t) = &mut total {
            t.merge(&acc)
        } else {
            total = Some(acc);
            Ok(())
        }
    })?;
    Ok(total.unwrap_or_else(|| CrossProdAccumulator::new(shapes, p)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::remat::ReMat;
    use crate::model::source::MemorySource;

    /// A small deterministic generator (64-bit LCG, top bits).
    struct Lcg(u64);

    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn below(&mut self, n: usize) -> i32 {
            (self.next() * n as f64) as i32
        }
    }

    /// Rows of a model with two crossed terms (q = 2 correlated, q = 1), three fixed-effect
    /// columns, weights (some zero) and an offset.
    struct Rows {
        y: Vec<f64>,
        x: Vec<f64>,
        codes: [Vec<i32>; 2],
        z: [Vec<f64>; 2],
        w: Vec<f64>,
        o: Vec<f64>,
    }

    const SHAPES: [ReTermShape; 2] = [
        ReTermShape {
            n_levels: 23,
            q: 2,
            diagonal: false,
        },
        ReTermShape {
            n_levels: 9,
            q: 1,
            diagonal: false,
        },
    ];
    const P: usize = 3;

    fn rows(n: usize) -> Rows {
        let mut g = Lcg(2024);
        let mut col = |k: usize| -> Vec<f64> { (0..n * k).map(|_| g.next() * 4.0 - 1.0).collect() };
        let (y, x, z0, z1, o) = (col(1), col(P), col(2), col(1), col(1));
        let mut g = Lcg(7);
        let codes = [
            (0..n).map(|_| g.below(SHAPES[0].n_levels)).collect(),
            (0..n).map(|_| g.below(SHAPES[1].n_levels)).collect(),
        ];
        let w = (0..n)
            .map(|i| if i % 17 == 3 { 0.0 } else { 0.5 + g.next() })
            .collect();
        Rows {
            y,
            x,
            codes,
            z: [z0, z1],
            w,
            o,
        }
    }

    impl Rows {
        fn source(&self) -> MemorySource<'_> {
            let terms = (0..2)
                .map(|k| ReMat::new(k, SHAPES[k], &self.codes[k], &self.z[k]).unwrap())
                .collect();
            MemorySource::new(&self.y, &self.x, P, terms, Some(&self.w), Some(&self.o)).unwrap()
        }

        /// Rows start..end copied into contiguous arrays (what `accumulate_parallel` did
        /// before chunks had strides).
        fn copy(&self, start: usize, end: usize) -> Rows {
            let n = self.y.len();
            let cols = |m: &[f64], ncol: usize| -> Vec<f64> {
                (0..ncol)
                    .flat_map(|j| m[j * n + start..j * n + end].iter().copied())
                    .collect()
            };
            Rows {
                y: self.y[start..end].to_vec(),
                x: cols(&self.x, P),
                codes: [0, 1].map(|k| self.codes[k][start..end].to_vec()),
                z: [0, 1].map(|k| cols(&self.z[k], SHAPES[k].q)),
                w: self.w[start..end].to_vec(),
                o: self.o[start..end].to_vec(),
            }
        }
    }

    /// Every number of A (and its sparse patterns) as bits.
    fn bits(a: &CrossProducts) -> Vec<u64> {
        let mut out: Vec<u64> = vec![a.nobs as u64, a.sum_log_w.to_bits()];
        let mut push = |v: &[f64]| out.extend(v.iter().map(|x| x.to_bits()));
        push(&a.dd);
        for k in 0..a.shapes.len() {
            push(&a.diag[k]);
            push(&a.dz[k]);
            for s in &a.pairs[k] {
                push(&s.data);
            }
        }
        for row in &a.pairs {
            for s in row {
                out.extend(s.col_ptr.iter().map(|&c| c as u64));
                out.extend(s.row_idx.iter().map(|&r| u64::from(r)));
            }
        }
        out
    }

    #[test]
    fn a_strided_chunk_gives_the_copied_rows_a_bit_for_bit() {
        let data = rows(1000);
        let source = data.source();
        let all = source.chunk();
        let layout = all.check(&SHAPES, P).unwrap();
        for (start, end) in [(0, 1000), (0, 1), (17, 403), (998, 1000), (500, 500)] {
            let mut viewed = CrossProdAccumulator::new(&SHAPES, P);
            viewed.add(&all.rows(&layout, start, end)).unwrap();
            let copy = data.copy(start, end);
            let mut copied = CrossProdAccumulator::new(&SHAPES, P);
            copied.add(&copy.source().chunk()).unwrap();
            assert_eq!(
                bits(&viewed.finish()),
                bits(&copied.finish()),
                "rows {start}..{end}"
            );
        }
        // The parallel pass against the copying version it replaced: same pieces, same merges.
        for piece_rows in [1, 64, 333, 1000] {
            let parallel = accumulate_parallel(&SHAPES, P, &all, piece_rows).unwrap();
            let mut copied: Option<CrossProdAccumulator> = None;
            for start in (0..1000).step_by(piece_rows) {
                let copy = data.copy(start, (start + piece_rows).min(1000));
                let mut acc = CrossProdAccumulator::new(&SHAPES, P);
                acc.add(&copy.source().chunk()).unwrap();
                match &mut copied {
                    Some(t) => t.merge(&acc).unwrap(),
                    None => copied = Some(acc),
                }
            }
            assert_eq!(
                bits(&parallel.finish()),
                bits(&copied.unwrap().finish()),
                "pieces of {piece_rows} rows"
            );
        }
    }

    /// The in-memory source, handing out chunks of at most `max` rows whatever is asked.
    struct Chunked<'a>(MemorySource<'a>, usize);

    impl RowSource for Chunked<'_> {
        fn n_rows(&self) -> usize {
            self.0.n_rows()
        }
        fn p(&self) -> usize {
            self.0.p()
        }
        fn shapes(&self) -> &[ReTermShape] {
            self.0.shapes()
        }
        fn for_each_chunk(
            &self,
            max_rows: usize,
            f: &mut dyn FnMut(&RowChunk<'_>) -> Result<()>,
        ) -> Result<()> {
            self.0.for_each_chunk(max_rows.min(self.1), f)
        }
    }

    #[test]
    fn the_source_in_any_chunk_size_gives_the_same_a() {
        let data = rows(1000);
        let exec = Exec::serial();
        let whole = accumulate(&data.source(), &exec).unwrap().finish();
        // One chunk is the parallel pass itself, bit for bit.
        let direct = accumulate_parallel(
            &SHAPES,
            P,
            &data.source().chunk(),
            balanced_piece_rows(1000, PIECE_ROWS),
        )
        .unwrap();
        assert_eq!(bits(&whole), bits(&direct.finish()));
        let scale = whole.dd.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        let close = |a: &[f64], b: &[f64]| {
            a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-12 * scale)
        };
        for max in [1, 7, 128, 999, 1000, 5000] {
            let chunked = accumulate(&Chunked(data.source(), max), &exec)
                .unwrap()
                .finish();
            assert_eq!(chunked.nobs, whole.nobs, "chunks of {max}");
            assert!((chunked.sum_log_w - whole.sum_log_w).abs() <= 1e-12 * whole.sum_log_w.abs());
            assert!(close(&chunked.dd, &whole.dd), "D'WD, chunks of {max}");
            for k in 0..2 {
                assert!(
                    close(&chunked.diag[k], &whole.diag[k]),
                    "Z'WZ {k}, chunks of {max}"
                );
                assert!(
                    close(&chunked.dz[k], &whole.dz[k]),
                    "D'WZ {k}, chunks of {max}"
                );
            }
            let (a, b) = (&chunked.pairs[1][0], &whole.pairs[1][0]);
            assert_eq!((&a.col_ptr, &a.row_idx), (&b.col_ptr, &b.row_idx));
            assert!(close(&a.data, &b.data), "Z_1'WZ_0, chunks of {max}");
        }
    }
}
