//! The row source: where a model's rows come from, one chunk at a time.
//!
//! Row r carries the response y_r, the fixed-effects row x_r (p values), for each
//! random-effects term k a level l_k(r) and the row z_kr of Z_k (q_k values), a prior weight
//! w_r and an offset o_r. Everything the core computes from the data is a sum over rows (the
//! cross-product A = sum_r g_r w_r g_r' with g_r = [z_r, x_r, y_r - o_r], the moments of lme4's
//! start; later PIRLS's weighted cross-products and the bootstrap's refits), so it can be
//! computed from consecutive chunks of rows. Every such pass reads the rows through a
//! `RowSource`: the in-memory source (`MemorySource`) now, a stream of Arrow record batches or
//! Parquet row groups later, with no change to the passes.
//!
//! A chunk is a view, not a copy. X and each Z are column-major with a leading dimension
//! ld >= n (element (r, j) at `r + j * ld`), and each slice spans exactly the view, from its
//! first element to its last: (ncol - 1) ld + n values, so that the leading dimension follows
//! from the length (`leading_dim`, as BLAS's rule that a strided matrix holds at least
//! (ncol - 1) ld + n values). A contiguous matrix is the case ld = n, and rows start..end of any
//! view are again a view (`RowChunk::rows`), which is how the in-memory source and the parallel
//! cross-product split rows without copying them.
//!
//! lme4 and MixedModels.jl keep the model frame in memory and have no counterpart; their
//! `reTrms` / `ReMat` objects are the in-memory source's terms (`remat::ReMat`).

use crate::error::{LmmError, Result};
use crate::model::remat::{check_codes, ReMat, ReTermShape};
use crate::model::transform::Transform;

/// One chunk of rows, borrowed: y (n), X (n x p), per term its codes (n) and Z (n x q_k),
/// optional prior weights and offset (n each). X and each Z are column-major views whose
/// leading dimension follows from their length (see the module's documentation); a contiguous
/// matrix has n x ncol values.
pub struct RowChunk<'a> {
    pub y: &'a [f64],
    pub x: &'a [f64],
    pub codes: Vec<&'a [i32]>,
    pub z: Vec<&'a [f64]>,
    pub weights: Option<&'a [f64]>,
    pub offset: Option<&'a [f64]>,
}

/// The leading dimension of a column-major view of `n` rows and `ncol` columns held in `len`
/// values ((ncol - 1) ld + n of them), or `None` when no leading dimension ld >= n fits. With one
/// column (or none) the leading dimension is never used and is reported as n.
pub fn leading_dim(len: usize, n: usize, ncol: usize) -> Option<usize> {
    match ncol {
        0 => (len == 0).then_some(n),
        1 => (len == n).then_some(n),
        _ => {
            let extra = len.checked_sub(n)?;
            let ld = extra / (ncol - 1);
            (extra % (ncol - 1) == 0 && ld >= n).then_some(ld)
        }
    }
}

/// Rows start..end of a column-major view with leading dimension `ld` and `ncol` columns.
fn view_rows(m: &[f64], ld: usize, ncol: usize, start: usize, end: usize) -> &[f64] {
    if ncol == 0 {
        &m[..0]
    } else {
        &m[start..(ncol - 1) * ld + end]
    }
}

/// The shape of a checked chunk: p, and the number of columns and leading dimension of X and
/// of each Z. `RowChunk::check` returns it; `RowChunk::rows` and the accumulator index with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Fixed-effect columns.
    pub p: usize,
    /// Leading dimension of X.
    pub ldx: usize,
    /// Per term (q, leading dimension of Z).
    pub z: Vec<(usize, usize)>,
}

impl<'a> RowChunk<'a> {
    /// Number of rows.
    pub fn nrows(&self) -> usize {
        self.y.len()
    }

    /// Checks the shapes against the model (`shapes`, `p`) and every grouping code against its
    /// number of levels; returns the leading dimensions of the views.
    pub fn check(&self, shapes: &[ReTermShape], p: usize) -> Result<Layout> {
        let n = self.nrows();
        let ldx = leading_dim(self.x.len(), n, p).ok_or_else(|| {
            LmmError::Shape(format!(
                "X has {} values: not a column-major view of {n} rows and {p} columns",
                self.x.len()
            ))
        })?;
        if self.codes.len() != shapes.len() || self.z.len() != shapes.len() {
            return Err(LmmError::Shape(format!(
                "{} terms described but {} code arrays and {} Z matrices given",
                shapes.len(),
                self.codes.len(),
                self.z.len()
            )));
        }
        let mut z = Vec::with_capacity(shapes.len());
        for (k, s) in shapes.iter().enumerate() {
            let ld = leading_dim(self.z[k].len(), n, s.q);
            let Some(ld) = ld.filter(|_| self.codes[k].len() == n) else {
                return Err(LmmError::Shape(format!(
                    "term {k}: {} codes and {} Z values for {n} rows and q = {}",
                    self.codes[k].len(),
                    self.z[k].len(),
                    s.q
                )));
            };
            check_codes(k, self.codes[k], s.n_levels)?;
            z.push((s.q, ld));
        }
        for (name, v) in [("weights", self.weights), ("offset", self.offset)] {
            if let Some(v) = v {
                if v.len() != n {
                    return Err(LmmError::Shape(format!(
                        "{name} has {} values for {n} rows",
                        v.len()
                    )));
                }
            }
        }
        Ok(Layout { p, ldx, z })
    }

