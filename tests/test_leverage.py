"""Observation-level leverage and Cook's distance (multilevel.inference.leverage): lme4's
``hatvalues`` and ``cooks.distance`` of lmer and glmer fits, and broom.mixed's ``.hat`` and
``.cooksd`` columns of ``augment``.

References: tests/reference/leverage/<case>.json (``Rscript tests/reference/make_reference.R
leverage``, tests/reference/cases_leverage.R), lme4 1.1-31.

Tolerances:
* At lme4's own parameters (its theta and, for glmer, the weights of its last decomposition,
  ``pp$Xwts``) the hat values are the same linear algebra: 1e-10 relative, through each of
  the three ways (Schur complement, dense components, sparse LU). Cook's distance from
  lme4's hat values, Pearson residuals and sigma: 1e-13 relative.
* On our own fits: lmer's theta agrees with lme4's to about 1e-6 relative, which moves the hat
  values by 1e-10 (measured 7e-11): 1e-8 relative; Cook's distance 1e-6 relative (it also
  moves with beta and sigma) plus 1e-9 of its largest value (a residual near 0). glmer's optimum
  differs from lme4's (the Rust fit's deviance is lower; estimates within 1% of an SE), and
  the working weights follow mu: hat values within 1e-3 relative (measured 4.9e-4 on cbpp).
  Cook's distance is proportional to the squared Pearson residual, which tests/
  test_glmer_results.py compares at 2e-2 relative (1e-2 plus an absolute 5e-3): 5e-2 relative
  plus 1e-3 absolute on cbpp (measured 4.6% on a residual of 0.018), 5e-3 on the Poisson fits.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from conftest import load_reference, load_reference_data
from multilevel.inference.leverage import cooks_distance, hat_diagonal

LMER = {
    "lmer_sleepstudy": dict(formula="Reaction ~ Days + (Days | Subject)"),
    "lmer_sleepstudy_weighted_ml": dict(
        formula="Reaction ~ Days + (1 | Subject)", reml=False, weights="w"
    ),
    "lmer_penicillin": dict(formula="diameter ~ 1 + (1 | plate) + (1 | sample)"),
}
GLMER = {
    "glmer_cbpp": "binomial",
    "glmer_grouseticks": "poisson",
    "glmer_poisson_offset": "poisson",
}
# own-fit Cook's distance: (rtol, atol), see the module documentation
COOKS_TOL = {
    "glmer_cbpp": (5e-2, 1e-3),
    "glmer_grouseticks": (5e-3, 1e-6),
    "glmer_poisson_offset": (5e-3, 1e-6),
}


def _data(ref: dict) -> pd.DataFrame:
    d = load_reference_data(ref)
    if ref["case"] == "lmer_sleepstudy_weighted_ml":
        d = d.assign(w=1.0 + d["Days"] / 10.0)
    return d


def _lmer(case: str):
    ref = load_reference(case, "leverage")
    spec = LMER[case]
    kw = {"reml": spec.get("reml", True)}
    if "weights" in spec:
        kw["weights"] = spec["weights"]
    return ref, ml.lmer(spec["formula"], _data(ref), **kw)


def _glmer(case: str):
    ref = load_reference(case, "leverage")
    return ref, ml.glmer(ref["formula"], _data(ref), family=GLMER[case])


def _lambdas(terms, theta) -> list[np.ndarray]:
    """Each term's lower-triangular factor from theta (column-major lower triangle)."""
    out, k = [], 0
    for t in terms:
        q = np.asarray(t.Z).shape[1]
        lam = np.zeros((q, q))
        for j in range(q):
            for i in range(j, q):
                lam[i, j] = theta[k]
                k += 1
        out.append(lam)
    assert k == len(theta)
    return out


@pytest.fixture(scope="module", params=sorted(LMER))
def lmer_case(request):
    return _lmer(request.param)


@pytest.fixture(scope="module", params=sorted(GLMER))
def glmer_case(request):
    return _glmer(request.param)


# ------------------------------------------------------------- the linear algebra at lme4's
@pytest.mark.parametrize("method", ["schur", "components", "lu"])
def test_hat_at_lme4_parameters(lmer_case, glmer_case, method):
    for ref, fit in (lmer_case, glmer_case):
        d = fit.design
        lams = _lambdas(d.terms, ref["theta"])
        W = np.asarray(ref["sqrtXwt"]) ** 2
        h = hat_diagonal(d.terms, lams, d.X, W, ref["prior_weights"], method=method)
        np.testing.assert_allclose(h, ref["hat"], rtol=1e-10, err_msg=ref["case"])


