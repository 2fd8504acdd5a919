//! `multilevel._core.glmm_working`: one batch of a streamed GLMM's PIRLS pass in one loop over
//! its rows, with the core's family functions (the in-memory fit's, `glmm::family`):
//! eta = offset + X beta + sum_k Z_k b_k[codes_k], mu, the deviance residuals, and the
//! working weights w = wt mu_eta^2 / V(mu) and response z (eta - offset for the joint beta
//! and u step, eta - offset - X beta for u alone) that the caller adds to an `Accumulator`.
//! NumPy did the same in a dozen temporaries per batch, four times slower. Rows run in fixed
//! lanes of 32,768 on the fit's threads, their sums added in lane order (the same values
//! whatever the number of threads). Rows without
//! information (a zero prior weight, mu_eta underflowed) get w = 0 and z = the base.

use numpy::ndarray::{ArrayView1, ArrayView2};
use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;
use rayon::prelude::*;

use crate::error::LmmError;
use crate::exec::Exec;
use crate::glmm::family::{Distribution, Family, Link};

/// Rows per lane of the parallel loop.
const LANE: usize = 1 << 15;

/// A term as the loop reads it: codes, Z (rows x q), b (levels x q).
type TermView<'a> = (
    ArrayView1<'a, i32>,
    ArrayView2<'a, f64>,
    ArrayView2<'a, f64>,
);

/// One batch's arrays.
struct Batch<'a> {
    y: &'a [f64],
    pw: &'a [f64],
    o: &'a [f64],
    x: ArrayView2<'a, f64>,
    beta: &'a [f64],
    terms: &'a [TermView<'a>],
    fam: Family,
    mode: u8,
}

impl Batch<'_> {
    /// Rows `start..start + LANE` (or to the end): their deviance and sums, and z and w into
    /// `out` when given.
    fn lane(&self, start: usize, out: Option<(&mut [f64], &mut [f64])>) -> (f64, [f64; 3]) {
        let end = (start + LANE).min(self.y.len());
        let m = end.saturating_sub(start);
        // The linear predictor column by column (X and Z are column-major in the spill).
        let mut eta_f: Vec<f64> = self.o[start..end].to_vec();
        for (j, bj) in self.beta.iter().enumerate() {
            let col = self.x.column(j);
            for (r, e) in eta_f.iter_mut().enumerate() {
                *e += col[start + r] * bj;
            }
        }
        let mut eta = eta_f.clone();
        for (c, z, b) in self.terms {
            for a in 0..z.ncols() {
                let (zc, ba) = (z.column(a), b.column(a));
                for (r, e) in eta.iter_mut().enumerate() {
                    *e += zc[start + r] * ba[c[start + r] as usize];
                }
            }
        }
        let fam = self.fam;
        let dispersion = fam.dist.has_dispersion();
        let mut dev = 0.0;
        let mut sums = [0.0; 3];
        let mut out = out;
        for r in 0..m {
            let (mu, me) = fam.link.linkinv_mu_eta(eta[r]);
            let (yr, wr) = (self.y[start + r], self.pw[start + r]);
            dev += fam.dev_resid(yr, mu, wr);
            let var = fam.variance(mu);
            if dispersion {
                sums[0] += wr * mu.ln();
                sums[1] += wr * yr / mu;
            }
            sums[2] += wr * (yr - mu) * (yr - mu) / var;
            if let Some((zc, wc)) = out.as_mut() {
                let base = if self.mode == 1 {
                    eta[r] - self.o[start + r]
                } else {
                    eta[r] - eta_f[r]
                };
                let w = wr * me * me / var;
                let z = base + (yr - mu) / me;
                if z.is_finite() && w.is_finite() {
                    zc[r] = z;
                    wc[r] = w;
                } else {
                    zc[r] = base;
                    wc[r] = 0.0;
                }
            }
        }
        (dev, sums)
    }
}

/// (z, w) when asked for, the deviance, and (sum wt log mu, sum wt y / mu, the squared
/// Pearson residuals' sum).
type WorkingOut<'py> = (
    Option<(Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>)>,
    f64,
    [f64; 3],
);

