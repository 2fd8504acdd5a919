//! The blocked cross-product A = [Z X y]' W [Z X y], built by an accumulator over row chunks.
//!
//! The data enter a linear mixed model only through A (Bates et al. 2015, section 3; the
//! `A` field of MixedModels.jl's `LinearMixedModel`). A is a sum over rows, so an accumulator
//! that takes rows in chunks and merges with another accumulator gives the same A, up to
//! rounding, whatever the chunking and the merge order: the in-memory fit is one chunk, a
//! streaming or distributed fit is many.
//!
//! Blocks, for random-effects terms i > j and the dense block D = [X y]:
//! - A[i][i] = Z_i' W Z_i: block diagonal, one q_i x q_i block per level (each row has one level);
//! - A[i][j] = Z_i' W Z_j: sparse, one q_i x q_j block per observed pair of levels
//!   (`model::pairs`: sorted keys, merged linearly);
//! - A[D][j] = D' W Z_j: dense, (p + 1) x (levels_j q_j);
//! - A[D][D] = D' W D: dense, (p + 1) x (p + 1).
//!
//! Prior weights w scale each row's contribution; an offset is subtracted from y. The
//! accumulator also carries the moments of lme4's start (`model::moments`), so that a problem
//! built from it needs no row again.
//!
//! The pass over a chunk runs in a fixed number of lanes (`model::lanes`): lane l folds its
//! contiguous share of the chunk's rows into one accumulator of its own, the lanes run on the
//! execution handle's threads and are merged in lane order. The lanes depend on the number of
//! rows only, so A is the same to the last bit for any number of threads, and the memory is the
//! lanes' accumulators, whatever the number of rows. The serialised form, for partial
//! accumulators of a distributed pass, is `model::wire`.

use crate::error::{LmmError, Result};
use crate::exec::Exec;
use crate::linalg::blocks::SparseBlocks;
use crate::model::dense::{self, DenseBlocks};
use crate::model::lanes::LaneAccumulator;
use crate::model::moments::StartMoments;
use crate::model::pairs::{self, PairAccumulator, PairScratch, PairShape};
use crate::model::remat::ReTermShape;
pub use crate::model::source::RowChunk;
use crate::model::source::{Layout, RowSource};
use crate::model::transform::{self, Transform};

/// The accumulator: feed it chunks, merge it with others, then `finish` it.
#[derive(Clone, Debug, PartialEq)]
pub struct CrossProdAccumulator {
    pub(crate) shapes: Vec<ReTermShape>,
    pub(crate) p: usize,
    /// Rows added, whatever their weights.
    pub(crate) n_rows: usize,
    /// Rows of non-zero weight.
    pub(crate) nobs: usize,
    pub(crate) sum_log_w: f64,
    /// Per term, levels x (q x q) column-major blocks of Z_k' W Z_k.
    pub(crate) diag: Vec<Vec<f64>>,
    /// pairs[k][j], j < k: Z_k' W Z_j while rows arrive.
    pub(crate) pairs: Vec<Vec<PairAccumulator>>,
    /// Per term, (p + 1) x (levels q) column-major D' W Z_k.
    pub(crate) dz: Vec<Vec<f64>>,
    /// (p + 1) x (p + 1) column-major D' W D, lower triangle (mirrored in `finish`).
    pub(crate) dd: Vec<f64>,
    /// The moments of lme4's start, for models whose terms all have one column.
    pub(crate) moments: Option<StartMoments>,
    /// The change of variables of D applied to each row (`model::transform`; the identity
    /// unless set before the first row, or taken from the first rows when `centre`).
    pub(crate) transform: Transform,
    /// Take the transform from the first non-empty chunk added (`Transform::from_chunk`): a
    /// stream's shifts and scales, which every later chunk gets too and which a merge with an
    /// accumulator of other shifts converts to (`merge`).
    pub(crate) centre: bool,
}

impl CrossProdAccumulator {
    pub fn new(shapes: &[ReTermShape], p: usize) -> Self {
        let pd = p + 1;
        CrossProdAccumulator {
            shapes: shapes.to_vec(),
            p,
            n_rows: 0,
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
            moments: StartMoments::new(shapes),
            transform: Transform::identity(),
            centre: false,
        }
    }

