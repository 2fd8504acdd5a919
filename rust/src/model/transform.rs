//! A change of variables of D = [X, y - offset] made inside the cross-product pass, so that
//! A = [Z X y]'W[Z X y] keeps its digits when the data do not: the cross-products square the
//! condition number, and a response of 1e8 + 300 (or a predictor far from zero against its
//! spread, or of size 1e200) leaves too few digits in y'y, X'y and X'X for the penalised
//! residual sum of squares (lme4 and MixedModels.jl form A from the raw columns and lose them).
//!
//! With j the intercept (a column of X that is 1 on every row), shifts m (the means of the
//! other columns and of y; m_j = 0) and powers of two s (one per column of D, exact scalings):
//!
//! ```text
//!   D~_c = (D_c - m_c X_j) s_c          c != j, including y (c = p)
//!   D~_j = X_j s_j
//! ```
//!
//! The model in D~ is the same model: X~ = X G with G = (I - e_j m') S invertible, and
//! y~ = (y - m_y X_j) s_y moves beta_j by m_y and scales everything in y's units. So the fit in
//! D~ gives theta unchanged, and (`restore_*`)
//!
//! ```text
//!   beta  = (G beta~) / s_y + m_y e_j,      G = S - e_j (m o s)'
//!   vcov_unscaled = G vcov~ G'
//!   sigma = sigma~ / s_y,   u = u~ / s_y,   b = b~ / s_y,   pwrss = pwrss~ / s_y^2
//!   ML:   objective = objective~ - 2 n log s_y
//!   REML: objective = objective~ - 2 (n - p) log s_y - 2 sum_c log s_c   (log det R_X moves
//!         by log det G = sum_c log s_c)
//! ```
//!
//! Prior weights are multiplied by c = 1 / their geometric mean, so that W~ = c W is of size 1
//! and weights w and k w give the same W~ (the optimiser then takes the same path). The model is again the same: with weights c w,
//! theta c^-1/2 and sigma c^1/2 give the same marginal likelihood (Var(y) = sigma^2 (Z Lambda
//! Lambda' Z' + W^-1)), and lme4's objective, which includes -sum log w, is the same number. So
//! theta = theta~ sqrt(c) (the optimiser works on theta~, in units where the weights are of
//! size 1), sigma = sigma~ / (s_y sqrt(c)), u = u~ / (s_y sqrt(c)), Lambda = Lambda~ sqrt(c),
//! the unscaled covariances
//! of beta and of b are c times theirs, and log det R_X^2 moves by p log c.
//!
//! Without an intercept nothing is shifted (a shift is then not a change of variables of the
//! same model). A column is scaled only when the size of its values (their root mean square,
//! after the shift) is outside [2^-30, 2^30]: ordinary data keep s = 1.

use std::borrow::Cow;

use crate::error::{LmmError, Result};
use crate::model::source::{Layout, RowChunk};

/// Scale a column when its size is outside 2^-SCALE_RANGE ..= 2^SCALE_RANGE.
const SCALE_RANGE: i32 = 30;

/// The change of variables of D (see the module's documentation); the identity by default.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct Transform {
    /// The intercept column of X, when the transform shifts.
    pub pivot: Option<usize>,
    /// Per column of D (p + 1 values; 0 for the pivot), or empty for none.
    pub shift: Vec<f64>,
    /// Per column of D (p + 1 values, powers of two), or empty for none.
    pub scale: Vec<f64>,
    /// log2 c: every prior weight is multiplied by c, theta of the weighted data is
    /// theta~ sqrt(c).
    pub w_log2: f64,
}

/// 2^-e for e the exponent of `size` when it is outside the range, otherwise 1.
fn power_of_two_scale(size: f64) -> f64 {
    if !(size.is_finite() && size > 0.0) {
        return 1.0;
    }
    let e = size.log2().round() as i32;
    if e.abs() <= SCALE_RANGE {
        1.0
    } else {
        // 2^-e is a normal double for |e| <= 1022; the size of a finite double is within that.
        2f64.powi(-e.clamp(-1022, 1022))
    }
}

impl Transform {
    /// The identity.
    pub fn identity() -> Transform {
        Transform::default()
    }

