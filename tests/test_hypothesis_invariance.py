"""Properties of the fit that theory guarantees, on random small data:

- row order: the criterion at any theta to 1e-10 relative; fitted criteria to 1e-7 (the
  optimiser's tolerance: _fit_close) for terms of one column each; the optimiser's path may
  differ in the last bits, so estimates agree to its tolerance only;
- all weights times a constant c: the same distribution with sigma * sqrt(c) and theta /
  sqrt(c), hence the same criterion, beta and sigma * sqrt(c) at corresponding theta (1e-10,
  1e-9) and the same optimum -- as lme4 (tests/reference/hostile/weights_constant_7.json);
- chunking: the criterion from an Accumulator fed in random batches equals the in-memory
  one to 1e-11 (it centres on its first batch's means, so another first batch rounds
  differently), and any number of threads gives the same bits.
"""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
from hypothesis import assume, given
from hypothesis import strategies as st

import _hypothesis_profiles  # noqa: F401  (settings profile)
import multilevel as ml
from multilevel import _core
from multilevel.design import build
from multilevel.models.lmm import make_problem

FORMULAS = ["y ~ x + (1 | g)", "y ~ x + (x || g)", "y ~ x + (1 | g) + (1 | h)", "y ~ x + (x | g)"]


@st.composite
def dataset(draw, min_groups: int = 3):
    n = draw(st.integers(12, 40))
    k = draw(st.integers(min_groups, min(6, n // 4)))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    g = np.r_[np.arange(k), rng.integers(0, k, n - k)]
    h = rng.integers(0, 3, n)
    x = rng.normal(size=n) * draw(st.sampled_from([1.0, 10.0, 0.1]))
    u = rng.normal(size=k) * draw(st.floats(0.0, 2.0))
    y = 1.0 + 0.5 * x + u[g] + rng.normal(size=n) * draw(st.floats(0.2, 3.0))
    w = rng.uniform(0.5, 2.0, n)
    return pd.DataFrame({"y": y, "x": x, "g": g, "h": h, "w": w}), rng


def _fit(formula, d, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ml.lmer(formula, d, **kw)


def _fit_close(a: float, b: float, n: int) -> bool:
    """Two fitted criteria of one optimum: 1e-7 relative to the larger of the criterion and the
    number of rows (a criterion near 0 is a sum of terms of size about n). The optimiser
    stops at lme4's xtol_rel = 1e-4 on theta, so two paths to one optimum end up to about
    1e-8 relative apart (found at 2,000 examples: 1.3e-8 at a criterion of 65, 2.7e-8 at 5,
    1.6e-7 absolute at 0.69 with 16 rows); the exact invariance is the criterion at a given
    theta (1e-10)."""
    return abs(a - b) <= 1e-7 * max(abs(b), n)


def _rel(a: float, b: float, n: int = 1) -> float:
    """|a - b| relative to the criterion's size: |b|, or the number of rows when the
    criterion is near 0 (a sum of terms of size about n whose rounding is relative to them;
    found: 1.2e-12 apart at a criterion of 0.0036, 28 rows)."""
    return abs(a - b) / max(abs(b), n, 1e-300)


@given(data=dataset(), formula=st.sampled_from(FORMULAS), reml=st.booleans())
def test_row_order(data, formula, reml):
    """The fitted criterion is compared for terms of one column each: a correlated (x | g)
    ending on its boundary (singular) stops within about 1e-8 of the optimum, one way or the
    other (found here: 1.3e-8), so there only the criterion at a given theta is compared."""
    d, rng = data
    perm = rng.permutation(len(d))
    p1 = make_problem(build(formula, d, weights="w"))
    p2 = make_problem(build(formula, d.iloc[perm], weights="w"))
    theta = np.asarray(p1.theta0) * rng.uniform(0.2, 2.0, p1.n_theta)
    assert _rel(p2.objective(theta, reml), p1.objective(theta, reml), len(d)) <= 1e-10
    if "(x | g)" in formula:
        return
    f1 = _fit(formula, d, weights="w", reml=reml)
    f2 = _fit(formula, d.iloc[perm], weights="w", reml=reml)
    assert _fit_close(f2.objective, f1.objective, len(d))


@given(data=dataset(), log_c=st.floats(-2.0, 2.0), reml=st.booleans())
def test_weights_times_a_constant(data, log_c, reml):
    d, rng = data
    c = 10.0**log_c
    f = "y ~ x + (1 | g)"
    dc = d.assign(w=d.w * c)
    p1, pc = make_problem(build(f, d, weights="w")), make_problem(build(f, dc, weights="w"))
    theta = rng.uniform(0.05, 3.0, 1)
    assert _rel(pc.objective(theta / np.sqrt(c), reml), p1.objective(theta, reml), len(d)) <= 1e-10
    s1, sc = p1.solution(theta, reml), pc.solution(theta / np.sqrt(c), reml)
    scale = np.abs(s1.beta).max()
    np.testing.assert_allclose(sc.beta, s1.beta, rtol=1e-9, atol=1e-9 * scale)
    np.testing.assert_allclose(sc.sigma, s1.sigma * np.sqrt(c), rtol=1e-9)
    # the fits: the same optimum (estimates then agree to the optimiser's tolerance only)
    f1, fc = _fit(f, d, weights="w", reml=reml), _fit(f, dc, weights="w", reml=reml)
    assert _fit_close(fc.objective, f1.objective, len(d))


@given(
    data=dataset(),
    formula=st.sampled_from(FORMULAS),
    cuts=st.lists(st.floats(0, 1), max_size=4),
    reml=st.booleans(),
)
def test_batches_give_the_same_criterion(data, formula, cuts, reml):
    d, rng = data
    design = build(formula, d, weights="w")
    direct = make_problem(design)
    n = len(design.y)
    edges = sorted({0, n, *(int(c * n) for c in cuts)})
    acc = _core.Accumulator(
        [len(t.levels) for t in design.terms],
        [t.Z.shape[1] for t in design.terms],
        design.X.shape[1],
    )
    for a, b in itertools.pairwise(edges):
        acc.add(
            design.y[a:b],
            np.asfortranarray(design.X[a:b]),
            [
                (np.ascontiguousarray(t.codes[a:b], dtype=np.int32), np.asfortranarray(t.Z[a:b]))
                for t in design.terms
            ],
            design.weights[a:b],
        )
    streamed = acc.problem()
    whole = _core.Accumulator(
        [len(t.levels) for t in design.terms],
        [t.Z.shape[1] for t in design.terms],
        design.X.shape[1],
    )
    whole.add(
        design.y,
        np.asfortranarray(design.X),
        [
            (np.ascontiguousarray(t.codes, dtype=np.int32), np.asfortranarray(t.Z))
            for t in design.terms
        ],
        design.weights,
    )
    theta = np.asarray(direct.theta0) * rng.uniform(0.2, 2.0, direct.n_theta)
    at = streamed.objective(theta, reml)
    # chunking: the same pass in any number of batches, to 1e-11. The accumulator centres on
    # its first batch's means, so batches of another first batch round differently (found:
    # 1.3e-12 at a criterion of -11.9, 12 rows, a 6-row first batch); issue 13 asks 1e-10
    assert _rel(at, whole.problem().objective(theta, reml), n) <= 1e-11
    # the in-memory problem centres y and X inside its pass (model/transform.rs), the
    # Accumulator does not: the two agree to rounding, 1e-10 (issue 13's bound)
    assert _rel(at, direct.objective(theta, reml), n) <= 1e-10


@given(
    data=dataset(), formula=st.sampled_from(FORMULAS), threads=st.integers(2, 4), reml=st.booleans()
)
def test_threads_give_the_same_bits(data, formula, threads, reml):
    d, rng = data
    design = build(formula, d, weights="w")
    one, many = make_problem(design, threads=1), make_problem(design, threads=threads)
    theta = np.asarray(one.theta0) * rng.uniform(0.2, 2.0, one.n_theta)
    assert many.objective(theta, reml) == one.objective(theta, reml)
    assume(len(d) < 30)  # the fit itself on a subset of the examples (time)
    assert many.fit(reml).objective == one.fit(reml).objective