    /// Rows start..end of this (checked) chunk, as a view: no value is copied. `layout` is what
    /// `check` returned; the view's matrices keep their leading dimensions.
    #[must_use]
    pub fn rows(&self, layout: &Layout, start: usize, end: usize) -> RowChunk<'a> {
        RowChunk {
            y: &self.y[start..end],
            x: view_rows(self.x, layout.ldx, layout.p, start, end),
            codes: self.codes.iter().map(|c| &c[start..end]).collect(),
            z: self
                .z
                .iter()
                .zip(&layout.z)
                .map(|(z, &(q, ld))| view_rows(z, ld, q, start, end))
                .collect(),
            weights: self.weights.map(|w| &w[start..end]),
            offset: self.offset.map(|o| &o[start..end]),
        }
    }
}

/// A source of rows, read in chunks: every pass over the data goes through one.
pub trait RowSource {
    /// Number of rows, whatever their weights.
    fn n_rows(&self) -> usize;

    /// Number of fixed-effect columns (X is n x p).
    fn p(&self) -> usize;

    /// The random-effects terms' shapes, in theta's order.
    fn shapes(&self) -> &[ReTermShape];

    /// Calls `f` on consecutive chunks of at most `max_rows` rows (0 counts as 1), in row
    /// order, each row once; at least once (an empty source gives one empty chunk). Stops at the
    /// first error, of the source or of `f`. A source may hand out smaller chunks than asked
    /// (a stream's record batches); the chunks are checked against `shapes` and `p`.
    fn for_each_chunk(
        &self,
        max_rows: usize,
        f: &mut dyn FnMut(&RowChunk<'_>) -> Result<()>,
    ) -> Result<()>;
}

/// The rows in memory, borrowed from the caller (NumPy arrays, through `py/`): y, a
/// column-major X, the random-effects terms, optional weights and offset. Checked once, when
/// built; its chunks are views.
pub struct MemorySource<'a> {
    y: &'a [f64],
    x: &'a [f64],
    terms: Vec<ReMat<'a>>,
    shapes: Vec<ReTermShape>,
    weights: Option<&'a [f64]>,
    offset: Option<&'a [f64]>,
    layout: Layout,
}

impl<'a> MemorySource<'a> {
    /// The source over y (n), X (n x p, contiguous column-major), the terms (each n rows) and
    /// optional weights and offset (n each).
    pub fn new(
        y: &'a [f64],
        x: &'a [f64],
        p: usize,
        terms: Vec<ReMat<'a>>,
        weights: Option<&'a [f64]>,
        offset: Option<&'a [f64]>,
    ) -> Result<Self> {
        let n = y.len();
        if x.len() != n * p {
            return Err(LmmError::Shape(format!(
                "X has {} values, expected {n} x {p}",
                x.len()
            )));
        }
        for (k, t) in terms.iter().enumerate() {
            if t.n_rows() != n {
                return Err(LmmError::Shape(format!(
                    "term {k} has {} rows, y has {n}",
                    t.n_rows()
                )));
            }
        }
        let shapes: Vec<ReTermShape> = terms.iter().map(ReMat::shape).collect();
        let mut source = MemorySource {
            y,
            x,
            terms,
            shapes,
            weights,
            offset,
            layout: Layout {
                p,
                ldx: n,
                z: Vec::new(),
            },
        };
        source.layout = source.chunk().check(&source.shapes, p)?;
        Ok(source)
    }

    /// The change of variables of D that keeps A's digits (`model::transform`): the means
    /// and sizes of all rows.
    pub fn transform(&self) -> Transform {
        let mut t = Transform::from_columns(self.x, self.layout.p, self.y, self.offset);
        t.w_log2 = self.weights.map_or(0.0, Transform::weight_log2);
        t
    }

    /// The random-effects terms.
    pub fn terms(&self) -> &[ReMat<'a>] {
        &self.terms
    }

    /// All rows as one chunk.
    pub fn chunk(&self) -> RowChunk<'a> {
        RowChunk {
            y: self.y,
            x: self.x,
            codes: self.terms.iter().map(ReMat::codes).collect(),
            z: self.terms.iter().map(ReMat::z).collect(),
            weights: self.weights,
            offset: self.offset,
        }
    }
}