    /// True when it changes nothing.
    pub fn is_identity(&self) -> bool {
        self.pivot.is_none() && self.scale.iter().all(|&s| s == 1.0) && self.w_log2 == 0.0
    }

    /// c, the factor of every prior weight.
    pub fn w_scale(&self) -> f64 {
        self.w_log2.exp2()
    }

    /// sqrt(c): theta of the original data is theta~ times this.
    pub fn theta_scale(&self) -> f64 {
        (self.w_log2 / 2.0).exp2()
    }

    /// log2 c for prior weights: c = 1 / their geometric mean (over the positive ones), so
    /// that weights w and k w give the same c w and the same fit (up to rounding); 0 when the
    /// weights are all 1 or none is positive.
    pub fn weight_log2(weights: &[f64]) -> f64 {
        let (sum, count) = weights
            .iter()
            .filter(|&&w| w > 0.0 && w.is_finite())
            .fold((0.0, 0usize), |(s, k), &w| (s + w.log2(), k + 1));
        // Weights move theta's scale (theta = theta~ sqrt(c)), which the optimiser, starting
        // at 1, reaches only to its tolerance: the fit is made at weights of geometric mean 1.
        if count == 0 {
            return 0.0;
        }
        -(sum / count as f64)
    }

    /// The transform for the rows of column-major X (n x p, leading dimension n, n the length
    /// of y) and y - offset: the intercept is the first column of ones; shifts are the means
    /// over the rows, scales from the root mean square of the shifted columns.
    pub fn from_columns(x: &[f64], p: usize, y: &[f64], offset: Option<&[f64]>) -> Transform {
        Transform::from_view(x, y.len(), p, y, offset, false)
    }

    /// The transform a stream takes from its first rows (`CrossProdAccumulator`'s centring):
    /// `from_columns` of the chunk's rows, except that a column constant over them (one row,
    /// say) is sized by its mean instead of its spread of 0, so that values of size 1e200 are
    /// still scaled when the first batch is a single row.
    pub fn from_chunk(chunk: &RowChunk, layout: &Layout) -> Transform {
        Transform::from_view(chunk.x, layout.ldx, layout.p, chunk.y, chunk.offset, true)
    }

    /// `from_columns` for X with leading dimension `ld`; with `size_by_mean`, a column of spread
    /// 0 is sized by its shift.
    ///
    /// Each column's sums are folds in row order (as `Iterator::sum`, from -0.0), in two
    /// passes: the mean, then its correction with the size of the deviations. A pass runs
    /// over all the columns at once, row by row, so that the columns' independent folds
    /// overlap (one column's fold alone waits on each addition's latency).
    fn from_view(
        x: &[f64],
        ld: usize,
        p: usize,
        y: &[f64],
        offset: Option<&[f64]>,
        size_by_mean: bool,
    ) -> Transform {
        let n = y.len();
        if n == 0 {
            return Transform::identity();
        }
        let d_y: Cow<[f64]> = match offset {
            None => Cow::Borrowed(y),
            Some(o) => Cow::Owned(y.iter().zip(o).map(|(v, o)| v - o).collect()),
        };
        let cols: Vec<&[f64]> = (0..p)
            .map(|c| &x[c * ld..c * ld + n])
            .chain(std::iter::once(&d_y[..]))
            .collect();
        let pivot = (0..p).find(|&c| cols[c].iter().all(|&v| v == 1.0));
        let pd = p + 1;
        let nf = n as f64;
        // The means (the first of R's two passes), for the shifted columns.
        let m: Vec<f64> = match pivot {
            Some(j) => fold_columns(&cols, &SumFold)
                .iter()
                .enumerate()
                .map(|(c, s)| if c == j { 0.0 } else { s / nf })
                .collect(),
            None => vec![0.0; pd],
        };
        let centre: Vec<f64> = m
            .iter()
            .map(|&v| if v.is_finite() { v } else { 0.0 })
            .collect();
        // One more pass: the sum of the deviations from the mean (R's correction of the
        // mean), and their largest size with the sum of their squares scaled by it (as
        // LAPACK's dnrm2, so that squares do not overflow).
        let dev = fold_columns(&cols, &DevFold { centre: &centre });
        let mut shift = vec![0.0; pd];
        if pivot.is_some() {
            for c in (0..pd).filter(|&c| Some(c) != pivot) {
                let mc = if m[c].is_finite() {
                    m[c] + dev[c].0 / nf
                } else {
                    m[c]
                };
                shift[c] = if mc.is_finite() { mc } else { 0.0 };
            }
        }
        // The size after the shift: the root mean square of the deviations from the centre,
        // less the square of their mean (the shift's move from the centre).
        let scale = (0..pd)
            .map(|c| {
                let (_, big, _, ssq) = dev[c];
                let size = if big > 0.0 && big.is_finite() {
                    let mean = (shift[c] - centre[c]) / big;
                    big * (ssq / nf - mean * mean).max(0.0).sqrt()
                } else if size_by_mean && big == 0.0 {
                    shift[c].abs()
                } else {
                    big
                };
                power_of_two_scale(size)
            })
            .collect();
        Transform {
            pivot,
            shift,
            scale,
            w_log2: 0.0,
        }
    }

