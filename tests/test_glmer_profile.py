"""Profile and bootstrap intervals of glmer fits against lme4.

References: tests/reference/glmm/glmm_profile_*.json, written by tests/reference/cases_glmm.R
(`Rscript tests/reference/make_reference.R glmm_profile`): lme4's confint(fit, method =
"profile") and its profile table. lme4 interpolates a spline through its profile points; here
the interval ends are roots of zeta, so the ends are compared to 1e-3 relative (measured:
7e-5 or better on both cases).
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import multilevel as ml
from conftest import load_reference, load_reference_data
from multilevel.inference.profile import GlmerProfiler

CASES = ["glmm_profile_cbpp", "glmm_profile_poisson_offset"]


def _fit(case: str):
    r = load_reference(case, "glmm")
    data = ml.datasets.load(r["dataset"]) if r.get("dataset") else load_reference_data(r)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return r, ml.glmer(r["formula"], data, family=r["family"])


@pytest.fixture(scope="module", params=CASES)
def case(request):
    return _fit(request.param)


def test_profile_intervals_match_lme4(case):
    r, fit = case
    ci = fit.confint(method="profile")
    # rows: lme4's .sig01 is named as varcomp names it, then the fixed effects
    assert list(ci.index[1:]) == r["names"][1:]
    assert ci.index[0].startswith("sd_(Intercept)|")
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    np.testing.assert_allclose(ci.iloc[:, 0], r["lower"], rtol=1e-3)
    np.testing.assert_allclose(ci.iloc[:, 1], r["upper"], rtol=1e-3)
    # profile intervals differ from Wald ones (a test that a Wald shortcut cannot pass)
    wald = fit.confint(method="wald")
    assert np.max(np.abs(wald.to_numpy() - ci.iloc[1:].to_numpy())) > 1e-3


def test_profile_deviance_at_lme4_points(case):
    # At each point lme4 visited (|zeta| <= 3), the deviance minimised over the other
    # parameters is no higher than lme4's (1e-6 slack) and within 5e-3 of it (measured: lower
    # by at most 3.6e-3, lme4's inner optimiser stopping earlier; zeta itself then differs by
    # about 1e-3 near |zeta| = 2).
    r, fit = case
    prof = GlmerProfiler(fit)
    for k, name in enumerate(r["names"]):
        tr = r["profile"][name]
        pts = [(v, z) for v, z in zip(tr["value"], tr["zeta"]) if 0 < abs(z) <= 3][::3]
        for v, z in pts:
            zz, _ = prof.zeta(k, v)
            ours, theirs = prof.d_hat + zz * zz, r["minus2loglik"] + z * z
            assert ours <= theirs + 1e-6
            assert theirs - ours < 5e-3
            assert np.sign(zz) == np.sign(z)


def test_profile_traces_are_monotone_and_cross_zero():
    _, fit = _fit("glmm_profile_cbpp")
    tr = fit.profile(parm=["period2"], level=0.95)["period2"]
    assert np.all(np.diff(tr.zeta) > 0)
    i = int(np.argmin(np.abs(tr.values - fit.fixef["period2"])))
    # zeta at the estimate is sqrt of the deviance the profile gains over the fit's optimum:
    # the optimiser's tolerance (1e-4 is a deviance 1e-8 lower, 6e-11 relative on cbpp)
    assert abs(tr.zeta[i]) < 1e-3 and tr.zeta[0] == pytest.approx(-1.959964, abs=1e-5)


def test_profile_refused_with_a_dispersion():
    r = load_reference("gamma_log", "glmm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ml.glmer(r["formula"], load_reference_data(r), family=ml.families.Gamma(link="log"))
    with pytest.raises(ValueError, match="dispersion"):
        fit.confint(method="profile")


def test_bootstrap_intervals():
    # lme4's bootMer on glmer: simulate from the fit (new random effects), refit. No golden
    # values (random); checked against the fit itself: 200 replicates, the mean of each fixed
    # effect within 3 Monte Carlo SEs of the estimate plus its small-sample bias bound (0.05),
    # the replicate SD within 25% of the Wald SE, and the percentile ends within 0.6 SE of
    # the profile ones (about 3 Monte Carlo SEs of a 2.5% quantile of 200 replicates); a
    # seed gives the same replicates.
    _, fit = _fit("glmm_profile_cbpp")
    from multilevel.inference.bootstrap import glmer_bootstrap

    res = glmer_bootstrap(fit, 200, seed=5, progress=False)
    rep = res.replicates
    assert not rep.isna().any().any()
    fixed = list(fit.fixef.index)
    mc = rep[fixed].std() / np.sqrt(len(rep))
    assert (np.abs(rep[fixed].mean() - fit.fixef) < 3 * mc + 0.05).all()
    assert (np.abs(rep[fixed].std() / fit.se - 1) < 0.25).all()
    ci = fit.confint(method="boot", nsim=200, seed=5)
    prof = fit.confint(method="profile")
    gap = np.abs(ci.loc[fixed].to_numpy() - prof.loc[fixed].to_numpy())
    assert (gap < 0.6 * fit.se.to_numpy()[:, None]).all()
    assert ci.equals(res.confint())