    /// Whether the transform is taken from the first rows added (see `centre`); only before
    /// any row was added.
    pub fn set_centre(&mut self, centre: bool) -> Result<()> {
        if self.n_rows > 0 {
            return Err(LmmError::Shape(
                "the centring of D can only be chosen before the first rows".into(),
            ));
        }
        self.centre = centre;
        Ok(())
    }

    /// Whether the transform is taken from the first rows added.
    pub fn centre(&self) -> bool {
        self.centre
    }

    /// The change of variables of D of the rows added (`model::transform`).
    pub fn transform(&self) -> &Transform {
        &self.transform
    }

    /// With `centre`, before the first rows: the transform of this chunk's rows, if it has any
    /// (a chunk that is checked, `layout` from its check). Otherwise `None`.
    pub(crate) fn first_transform(&self, chunk: &RowChunk, layout: &Layout) -> Option<Transform> {
        (self.centre && self.n_rows == 0 && chunk.nrows() > 0)
            .then(|| Transform::from_chunk(chunk, layout))
    }

    /// Sets the change of variables of D for the rows to come (`model::transform`); only
    /// before any row was added.
    pub fn set_transform(&mut self, transform: Transform) -> Result<()> {
        if self.n_rows > 0 {
            return Err(LmmError::Shape(
                "the transform of D can only be set before the first rows".into(),
            ));
        }
        self.transform = transform;
        Ok(())
    }

    /// The random-effects terms' shapes.
    pub fn shapes(&self) -> &[ReTermShape] {
        &self.shapes
    }

    /// Number of fixed-effect columns.
    pub fn p(&self) -> usize {
        self.p
    }

    /// Rows added, whatever their weights.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Rows of non-zero weight.
    pub fn nobs(&self) -> usize {
        self.nobs
    }

    /// Adds the rows of one chunk.
    pub fn add(&mut self, chunk: &RowChunk) -> Result<()> {
        let layout = chunk.check(&self.shapes, self.p)?;
        if let Some(t) = self.first_transform(chunk, &layout) {
            self.transform = t;
        }
        self.add_checked(chunk, &layout, &mut PairScratch::default());
        Ok(())
    }

    /// Adds the rows of a chunk already checked against this model (`layout` from its check);
    /// `scratch` is the pair products' working memory.
    pub(crate) fn add_checked(
        &mut self,
        chunk: &RowChunk,
        layout: &Layout,
        scratch: &mut PairScratch,
    ) {
        self.n_rows += chunk.nrows();
        if let Some(m) = &mut self.moments {
            m.add(chunk);
        }
        self.add_rows(chunk, layout);
        let nt = self.shapes.len();
        for k in 1..nt {
            for j in 0..k {
                let pair = PairShape {
                    k,
                    j,
                    nk: self.shapes[k].n_levels as u64,
                    nj: self.shapes[j].n_levels as u64,
                    qk: self.shapes[k].q,
                    qj: self.shapes[j].q,
                    w_scale: self.transform.w_scale(),
                };
                pairs::add_chunk(&mut self.pairs[k][j], &pair, chunk, layout, scratch);
            }
        }
    }

    /// D'WD, and per term Z_k'WZ_k and D'WZ_k, of a checked chunk (`model::dense`).
    fn add_rows(&mut self, chunk: &RowChunk, layout: &Layout) {
        let mut blocks = DenseBlocks {
            dd: &mut self.dd,
            diag: &mut self.diag,
            dz: &mut self.dz,
            nobs: &mut self.nobs,
            sum_log_w: &mut self.sum_log_w,
            transform: &self.transform,
        };
        dense::add_rows(&mut blocks, chunk, layout);
    }

    /// Checks that `other` accumulates the same model, and that its rows' transform can be
    /// converted to this one's (`Transform::conversion`).
    pub(crate) fn check_same_model(&self, other: &CrossProdAccumulator) -> Result<()> {
        if self.n_rows > 0 && other.n_rows > 0 {
            other.transform.conversion(&self.transform, self.p)?;
        }
        if other.shapes != self.shapes || other.p != self.p {
            return Err(LmmError::Shape(format!(
                "merging accumulators of different models: terms {:?} with p = {} and terms {:?} \
                 with p = {}",
                self.shapes, self.p, other.shapes, other.p
            )));
        }
        Ok(())
    }

