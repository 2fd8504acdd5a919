//! lme4's start for a model whose random terms are all scalar intercepts, each on its own
//! grouping factor (lme4's `mkLmerDevfun`): with v_k the variance of the group means of the
//! response for factor k (`var(ave(y, f_k))`) and v_e = var(y) - sum v_k,
//! theta_k = sqrt(v_k / v_e) when v_e > 0. As lme4, it uses the response as given (no offset,
//! no weights) and every row; it is `None` when the rule does not apply.
//!
//! The moments it needs are a sum over rows (`model::moments::StartMoments`): the cross-product
//! accumulator carries them, so that a problem built from a stream of batches gets its start
//! without the rows (`CrossProdAccumulator::lme4_start`). This function reads them through a row
//! source in one pass, one chunk at a time; for a source of one chunk (the in-memory source) the
//! moments are the two-pass ones, to the last bit.

use crate::error::Result;
use crate::model::moments::StartMoments;
use crate::model::source::RowSource;

/// lme4's data-based start (see the module's documentation), read through `source`. Errors are
/// the source's own (a stream that fails); `Ok(None)` when the rule does not apply.
pub fn lme4_start(source: &dyn RowSource) -> Result<Option<Vec<f64>>> {
    let Some(mut moments) = StartMoments::new(source.shapes()) else {
        return Ok(None);
    };
    source.for_each_chunk(usize::MAX, &mut |c| {
        moments.add(c);
        Ok(())
    })?;
    Ok(moments.theta())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::LmmError;
    use crate::model::remat::{ReMat, ReTermShape};
    use crate::model::source::{Chunked, MemorySource, RowChunk};

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
        // Read in chunks of any size: the same start up to rounding (moments of chunks merge).
        for max in [1, 3, 5, 8] {
            let chunked = Chunked(
                source(
                    &y,
                    &x,
                    &[(&f, &ones, shape(4, 1)), (&g, &ones, shape(2, 1))],
                ),
                max,
            );
            let tc = lme4_start(&chunked).unwrap().expect("the rule applies");
            for (a, b) in tc.iter().zip(&t) {
                assert!((a - b).abs() <= 1e-14 * b, "chunks of {max}: {a} vs {b}");
            }
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
