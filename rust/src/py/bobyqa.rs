//! `multilevel._core.bobyqa`: the core's BOBYQA minimising a Python callable, for the fits
//! whose objective has to run in Python (a streamed GLMM, where each evaluation is a few
//! passes over record batches). The stopping rules, the rescaling and the initial steps are
//! those of the in-core GLMM fit (`glmm::fit`): NLopt's default steps, each capped by the
//! caller's `steps` when given. The GIL is held (the objective is Python); an exception
//! raised by the objective (ctrl-C's `KeyboardInterrupt` included) stops the minimisation at
//! the next evaluation and is raised again here; SIGINT also reaches the core's flag
//! (`interrupt::Watch`), so the optimiser stops even when Python's handler does not raise.

use pyo3::prelude::*;

use crate::exec;
use crate::optim::bobyqa::{default_initial_steps, Bobyqa, BobyqaStatus, Tolerances};

/// (x, f, evaluations, status) as `bobyqa` returns them.
type BobyqaOut = (Vec<f64>, f64, usize, String);

/// Minimises `f(list[float]) -> float` over `lower <= x` from `x0`.
#[pyfunction]
#[pyo3(signature = (f, x0, lower, steps=None, xtol_rel=1e-4, xtol_abs=1e-8, ftol_abs=1e-8, max_eval=100_000))]
#[allow(clippy::too_many_arguments, clippy::needless_pass_by_value)]
pub fn bobyqa(
    f: Bound<'_, PyAny>,
    x0: Vec<f64>,
    lower: Vec<f64>,
    steps: Option<Vec<f64>>,
    xtol_rel: f64,
    xtol_abs: f64,
    ftol_abs: f64,
    max_eval: usize,
) -> PyResult<BobyqaOut> {
    let n = x0.len();
    if lower.len() != n || steps.as_ref().is_some_and(|s| s.len() != n) || n == 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(
            "bobyqa: x0, lower and steps must have the same, non-zero length",
        ));
    }
    let upper = vec![f64::INFINITY; n];
    let mut s = vec![0.0; n];
    default_initial_steps(&x0, &lower, &upper, &mut s);
    if let Some(st) = &steps {
        for (si, cap) in s.iter_mut().zip(st) {
            *si = si.min(*cap);
        }
    }
    let tol = Tolerances {
        xtol_rel,
        xtol_abs,
        ftol_rel: 0.0,
        ftol_abs,
        max_eval: max_eval.max(2 * n + 2),
    };
    let mut x = x0;
    let mut error: Option<PyErr> = None;
    let mut objective = |v: &[f64]| -> f64 {
        if error.is_some() {
            return f64::NAN;
        }
        match f.call1((v.to_vec(),)).and_then(|r| r.extract::<f64>()) {
            Ok(value) => value,
            Err(e) => {
                error = Some(e);
                // The optimiser stops before its next evaluation (NLopt's forced stop).
                exec::request_interrupt();
                f64::NAN
            }
        }
    };
    let mut solver = Bobyqa::new(n);
    // ctrl-C as in the core's own fits: the chained handler sets the core's flag, which the
    // optimiser checks before each evaluation (and glmm_working per lane), whatever Python's
    // handler does with the signal
    let watch = crate::py::interrupt::Watch::new();
    let out = solver.minimize_scaled(&mut objective, &mut x, &lower, &upper, &s, &tol);
    drop(watch);
    if let Some(e) = error {
        exec::clear_interrupt();
        return Err(e);
    }
    if out.status == BobyqaStatus::Interrupted {
        return Err(crate::py::interrupt::interrupted_error());
    }
    let status = out.status.outcome();
    Ok((x, out.f, out.n_eval, status.into()))
}
