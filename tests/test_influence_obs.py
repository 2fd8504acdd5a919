"""Leave-one-observation-out influence (``fit.influence(1)``, HLMdiag's ``level = 1``, lme4's
``influence(fit)`` without groups) against lme4 refits.

Golden values: tests/reference/influence/obs_*.json, made by
tests/reference/cases_influence_obs.R: lme4's ``update(fit, data = data[-i, ])`` refit of every
row, polished to its stationary point by the rule of cases_influence.R (the same as
multilevel.inference.influence.polish), then HLMdiag's formulas; and lme4's own
``influence.merMod`` (its refits, not polished).

Tolerances: against the polished refits 1e-6 relative, as tests/test_influence.py (dfbeta
relative to the standard error of b, rvc relative to 1 + rvc, covtrace relative to
tr(V^-1 V_i)); measured at most 3.5e-8. Against lme4's unpolished refits: fixed effects
within 1e-4 standard errors (measured 1.2e-5) and variance components within 5e-3 of their
scale (the full fit's variance, or sqrt(D_jj D_kk) for a covariance; measured 2.1e-3): what
lme4's stopping rule leaves.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.inference import influence as infl

REF = Path(__file__).parent / "reference" / "influence"
RTOL = 1e-6

CASES = {
    "sleepstudy_reml": ("Reaction ~ Days + (Days | Subject)", True),
    "sleepstudy_intercept_ml": ("Reaction ~ Days + (1 | Subject)", False),
}


def _rel(a, b) -> float:
    a, b = np.asarray(a, float), np.asarray(b, float)
    return float(np.max(np.abs(a - b) / np.abs(b)))


@pytest.fixture(scope="module", params=list(CASES))
def case(request):
    formula, reml = CASES[request.param]
    ref = json.loads((REF / f"obs_{request.param}.json").read_text())
    fit = ml.lmer(formula, ml.datasets.load("sleepstudy"), reml=reml)
    deleted = infl.deleted_fits(fit, 1)
    return ref, fit, deleted, infl.diagnostics(deleted)


def test_refits_match_polished_lme4(case):
    ref, _, d, _ = case
    assert d.level == "observation"
    assert list(d.beta.index.astype(str)) == ref["levels"]
    assert (d.nobs == 179).all() and d.converged.all()
    assert _rel(d.beta, ref["beta_delete"]) < RTOL
    assert _rel(d.vcov, ref["vcov_delete"]) < RTOL
    assert _rel(d.sigma, ref["sigma_delete"]) < RTOL
    assert _rel(d.varcomp, ref["varcomp_delete"]) < RTOL
    assert list(d.varcomp.columns) == ref["varcomp_names"]


def test_diagnostics_match(case):
    ref, _, d, D = case
    for col in ("cooksd", "mdffits", "covratio"):
        assert _rel(D[col], ref[col]) < RTOL, col
    p = len(ref["beta"])  # covtrace = |tr(V^-1 V_i) - p| with the trace near p: relative to p
    assert np.max(np.abs(D["covtrace"] - ref["covtrace"]) / p) < RTOL
    se = np.sqrt(np.diag(d.full_vcov))
    dfb = D[[f"dfbeta.{n}" for n in ref["fixef_names"]]].to_numpy()
    assert np.max(np.abs(dfb - np.asarray(ref["dfbeta"])) / se) < RTOL
    rvc = D[[f"rvc.{n}" for n in ref["varcomp_names"]]].to_numpy()
    assert np.max(np.abs(rvc - np.asarray(ref["rvc"])) / (1 + np.asarray(ref["rvc"]))) < RTOL


def test_close_to_lme4_influence_mermod(case):
    ref, _, d, _ = case
    se = np.sqrt(np.diag(d.full_vcov))
    assert np.max(np.abs(d.beta.to_numpy() - np.asarray(ref["lme4_beta_delete"])) / se) < 1e-4
    fv = d.full_varcomp
    scale = [
        abs(fv[n])
        if n == "sigma2" or n[1] == n[2]
        else np.sqrt(fv[f"D{n[1]}{n[1]}"] * fv[f"D{n[2]}{n[2]}"])
        for n in fv.index
    ]
    diff = np.abs(d.varcomp.to_numpy() - np.asarray(ref["lme4_varcomp_delete"]))
    assert np.max(diff / np.asarray(scale)) < 5e-3


def test_rows_labelled_by_the_input_index():
    data = ml.datasets.load("sleepstudy").iloc[:60].copy()
    data.index = pd.Index([f"r{i}" for i in range(60)])
    data.loc["r7", "Reaction"] = np.nan
    with pytest.warns(Warning, match="missing"):
        fit = ml.lmer("Reaction ~ Days + (1 | Subject)", data)
    out = fit.influence(1)
    assert len(out) == 59 and "r7" not in out.index and out.index[0] == "r0"
    assert out.attrs["level"] == "observation" and (out["nobs"] == 58).all()
    # the refit without row "r3" is the fit of the other rows
    rest = ml.lmer("Reaction ~ Days + (1 | Subject)", data.drop(index=["r3", "r7"]))
    d = infl.deleted_fits(fit, 1)
    np.testing.assert_allclose(d.beta.loc["r3"], rest.beta, rtol=1e-6)


@pytest.mark.parametrize("bad", [0, 2, -1])
def test_only_level_one(bad):
    fit = ml.lmer("Reaction ~ Days + (1 | Subject)", ml.datasets.load("sleepstudy"))
    with pytest.raises(ValueError, match="give 1"):
        fit.influence(bad)
