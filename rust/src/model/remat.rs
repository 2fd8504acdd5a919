//! A random-effects term: its shape (number of levels, number of columns q, correlated or
//! diagonal), the map from theta to the q x q lower-triangular template lambda (the one
//! implementation of Lambda(theta)), and the term itself (`ReMat`): per row a level and q
//! columns of Z, borrowed from the caller.
//!
//! Z_k is n x (levels q), with row r holding z_r (q values) in the columns of level l(r) and
//! zeros elsewhere; `ReMat` stores only the codes l(r) and the dense n x q columns, and
//! multiplies by Z_k and Z_k' without forming it (MixedModels.jl's `ReMat`, lme4's `Ztlist`).
//!
//! The term's relative covariance factor is Lambda = I_levels (x) lambda, so that
//! b = Lambda u with u ~ N(0, sigma^2 I). theta holds the column-major lower triangle of lambda
//! (lme4's `Lind` for a full term, MixedModels.jl's `ReMat.inds`), or only its diagonal for an
//! uncorrelated term. Diagonal elements are bounded below by 0; off-diagonal ones are free.

use crate::error::{LmmError, Result};

/// Shape of one random-effects term.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReTermShape {
    pub n_levels: usize,
    pub q: usize,
    pub diagonal: bool,
}

impl ReTermShape {
    /// Number of theta parameters of this term.
    pub fn n_theta(&self) -> usize {
        if self.diagonal {
            self.q
        } else {
            self.q * (self.q + 1) / 2
        }
    }

    /// Number of random effects (rows of this term's block of u).
    pub fn size(&self) -> usize {
        self.n_levels * self.q
    }

    /// (row, col) of each theta element in lambda, in theta order.
    pub fn theta_positions(&self) -> Vec<(usize, usize)> {
        let q = self.q;
        if self.diagonal {
            (0..q).map(|i| (i, i)).collect()
        } else {
            (0..q).flat_map(|j| (j..q).map(move |i| (i, j))).collect()
        }
    }

    /// lme4's lower bounds: 0 on the diagonal, -inf elsewhere.
    pub fn lower_bounds(&self) -> Vec<f64> {
        self.theta_positions()
            .into_iter()
            .map(|(i, j)| if i == j { 0.0 } else { f64::NEG_INFINITY })
            .collect()
    }

    /// lme4's starting value: the identity.
    pub fn theta0(&self) -> Vec<f64> {
        self.theta_positions()
            .into_iter()
            .map(|(i, j)| if i == j { 1.0 } else { 0.0 })
            .collect()
    }

    /// The q x q template lambda (column-major) for this term's slice of theta.
    pub fn lambda(&self, theta: &[f64]) -> Vec<f64> {
        let mut lambda = vec![0.0; self.q * self.q];
        self.fill_lambda(theta, &mut lambda);
        lambda
    }

    /// Writes lambda for this term's slice of theta into `lambda` (q x q), without allocating.
    pub fn fill_lambda(&self, theta: &[f64], lambda: &mut [f64]) {
        let q = self.q;
        lambda.fill(0.0);
        if self.diagonal {
            for (i, t) in theta.iter().enumerate().take(q) {
                lambda[i + i * q] = *t;
            }
        } else {
            // Column-major lower triangle, theta_positions' order.
            let mut k = 0;
            for j in 0..q {
                for i in j..q {
                    lambda[i + j * q] = theta[k];
                    k += 1;
                }
            }
        }
    }
}

/// Splits theta into per-term lambda templates.
pub fn lambdas(shapes: &[ReTermShape], theta: &[f64]) -> Vec<Vec<f64>> {
    let mut offset = 0;
    shapes
        .iter()
        .map(|s| {
            let l = s.lambda(&theta[offset..offset + s.n_theta()]);
            offset += s.n_theta();
            l
        })
        .collect()
}

/// Total number of theta parameters.
pub fn n_theta(shapes: &[ReTermShape]) -> usize {
    shapes.iter().map(ReTermShape::n_theta).sum()
}

/// Checks that every code of term `term` lies in 0..n_levels (the first that does not is the
/// error, with its row).
pub fn check_codes(term: usize, codes: &[i32], n_levels: usize) -> Result<()> {
    match codes.iter().position(|&c| c < 0 || c as usize >= n_levels) {
        Some(row) => Err(LmmError::Code {
            term,
            row,
            code: i64::from(codes[row]),
            n_levels,
        }),
        None => Ok(()),
    }
}

/// One random-effects term as the core holds it: its shape, the level of each row (0-based
/// codes) and Z's n x q column-major columns, borrowed from the caller and checked once.
#[derive(Clone, Copy, Debug)]
pub struct ReMat<'a> {
    shape: ReTermShape,
    codes: &'a [i32],
    z: &'a [f64],
}

impl<'a> ReMat<'a> {
    /// The term over `codes` (n) and `z` (n x q, column-major); `term` is its index in the
    /// model, for the error message of a code outside 0..n_levels.
    pub fn new(term: usize, shape: ReTermShape, codes: &'a [i32], z: &'a [f64]) -> Result<Self> {
        let n = codes.len();
        if z.len() != n * shape.q {
            return Err(LmmError::Shape(format!(
                "term {term}: {} Z values for {n} rows and q = {}",
                z.len(),
                shape.q
            )));
        }
        check_codes(term, codes, shape.n_levels)?;
        Ok(ReMat { shape, codes, z })
    }

