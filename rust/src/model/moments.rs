//! The moments of the response that lme4's data-based start needs, as a sum over rows that
//! merges like the cross-product: the number of rows n, the mean of y and its sum of squared
//! deviations (m2), and per grouping factor the sum of y and the number of rows of each level;
//! with the rule's conditions (every Z is 1, no two terms share their codes) as flags that a
//! merge combines with "and".
//!
//! lme4's rule (`mkLmerDevfun`, for models whose terms are all scalar intercepts on distinct
//! factors): with v_k = var(ave(y, f_k)) and v_e = var(y) - sum v_k, theta_k = sqrt(v_k / v_e)
//! when v_e > 0. In sums over rows, (n - 1) v_k = sum_l m_l (ybar_l - ybar)^2 and
//! (n - 1) var(y) = m2, with m_l and ybar_l the count and mean of level l. As lme4, the response
//! is taken as given (no offset, no weights) and every row counts, also rows of weight zero.
//!
//! A chunk's n, mean and m2 come from two passes over its y (the mean, corrected by the mean of
//! the deviations, then the squares); two sets merge by Chan, Golub and LeVeque's update
//! (mean += delta n_b / n, m2 += m2_b + delta^2 n_a n_b / n), exact up to rounding, so the start
//! of a stream of batches equals the start of all rows at once up to rounding. One chunk alone
//! gives the two-pass values, to the last bit.

use crate::model::remat::ReTermShape;
use crate::model::source::RowChunk;

/// The moments of lme4's start (see the module's documentation).
#[derive(Clone, Debug, PartialEq)]
pub struct StartMoments {
    /// Rows seen.
    pub(crate) n: u64,
    /// Mean of y over those rows (0 when there are none).
    pub(crate) mean: f64,
    /// Sum of (y - mean)^2.
    pub(crate) m2: f64,
    /// Every code seen was inside its term's levels (a source whose chunks were not checked
    /// may hand out others; then the rule does not apply).
    pub(crate) valid: bool,
    /// Per term: every value of its Z seen so far is 1.
    pub(crate) ones: Vec<bool>,
    /// Per pair of terms (k, j), j < k, in the order k = 1.., j = 0..k: equal numbers of levels
    /// and equal codes on every row so far.
    pub(crate) same: Vec<bool>,
    /// Per term and level, the sum of y.
    pub(crate) sums: Vec<Vec<f64>>,
    /// Per term and level, the number of rows.
    pub(crate) counts: Vec<Vec<u64>>,
}

/// n, mean and m2 of a slice by two passes (as R's `mean` and `var`); each running sum starts
/// from -0.0, as `Iterator::sum` of f64.
fn two_pass(y: &[f64]) -> (u64, f64, f64) {
    let n = y.len() as f64;
    let mut mean = y.iter().fold(-0.0, |s, v| s + v) / n;
    mean += y.iter().fold(-0.0, |s, v| s + (v - mean)) / n;
    let m2 = y.iter().fold(-0.0, |s, v| s + (v - mean) * (v - mean));
    (y.len() as u64, mean, m2)
}

impl StartMoments {
    /// Empty moments for a model of these terms, or `None` when lme4's rule cannot apply
    /// (no term, or a term with more than one column).
    pub fn new(shapes: &[ReTermShape]) -> Option<StartMoments> {
        if shapes.is_empty() || shapes.iter().any(|s| s.q != 1) {
            return None;
        }
        let nt = shapes.len();
        Some(StartMoments {
            n: 0,
            mean: 0.0,
            m2: 0.0,
            valid: true,
            ones: vec![true; nt],
            same: (0..nt)
                .flat_map(|k| (0..k).map(move |j| shapes[k].n_levels == shapes[j].n_levels))
                .collect(),
            sums: shapes.iter().map(|s| vec![0.0; s.n_levels]).collect(),
            counts: shapes.iter().map(|s| vec![0; s.n_levels]).collect(),
        })
    }