    /// Adds another accumulator's rows to this one. When their rows were transformed
    /// differently (each took its shifts from its own first rows), `other`'s D'WD and D'WZ
    /// are converted to this one's variables (M'AM, `Transform::conversion`) as they are
    /// added; an accumulator without rows takes the other's transform.
    pub fn merge(&mut self, other: &CrossProdAccumulator) -> Result<()> {
        self.merge_with(other, &mut PairScratch::default())
    }

    /// `merge`, with the pair merges' working memory.
    pub(crate) fn merge_with(
        &mut self,
        other: &CrossProdAccumulator,
        scratch: &mut PairScratch,
    ) -> Result<()> {
        self.check_same_model(other)?;
        if self.n_rows == 0 {
            // No rows yet: every block is 0 in any variables.
            self.transform.clone_from(&other.transform);
        }
        let pd = self.p + 1;
        let convert = if other.n_rows > 0 && other.transform != self.transform {
            Some(other.transform.conversion(&self.transform, self.p)?)
        } else {
            None
        };
        self.n_rows += other.n_rows;
        self.nobs += other.nobs;
        self.sum_log_w += other.sum_log_w;
        match &convert {
            None => add_into(&mut self.dd, &other.dd),
            Some(m) => add_into(&mut self.dd, &transform::convert_lower(&other.dd, m, pd)),
        }
        for k in 0..self.shapes.len() {
            add_into(&mut self.diag[k], &other.diag[k]);
            match &convert {
                None => add_into(&mut self.dz[k], &other.dz[k]),
                Some(m) => transform::add_converted_columns(&mut self.dz[k], &other.dz[k], m, pd),
            }
            for j in 0..k {
                let bs = self.shapes[k].q * self.shapes[j].q;
                self.pairs[k][j].merge(&other.pairs[k][j], bs, scratch);
            }
        }
        if let (Some(a), Some(b)) = (&mut self.moments, &other.moments) {
            a.merge(b);
        }
        Ok(())
    }

    /// lme4's data-based start from the accumulated moments (`model::start`), or `None` when
    /// its rule does not apply.
    pub fn lme4_start(&self) -> Option<Vec<f64>> {
        self.moments.as_ref().and_then(StartMoments::theta)
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
            transform: self.transform,
        }
    }
}

impl CrossProducts {
    /// Brings prior weights to geometric mean 1 after a pass that did not (a streamed or
    /// merged accumulator, `Accumulator.problem`): every block times c = 1 / exp(sum log w / nobs), as the in-memory
    /// pass does with the weights themselves (`model::transform`), so that a fit from either
    /// starts and steps alike. Unweighted cross-products, and those already brought to 1, are
    /// left as they are.
    pub fn normalise_weights(&mut self) {
        if self.transform.w_log2 != 0.0 || self.sum_log_w == 0.0 || self.nobs == 0 {
            return;
        }
        let log2_c = -(self.sum_log_w / self.nobs as f64) / std::f64::consts::LN_2;
        let c = log2_c.exp2();
        if !(c.is_finite() && c > 0.0) {
            return;
        }
        let blocks = self
            .diag
            .iter_mut()
            .chain(self.dz.iter_mut())
            .map(Vec::as_mut_slice)
            .chain(
                self.pairs
                    .iter_mut()
                    .flatten()
                    .map(|s| s.data.as_mut_slice()),
            )
            .chain(std::iter::once(self.dd.as_mut_slice()));
        for block in blocks {
            for v in block {
                *v *= c;
            }
        }
        self.sum_log_w += self.nobs as f64 * c.ln();
        self.transform.w_log2 = log2_c;
    }
}

pub(crate) fn add_into(a: &mut [f64], b: &[f64]) {
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
    /// The change of variables of D that the blocks were accumulated with.
    pub transform: Transform,
}

/// Most rows per piece of a lane (see `balanced_piece_rows`): the pair products sort one piece
/// at a time, so a lane's sort buffers hold this many rows.
pub const PIECE_ROWS: usize = 1 << 16;

