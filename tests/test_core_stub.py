"""The boundary of the Rust core ``multilevel._core``: its hand-written stub (``_core.pyi``)
agrees with the compiled module (mypy's stubtest), results are typed classes, each core error
arrives as its own exception class, a panic as ``InternalError``, and ``threads`` changes no
number.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from multilevel import exceptions

_core = pytest.importorskip("multilevel._core", reason="multilevel._core is not built")

PACKAGE_DIR = Path(_core.__file__).resolve().parent


def test_stub_matches_the_module():
    """``python -m mypy.stubtest multilevel._core`` passes."""
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install -e .[test] installs it)")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(PACKAGE_DIR.parent)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])
    )
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "multilevel._core"],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        cwd=PACKAGE_DIR.parent.parent,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_package_is_typed():
    assert (PACKAGE_DIR / "py.typed").is_file()
    assert (PACKAGE_DIR / "_core.pyi").is_file()


def _problem_args(n: int = 240, groups: int = 12, seed: int = 3):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, groups, size=n).astype(np.int32)
    x1 = rng.normal(size=n)
    X = np.asfortranarray(np.column_stack([np.ones(n), x1]))
    b = rng.normal(size=(groups, 2)) * [1.0, 0.4]
    y = 1.0 + 0.5 * x1 + b[g, 0] + b[g, 1] * x1 + rng.normal(size=n)
    return y, X, [(g, groups, np.asfortranarray(X.copy()), False)]


def test_results_are_typed():
    y, X, terms = _problem_args()
    prob = _core.LmmProblem(y, X, terms)
    fit = prob.fit(True)
    assert type(fit) is _core.FitResult and isinstance(fit, _core.Solution)
    assert fit.theta.shape == (3,) and fit.beta.shape == (2,)
    assert [u.shape for u in fit.u] == [(12, 2)] and [b.shape for b in fit.b] == [(12, 2)]
    assert fit.vcov_unscaled.shape == (2, 2) and [la.shape for la in fit.lambda_] == [(2, 2)]
    assert fit.nobs == 240 and isinstance(fit.sigma, float)
    assert fit.objective == prob.objective(fit.theta, True)
    assert fit.objective == pytest.approx(
        fit.ld_l2 + fit.ld_rx2 + 238 * (1 + np.log(2 * np.pi * fit.pwrss / 238)), rel=1e-12
    )
    opt = fit.optimizer
    assert isinstance(opt, _core.OptimizerSummary)
    assert opt.f == fit.objective and opt.n_eval > 0 and opt.status == "converged"
    assert np.array_equal(opt.theta, fit.theta) and opt.theta0.shape == (3,)
    check = fit.check
    assert isinstance(check, _core.ConvergenceCheck)
    assert check.hessian.shape == (3, 3) and check.gradient.shape == (3,)
    assert isinstance(check.converged, bool) and isinstance(check.singular, bool)
    assert prob.fit(True, check=False).check is None
    sol = prob.solution(fit.theta, True)
    assert type(sol) is _core.Solution
    assert np.array_equal(sol.beta, fit.beta) and sol.sigma == fit.sigma
    with pytest.raises(AttributeError):
        fit.sigma = 1.0  # read-only
    assert "FitResult(" in repr(fit) and "Solution(" in repr(sol)


def test_input_arrays_are_held_not_copied():
    y, X, terms = _problem_args()
    before = [sys.getrefcount(a) for a in (y, X, terms[0][0], terms[0][2])]
    prob = _core.LmmProblem(y, X, terms)
    after = [sys.getrefcount(a) for a in (y, X, terms[0][0], terms[0][2])]
    assert [a - b for a, b in zip(after, before)] == [1, 1, 1, 1]
    del prob
    assert [sys.getrefcount(a) for a in (y, X, terms[0][0], terms[0][2])] == before


def test_each_core_error_has_its_own_class():
    y, X, terms = _problem_args()
    with pytest.raises(exceptions.ShapeError, match="X has 239 rows"):
        _core.LmmProblem(y, X[:-1], terms)
    bad = terms[0][0].copy()
    bad[7] = 12
    with pytest.raises(exceptions.CodeError, match="row 7"):
        _core.LmmProblem(y, X, [(bad, 12, terms[0][2], False)])
    prob = _core.LmmProblem(y, X, terms)
    with pytest.raises(exceptions.ThetaError):
        prob.objective([1.0, 0.0], True)
    # The other variants (NotPositiveDefinite, Optimizer) need inputs that the
    # design layer never hands over; rust/src/py/errors.rs maps them in the same `match`.
    for cls in (
        exceptions.ShapeError,
        exceptions.CodeError,
        exceptions.ThetaError,
        exceptions.NotPositiveDefiniteError,
        exceptions.OptimizerError,
    ):
        assert issubclass(cls, exceptions.MultilevelError)


def test_a_panic_is_an_internal_error():
    assert issubclass(_core.InternalError, Exception)
    with pytest.raises(_core.InternalError, match="please report it"):
        _core._panic_for_tests()


def test_threads_change_no_bit():
    y, X, terms = _problem_args(n=3000, groups=40)
    fits = {t: _core.LmmProblem(y, X, terms, threads=t) for t in (1, 2, 0)}
    assert fits[1].threads == 1 and fits[2].threads == 2 and fits[0].threads >= 1
    results = {t: p.fit(False) for t, p in fits.items()}
    for t in (2, 0):
        assert results[t].objective.hex() == results[1].objective.hex()
        assert results[t].optimizer.n_eval == results[1].optimizer.n_eval
        assert np.array_equal(results[t].theta, results[1].theta)


def test_lmer_threads_argument():
    import multilevel as ml

    df = ml.datasets.load("sleepstudy")
    f = "Reaction ~ Days + (Days | Subject)"
    one, default = ml.lmer(f, df, threads=1), ml.lmer(f, df)
    assert one.objective.hex() == default.objective.hex()
    assert one.problem.threads == 1
    for bad in (0, -2, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads"):
            ml.lmer(f, df, threads=bad)
