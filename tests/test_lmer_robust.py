"""Cluster-robust covariances of lmer fixed effects against clubSandwich 0.5.8 (vcovCR on lme4).

Golden values: tests/reference/econ/lmer_robust_*.json, written by
tests/reference/cases_lmer_robust.R (``Rscript tests/reference/make_reference.R lmer_robust``).

Tolerances (stated at each assertion):
- at lme4's own theta (``LmerFit`` built from ``problem.solution(theta)``), which takes the
  optimiser out of the comparison: estimates 1e-8 relative; robust standard errors, covariances
  (relative to sqrt(v_ii v_jj)) and Satterthwaite df 1e-6 relative; p-values 1e-5 relative;
- at our own optimum: the issue's tolerances, estimates 1e-8 and robust standard errors and
  Satterthwaite df 1e-6 relative. This holds because our BOBYQA follows lme4's nloptwrap
  path (largest seen: beta 6.4e-9, SE 5.6e-9, df 5.1e-8, all on HSB).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from conftest import load_reference_data
from multilevel.exceptions import DataError, MissingColumnError, MissingValuesWarning
from multilevel.inference import lmer_robust
from multilevel.results import LmerFit

pytestmark = pytest.mark.usefixtures("lmm_core")

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference" / "econ"
CASES = sorted(p.stem for p in REF.glob("lmer_robust_*.json"))
TYPES = list(lmer_robust.TYPES)

EST_RTOL = 1e-8  # estimates at lme4's theta
SE_RTOL = 1e-6  # robust SEs, covariances, Satterthwaite df at lme4's theta
P_RTOL = 1e-5  # p-values at lme4's theta
FIT_SE_RTOL = 1e-6  # robust SEs and df at our own optimum
FIT_EST_RTOL = 1e-8  # estimates at our own optimum


def load(name: str) -> dict:
    return json.loads((REF / f"{name}.json").read_text())


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-300)))


def _data(ref: dict) -> pd.DataFrame:
    data = load_reference_data(ref)
    if ref["case"] == "lmer_robust_hsb_cvar":
        data = data.copy()
        data["ses_mean"] = data.groupby("school", observed=True)["ses"].transform("mean")
    return data


_FITS: dict[str, tuple[dict, LmerFit, LmerFit]] = {}


@pytest.fixture(params=CASES)
def case(request):
    """(reference, fit at our optimum, fit at lme4's theta)."""
    if request.param not in _FITS:
        ref = load(request.param)
        data = _data(ref)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = ml.lmer(ref["formula"], data, reml=ref["reml"])
        sol = fit.problem.solution(np.asarray(ref["theta"], dtype=float), fit.reml)
        at = LmerFit(fit.design, fit.problem, sol, fit.reml, data=data)
        _FITS[request.param] = (ref, fit, at)
    return _FITS[request.param]


# --------------------------------------------------------------------------- golden values
def test_design_matches(case):
    ref, fit, _ = case
    assert list(fit.design.fixed_names) == ref["fixef_names"]
    assert fit.nobs == ref["nobs"]
    np.testing.assert_array_equal(np.asarray(fit.design.rows), np.asarray(ref["rows"]))


def test_estimates_at_lme4_theta(case):
    ref, _, at = case
    # 1e-8 relative: GLS estimates at lme4's theta
    assert _rel(at.beta, ref["beta"]) < EST_RTOL
    assert _rel(at.sigma, ref["sigma"]) < EST_RTOL
    assert _rel(np.diag(at.vcov_model.to_numpy()), np.diag(np.asarray(ref["vcov_model"]))) < SE_RTOL


@pytest.mark.parametrize("kind", TYPES)
def test_vcovcr_at_lme4_theta(case, kind):
    ref, _, at = case
    want = ref["types"][kind]
    r = lmer_robust.vcov_robust(at, kind, ref["cluster"])
    assert r.n_clusters == ref["n_clusters"]
    V = np.asarray(want["vcov"], dtype=float)
    scale = np.sqrt(np.outer(np.diag(V), np.diag(V)))
    # 1e-6 relative: covariances (on the scale sqrt(v_ii v_jj)), SEs, Satterthwaite df
    assert np.max(np.abs(r.vcov - V) / scale) < SE_RTOL
    assert _rel(r.se.to_numpy(), want["se"]) < SE_RTOL
    assert _rel(r.df, want["df_satt"]) < SE_RTOL
    tab = r.coef_table(at.beta)
    assert _rel(tab["t value"].to_numpy(), want["tstat"]) < SE_RTOL
    # 1e-5 relative: two-sided p-values from t and df
    assert _rel(tab["Pr(>|t|)"].to_numpy(), want["p_satt"]) < P_RTOL


@pytest.mark.parametrize("kind", ["CR0", "CR2", "CR3"])
def test_vcovcr_at_our_optimum(case, kind):
    ref, fit, _ = case
    want = ref["types"][kind]
    se = fit.vcov_robust(kind, cluster=ref["cluster"])
    # 1e-8 relative: estimates; 1e-6 relative: robust SEs and df (see the module docstring)
    assert _rel(fit.beta, ref["beta"]) < FIT_EST_RTOL
    assert _rel(np.sqrt(np.diag(se.to_numpy())), want["se"]) < FIT_SE_RTOL
    ct = fit.coef_test(kind, cluster=ref["cluster"])
    assert _rel(ct["df"].to_numpy(), want["df_satt"]) < FIT_SE_RTOL


def test_cvar_reference_means():
    ref = load("lmer_robust_hsb_cvar")
    data = _data(ref)
    by_school = data.groupby("school", observed=True)["ses_mean"].first()
    got = by_school.loc[ref["ses_mean_levels"]].to_numpy()
    # 1e-12 relative (absolute where the mean is 0): the school means of ses
    np.testing.assert_allclose(got, ref["ses_mean"], rtol=1e-12, atol=1e-15)


# --------------------------------------------------------------------------- the API
@pytest.fixture(scope="module")
def hsb():
    return ml.datasets.load("hsb")


@pytest.fixture(scope="module")
def hsb_fit(hsb):
    return ml.lmer("mathach ~ ses + meanses + (1 | school)", hsb)


def test_lmer_vcov_argument(hsb, hsb_fit):
    fit = ml.lmer("mathach ~ ses + meanses + (1 | school)", hsb, vcov={"CR2": "school"})
    want = hsb_fit.vcov_robust("CR2", "school")
    pd.testing.assert_frame_equal(fit.vcov, want)
    pd.testing.assert_series_equal(
        fit.se, pd.Series(np.sqrt(np.diag(want)), index=want.index, name="se")
    )
    pd.testing.assert_frame_equal(fit.vcov_model, hsb_fit.vcov)
    assert fit.robust.type == "CR2" and fit.robust.n_clusters == 160
    text = str(fit.summary())
    assert (
        "Fixed effects (cluster-robust CR2 standard errors, 160 clusters (school), "
        "Satterthwaite df):" in text
    )
    assert "Pr(>|t|)" in text
    coefs = fit.summary().coefficients
    assert list(coefs.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
    pd.testing.assert_frame_equal(fit.coef_test(), coefs)
    # the plain fit's summary is unchanged
    assert list(hsb_fit.summary().coefficients.columns) == ["Estimate", "Std. Error", "t value"]


def test_cluster_specs_agree(hsb, hsb_fit):
    want = hsb_fit.vcov_robust("CR1S", "school")
    by_array = hsb_fit.vcov_robust("cr1s", hsb["school"].to_numpy())
    by_series = hsb_fit.vcov_robust("CR1S", hsb["school"].astype(str))
    default = hsb_fit.vcov_robust("CR1S")
    for other in (by_array, by_series, default):
        pd.testing.assert_frame_equal(other, want, rtol=1e-12)
    fit = ml.lmer("mathach ~ ses + meanses + (1 | school)", hsb, vcov="CR1S")
    pd.testing.assert_frame_equal(fit.vcov, want, rtol=1e-12)
    assert fit.robust.cluster == "school"


def test_cluster_above_the_random_effects(hsb, hsb_fit):
    # sector (2 values) nests school: allowed, and not the school result
    sector = hsb_fit.vcov_robust("CR0", "sector")
    assert sector.shape == (3, 3)
    assert not np.allclose(sector, hsb_fit.vcov_robust("CR0", "school"))


def test_nested_terms_cluster_by_grouping_name():
    pastes = ml.datasets.load("pastes")
    fit = ml.lmer("strength ~ 1 + (1 | batch/cask)", pastes)
    assert {t.group for t in fit.design.terms} == {"batch", "cask:batch"}
    pd.testing.assert_frame_equal(fit.vcov_robust("CR2", "batch"), fit.vcov_robust("CR2"))
    with pytest.raises(DataError, match="not nested in the cluster 'sample'"):
        ml.lmer("strength ~ 1 + (1 | batch)", pastes, vcov={"CR2": "sample"})
    # the inner grouping itself is too fine for the outer term
    with pytest.raises(DataError, match="'batch' are not nested in the cluster 'cask:batch'"):
        fit.vcov_robust("CR2", "cask:batch")


def test_theta_zero_is_ols_cr2(hsb, hsb_fit):
    # With Lambda = 0 the working model is V = I: lmer's CR2 is OLS's CR2 (inference/sandwich.py).
    sol = hsb_fit.problem.solution(np.zeros(1), True)
    at0 = LmerFit(hsb_fit.design, hsb_fit.problem, sol, True, data=hsb)
    r = lmer_robust.vcov_robust(at0, "CR2", "school")
    ols = ml.ols("mathach ~ ses + meanses", hsb, vcov={"CR2": "school"})
    # 1e-8 relative: the same estimator computed two ways
    np.testing.assert_allclose(r.vcov, ols.vcov.to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(r.df, ols.df.to_numpy(), rtol=1e-8)


def test_offset_is_subtracted(hsb):
    # An offset moves the response: the robust covariance equals that of y - offset.
    df = hsb.assign(y2=hsb["mathach"] - hsb["meanses"])
    a = ml.lmer("mathach ~ ses + (1 | school)", df, offset="meanses", vcov={"CR2": "school"})
    b = ml.lmer("y2 ~ ses + (1 | school)", df, vcov={"CR2": "school"})
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-6)
    b_at = lmer_robust.vcov_robust(
        LmerFit(b.design, b.problem, b.problem.solution(a.theta, True), True, data=df),
        "CR2",
        "school",
    )
    # 1e-8 relative: the same fit written two ways, at the same theta
    np.testing.assert_allclose(a.vcov.to_numpy(), b_at.vcov, rtol=1e-8)


@pytest.mark.filterwarnings("ignore:dropped 1 row with missing values:UserWarning")
def test_missing_cluster_rows_dropped_and_counted(hsb):
    df = hsb.copy()
    df["school2"] = df["school"].astype(object)
    df.loc[[3, 10, 500], "school2"] = None
    df.loc[20, "ses"] = np.nan
    with pytest.warns(MissingValuesWarning, match="missing cluster value"):
        fit = ml.lmer("mathach ~ ses + (1 | school)", df, vcov={"CR2": "school2"})
    assert fit.n_dropped == 4 and fit.nobs == len(df) - 4
    assert not np.isin([3, 10, 20, 500], fit.design.rows).any()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ml.lmer("mathach ~ ses + (1 | school)", df.drop(index=[3, 10, 500]))
    np.testing.assert_allclose(fit.beta, ref.beta, rtol=1e-10)
    pd.testing.assert_frame_equal(fit.vcov, ref.vcov_robust("CR2", "school"), rtol=1e-8)
    # fitted values and predictions still line up with the input rows
    np.testing.assert_allclose(fit.predict(re_form="~0"), fit.design.X @ fit.beta, rtol=1e-12)
    # an array cluster with missing values, the same way
    with pytest.warns(MissingValuesWarning):
        fit2 = ml.lmer("mathach ~ ses + (1 | school)", df, vcov={"CR2": df["school2"].to_numpy()})
    pd.testing.assert_frame_equal(fit2.vcov, fit.vcov, rtol=1e-10)
    # after the fit, missing values among the rows used are an error
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = ml.lmer("mathach ~ ses + (1 | school)", df)
    with pytest.raises(DataError, match="'school2' has 3 missing value"):
        plain.vcov_robust("CR2", "school2")
    with pytest.raises(DataError, match="'<array>' has 3 missing value"):
        plain.vcov_robust("CR2", df["school2"].to_numpy())


def test_errors(hsb, hsb_fit):
    with pytest.raises(DataError, match="'school' are not nested in the cluster 'sex'"):
        hsb_fit.vcov_robust("CR2", "sex")
    with pytest.raises(DataError, match="at least 2 clusters"):
        hsb_fit.vcov_robust("CR2", np.zeros(hsb_fit.nobs))
    with pytest.raises(NotImplementedError, match="prior weights"):
        ml.lmer(
            "mathach ~ ses + (1 | school)", hsb.assign(w=1.0), weights="w", vcov={"CR2": "school"}
        )
    wfit = ml.lmer("mathach ~ ses + (1 | school)", hsb.assign(w=1.0), weights="w")
    with pytest.raises(NotImplementedError, match="prior weights"):
        wfit.vcov_robust("CR2")
    with pytest.raises(ValueError, match="unknown cluster-robust type 'HC1'"):
        hsb_fit.vcov_robust("HC1")
    with pytest.raises(ValueError, match="one key"):
        ml.lmer("mathach ~ ses + (1 | school)", hsb, vcov={"CR2": "school", "CR1": "school"})
    with pytest.raises(MissingColumnError, match="did you mean 'school'"):
        hsb_fit.vcov_robust("CR2", "schol")
    with pytest.raises(DataError, match="the cluster array has 5 values"):
        hsb_fit.vcov_robust("CR2", np.arange(5))
    with pytest.raises(ValueError, match="one cluster variable"):
        ml.lmer("mathach ~ ses + (1 | school)", hsb, vcov={"CR1": ["school", "sector"]})
    with pytest.raises(TypeError):
        ml.lmer("mathach ~ ses + (1 | school)", hsb, vcov=3)


def test_cluster_robust_arrays_match_dense_formulas():
    """The cluster-by-cluster algebra against the textbook dense formulas on a small problem."""
    rng = np.random.default_rng(7)
    n_g = 7
    g = np.repeat(np.arange(n_g), [3, 5, 4, 6, 2, 5, 4])
    n = len(g)
    X = np.column_stack(
        [np.ones(n), rng.normal(size=n), np.repeat(rng.normal(size=n_g), np.bincount(g))]
    )
    Z = np.column_stack([np.ones(n), rng.normal(size=n)])
    lam = np.array([[0.8, 0.0], [0.3, 0.5]])
    e = rng.normal(size=n)
    Zfull = np.zeros((n, 2 * n_g))
    for i in range(n):
        Zfull[i, 2 * g[i] : 2 * g[i] + 2] = Z[i] @ lam
    V = Zfull @ Zfull.T + np.eye(n)
    W = np.linalg.inv(V)
    B = np.linalg.inv(X.T @ W @ X)
    H = X @ B @ X.T @ W
    for kind in ("CR0", "CR2", "CR3"):
        meat = np.zeros((3, 3))
        for j in range(n_g):
            r = np.flatnonzero(g == j)
            Wj, Vj, Xj = W[np.ix_(r, r)], V[np.ix_(r, r)], X[r]
            if kind == "CR0":
                A = np.eye(len(r))
            elif kind == "CR3":
                A = np.linalg.inv(np.eye(len(r)) - H[np.ix_(r, r)])
            else:  # symmetric square root: A_j does not depend on the root's choice
                vals, vecs = np.linalg.eigh(Vj)
                R = (vecs * np.sqrt(vals)) @ vecs.T
                S = Vj - Xj @ B @ Xj.T
                gv, gq = np.linalg.eigh(R @ S @ R)
                A = R @ ((gq / np.sqrt(gv)) @ gq.T) @ R
            s = Xj.T @ Wj @ A @ e[r]
            meat += np.outer(s, s)
        want = B @ meat @ B
        got, df = lmer_robust.cluster_robust(X, e, [(g, Z)], [lam], g, n_g, kind)
        # 1e-10 relative: two computations of the same matrix
        np.testing.assert_allclose(got, want, rtol=1e-10)
        assert np.all((df > 0) & np.isfinite(df))


@pytest.mark.parametrize("kind", TYPES)
def test_cvar_formula_against_clubsandwich(kind):
    # The formula function cvar(ses, school) instead of a precomputed column: same design,
    # same golden values (clubSandwich on lmer with ave(ses, school)).
    ref = load("lmer_robust_hsb_cvar")
    data = load_reference_data(ref)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ml.lmer(ref["cvar_formula"], data, reml=ref["reml"])
    assert list(fit.fixef.index) == ["(Intercept)", "ses", "cvar(ses, school)"]
    sol = fit.problem.solution(np.asarray(ref["theta"], dtype=float), fit.reml)
    at = LmerFit(fit.design, fit.problem, sol, fit.reml, data=data)
    # 1e-8 relative: estimates at lme4's theta
    assert _rel(at.beta, ref["beta"]) < EST_RTOL
    want = ref["types"][kind]
    r = lmer_robust.vcov_robust(at, kind, ref["cluster"])
    # 1e-6 relative: robust SEs and Satterthwaite df at lme4's theta
    assert _rel(r.se.to_numpy(), want["se"]) < SE_RTOL
    assert _rel(r.df, want["df_satt"]) < SE_RTOL
    # 1e-6 relative at our own optimum, through the lmer(vcov=...) entry point
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rob = ml.lmer(ref["cvar_formula"], data, reml=ref["reml"], vcov={kind: "school"})
    assert _rel(rob.se.to_numpy(), want["se"]) < FIT_SE_RTOL
