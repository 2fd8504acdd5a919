//! `multilevel._core.glmm_working`: one batch of a streamed GLMM's PIRLS pass in one loop over
//! its rows, with the core's family functions (the in-memory fit's, `glmm::family`):
//! eta = offset + X beta + sum_k Z_k b_k[codes_k], mu, the deviance residuals, and the
//! working weights w = wt mu_eta^2 / V(mu) and response z (eta - offset for the joint beta
//! and u step, eta - offset - X beta for u alone) that the caller adds to an `Accumulator`.
//! NumPy did the same in a dozen temporaries per batch, four times slower. Rows without
//! information (a zero prior weight, mu_eta underflowed) get w = 0 and z = the base.

use numpy::{IntoPyArray, PyArray1, PyReadonlyArray1, PyReadonlyArray2};
use pyo3::prelude::*;

use crate::error::LmmError;
use crate::glmm::family::{Distribution, Family, Link};

/// (z, w) when asked for, the deviance, and (sum wt log mu, sum wt y / mu, the squared
/// Pearson residuals' sum).
type WorkingOut<'py> = (
    Option<(Bound<'py, PyArray1<f64>>, Bound<'py, PyArray1<f64>>)>,
    f64,
    [f64; 3],
);

/// One batch's working response and weights (`mode` 1: joint, 2: u alone, 0: neither).
#[pyfunction]
#[pyo3(signature = (y, pw, offset, x, beta, terms, family, link, nb_theta, mode))]
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
) -> PyResult<WorkingOut<'py>> {
    let dist = Distribution::from_name(family, nb_theta)
        .ok_or_else(|| LmmError::Shape(format!("unknown family {family:?}")))?;
    let link =
        Link::from_name(link).ok_or_else(|| LmmError::Shape(format!("unknown link {link:?}")))?;
    let fam = Family::new(dist, link);
    let (y, pw, o, x) = (y.as_array(), pw.as_array(), offset.as_array(), x.as_array());
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
    let dispersion = fam.dist.has_dispersion();
    let want = mode != 0;
    let (mut zv, mut wv) = if want {
        (vec![0.0; n], vec![0.0; n])
    } else {
        (Vec::new(), Vec::new())
    };
    let mut dev = 0.0;
    let mut sums = [0.0; 3];
    py.detach(|| {
        // The linear predictor column by column (X and Z are column-major in the spill).
        let mut eta_f: Vec<f64> = o.iter().copied().collect();
        for (j, bj) in beta.iter().enumerate() {
            for (e, xv) in eta_f.iter_mut().zip(x.column(j)) {
                *e += xv * bj;
            }
        }
        let mut eta = eta_f.clone();
        for (c, z, b) in &views {
            for a in 0..z.ncols() {
                let ba = b.column(a);
                for ((e, zv), &l) in eta.iter_mut().zip(z.column(a)).zip(c.iter()) {
                    *e += zv * ba[l as usize];
                }
            }
        }
        for r in 0..n {
            let (mu, me) = fam.link.linkinv_mu_eta(eta[r]);
            let (yr, wr) = (y[r], pw[r]);
            dev += fam.dev_resid(yr, mu, wr);
            let var = fam.variance(mu);
            if dispersion {
                sums[0] += wr * mu.ln();
                sums[1] += wr * yr / mu;
            }
            sums[2] += wr * (yr - mu) * (yr - mu) / var;
            if want {
                let base = if mode == 1 {
                    eta[r] - o[r]
                } else {
                    eta[r] - eta_f[r]
                };
                let w = wr * me * me / var;
                let z = base + (yr - mu) / me;
                if z.is_finite() && w.is_finite() {
                    zv[r] = z;
                    wv[r] = w;
                } else {
                    zv[r] = base;
                    wv[r] = 0.0;
                }
            }
        }
    });
    let zw = want.then(|| (zv.into_pyarray(py), wv.into_pyarray(py)));
    Ok((zw, dev, sums))
}