    /// Transforms one row of D (p + 1 values) in place.
    #[inline]
    pub fn apply(&self, d: &mut [f64]) {
        if let Some(j) = self.pivot {
            let xj = d[j];
            for (c, v) in d.iter_mut().enumerate() {
                if c == j {
                    *v *= self.scale[c];
                } else {
                    *v = (*v - self.shift[c] * xj) * self.scale[c];
                }
            }
        } else if !self.scale.is_empty() {
            for (v, s) in d.iter_mut().zip(&self.scale) {
                *v *= s;
            }
        }
    }

    pub(crate) fn scale_of(&self, c: usize) -> f64 {
        self.scale.get(c).copied().unwrap_or(1.0)
    }

    /// s_y, the scale of y.
    pub fn y_scale(&self, p: usize) -> f64 {
        self.scale_of(p)
    }

    /// sum_c log s_c over the columns of X.
    pub fn log_x_scale(&self, p: usize) -> f64 {
        (0..p).map(|c| self.scale_of(c).ln()).sum()
    }

    /// The objective of the original data from the transformed one (`n` rows, `p` columns).
    pub fn restore_objective(&self, objective: f64, n: f64, p: usize, reml: bool) -> f64 {
        if self.is_identity() {
            return objective;
        }
        let ly = self.y_scale(p).ln();
        if reml {
            objective - 2.0 * (n - p as f64) * ly - 2.0 * self.log_x_scale(p)
        } else {
            objective - 2.0 * n * ly
        }
    }

    /// G (p x p, column-major): beta = G beta~ / s_y + m_y e_j.
    fn g(&self, p: usize) -> Vec<f64> {
        let mut g = vec![0.0; p * p];
        for c in 0..p {
            g[c + c * p] = self.scale_of(c);
        }
        if let Some(j) = self.pivot {
            for c in (0..p).filter(|&c| c != j) {
                g[j + c * p] = -self.shift[c] * self.scale[c];
            }
        }
        g
    }

    /// beta of the original data from beta~.
    pub fn restore_beta(&self, beta: &[f64]) -> Vec<f64> {
        let p = beta.len();
        if self.is_identity() {
            return beta.to_vec();
        }
        let g = self.g(p);
        let sy = self.y_scale(p);
        let mut out: Vec<f64> = (0..p)
            .map(|i| (0..p).map(|c| g[i + c * p] * beta[c]).sum::<f64>() / sy)
            .collect();
        if let Some(j) = self.pivot {
            out[j] += self.shift[p];
        }
        out
    }

    /// The shift of column c (0 for the pivot, and for every column without a pivot).
    pub(crate) fn shift_of(&self, c: usize) -> f64 {
        if self.pivot.is_some() {
            self.shift.get(c).copied().unwrap_or(0.0)
        } else {
            0.0
        }
    }

