//! The blocks of A that a row adds to in place, by its own levels: D'WD ((p + 1) x (p + 1),
//! D = [X, y - offset]) and, per random-effects term k with level l(r) and row z_r of Z_k, the
//! level's q x q block of Z_k'WZ_k and its (p + 1) x q columns of D'WZ_k:
//!
//! ```text
//!   D'WD[i][j]            += d_i (w d_j)          (lower triangle, i >= j)
//!   Z_k'WZ_k[l][a][b]     += z_a (w z_b)
//!   D'WZ_k[i][l q + b]    += d_i (w z_b)
//! ```
//!
//! Every element is a fold over the rows in row order (rows of weight zero left out), so the
//! result does not depend on how the rows are blocked here. The rows are taken in blocks of
//! `BLOCK` so that a block's columns stay in cache while D'WD and then each term read them;
//! the terms' kernels are specialised for q = 1..4 (the loops over a level's block then have
//! fixed bounds), with one generic kernel beyond.
//!
//! lme4 and MixedModels.jl form the same blocks once from the model matrices (`crossprod`,
//! `Symmetric(A' A)`); here they are sums over rows so that chunks can be added and merged.

use crate::model::source::{Layout, RowChunk};
use crate::model::transform::Transform;

/// Rows per block: a block's columns (p + 1 + sum q of them) stay in the first caches.
const BLOCK: usize = 1024;

/// The dense blocks of one accumulator, borrowed for a chunk.
pub(crate) struct DenseBlocks<'a> {
    pub dd: &'a mut [f64],
    pub diag: &'a mut [Vec<f64>],
    pub dz: &'a mut [Vec<f64>],
    pub nobs: &'a mut usize,
    pub sum_log_w: &'a mut f64,
    pub transform: &'a Transform,
}

/// The rows start..end of a chunk: D's rows copied row-major (p + 1 values a row), the weights,
/// per term its codes and Z's columns.
///
/// D is copied row by row before any kernel reads it: the kernels read a row's values as
/// vectors, and a vector load of values just written one by one would wait for the stores
/// (a failed store-to-load forward, the main cost of the pass before this copy).
struct Columns<'a, 'b> {
    /// Number of rows and of columns of D.
    n: usize,
    pd: usize,
    d: &'b [f64],
    weights: Option<&'a [f64]>,
    /// The factor of every weight (`Transform::w_scale`).
    w_scale: f64,
    codes: Vec<&'a [i32]>,
    z: Vec<Vec<&'a [f64]>>,
}

impl<'a, 'b> Columns<'a, 'b> {
    fn new(
        chunk: &RowChunk<'a>,
        layout: &Layout,
        start: usize,
        end: usize,
        dbuf: &'b mut [f64],
        transform: &Transform,
    ) -> Columns<'a, 'b> {
        let col = |m: &'a [f64], ld: usize, j: usize| &m[j * ld + start..j * ld + end];
        let (p, pd) = (layout.p, layout.p + 1);
        let dbuf = &mut dbuf[..(end - start) * pd];
        // D's columns copied into rows, each transformed as it is copied (`Transform::apply`
        // on the row, column by column: the same operations, and no second pass).
        let pivot = transform.pivot.filter(|_| !transform.is_identity());
        let xj = pivot.map(|j| col(chunk.x, layout.ldx, j));
        let coef = |c: usize| {
            let m = transform.shift_of(c);
            let s = transform.scale_of(c);
            (xj.filter(|_| pivot != Some(c)), m, s)
        };
        for j in 0..p {
            let (xj, m, s) = coef(j);
            put_column(
                dbuf,
                pd,
                j,
                col(chunk.x, layout.ldx, j).iter().copied(),
                xj,
                m,
                s,
            );
        }
        let y = &chunk.y[start..end];
        let (xj, m, s) = coef(p);
        match chunk.offset {
            None => put_column(dbuf, pd, p, y.iter().copied(), xj, m, s),
            Some(o) => {
                let d = y.iter().zip(&o[start..end]).map(|(v, o)| v - o);
                put_column(dbuf, pd, p, d, xj, m, s);
            }
        }
        Columns {
            n: end - start,
            pd,
            d: dbuf,
            weights: chunk.weights.map(|w| &w[start..end]),
            w_scale: transform.w_scale(),
            codes: chunk.codes.iter().map(|c| &c[start..end]).collect(),
            z: chunk
                .z
                .iter()
                .zip(&layout.z)
                .map(|(&z, &(q, ld))| (0..q).map(|a| col(z, ld, a)).collect())
                .collect(),
        }
    }

    /// Row r of D (p + 1 values).
    #[inline]
    fn d(&self, r: usize) -> &[f64] {
        &self.d[r * self.pd..(r + 1) * self.pd]
    }

    /// The weight of row r (1 without weights).
    #[inline]
    fn w(&self, r: usize) -> f64 {
        self.weights.map_or(1.0, |w| w[r]) * self.w_scale
    }
}