def test_cooks_formula(lmer_case, glmer_case):
    for ref, _fit in (lmer_case, glmer_case):
        c = cooks_distance(
            np.asarray(ref["hat"]), ref["resid_pearson"], ref["sigma"], len(ref["beta"])
        )
        np.testing.assert_allclose(c, ref["cooksd"], rtol=1e-13, err_msg=ref["case"])
        np.testing.assert_allclose(ref["broom_cooksd"], ref["cooksd"], rtol=1e-13)


def test_cooks_nan_where_hat_is_one():
    c = cooks_distance(np.array([1.0, 0.5]), np.array([0.3, 0.2]), 2.0, 3)
    assert np.isnan(c[0]) and c[1] == pytest.approx((0.2 / 0.5) ** 2 * 0.5 / 12, rel=1e-15)


# ------------------------------------------------------------------------ our own fits
def test_lmer_hatvalues_and_cooks(lmer_case):
    ref, fit = lmer_case
    h = fit.hatvalues()
    assert isinstance(h, pd.Series) and h.index.equals(fit.fitted.index)
    np.testing.assert_allclose(h, ref["hat"], rtol=1e-8)
    c = np.asarray(ref["cooksd"])  # rows with a tiny residual: absolute 1e-9 of the largest
    np.testing.assert_allclose(fit.cooks_distance(), c, rtol=1e-6, atol=1e-9 * c.max())


def test_glmer_hatvalues_and_cooks(glmer_case):
    ref, fit = glmer_case
    np.testing.assert_allclose(fit.hatvalues(), ref["hat"], rtol=1e-3)
    rtol, atol = COOKS_TOL[ref["case"]]
    np.testing.assert_allclose(fit.cooks_distance(), ref["cooksd"], rtol=rtol, atol=atol)


def test_cbpp_hat_above_one_as_lme4():
    ref, fit = _glmer("glmer_cbpp")
    h = fit.hatvalues()
    assert (h > 1).sum() == (np.asarray(ref["hat"]) > 1).sum() > 0


def test_augment_columns_as_broom_mixed(lmer_case, glmer_case):
    ref, fit = lmer_case
    a = fit.augment()
    added = [c for c in a.columns if c.startswith(".")]
    assert added == [
        ".fitted",
        ".resid",
        ".hat",
        ".cooksd",
        ".fixed",
        ".mu",
        ".offset",
        ".sqrtXwt",
        ".sqrtrwt",
        ".weights",
        ".wtres",
    ]  # fmt: skip  (broom.mixed 0.2's augment of an lmerMod)
    np.testing.assert_allclose(a[".hat"], ref["broom_hat"], rtol=1e-8)
    np.testing.assert_allclose(a[".sqrtXwt"], ref["sqrtXwt"], rtol=1e-15)
    np.testing.assert_array_equal(a[".sqrtrwt"], a[".sqrtXwt"])
    ref, fit = glmer_case
    a = fit.augment()
    np.testing.assert_allclose(a[".hat"], ref["broom_hat"], rtol=1e-3)
    np.testing.assert_array_equal(a[".cooksd"], fit.cooks_distance())


def test_rows_dropped_are_nan():
    d = ml.datasets.load("sleepstudy").copy()
    d.loc[[3, 50], "Reaction"] = np.nan
    fit = ml.lmer("Reaction ~ Days + (Days | Subject)", d)
    h = fit.hatvalues()
    assert h.index.equals(d.index) and h.isna().sum() == 2 and np.isnan(h[3])
    assert fit.augment()[".hat"].notna().all() and len(fit.augment()) == 178
    # the hat matrix's trace: p + the effective number of random effects, below p + q
    assert 2 < h.sum() < 2 + 36


def test_three_ways_agree_on_a_crossed_vector_term():
    """A vector term crossed with a scalar one (the Schur way's 2 x 2 blocks with other terms
    beside them) and a nested pair (the components way): every way gives the same hat values
    to 1e-10, and they sum to the trace of the hat matrix, between p and p + q."""
    rng = np.random.default_rng(7)
    n = 400
    d = pd.DataFrame(
        {"g": rng.integers(0, 25, n), "h": rng.integers(0, 9, n), "x": rng.normal(size=n)}
    )
    d["y"] = d["x"] + rng.normal(size=25)[d["g"]] * (1 + d["x"]) + rng.normal(size=9)[d["h"]]
    d["y"] += rng.normal(size=n)
    for formula in ("y ~ x + (x | g) + (1 | h)", "y ~ x + (1 | h/g)"):
        fit = ml.lmer(formula, d)
        t = fit.design
        w = rng.uniform(0.5, 2.0, n)
        ways = [
            hat_diagonal(t.terms, fit.lambda_, t.X, w, w, m) for m in ("schur", "components", "lu")
        ]
        for h in ways[1:]:
            np.testing.assert_allclose(h, ways[0], rtol=1e-10, err_msg=formula)
        q = sum(len(term.levels) * term.Z.shape[1] for term in t.terms)
        assert 2 < ways[0].sum() < 2 + q
