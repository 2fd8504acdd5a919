//! The Python binding `multilevel._core`: the only code that knows about Python, one file per
//! Python class. `LmmProblem` (problem.rs) borrows the caller's NumPy arrays and holds them;
//! `Accumulator` (accumulator.rs) builds one from batches of rows, merged and serialised;
//! its results are typed classes (`Solution`, `FitResult`, `OptimizerSummary`,
//! `ConvergenceCheck`) instead of dicts; errors map one variant to one exception class and a
//! panic to `InternalError` (errors.rs); ctrl-C reaches the core through interrupt.rs; `bobyqa` (bobyqa.rs) lends the optimiser
//! to objectives written in Python, and `glmm_working` (glmm_pass.rs) does a streamed GLMM's
//! per-batch arithmetic. The module's stub is python/multilevel/_core.pyi,
//! checked against this module by mypy's stubtest (tests/test_core_stub.py).

mod accumulator;
mod bobyqa;
mod convergence_check;
mod errors;
mod fit_result;
mod glmm_fit;
mod glmm_pass;
mod glmm_problem;
mod interrupt;
mod optimizer_summary;
mod problem;
mod solution;

use pyo3::prelude::*;

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<problem::PyLmmProblem>()?;
    m.add_class::<accumulator::PyAccumulator>()?;
    m.add_class::<solution::PySolution>()?;
    m.add_class::<fit_result::PyFitResult>()?;
    m.add_class::<optimizer_summary::PyOptimizerSummary>()?;
    m.add_class::<convergence_check::PyConvergenceCheck>()?;
    m.add_class::<glmm_problem::PyGlmmProblem>()?;
    m.add_class::<glmm_fit::PyGlmmFit>()?;
    m.add("InternalError", m.py().get_type::<errors::InternalError>())?;
    m.add_function(wrap_pyfunction!(errors::_panic_for_tests, m)?)?;
    m.add_function(wrap_pyfunction!(bobyqa::bobyqa, m)?)?;
    m.add_function(wrap_pyfunction!(glmm_pass::glmm_working, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