/// Rows per piece for the pass over `n` rows: pieces of at most `max_rows` rows, in an even
/// number (both of two lanes get the same share), of equal size. It depends on n only, so the
/// result does not depend on the machine. With fixed pieces of `max_rows`, the 73,421 rows of
/// InstEval split 65,536 + 7,885 and the second thread had little to do.
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

/// Accumulates a chunk cut into pieces of `piece_rows` rows, in lanes (`model::lanes`) on the
/// rayon pool the caller installed; the lanes merge in lane order, so the result does not
/// depend on the number of threads. The pieces are views of the chunk's rows, not copies.
pub fn accumulate_parallel(
    shapes: &[ReTermShape],
    p: usize,
    chunk: &RowChunk,
    piece_rows: usize,
) -> Result<CrossProdAccumulator> {
    let mut lanes = LaneAccumulator::new(shapes, p);
    lanes.add_in_pool(chunk, piece_rows)?;
    Ok(lanes.into_accumulator())
}

/// The cross-product pass over a row source: each chunk the source hands out (the in-memory
/// source gives one) is added in lanes on `exec`'s threads (`LaneAccumulator::add`), and the
/// lanes are merged in lane order at the end.
pub fn accumulate(source: &dyn RowSource, exec: &Exec) -> Result<CrossProdAccumulator> {
    accumulate_with(source, exec, Transform::identity())
}

/// `accumulate` with a change of variables of D (`model::transform`).
pub fn accumulate_with(
    source: &dyn RowSource,
    exec: &Exec,
    transform: Transform,
) -> Result<CrossProdAccumulator> {
    let mut first = CrossProdAccumulator::new(source.shapes(), source.p());
    first.set_transform(transform)?;
    let mut lanes = LaneAccumulator::from_accumulator(first);
    source.for_each_chunk(usize::MAX, &mut |chunk| lanes.add(chunk, exec))?;
    Ok(lanes.into_accumulator())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::remat::ReMat;
    use crate::model::source::{Chunked, MemorySource};

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
        // The lanes against copies of the same rows: lane l sums its contiguous share of the
        // pieces in one accumulator, and the lanes merge in lane order.
        for piece_rows in [1, 64, 333, 1000] {
            let parallel = accumulate_parallel(&SHAPES, P, &all, piece_rows).unwrap();
            let pieces = 1000usize.div_ceil(piece_rows);
            let used = pieces.min(crate::model::lanes::LANES);
            let mut copied: Option<CrossProdAccumulator> = None;
            for l in 0..used {
                let mut lane = CrossProdAccumulator::new(&SHAPES, P);
                for piece in l * pieces / used..(l + 1) * pieces / used {
                    let start = piece * piece_rows;
                    let copy = data.copy(start, (start + piece_rows).min(1000));
                    lane.add(&copy.source().chunk()).unwrap();
                }
                match &mut copied {
                    Some(t) => t.merge(&lane).unwrap(),
                    None => copied = Some(lane),
                }
            }
            assert_eq!(
                bits(&parallel.finish()),
                bits(&copied.unwrap().finish()),
                "pieces of {piece_rows} rows"
            );
        }
    }

    #[test]
    fn the_number_of_threads_changes_no_bit() {
        let data = rows(5000);
        let source = data.source();
        let all = source.chunk();
        for piece_rows in [100, 700, 5000] {
            let a: Vec<Vec<u64>> = [1, 2, 3]
                .iter()
                .map(|&t| {
                    let exec = Exec::new(t);
                    let mut lanes = LaneAccumulator::new(&SHAPES, P);
                    exec.install(|| lanes.add_in_pool(&all, piece_rows))
                        .unwrap();
                    bits(&lanes.into_accumulator().finish())
                })
                .collect();
            assert_eq!(a[0], a[1], "1 and 2 threads, pieces of {piece_rows}");
            assert_eq!(a[0], a[2], "1 and 3 threads, pieces of {piece_rows}");
        }
        let a1 = accumulate(&source, &Exec::new(1)).unwrap().finish();
        let a2 = accumulate(&source, &Exec::new(2)).unwrap().finish();
        assert_eq!(bits(&a1), bits(&a2), "accumulate on 1 and 2 threads");
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