impl RowSource for MemorySource<'_> {
    fn n_rows(&self) -> usize {
        self.y.len()
    }

    fn p(&self) -> usize {
        self.layout.p
    }

    fn shapes(&self) -> &[ReTermShape] {
        &self.shapes
    }

    fn for_each_chunk(
        &self,
        max_rows: usize,
        f: &mut dyn FnMut(&RowChunk<'_>) -> Result<()>,
    ) -> Result<()> {
        let all = self.chunk();
        let n = all.nrows();
        let step = max_rows.max(1);
        let mut start = 0usize;
        loop {
            let end = n.min(start.saturating_add(step));
            f(&all.rows(&self.layout, start, end))?;
            start = end;
            if start >= n {
                return Ok(());
            }
        }
    }
}

/// For tests: an in-memory source handing out chunks of at most `.1` rows whatever is asked,
/// as a stream of small batches would.
#[cfg(test)]
pub(crate) struct Chunked<'a>(pub MemorySource<'a>, pub usize);

#[cfg(test)]
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn leading_dimension_follows_from_the_span() {
        assert_eq!(leading_dim(12, 4, 3), Some(4));
        assert_eq!(leading_dim(2 * 10 + 4, 4, 3), Some(10));
        assert_eq!(leading_dim(11, 4, 3), None, "odd extra over two gaps");
        assert_eq!(leading_dim(9, 4, 3), None, "ld 2.5 < n");
        assert_eq!(leading_dim(4, 4, 1), Some(4));
        assert_eq!(leading_dim(5, 4, 1), None);
        assert_eq!(leading_dim(0, 4, 0), Some(4));
        assert_eq!(leading_dim(3, 4, 2), None, "shorter than one column");
    }

    #[test]
    fn rows_are_views_with_the_parent_stride() {
        // 5 rows, X 5 x 2 (values 10 r + j), one term with q = 2.
        let y = [0.0, 1.0, 2.0, 3.0, 4.0];
        let x: Vec<f64> = (0..2)
            .flat_map(|j| (0..5).map(move |r| f64::from(10 * r + j)))
            .collect();
        let codes = [0, 1, 0, 1, 2];
        let z: Vec<f64> = (0..10).map(f64::from).collect();
        let shape = ReTermShape {
            n_levels: 3,
            q: 2,
            diagonal: false,
        };
        let term = ReMat::new(0, shape, &codes, &z).unwrap();
        let source = MemorySource::new(&y, &x, 2, vec![term], None, None).unwrap();
        let mut seen = Vec::new();
        source
            .for_each_chunk(2, &mut |c| {
                let layout = c.check(&[shape], 2)?;
                assert_eq!((layout.ldx, layout.z[0].1), (5, 5));
                for r in 0..c.nrows() {
                    let row = c.y[r] as usize;
                    assert_eq!(c.x[r + layout.ldx], (10 * row + 1) as f64);
                    assert_eq!(c.z[0][r + layout.z[0].1], (5 + row) as f64);
                    assert_eq!(c.codes[0][r], codes[row]);
                    seen.push(row);
                }
                // The view starts inside the parent's buffer: nothing was copied.
                assert!(std::ptr::eq(c.y.as_ptr(), y[c.y[0] as usize..].as_ptr()));
                Ok(())
            })
            .unwrap();
        assert_eq!(seen, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn bad_shapes_and_codes_are_errors() {
        let y = [0.0; 4];
        let x = [1.0; 8];
        let codes = [0, 1, 2, 1];
        let z = [1.0; 4];
        let shape = ReTermShape {
            n_levels: 2,
            q: 1,
            diagonal: false,
        };
        assert!(matches!(
            ReMat::new(3, shape, &codes, &z),
            Err(LmmError::Code {
                term: 3,
                row: 2,
                code: 2,
                n_levels: 2
            })
        ));
        let ok = [0, 1, 1, 0];
        let term = ReMat::new(0, shape, &ok, &z).unwrap();
        assert!(matches!(
            MemorySource::new(&y, &x[..7], 2, vec![term], None, None),
            Err(LmmError::Shape(_))
        ));
        assert!(matches!(
            MemorySource::new(&y, &x, 2, vec![term], Some(&y[..3]), None),
            Err(LmmError::Shape(_))
        ));
        let source = MemorySource::new(&y[..0], &x[..0], 2, vec![], None, None).unwrap();
        let mut calls = 0;
        source
            .for_each_chunk(10, &mut |c| {
                calls += 1;
                assert_eq!(c.nrows(), 0);
                Ok(())
            })
            .unwrap();
        assert_eq!(calls, 1, "an empty source gives one empty chunk");
    }
}
