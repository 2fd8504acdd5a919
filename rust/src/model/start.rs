//! lme4's start for a model whose random terms are all scalar intercepts, each on its own
//! grouping factor (lme4's `mkLmerDevfun`): with v_k the variance of the group means of the
//! response for factor k (`var(ave(y, f_k))`) and v_e = var(y) - sum v_k,
//! theta_k = sqrt(v_k / v_e) when v_e > 0. As lme4, it uses the response as given (no offset,
//! no weights) and every row; it is `None` when the rule does not apply.
//!
//! The moments are read through the row source in three passes (the mean of y, its correction,
//! then the sums of squares and the group sums), each a running sum in row order: the result is
//! the same to the last bit however the source cuts its chunks.

use crate::error::Result;
use crate::model::source::RowSource;

/// lme4's data-based start (see the module's documentation), read through `source`. Errors are
/// the source's own (a stream that fails); `Ok(None)` when the rule does not apply.
pub fn lme4_start(source: &dyn RowSource) -> Result<Option<Vec<f64>>> {
    let shapes = source.shapes();
    let n = source.n_rows();
    if n < 2 || shapes.is_empty() || shapes.iter().any(|s| s.q != 1) {
        return Ok(None);
    }
    let nt = shapes.len();
    // Pass 1: the rule's conditions (every Z is 1; no two terms share a grouping factor) and
    // the sum of y. Iterator::sum of f64 starts from -0.0; so do these running sums.
    let mut all_ones = true;
    let mut same = vec![vec![true; nt]; nt];
    let mut sum_y = -0.0;
    source.for_each_chunk(usize::MAX, &mut |c| {
        all_ones &= c.z.iter().all(|z| z.iter().all(|&v| v == 1.0));
        for k in 0..nt {
            for j in 0..k {
                same[k][j] &= shapes[k].n_levels == shapes[j].n_levels && c.codes[k] == c.codes[j];
            }
        }
        sum_y = c.y.iter().fold(sum_y, |s, v| s + v);
        Ok(())
    })?;
    if !all_ones || (0..nt).any(|k| (0..k).any(|j| same[k][j])) {
        return Ok(None);
    }
    let nf = n as f64;
    let mut ybar = sum_y / nf;
    // Pass 2: the correction of the mean.
    let mut correction = -0.0;
    source.for_each_chunk(usize::MAX, &mut |c| {
        correction = c.y.iter().fold(correction, |s, v| s + (v - ybar));
        Ok(())
    })?;
    ybar += correction / nf;
    // Pass 3: the total sum of squares and, per factor, the sums and counts of its groups.
    let mut sst = -0.0;
    let mut sums: Vec<Vec<f64>> = shapes.iter().map(|s| vec![0.0; s.n_levels]).collect();
    let mut counts: Vec<Vec<usize>> = shapes.iter().map(|s| vec![0; s.n_levels]).collect();
    let mut in_range = true;
    source.for_each_chunk(usize::MAX, &mut |c| {
        sst = c.y.iter().fold(sst, |s, v| s + (v - ybar) * (v - ybar));
        for (k, s) in shapes.iter().enumerate() {
            for (r, &code) in c.codes[k].iter().enumerate() {
                let Some(l) = usize::try_from(code).ok().filter(|&l| l < s.n_levels) else {
                    in_range = false;
                    return Ok(());
                };
                sums[k][l] += c.y[r];
                counts[k][l] += 1;
            }
        }
        Ok(())
    })?;
    if !in_range {
        return Ok(None);
    }
    // Per factor, the sum over rows of (group mean - overall mean)^2.
    let ssb: Vec<f64> = sums
        .iter()
        .zip(&counts)
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
    let ve = sst - ssb.iter().sum::<f64>();
    if ve.is_nan() || ve <= 0.0 {
        return Ok(None);
    }
    let theta: Vec<f64> = ssb.iter().map(|v| (v / ve).sqrt()).collect();
    Ok(theta.iter().all(|t| t.is_finite()).then_some(theta))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LmmError;
    use crate::model::remat::{ReMat, ReTermShape};
    use crate::model::source::{MemorySource, RowChunk};

    fn shape(n_levels: usize, q: usize) -> ReTermShape {
        ReTermShape {
            n_levels,
            q,
            diagonal: false,
        }
    }

    fn source<'a>(
        y: &'a [f64],
        x: &'a [f64],
        terms: &[(&'a [i32], &'a [f64], ReTermShape)],
    ) -> MemorySource<'a> {
        let terms = terms
            .iter()
            .enumerate()
            .map(|(k, &(c, z, s))| ReMat::new(k, s, c, z).unwrap())
            .collect();
        MemorySource::new(y, x, 1, terms, None, None).unwrap()
    }

    /// The in-memory source cut into chunks of `max` rows.
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
    fn lme4_start_is_the_ratio_of_moments() {
        // Two crossed factors; R: v <- sapply(list(f, g), function(f) var(ave(y, f)));
        // sqrt(v / (var(y) - sum(v))) gives the values below.
        let y = [1.0, 2.0, 4.0, 3.0, 7.0, 5.0, 6.0, 9.0];
        let f = [0, 0, 1, 1, 2, 2, 3, 3];
        let g = [0, 1, 0, 1, 0, 1, 0, 1];
        let ones = [1.0; 8];
        let x = [1.0; 8];
        let s = source(
            &y,
            &x,
            &[(&f, &ones, shape(4, 1)), (&g, &ones, shape(2, 1))],
        );
        let t = lme4_start(&s).unwrap().expect("the rule applies");
        // Group means by f: 1.5, 3.5, 6, 7.5 (mean 4.625); by g: 4.5, 4.75.
        let ybar = 4.625;
        let ssb_f: f64 = [1.5, 3.5, 6.0, 7.5]
            .iter()
            .map(|m: &f64| 2.0 * (m - ybar).powi(2))
            .sum();
        let ssb_g: f64 = [4.5, 4.75]
            .iter()
            .map(|m: &f64| 4.0 * (m - ybar).powi(2))
            .sum();
        let sst: f64 = y.iter().map(|v| (v - ybar).powi(2)).sum();
        let ve = sst - ssb_f - ssb_g;
        assert!((t[0] - (ssb_f / ve).sqrt()).abs() < 1e-14);
        assert!((t[1] - (ssb_g / ve).sqrt()).abs() < 1e-14);
        // Read in chunks of any size: the same bits.
        for max in [1, 3, 5, 8] {
            let chunked = Chunked(
                source(
                    &y,
                    &x,
                    &[(&f, &ones, shape(4, 1)), (&g, &ones, shape(2, 1))],
                ),
                max,
            );
            assert_eq!(lme4_start(&chunked), Ok(Some(t.clone())), "chunks of {max}");
        }
        // Not for a term with a slope, nor for two terms on one factor, nor a Z other than 1.
        let z2 = [1.0; 16];
        let s2 = source(&y, &x, &[(&f, &z2, shape(4, 2)), (&g, &ones, shape(2, 1))]);
        assert_eq!(lme4_start(&s2), Ok(None));
        let s3 = source(
            &y,
            &x,
            &[(&f, &ones, shape(4, 1)), (&f, &ones, shape(4, 1))],
        );
        assert_eq!(lme4_start(&s3), Ok(None));
        let mut z = ones;
        z[5] = 2.0;
        let s4 = source(&y, &x, &[(&f, &z, shape(4, 1))]);
        assert_eq!(lme4_start(&s4), Ok(None));
    }

    /// A source whose second chunk fails, as a stream might.
    struct Failing<'a>(MemorySource<'a>);

    impl RowSource for Failing<'_> {
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
            _max_rows: usize,
            f: &mut dyn FnMut(&RowChunk<'_>) -> Result<()>,
        ) -> Result<()> {
            let mut seen = 0;
            self.0.for_each_chunk(4, &mut |c| {
                seen += 1;
                if seen == 2 {
                    return Err(LmmError::Shape("stream broke".into()));
                }
                f(c)
            })
        }
    }

    #[test]
    fn a_failing_source_is_an_error() {
        let y = [1.0, 2.0, 4.0, 3.0, 7.0, 5.0, 6.0, 9.0];
        let f = [0, 0, 1, 1, 2, 2, 3, 3];
        let ones = [1.0; 8];
        let s = Failing(source(&y, &ones, &[(&f, &ones, shape(4, 1))]));
        assert_eq!(lme4_start(&s), Err(LmmError::Shape("stream broke".into())));
    }
}