    pub fn shape(&self) -> ReTermShape {
        self.shape
    }

    /// The level of each row.
    pub fn codes(&self) -> &'a [i32] {
        self.codes
    }

    /// Z's dense columns, n x q column-major.
    pub fn z(&self) -> &'a [f64] {
        self.z
    }

    pub fn n_rows(&self) -> usize {
        self.codes.len()
    }

    /// out += Z b, for b of length levels q (level-major: q values per level) and out of n.
    pub fn mul_add(&self, b: &[f64], out: &mut [f64]) -> Result<()> {
        self.check_lengths(b.len(), out.len())?;
        let (n, q) = (self.n_rows(), self.shape.q);
        for (r, o) in out.iter_mut().enumerate() {
            let l = self.codes[r] as usize;
            for a in 0..q {
                *o += self.z[r + a * n] * b[l * q + a];
            }
        }
        Ok(())
    }

    /// out += Z' v, for v of length n and out of levels q (level-major).
    pub fn t_mul_add(&self, v: &[f64], out: &mut [f64]) -> Result<()> {
        self.check_lengths(out.len(), v.len())?;
        let (n, q) = (self.n_rows(), self.shape.q);
        for (r, &vr) in v.iter().enumerate() {
            let l = self.codes[r] as usize;
            for a in 0..q {
                out[l * q + a] += self.z[r + a * n] * vr;
            }
        }
        Ok(())
    }

    fn check_lengths(&self, effects: usize, rows: usize) -> Result<()> {
        if effects != self.shape.size() || rows != self.n_rows() {
            return Err(LmmError::Shape(format!(
                "a term of {} rows and {} random effects multiplied with vectors of {rows} and \
                 {effects}",
                self.n_rows(),
                self.shape.size()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Z as an explicit dense n x (levels q) column-major matrix.
    fn dense_z(t: &ReMat) -> Vec<f64> {
        let (n, q) = (t.n_rows(), t.shape().q);
        let cols = t.shape().size();
        let mut z = vec![0.0; n * cols];
        for r in 0..n {
            let l = t.codes()[r] as usize;
            for a in 0..q {
                z[r + (l * q + a) * n] = t.z()[r + a * n];
            }
        }
        z
    }

    #[test]
    fn remat_products_match_the_dense_z() {
        let n = 7;
        let codes = [2, 0, 1, 2, 2, 0, 3];
        let z: Vec<f64> = (0..2 * n).map(|i| i as f64 * 0.37 - 1.1).collect();
        let shape = ReTermShape {
            n_levels: 5,
            q: 2,
            diagonal: false,
        };
        let t = ReMat::new(0, shape, &codes, &z).unwrap();
        let dz = dense_z(&t);
        let m = shape.size();
        let b: Vec<f64> = (0..m).map(|i| 0.5 - i as f64 * 0.21).collect();
        let v: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
        let mut zb = vec![1.0; n];
        t.mul_add(&b, &mut zb).unwrap();
        for r in 0..n {
            let dense: f64 = (0..m).map(|c| dz[r + c * n] * b[c]).sum();
            assert!((zb[r] - 1.0 - dense).abs() < 1e-14, "row {r}");
        }
        let mut ztv = vec![0.0; m];
        t.t_mul_add(&v, &mut ztv).unwrap();
        for c in 0..m {
            let dense: f64 = (0..n).map(|r| dz[r + c * n] * v[r]).sum();
            assert!((ztv[c] - dense).abs() < 1e-14, "column {c}");
        }
        // Level 4 has no row: its random effects meet no observation.
        assert_eq!(&ztv[8..], &[0.0, 0.0]);
        // Wrong lengths are errors.
        assert!(t.mul_add(&b[1..], &mut zb).is_err());
        assert!(t.t_mul_add(&v, &mut ztv[1..]).is_err());
    }

    #[test]
    fn full_term_layout_is_lme4s() {
        let s = ReTermShape {
            n_levels: 3,
            q: 2,
            diagonal: false,
        };
        assert_eq!(s.n_theta(), 3);
        assert_eq!(s.theta_positions(), vec![(0, 0), (1, 0), (1, 1)]);
        assert_eq!(s.lambda(&[1.0, 2.0, 3.0]), vec![1.0, 2.0, 0.0, 3.0]);
        assert_eq!(s.lower_bounds()[1], f64::NEG_INFINITY);
        assert_eq!(s.theta0(), vec![1.0, 0.0, 1.0]);
    }

    #[test]
    fn diagonal_term_has_q_parameters() {
        let s = ReTermShape {
            n_levels: 3,
            q: 2,
            diagonal: true,
        };
        assert_eq!(s.n_theta(), 2);
        assert_eq!(s.lambda(&[2.0, 3.0]), vec![2.0, 0.0, 0.0, 3.0]);
    }
}