    /// M ((p + 1) x (p + 1), column-major) with D~' = D~ M, where D~ are the rows of D
    /// transformed by `self` and D~' by `to`: the blocks of a partial accumulator move to
    /// `to`'s variables as D~'WD~' = M' (D~WD~) M and D~'WZ = M' (D~WZ) (`convert_lower`,
    /// `add_converted_columns`). With G the matrix of a transform (D~ = D G, the module's
    /// documentation extended to y: G = (I - e_j m') S), M = G^-1 G' and
    /// G^-1 = S^-1 (I + e_j m'), so
    ///
    /// ```text
    ///   M[r][c] = (a_rc s'_c - b_rc m'_c s'_c) / s_r,   a_rc = delta_rc + [r = j] m_c,
    ///   b_rc = [c != j'] (delta_rj' + [r = j] m_j')
    /// ```
    ///
    /// (j, m, s of `self`; j', m', s' of `to`). For one pivot j, M is the identity but for the
    /// ratios s'_c / s_c on its diagonal (powers of two, exact) and row j, -(m'_c - m_c) s'_c
    /// / s_j. Both must have rescaled the weights alike.
    pub fn conversion(&self, to: &Transform, p: usize) -> Result<Vec<f64>> {
        if self.w_log2 != to.w_log2 {
            return Err(LmmError::Shape(format!(
                "merging accumulators whose weights were rescaled differently (log2 factors {} \
                 and {})",
                self.w_log2, to.w_log2
            )));
        }
        let pd = p + 1;
        let mut m = vec![0.0; pd * pd];
        for c in 0..pd {
            let st = to.scale_of(c);
            let mst = to.shift_of(c) * st;
            for r in 0..pd {
                let from_pivot = self.pivot == Some(r);
                let a =
                    f64::from(u8::from(r == c)) + if from_pivot { self.shift_of(c) } else { 0.0 };
                let b = match to.pivot {
                    Some(jt) if c != jt => {
                        f64::from(u8::from(r == jt))
                            + if from_pivot { self.shift_of(jt) } else { 0.0 }
                    }
                    _ => 0.0,
                };
                m[r + c * pd] = (a * st - b * mst) / self.scale_of(r);
            }
        }
        Ok(m)
    }

    /// c G V G' (p x p, column-major) for V = vcov~ (the unscaled covariance of beta~).
    pub fn restore_vcov(&self, v: &[f64], p: usize) -> Vec<f64> {
        if self.is_identity() {
            return v.to_vec();
        }
        let cw = self.w_scale();
        let g = self.g(p);
        let mut gv = vec![0.0; p * p];
        for i in 0..p {
            for c in 0..p {
                gv[i + c * p] = (0..p).map(|e| g[i + e * p] * v[e + c * p]).sum();
            }
        }
        let mut out = vec![0.0; p * p];
        for i in 0..p {
            for c in 0..p {
                out[i + c * p] = (0..p).map(|e| gv[i + e * p] * g[c + e * p]).sum::<f64>() * cw;
            }
        }
        out
    }
}

/// One fold over the rows of a column: its state, its start, and one row's step.
trait ColumnFold: Sync {
    type State: Copy + Send + Sync;
    fn init(&self) -> Self::State;
    fn step(&self, c: usize, state: Self::State, v: f64) -> Self::State;
}

/// The sum of the values, from -0.0 (as `Iterator::sum`).
struct SumFold;

impl ColumnFold for SumFold {
    type State = f64;
    fn init(&self) -> f64 {
        -0.0
    }
    #[inline]
    fn step(&self, _: usize, sum: f64, v: f64) -> f64 {
        sum + v
    }
}

/// Of the deviations d = v - centre_c: their sum, their largest size, its reciprocal and the
/// sum of their squares scaled by it (LAPACK's dnrm2, so that squares do not overflow; the
/// reciprocal saves a division per row, and the size needs only a power of two).
struct DevFold<'a> {
    centre: &'a [f64],
}

impl ColumnFold for DevFold<'_> {
    type State = (f64, f64, f64, f64);
    fn init(&self) -> Self::State {
        (-0.0, 0.0, 0.0, 0.0)
    }
    #[inline]
    fn step(&self, c: usize, (sum, big, inv, ssq): Self::State, v: f64) -> Self::State {
        let d = v - self.centre[c];
        let a = d.abs();
        if a > big {
            let r = big / a;
            (sum + d, a, 1.0 / a, 1.0 + ssq * r * r)
        } else {
            let r = a * inv;
            (sum + d, big, inv, ssq + r * r)
        }
    }
}