/// One batch's working response and weights (`mode` 1: joint, 2: u alone, 0: neither).
#[pyfunction]
#[pyo3(signature = (y, pw, offset, x, beta, terms, family, link, nb_theta, mode, threads=0))]
#[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]
pub fn glmm_working<'py>(
    py: Python<'py>,
    y: PyReadonlyArray1<'py, f64>,
    pw: PyReadonlyArray1<'py, f64>,
    offset: PyReadonlyArray1<'py, f64>,
    x: PyReadonlyArray2<'py, f64>,
    beta: Vec<f64>,
    terms: Vec<(
        PyReadonlyArray1<'py, i32>,
        PyReadonlyArray2<'py, f64>,
        PyReadonlyArray2<'py, f64>,
    )>,
    family: &str,
    link: &str,
    nb_theta: Option<f64>,
    mode: u8,
    threads: usize,
) -> PyResult<WorkingOut<'py>> {
    let dist = Distribution::from_name(family, nb_theta)
        .ok_or_else(|| LmmError::Shape(format!("unknown family {family:?}")))?;
    let link =
        Link::from_name(link).ok_or_else(|| LmmError::Shape(format!("unknown link {link:?}")))?;
    let fam = Family::new(dist, link);
    let (y, pw, o, x) = (y.as_array(), pw.as_array(), offset.as_array(), x.as_array());
    let (Some(ys), Some(pws), Some(os)) = (y.as_slice(), pw.as_slice(), o.as_slice()) else {
        return Err(LmmError::Shape(
            "glmm_working: y, weights and offset must be contiguous".into(),
        )
        .into());
    };
    let n = y.len();
    if pw.len() != n || o.len() != n || x.nrows() != n || x.ncols() != beta.len() {
        return Err(LmmError::Shape("glmm_working: arrays of different lengths".into()).into());
    }
    let views: Vec<_> = terms
        .iter()
        .map(|(c, z, b)| (c.as_array(), z.as_array(), b.as_array()))
        .collect();
    for (c, z, b) in &views {
        if c.len() != n || z.nrows() != n || b.ncols() != z.ncols() {
            return Err(LmmError::Shape("glmm_working: a term of the wrong shape".into()).into());
        }
        if c.iter().any(|&v| v < 0 || v as usize >= b.nrows()) {
            return Err(LmmError::Shape("glmm_working: a code outside the levels".into()).into());
        }
    }
    let want = mode != 0;
    let len = if want { n } else { 0 };
    let (mut zv, mut wv) = (vec![0.0; len], vec![0.0; len]);
    let batch = Batch {
        y: ys,
        pw: pws,
        o: os,
        x,
        beta: &beta,
        terms: &views,
        fam,
        mode,
    };
    crate::exec::check_interrupt()?;
    let exec = Exec::new(threads);
    // Fixed lanes summed in order: the same sums whatever the number of threads.
    let lanes = n.div_ceil(LANE).max(1);
    let parts: Vec<(f64, [f64; 3])> = py.detach(|| {
        exec.install(|| {
            if want {
                zv.par_chunks_mut(LANE)
                    .zip(wv.par_chunks_mut(LANE))
                    .enumerate()
                    .map(|(k, (zc, wc))| batch.lane(k * LANE, Some((zc, wc))))
                    .collect()
            } else {
                (0..lanes)
                    .into_par_iter()
                    .map(|k| batch.lane(k * LANE, None))
                    .collect()
            }
        })
    });
    // a ctrl-C during the lanes (the core's flag, set under interrupt::Watch)
    crate::exec::check_interrupt()?;
    let mut dev = 0.0;
    let mut sums = [0.0; 3];
    for (d, s) in parts {
        dev += d;
        for (a, b) in sums.iter_mut().zip(s) {
            *a += b;
        }
    }
    let zw = want.then(|| (zv.into_pyarray(py), wv.into_pyarray(py)));
    Ok((zw, dev, sums))
}