/// Column c of the rows in `dbuf` (rows of `pd` values) from `values`, transformed:
/// (v - m x_j) s with the pivot's value x_j of the row, v s without one (`Transform::apply`).
fn put_column(
    dbuf: &mut [f64],
    pd: usize,
    c: usize,
    values: impl Iterator<Item = f64>,
    xj: Option<&[f64]>,
    m: f64,
    s: f64,
) {
    let rows = dbuf.chunks_exact_mut(pd);
    match xj {
        Some(xj) => {
            for ((row, v), &x) in rows.zip(values).zip(xj) {
                row[c] = (v - m * x) * s;
            }
        }
        None if s != 1.0 => {
            for (row, v) in rows.zip(values) {
                row[c] = v * s;
            }
        }
        None => {
            for (row, v) in rows.zip(values) {
                row[c] = v;
            }
        }
    }
}

/// Adds the rows of a checked chunk to the dense blocks.
pub(crate) fn add_rows(blocks: &mut DenseBlocks, chunk: &RowChunk, layout: &Layout) {
    let n = chunk.nrows();
    let mut dbuf = vec![0.0; BLOCK.min(n) * (layout.p + 1)];
    let mut start = 0;
    while start < n {
        let end = n.min(start + BLOCK);
        let cols = Columns::new(chunk, layout, start, end, &mut dbuf, blocks.transform);
        add_dd(blocks, &cols);
        for k in 0..layout.z.len() {
            let (diag, dz) = (&mut blocks.diag[k][..], &mut blocks.dz[k][..]);
            match layout.z[k].0 {
                1 => add_term::<1>(diag, dz, &cols, k),
                2 => add_term::<2>(diag, dz, &cols, k),
                3 => add_term::<3>(diag, dz, &cols, k),
                4 => add_term::<4>(diag, dz, &cols, k),
                _ => add_term_any(diag, dz, &cols, k),
            }
        }
        start = end;
    }
}

/// D'WD (lower triangle), the number of observations and the sum of log weights of a block.
fn add_dd(blocks: &mut DenseBlocks, cols: &Columns) {
    let pd = cols.pd;
    let dd = &mut *blocks.dd;
    for r in 0..cols.n {
        let w = cols.w(r);
        if w == 0.0 {
            continue;
        }
        *blocks.nobs += 1;
        // log 1 = 0 exactly: unweighted rows add nothing (and cost no logarithm).
        if w != 1.0 {
            *blocks.sum_log_w += w.ln();
        }
        let d = cols.d(r);
        for j in 0..pd {
            let wdj = w * d[j];
            let col = &mut dd[j * pd..(j + 1) * pd];
            for i in j..pd {
                col[i] += d[i] * wdj;
            }
        }
    }
}

/// Z_k'WZ_k and D'WZ_k of a block, for a term of Q columns.
fn add_term<const Q: usize>(diag: &mut [f64], dz: &mut [f64], cols: &Columns, k: usize) {
    let pd = cols.pd;
    let codes = cols.codes[k];
    let zc: [&[f64]; Q] = std::array::from_fn(|a| cols.z[k][a]);
    for (r, &code) in codes.iter().enumerate() {
        let w = cols.w(r);
        if w == 0.0 {
            continue;
        }
        let l = code as usize;
        let z: [f64; Q] = std::array::from_fn(|a| zc[a][r]);
        let wz: [f64; Q] = std::array::from_fn(|b| w * z[b]);
        let blk = &mut diag[l * Q * Q..(l + 1) * Q * Q];
        for b in 0..Q {
            for a in 0..Q {
                blk[a + b * Q] += z[a] * wz[b];
            }
        }
        let d = cols.d(r);
        let dzl = &mut dz[l * Q * pd..(l + 1) * Q * pd];
        for (b, col) in dzl.chunks_exact_mut(pd).enumerate() {
            for (c, &di) in col.iter_mut().zip(d) {
                *c += di * wz[b];
            }
        }
    }
}

/// `add_term` for any q.
fn add_term_any(diag: &mut [f64], dz: &mut [f64], cols: &Columns, k: usize) {
    let pd = cols.pd;
    let q = cols.z[k].len();
    let mut z = vec![0.0; q];
    let mut wz = vec![0.0; q];
    for (r, &code) in cols.codes[k].iter().enumerate() {
        let w = cols.w(r);
        if w == 0.0 {
            continue;
        }
        let l = code as usize;
        for a in 0..q {
            z[a] = cols.z[k][a][r];
            wz[a] = w * z[a];
        }
        let blk = &mut diag[l * q * q..(l + 1) * q * q];
        for b in 0..q {
            for a in 0..q {
                blk[a + b * q] += z[a] * wz[b];
            }
        }
        let d = cols.d(r);
        let dzl = &mut dz[l * q * pd..(l + 1) * q * pd];
        for (b, col) in dzl.chunks_exact_mut(pd).enumerate() {
            for (c, &di) in col.iter_mut().zip(d) {
                *c += di * wz[b];
            }
        }
    }
}