/// A fold over the rows of every column, each in row order; the columns are taken up to
/// four at a time, row by row, so that their folds overlap in registers, and the groups of
/// columns are shared among the threads of the rayon pool in use (each column's fold is the
/// same whatever the grouping).
fn fold_columns<F: ColumnFold>(cols: &[&[f64]], f: &F) -> Vec<F::State> {
    use rayon::prelude::*;
    let width = cols
        .len()
        .div_ceil(rayon::current_num_threads().max(1))
        .clamp(1, 4);
    let starts: Vec<usize> = (0..cols.len()).step_by(width).collect();
    let groups: Vec<Vec<F::State>> = starts
        .par_iter()
        .map(|&base| match (cols.len() - base).min(width) {
            1 => fold_group::<1, F>(cols, base, f).to_vec(),
            2 => fold_group::<2, F>(cols, base, f).to_vec(),
            3 => fold_group::<3, F>(cols, base, f).to_vec(),
            _ => fold_group::<4, F>(cols, base, f).to_vec(),
        })
        .collect();
    groups.concat()
}

/// `fold_columns` of the W columns from `base`.
fn fold_group<const W: usize, F: ColumnFold>(cols: &[&[f64]], base: usize, f: &F) -> [F::State; W] {
    let n = cols[base].len();
    let cs: [&[f64]; W] = std::array::from_fn(|i| &cols[base + i][..n]);
    let mut acc: [F::State; W] = [f.init(); W];
    // Row by row over the W columns: an index, not W zipped iterators.
    #[allow(clippy::needless_range_loop)]
    for r in 0..n {
        for i in 0..W {
            acc[i] = f.step(base + i, acc[i], cs[i][r]);
        }
    }
    acc
}

/// M'AM ((p + 1) x (p + 1)) of a symmetric A held as its lower triangle, column-major (the
/// upper triangle ignored), returned the same way with an upper triangle of zeros: the D'WD
/// of a partial accumulator in another transform's variables (`Transform::conversion`).
pub fn convert_lower(a: &[f64], m: &[f64], pd: usize) -> Vec<f64> {
    let at = |i: usize, j: usize| if i >= j { a[i + j * pd] } else { a[j + i * pd] };
    // B = A M, then the lower triangle of M'B.
    let mut b = vec![0.0; pd * pd];
    for c in 0..pd {
        for r in 0..pd {
            b[r + c * pd] = (0..pd).map(|k| at(r, k) * m[k + c * pd]).sum();
        }
    }
    let mut out = vec![0.0; pd * pd];
    for c in 0..pd {
        for r in c..pd {
            out[r + c * pd] = (0..pd).map(|k| m[k + r * pd] * b[k + c * pd]).sum();
        }
    }
    out
}

