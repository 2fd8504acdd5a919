//! A random-effects term: its shape (number of levels, number of columns q, correlated or
//! diagonal) and the map from theta to the q x q lower-triangular template lambda.
//!
//! The term's relative covariance factor is Lambda = I_levels (x) lambda, so that
//! b = Lambda u with u ~ N(0, sigma^2 I). theta holds the column-major lower triangle of lambda
//! (lme4's `Lind` for a full term, MixedModels.jl's `ReMat.inds`), or only its diagonal for an
//! uncorrelated term. Diagonal elements are bounded below by 0; off-diagonal ones are free.

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
        lambda.iter_mut().for_each(|v| *v = 0.0);
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
    shapes.iter().map(|s| s.n_theta()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

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