    /// Adds the rows of a chunk of this model (its codes need not have been checked).
    pub fn add(&mut self, chunk: &RowChunk) {
        if chunk.nrows() == 0 {
            return;
        }
        let (n_b, mean_b, m2_b) = two_pass(chunk.y);
        self.merge_moments(n_b, mean_b, m2_b);
        let nt = self.ones.len();
        let mut pair = 0;
        for k in 0..nt {
            self.ones[k] &= chunk.z[k].iter().all(|&v| v == 1.0);
            for j in 0..k {
                self.same[pair] &= chunk.codes[k] == chunk.codes[j];
                pair += 1;
            }
            let (sums, counts) = (&mut self.sums[k], &mut self.counts[k]);
            for (&code, &y) in chunk.codes[k].iter().zip(chunk.y) {
                let Some(l) = usize::try_from(code).ok().filter(|&l| l < sums.len()) else {
                    self.valid = false;
                    return;
                };
                sums[l] += y;
                counts[l] += 1;
            }
        }
    }

    /// Chan, Golub and LeVeque's update with another set's n, mean and m2.
    fn merge_moments(&mut self, n_b: u64, mean_b: f64, m2_b: f64) {
        if n_b == 0 {
            return;
        }
        if self.n == 0 {
            (self.n, self.mean, self.m2) = (n_b, mean_b, m2_b);
            return;
        }
        let (na, nb) = (self.n as f64, n_b as f64);
        let n = na + nb;
        let delta = mean_b - self.mean;
        self.mean += delta * (nb / n);
        self.m2 += m2_b + delta * delta * (na * nb / n);
        self.n += n_b;
    }

    /// Adds another set of moments of the same model.
    pub fn merge(&mut self, other: &StartMoments) {
        self.merge_moments(other.n, other.mean, other.m2);
        self.valid &= other.valid;
        for (a, b) in self.ones.iter_mut().zip(&other.ones) {
            *a &= *b;
        }
        for (a, b) in self.same.iter_mut().zip(&other.same) {
            *a &= *b;
        }
        for (a, b) in self.sums.iter_mut().zip(&other.sums) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += *y;
            }
        }
        for (a, b) in self.counts.iter_mut().zip(&other.counts) {
            for (x, y) in a.iter_mut().zip(b) {
                *x += *y;
            }
        }
    }

    /// lme4's start from these moments, or `None` when the rule does not apply (fewer than two
    /// rows, a Z other than 1, two terms on one factor, v_e <= 0, a non-finite ratio).
    pub fn theta(&self) -> Option<Vec<f64>> {
        if self.n < 2 || !self.valid || self.ones.contains(&false) || self.same.contains(&true) {
            return None;
        }
        let ybar = self.mean;
        // Per factor, the sum over rows of (group mean - overall mean)^2.
        let ssb: Vec<f64> = self
            .sums
            .iter()
            .zip(&self.counts)
            .map(|(sum, count)| {
                sum.iter()
                    .zip(count)
                    .filter(|(_, &m)| m > 0)
                    .map(|(&t, &m)| {
                        let d = t / m as f64 - ybar;
                        m as f64 * d * d
                    })
                    .sum()
            })
            .collect();
        let ve = self.m2 - ssb.iter().sum::<f64>();
        if ve.is_nan() || ve <= 0.0 {
            return None;
        }
        let theta: Vec<f64> = ssb.iter().map(|v| (v / ve).sqrt()).collect();
        theta.iter().all(|t| t.is_finite()).then_some(theta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merged_moments_are_the_moments_of_all_rows() {
        let y: Vec<f64> = (0..101)
            .map(|i| 1e6 + f64::from(i % 13) * 0.37 - f64::from(i) * 0.01)
            .collect();
        let (n, mean, m2) = two_pass(&y);
        for cut in [1, 17, 50, 100] {
            let mut a = StartMoments::new(&[ReTermShape {
                n_levels: 1,
                q: 1,
                diagonal: false,
            }])
            .unwrap();
            let (na, ma, sa) = two_pass(&y[..cut]);
            let (nb, mb, sb) = two_pass(&y[cut..]);
            a.merge_moments(na, ma, sa);
            a.merge_moments(nb, mb, sb);
            assert_eq!(a.n, n);
            assert!((a.mean - mean).abs() <= 1e-15 * mean.abs(), "cut {cut}");
            // The deviations themselves carry errors of eps 1e6 (y is near 1e6): m2 agrees to
            // about eps 1e6 / sd relative, whichever way it is summed.
            assert!(
                (a.m2 - m2).abs() <= 1e-9 * m2,
                "cut {cut}: {} vs {m2}",
                a.m2
            );
        }
    }
}
