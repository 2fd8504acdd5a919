"""The dense GLMM oracle (tests/_dense_glmm.py) against lme4's glmer references
(tests/reference/glmm/<case>.json, written by tests/reference/cases_glmm.R).

What is checked, case by case: the response, weights, offset and starting mu that the
families make from the data file equal those of lme4's response module; the fixed-effects
design matches lme4's X (column sums); the GLM start equals R's glm(); and the oracle's
Laplace / AGQ / nAGQ = 0 objective at lme4's (theta, beta) equals lme4's deviance function.
These are the targets the Rust GLMM will be held to.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from _dense_glmm import DenseGlmm, RandomTerm, gauss_hermite, glm_fit
from conftest import load_reference, load_reference_data
from multilevel import families as fm

# How each case's response, weights and offset are made from its data file (the formula's
# left-hand side and offset() term, written out by hand: the formula layer is not part of
# this test).
RESPONSES = {
    "cbpp": {"y": lambda d: np.column_stack([d["incidence"], d["size"] - d["incidence"]])},
    "cbpp_probit_prop": {"y": lambda d: d["prop"], "weights": "size"},
    "grouseticks": {"y": lambda d: d["TICKS"]},
    "verbagg": {"y": lambda d: d["r2"]},
    "contraception": {"y": lambda d: d["use"]},
    "poisson_offset": {"y": lambda d: d["y"], "offset": lambda d: np.log(d["t"])},
    "gamma_log": {"y": lambda d: d["y"]},
    "negbin": {"y": lambda d: d["y"]},
}
CASE_RESPONSE = {
    "cbpp_laplace": "cbpp",
    "cbpp_agq25": "cbpp",
    "cbpp_nagq0": "cbpp",
    "cbpp_probit_prop": "cbpp_probit_prop",
    "grouseticks": "grouseticks",
    "grouseticks_help": "grouseticks",
    "verbagg": "verbagg",
    "contraception": "contraception",
    "contraception_urban": "contraception",
    "poisson_offset": "poisson_offset",
    "poisson_offset_agq9": "poisson_offset",
    "gamma_log": "gamma_log",
    "negbin": "negbin",
}
ALL_CASES = sorted(CASE_RESPONSE)
# VerbAgg's dense Z is 7584 x 340: a few seconds per objective; kept, but only at the optimum.
LAPLACE_CASES = [
    "cbpp_laplace",
    "cbpp_probit_prop",
    "grouseticks",
    "grouseticks_help",
    "contraception",
    "contraception_urban",
    "poisson_offset",
    "gamma_log",
    "negbin",
    "verbagg",
]
AGQ_CASES = ["cbpp_agq25", "poisson_offset_agq9"]


def _family(ref) -> fm.Family:
    if ref["family"] == "negative.binomial":
        return fm.NegativeBinomial(ref["nb_theta"], link=ref["link"])
    return fm.family(ref["family"], link=ref["link"])


def _column(data: pd.DataFrame, name: str) -> np.ndarray:
    """One column of lme4's model matrix, from its name: (Intercept), a numeric column,
    scale(col) (R's scale: sd with n - 1), or a treatment-contrast dummy <factor><level>."""
    if name == "(Intercept)":
        return np.ones(len(data))
    if name.startswith("scale(") and name.endswith(")"):
        v = data[name[6:-1]].to_numpy(float)
        return (v - v.mean()) / v.std(ddof=1)
    if name in data and not isinstance(data[name].dtype, pd.CategoricalDtype):
        return data[name].to_numpy(float)
    for col in data.columns:
        if isinstance(data[col].dtype, pd.CategoricalDtype) and name.startswith(col):
            level = name[len(col) :]
            if level in data[col].cat.categories:
                return (data[col] == level).to_numpy(float)
    raise KeyError(f"cannot build model-matrix column {name!r}")


def _terms(ref, data: pd.DataFrame) -> list[RandomTerm]:
    terms = []
    for t in ref["terms"]:
        levels = ref["ranef"][t["group"]]["levels"]
        codes = pd.Categorical(data[t["group"]].astype(str), categories=levels).codes
        assert np.all(codes >= 0)
        cols = np.column_stack([_column(data, c) for c in t["columns"]])
        terms.append(RandomTerm(np.asarray(codes, dtype=np.int64), t["n_levels"], cols))
    return terms


def _response(ref, data):
    spec = RESPONSES[CASE_RESPONSE[ref["case"]]]
    y = spec["y"](data)
    weights = data[spec["weights"]].to_numpy(float) if "weights" in spec else None
    offset = spec["offset"](data).to_numpy(float) if "offset" in spec else None
    return y, weights, offset


_PROBLEMS: dict[str, tuple[dict, DenseGlmm]] = {}


def problem(case: str) -> tuple[dict, DenseGlmm]:
    """The reference and the oracle's problem for a case (built once per session)."""
    if case not in _PROBLEMS:
        ref = load_reference(case, "glmm")
        data = load_reference_data(ref)
        assert ref["n_dropped"] == 0
        fam = _family(ref)
        y, weights, offset = _response(ref, data)
        start = fam.initialize(y, weights)
        X = np.column_stack([_column(data, c) for c in ref["fixef_names"]])
        prob = DenseGlmm(start.y, X, _terms(ref, data), fam, start.weights, offset, start.n)
        _PROBLEMS[case] = (ref, prob)
    return _PROBLEMS[case]


# ------------------------------------------------------------------------------ inputs


@pytest.mark.parametrize("case", ALL_CASES)
def test_inputs_match_lme4(case):
    ref, prob = problem(case)
    m = ref["model"]
    # exact operations on the same numbers: 1e-15 relative
    np.testing.assert_allclose(prob.y, m["y"], rtol=1e-15, atol=0)
    np.testing.assert_allclose(prob.weights, m["prior_weights"], rtol=1e-15, atol=0)
    np.testing.assert_allclose(prob.offset, m["offset"], rtol=1e-15, atol=0)
    np.testing.assert_allclose(prob.n, m["n"], rtol=1e-15, atol=0)
    np.testing.assert_allclose(
        prob.family._mustart(prob.y) if prob.family.name != "binomial" else prob._mustart(),
        m["mustart"],
        rtol=1e-15,
        atol=0,
    )
    # sums of the same columns in another order: 1e-12 relative to the column's scale
    scale = np.abs(prob.X).sum(axis=0)
    assert np.all(np.abs(prob.X.sum(axis=0) - m["X_colsums"]) <= 1e-12 * scale)
    assert m["X_colnames"] == ref["fixef_names"]


# ------------------------------------------------------------------------------ GLM start


@pytest.mark.parametrize("case", ALL_CASES)
def test_glm_start_matches_r_glm(case):
    ref, prob = problem(case)
    g = glm_fit(prob.X, prob.y, prob.family, prob.weights, prob.offset)
    r = ref["glm_start"]
    assert r["names"] == ref["fixef_names"]
    assert g.converged and g.iterations == r["iter"]
    # same algorithm, same stopping rule: coefficients to 1e-8 relative (absolute below 1)
    coef = np.asarray(r["coefficients"])
    assert np.all(np.abs(g.coefficients - coef) <= 1e-8 * np.maximum(1.0, np.abs(coef)))
    assert g.deviance == pytest.approx(r["deviance"], rel=1e-10)


# ------------------------------------------------------------------------------ objectives


@pytest.mark.parametrize("case", LAPLACE_CASES)
def test_laplace_at_lme4_estimates(case):
    ref, prob = problem(case)
    assert ref["nagq"] == 1
    value = prob.laplace(ref["theta"], ref["beta"])
    # the tier of the linear algebra: 1e-8 relative to lme4's devfun with PIRLS converged
    assert value == pytest.approx(ref["objective_at_opt_tight"], rel=1e-8)
    # lme4's default devfun (tolPwrss 1e-7, Cholesky of the previous iterate's weights) is
    # off by up to about 1e-5 relative: the oracle is at most that far from it
    assert value == pytest.approx(ref["objective_at_opt"], rel=2e-5)
    if case == "verbagg":
        return
    for other in ref["objective_at_other"]:
        v = prob.laplace(other["theta"], other["beta"])
        assert v == pytest.approx(other["objective_tight"], rel=1e-8), other["label"]


@pytest.mark.parametrize("case", AGQ_CASES)
def test_agq_at_lme4_estimates(case):
    ref, prob = problem(case)
    nagq = ref["nagq"]
    assert nagq > 1
    # 1e-8 relative (lme4's AGQ re-runs PIRLS before integrating, so even its default
    # devfun is at the exact modes: both values agree with the oracle to rounding)
    for theta, beta, want, want_tight in [
        (ref["theta"], ref["beta"], ref["objective_at_opt"], ref["objective_at_opt_tight"]),
        *[
            (o["theta"], o["beta"], o["objective"], o["objective_tight"])
            for o in ref["objective_at_other"]
        ],
    ]:
        value = prob.agq(theta, beta, nagq)
        assert value == pytest.approx(want_tight, rel=1e-8)
        assert value == pytest.approx(want, rel=1e-8)


def test_nagq0_stage_objective_and_beta():
    ref, prob = problem("cbpp_nagq0")
    value, beta = prob.nagq0(ref["theta"])
    # 1e-8 relative to lme4's nAGQ = 0 devfun with PIRLS converged
    assert value == pytest.approx(ref["objective_at_opt_tight"], rel=1e-8)
    # beta from lme4's PIRLS at its default tolerance: 1e-6 of a standard error
    se = np.asarray(ref["se"])
    assert np.all(np.abs(beta - ref["beta"]) <= 1e-6 * se)
    other = ref["objective_at_other"][0]
    assert prob.nagq0(other["theta"])[0] == pytest.approx(other["objective_tight"], rel=1e-8)


def test_nagq0_stage_of_the_laplace_fit_is_the_nagq0_fit():
    """The first stage recorded with the nAGQ = 1 fit is the nAGQ = 0 fit."""
    ref0, _ = problem("cbpp_nagq0")
    ref1, _ = problem("cbpp_laplace")
    np.testing.assert_allclose(ref1["nagq0"]["theta"], ref0["theta"], rtol=1e-12)
    np.testing.assert_allclose(ref1["nagq0"]["beta"], ref0["beta"], rtol=1e-12)


@pytest.mark.parametrize("case", ["cbpp_laplace", "contraception_urban", "grouseticks"])
def test_conditional_modes_match_ranef(case):
    """b = Lambda u* at lme4's (theta, beta) equals lme4's ranef: checks Z, Lambda and the
    term order the Rust core will share. Tolerance 1e-4 of the random effect's standard
    deviation (lme4's modes come from PIRLS at tolPwrss 1e-7)."""
    ref, prob = problem(case)
    r = prob.pirls(ref["theta"], ref["beta"])
    b = prob.lambda_(ref["theta"]) @ r.u
    start = 0
    for t in ref["terms"]:
        values = np.asarray(ref["ranef"][t["group"]]["values"])  # levels x q, level-major
        k = values.size
        sd = np.sqrt(
            np.diag(
                prob.lambda_(ref["theta"])[start : start + t["q"], start : start + t["q"]] ** 2
            ).sum()
        )
        np.testing.assert_allclose(
            b[start : start + k], values.reshape(-1), rtol=0, atol=1e-4 * max(sd, 1e-3)
        )
        start += k


def test_gauss_hermite_rule_integrates_normal_moments():
    z, w = gauss_hermite(9)
    # exact for polynomials of degree 17: E z^2 = 1, E z^4 = 3, E z^8 = 105
    assert w.sum() == pytest.approx(1.0, rel=1e-14)
    assert (w * z**2).sum() == pytest.approx(1.0, rel=1e-13)
    assert (w * z**4).sum() == pytest.approx(3.0, rel=1e-13)
    assert (w * z**8).sum() == pytest.approx(105.0, rel=1e-12)


def test_laplace_is_agq_with_one_node_plus_the_saturated_constant():
    """Laplace (aic form) and AGQ with one node (deviance form) differ by aic - deviance,
    a constant in (theta, beta) for a family without dispersion."""
    _, prob = problem("cbpp_laplace")
    ref, _ = problem("cbpp_agq25")
    diffs = []
    for scale in (1.0, 1.5):
        theta = np.asarray(ref["theta"]) * scale
        diffs.append(prob.laplace(theta, ref["beta"]) - prob.agq(theta, ref["beta"], 1))
    assert diffs[0] == pytest.approx(diffs[1], rel=1e-10)


@pytest.mark.parametrize("case", ["cbpp_laplace", "contraception_urban", "grouseticks"])
def test_conditional_variances_match_ranef_condvar(case):
    """Var(b | y) ~ Lambda (L L')^{-1} Lambda' at the modes (Laplace): its diagonal blocks are
    lme4's condVar. 1e-4 relative (lme4 takes L from its last, not fully converged, PIRLS
    iterate)."""
    ref, prob = problem(case)
    r = prob.pirls(ref["theta"], ref["beta"])
    lam = prob.lambda_(ref["theta"])
    linv = np.linalg.inv(r.L)
    cov = lam @ linv.T @ linv @ lam.T
    start = 0
    for t in ref["terms"]:
        q = t["q"]
        want = np.asarray(ref["ranef"][t["group"]]["condvar"])  # levels x q x q
        got = np.stack(
            [
                cov[start + j * q : start + (j + 1) * q, start + j * q : start + (j + 1) * q]
                for j in range(t["n_levels"])
            ]
        )
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-12)
        start += q * t["n_levels"]


@pytest.mark.parametrize("case", ALL_CASES)
def test_residuals_from_the_family(case):
    """lme4's fitted values and four residual types follow from the family at lme4's linear
    predictor: mu = linkinv(eta); response y - mu; working (y - mu) / mu_eta(eta); pearson
    (y - mu) sqrt(wt / V(mu)); deviance sign(y - mu) sqrt(d). 1e-10 relative to each
    vector's scale (R and numpy evaluate the same expressions)."""
    ref, prob = problem(case)
    fam = prob.family
    eta = np.asarray(ref["linear_predictor"])
    mu = fam.linkinv(eta)
    y, wt = prob.y, prob.weights

    def close(got, key):
        want = np.asarray(ref[key])
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-10 * np.max(np.abs(want)))

    close(mu, "fitted")
    close(y - mu, "resid_response")
    close((y - mu) / fam.mu_eta(eta), "resid_working")
    close((y - mu) * np.sqrt(wt / fam.variance(mu)), "resid_pearson")
    close(np.sign(y - mu) * np.sqrt(fam.dev_resids(y, mu, wt)), "resid_deviance")