/// Adds M'v to `into` for each column v of `from` ((p + 1) values a column, column-major):
/// the D'WZ of a partial accumulator in another transform's variables.
pub fn add_converted_columns(into: &mut [f64], from: &[f64], m: &[f64], pd: usize) {
    for (dst, src) in into.chunks_exact_mut(pd).zip(from.chunks_exact(pd)) {
        for (c, d) in dst.iter_mut().enumerate() {
            *d += m[c * pd..(c + 1) * pd]
                .iter()
                .zip(src)
                .map(|(mk, v)| mk * v)
                .sum::<f64>();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_and_scales_restore_beta_exactly_in_exact_cases() {
        // X = [1, x], y = 3 + 2 x: beta = (3, 2) whatever the shift and scale.
        let n = 4;
        let x: Vec<f64> = [1.0, 1.0, 1.0, 1.0, 1e12, 2e12, 3e12, 4e12].to_vec();
        let y: Vec<f64> = (0..n).map(|r| 3.0 + 2.0 * x[n + r]).collect();
        let t = Transform::from_columns(&x, 2, &y, None);
        assert_eq!(t.pivot, Some(0));
        assert_eq!(t.shift[1], 2.5e12);
        assert!(t.scale[1] < 1e-9 && t.scale[2] < 1e-9);
        // The transformed rows: beta~ solves D~ exactly; check the restore maps it back.
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|r| {
                let mut d = vec![1.0, x[n + r], y[r]];
                t.apply(&mut d);
                d
            })
            .collect();
        // y~ = b0 + b1 x~ on two rows gives beta~.
        let b1 = (rows[1][2] - rows[0][2]) / (rows[1][1] - rows[0][1]);
        let b0 = rows[0][2] - b1 * rows[0][1];
        let beta = t.restore_beta(&[b0, b1]);
        assert!((beta[0] - 3.0).abs() < 1e-3, "{beta:?}");
        assert!((beta[1] - 2.0).abs() < 1e-15, "{beta:?}");
    }

    /// The model of the same rows with and without the transform: the same objective, beta,
    /// sigma, vcov and b at any theta (the restore is exact up to rounding), for weights of
    /// size 1e-200 (rescaled, theta~ = theta / sqrt(c)) and a response far from zero.
    #[test]
    fn the_restored_solution_is_the_untransformed_one() {
        use crate::exec::Exec;
        use crate::lmm::LmmProblem;
        use crate::model::crossprod::accumulate_with;
        use crate::model::remat::{ReMat, ReTermShape};
        use crate::model::source::MemorySource;

        let n = 60;
        let codes: Vec<i32> = (0..n).map(|r| (r % 7) as i32).collect();
        let z: Vec<f64> = (0..n).flat_map(|_| [1.0]).collect();
        let xs: Vec<f64> = (0..n).map(|r| ((r * 37) % 11) as f64 * 0.5).collect();
        let x: Vec<f64> = std::iter::repeat_n(1.0, n)
            .chain(xs.iter().copied())
            .collect();
        let y: Vec<f64> = (0..n)
            .map(|r| 1e3 + 2.0 * xs[r] + f64::from(codes[r]) + ((r * 13) % 5) as f64)
            .collect();
        let w: Vec<f64> = (0..n).map(|r| 1e-200 * (1.0 + (r % 3) as f64)).collect();
        let shape = ReTermShape {
            n_levels: 7,
            q: 1,
            diagonal: false,
        };
        let exec = Exec::serial();
        let problem = |transformed: bool| {
            let term = ReMat::new(0, shape, &codes, &z).unwrap();
            let source = MemorySource::new(&y, &x, 2, vec![term], Some(&w), None).unwrap();
            let t = if transformed {
                source.transform()
            } else {
                Transform::identity()
            };
            assert_eq!(transformed, !t.is_identity());
            let a = accumulate_with(&source, &exec, t).unwrap().finish();
            LmmProblem::new(a, &exec).unwrap()
        };
        let (mut plain, mut moved) = (problem(false), problem(true));
        // sqrt(c) = 1e100 / sqrt(the geometric mean of 1, 2, 3).
        let ts = moved.theta_scale() * 1e-100;
        assert!((ts - 1.0 / 6f64.powf(1.0 / 6.0)).abs() < 1e-3, "{ts}");
        for theta in [1e99, 3e100] {
            for reml in [true, false] {
                let a = plain.solution(&[theta], reml).unwrap();
                let b = moved.solution(&[theta], reml).unwrap();
                let close = |u: f64, v: f64| (u - v).abs() <= 1e-9 * u.abs().max(v.abs());
                assert!(
                    close(a.objective, b.objective),
                    "{} {}",
                    a.objective,
                    b.objective
                );
                assert!(close(a.sigma, b.sigma));
                assert!(a.beta.iter().zip(&b.beta).all(|(u, v)| close(*u, *v)));
                let vu = a.vcov_unscaled.iter().zip(&b.vcov_unscaled);
                assert!(vu
                    .clone()
                    .all(|(u, v)| (u - v).abs() <= 1e-9 * a.vcov_unscaled[0]));
                assert!(a.b[0].iter().zip(&b.b[0]).all(|(u, v)| close(*u, *v)));
            }
        }
    }

    /// Rows of D = [1, x1, x2, y] far from zero and of mixed sizes.
    fn far_rows(n: usize) -> Vec<[f64; 4]> {
        (0..n)
            .map(|r| {
                let t = r as f64;
                [
                    1.0,
                    1e6 + (t * 0.37).sin(),
                    1e-20 * (2.0 + (t * 1.3).cos()),
                    1e8 + 3.0 * (t * 0.11).sin(),
                ]
            })
            .collect()
    }

    fn transform_of(rows: &[[f64; 4]]) -> Transform {
        let n = rows.len();
        let x: Vec<f64> = (0..3)
            .flat_map(|c| rows.iter().map(move |d| d[c]))
            .collect();
        let y: Vec<f64> = rows.iter().map(|d| d[3]).collect();
        Transform::from_view(&x, n, 3, &y, None, true)
    }

    /// D~' = D~ M for the rows transformed by two transforms (shifts, scales and pivots that
    /// differ), and M'AM, M'v of the cross-products are those of the rows transformed by the
    /// second one.
    #[test]
    fn the_conversion_moves_rows_and_cross_products_to_the_other_shifts() {
        let rows = far_rows(40);
        let first = transform_of(&rows[..3]);
        let other = transform_of(&rows[20..]);
        assert_eq!((first.pivot, other.pivot), (Some(0), Some(0)));
        assert!(first.shift != other.shift && first.scale[2] > 1e10);
        let one = transform_of(&rows[5..6]);
        assert!(one.scale[2] > 1e10, "one row: sized by its mean");
        let none = Transform::identity();
        let pd = 4;
        let close = |u: f64, v: f64, size: f64| (u - v).abs() <= 1e-9 * size;
        for (from, to) in [
            (&first, &other),
            (&other, &first),
            (&none, &first),
            (&one, &none),
        ] {
            let m = from.conversion(to, 3).unwrap();
            let apply = |t: &Transform, d: &[f64; 4]| {
                let mut v = d.to_vec();
                t.apply(&mut v);
                v
            };
            let (mut a_from, mut a_to) = (vec![0.0; pd * pd], vec![0.0; pd * pd]);
            let (mut v_from, mut v_to) = (vec![0.0; pd], vec![0.0; pd]);
            for (r, d) in rows.iter().enumerate() {
                let (df, dt) = (apply(from, d), apply(to, d));
                for c in 0..pd {
                    let via: f64 = (0..pd).map(|k| df[k] * m[k + c * pd]).sum();
                    let size = dt[c]
                        .abs()
                        .max(df.iter().map(|v| v.abs()).fold(0.0, f64::max));
                    assert!(
                        close(via, dt[c], size),
                        "row {r} column {c}: {via} vs {}",
                        dt[c]
                    );
                }
                let z = (r % 5) as f64;
                for j in 0..pd {
                    v_from[j] += df[j] * z;
                    v_to[j] += dt[j] * z;
                    for i in j..pd {
                        a_from[i + j * pd] += df[i] * df[j];
                        a_to[i + j * pd] += dt[i] * dt[j];
                    }
                }
            }
            let a = convert_lower(&a_from, &m, pd);
            let mut v = vec![0.0; pd];
            add_converted_columns(&mut v, &v_from, &m, pd);
            // The rounding of M'AM is relative to |M|'|A||M| (from the raw rows, the
            // conversion cannot give back the digits that their sums lost).
            let af = |k: usize, l: usize| a_from[k.max(l) + k.min(l) * pd].abs();
            let size = |i: usize, j: usize| {
                let bound: f64 = (0..pd)
                    .flat_map(|k| (0..pd).map(move |l| (k, l)))
                    .map(|(k, l)| m[k + i * pd].abs() * af(k, l) * m[l + j * pd].abs())
                    .sum();
                (a_to[i + i * pd] * a_to[j + j * pd]).sqrt() + 1e3 * bound
            };
            for j in 0..pd {
                let vb: f64 = (0..pd).map(|k| (m[k + j * pd] * v_from[k]).abs()).sum();
                assert!(close(v[j], v_to[j], v_to[j].abs() + 1e3 * vb));
                for i in 0..pd {
                    let want = if i >= j { a_to[i + j * pd] } else { 0.0 };
                    let got = a[i + j * pd];
                    assert!(
                        close(got, want, size(i, j)),
                        "A[{i}][{j}] {got} {want} {}",
                        size(i, j)
                    );
                }
            }
        }
        let mut weighted = other.clone();
        weighted.w_log2 = 1.0;
        assert!(first.conversion(&weighted, 3).is_err());
    }

    #[test]
    fn ordinary_columns_are_not_scaled_and_no_intercept_no_shift() {
        let x = [0.5, 1.5, 2.5];
        let t = Transform::from_columns(&x, 1, &[1.0, 2.0, 4.0], None);
        assert_eq!(t.pivot, None);
        assert!(t.is_identity());
        assert_eq!(power_of_two_scale(1e10), 2f64.powi(-33));
        assert_eq!(power_of_two_scale(1e-200), 2f64.powi(664));
    }
}
