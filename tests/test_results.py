"""Behaviour of LmerFit and anova(): input types, table shapes, printing, predict, refits."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import polars as pl
import pytest

import multilevel as ml
from multilevel.exceptions import ConvergenceWarning, DataError, SingularFitWarning
from multilevel.results.rformat import abbreviate, make_unique, r_format

pytestmark = pytest.mark.usefixtures("lmm_core")

FORMULA = "Reaction ~ Days + (Days | Subject)"


@pytest.fixture(scope="module")
def ss():
    return ml.datasets.load("sleepstudy")


@pytest.fixture
def fit(ss):
    return ml.lmer(FORMULA, ss, data_name="sleepstudy")


def test_pandas_polars_dict_same_fit(ss):
    a = ml.lmer(FORMULA, ss)
    plain = ss.assign(Subject=ss["Subject"].astype(str))
    b = ml.lmer(FORMULA, pl.from_pandas(plain))
    c = ml.lmer(FORMULA, {k: plain[k].to_numpy() for k in plain.columns})
    for other in (b, c):
        assert other.objective == pytest.approx(a.objective, rel=1e-12)
        np.testing.assert_allclose(other.beta, a.beta, rtol=1e-10)
        np.testing.assert_allclose(other.theta, a.theta, rtol=1e-8)
        pd.testing.assert_frame_equal(other.ranef["Subject"], a.ranef["Subject"], rtol=1e-7)


def test_basic_attributes(fit):
    assert list(fit.fixef.index) == ["(Intercept)", "Days"]
    assert fit.vcov.shape == (2, 2)
    assert list(fit.vcov.index) == list(fit.vcov.columns) == ["(Intercept)", "Days"]
    np.testing.assert_allclose(fit.se.to_numpy(), np.sqrt(np.diag(fit.vcov.to_numpy())))
    assert fit.nobs == 180 and fit.n_dropped == 0 and fit.ngroups == {"Subject": 18}
    assert fit.df == 6 and fit.df_resid == 174
    assert fit.loglik == pytest.approx(-fit.objective / 2)
    assert fit.aic == pytest.approx(fit.objective + 12)
    assert fit.bic == pytest.approx(fit.objective + np.log(180) * 6)
    assert fit.deviance == fit.objective  # lme4 returns the REML criterion for REML fits
    assert fit.reml and fit.converged and not fit.singular
    assert set(fit.optimizer) >= {"theta0", "theta", "f0", "f", "n_eval", "status", "message"}
    np.testing.assert_allclose(fit.fitted + fit.resid, fit.design.y)
    assert fit.fitted.shape == (180,)


def test_varcorr_shape_and_order(fit, ss):
    vc = fit.varcorr
    assert list(vc.columns) == ["grp", "var1", "var2", "vcov", "sdcor"]
    assert list(vc["grp"]) == ["Subject", "Subject", "Subject", "Residual"]
    assert list(vc["var1"]) == ["(Intercept)", "Days", "(Intercept)", None]
    assert list(vc["var2"]) == [None, None, "Days", None]
    assert vc["sdcor"].iloc[3] == pytest.approx(fit.sigma)
    assert vc["sdcor"].iloc[2] == pytest.approx(
        vc["vcov"].iloc[2] / (vc["sdcor"].iloc[0] * vc["sdcor"].iloc[1])
    )
    # uncorrelated terms on one factor: separate groups in varcorr, merged in ranef
    h = ml.lmer("Reaction ~ Days + (Days || Subject)", ss)
    assert list(h.varcorr["grp"]) == ["Subject", "Subject.1", "Residual"]
    assert list(h.ranef) == ["Subject"]
    assert list(h.ranef["Subject"].columns) == ["(Intercept)", "Days"]
    cv = h.ranef_condvar["Subject"]
    assert cv.shape == (18, 2, 2) and np.all(cv[:, 0, 1] == 0)
    # three random effects: covariances in the order (1,2), (1,3), (2,3)
    d = ss.assign(x=np.sin(np.arange(180.0)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        k = ml.lmer("Reaction ~ Days + (Days + x | Subject)", d)
    pairs = list(zip(k.varcorr["var1"], k.varcorr["var2"]))[3:6]
    assert pairs == [("(Intercept)", "Days"), ("(Intercept)", "x"), ("Days", "x")]


def test_ranef_coef_condvar(fit):
    re = fit.ranef["Subject"]
    assert re.shape == (18, 2) and list(re.columns) == ["(Intercept)", "Days"]
    assert [str(x) for x in re.index][:3] == ["308", "309", "310"]
    co = fit.coef["Subject"]
    np.testing.assert_allclose(co.to_numpy(), re.to_numpy() + fit.beta)
    cv = fit.ranef_condvar["Subject"]
    assert cv.shape == (18, 2, 2)
    np.testing.assert_allclose(cv, np.transpose(cv, (0, 2, 1)))
    assert np.all(np.linalg.eigvalsh(cv) > 0)


def test_summary_lines(fit):
    text = str(fit.summary())
    lines = text.split("\n")
    assert lines[0] == "Linear mixed model fit by REML ['lmerMod']"
    assert lines[1] == "Formula: Reaction ~ Days + (Days | Subject)"
    assert lines[2] == "   Data: sleepstudy"
    assert "REML criterion at convergence: 1743.6" in lines
    assert "Scaled residuals: " in lines
    assert " Groups   Name        Variance Std.Dev. Corr" in lines
    assert "Number of obs: 180, groups:  Subject, 18" in lines
    assert "            Estimate Std. Error t value" in lines
    assert any(ln.startswith("(Intercept)  251.405") for ln in lines)
    assert "Correlation of Fixed Effects:" in lines
    ml_text = str(fit.refit_ml().summary())
    assert "     AIC      BIC   logLik deviance df.resid " in ml_text.split("\n")
    r = repr(fit)
    assert "REML criterion at convergence: 1743.628" in r and "Fixed Effects:" in r


def test_predict_newdata_re_form_and_new_levels(fit, ss):
    np.testing.assert_allclose(fit.predict(), fit.fitted)
    pop = fit.predict(re_form="~0")
    np.testing.assert_allclose(pop, fit.design.X @ fit.beta)
    np.testing.assert_allclose(fit.predict(re_form=np.nan), pop)
    np.testing.assert_allclose(fit.predict(ss), fit.fitted)
    np.testing.assert_allclose(fit.predict(ss, re_form="~(Days | Subject)"), fit.fitted)
    new = pd.DataFrame({"Days": [0.0, 1.0], "Subject": ["308", "999"]})
    with pytest.raises(DataError, match="999"):
        fit.predict(new)
    p = fit.predict(new, allow_new_levels=True)
    b308 = fit.ranef["Subject"].iloc[0].to_numpy()
    assert p[0] == pytest.approx(fit.beta[0] + b308[0])
    assert p[1] == pytest.approx(fit.beta[0] + fit.beta[1])  # new level: b = 0
    # a row with a missing predictor gives NaN in its place
    p = fit.predict(pd.DataFrame({"Days": [np.nan, 2.0], "Subject": ["308", "308"]}))
    assert np.isnan(p[0]) and np.isfinite(p[1])


def test_anova_refits_reml_with_ml(ss):
    f0 = ml.lmer("Reaction ~ Days + (1 | Subject)", ss)
    f1 = ml.lmer(FORMULA, ss)
    with pytest.warns(UserWarning, match="refitting model"):
        tab = ml.anova(f1, f0)
    assert list(tab.columns) == [
        "npar",
        "AIC",
        "BIC",
        "logLik",
        "deviance",
        "Chisq",
        "Df",
        "Pr(>Chisq)",
    ]
    assert list(tab.index) == ["fit1", "fit0"]  # ordered by npar
    assert tab["npar"].tolist() == [4, 6]
    assert tab["deviance"].iloc[1] == pytest.approx(f1.refit_ml().objective)
    assert tab["Chisq"].iloc[1] == pytest.approx(tab["deviance"].iloc[0] - tab["deviance"].iloc[1])
    g0 = f0.refit_ml()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ml.anova(g0, f1.refit_ml())  # ML fits: no refit, no note
    assert g0.refit_ml() is g0
    # One fit: lmerTest's type III table of its terms (tested in test_inference.py)
    assert list(ml.anova(f0).index) == ["Days"]
    with pytest.raises(ValueError, match="type III only"):
        ml.anova(f0, type=2)


def test_singular_fit_warns():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(10), 5)
    df = pd.DataFrame({"y": rng.normal(size=50), "g": g})  # no group variation
    with pytest.warns(SingularFitWarning, match=r"boundary \(singular\) fit"):
        f = ml.lmer("y ~ 1 + (1 | g)", df)
    assert f.singular
    assert "boundary (singular) fit: see help('isSingular')" in str(f.summary())


def test_weights_offset_missing_rows(ss):
    d = ss.assign(w=1 + (ss["Days"] % 3) / 2, off=np.linspace(-5, 5, 180))
    fw = ml.lmer(FORMULA, d, weights="w")
    assert "Weights: w" in str(fw.summary())
    fo = ml.lmer("Reaction ~ Days + (1 | Subject)", d, offset="off")
    assert " Offset: off" in str(fo.summary())
    np.testing.assert_allclose(fo.fitted + fo.resid, d["Reaction"].to_numpy())
    # the offset column of newdata is used in predictions
    np.testing.assert_allclose(fo.predict(d), fo.fitted)
    dn = ss.copy()
    dn.loc[[3, 50], "Reaction"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fn = ml.lmer(FORMULA, dn)
    assert fn.n_dropped == 2 and fn.nobs == 178 and fn.fitted.shape == (180,)
    # on the input's index: NaN exactly at the rows dropped, the others in place (not shifted)
    assert fn.fitted.index.equals(dn.index) and list(fn.resid.index[fn.resid.isna()]) == [3, 50]
    np.testing.assert_allclose(fn.fitted + fn.resid, dn["Reaction"])


def test_start_and_max_fun(ss):
    a = ml.lmer(FORMULA, ss)
    b = ml.lmer(FORMULA, ss, start=a.theta)
    assert b.objective == pytest.approx(a.objective, rel=1e-9)
    assert b.optimizer["n_eval"] <= a.optimizer["n_eval"] + 50


def test_objective_at(fit):
    assert fit.objective_at(fit.theta) == pytest.approx(fit.objective, rel=1e-12)
    assert fit.objective_at(fit.theta * 1.5) > fit.objective


def test_convergence_warning_is_a_warning_class():
    assert issubclass(ConvergenceWarning, UserWarning)


def test_r_formatting_helpers():
    assert r_format([612.1002, 35.0717, 654.94], 4) == ["612.10", " 35.07", "654.94"]
    assert r_format([-3.95356, -0.4634, 0.02312, 0.4634, 5.17926], 4)[2] == " 0.02312"
    assert r_format([1e-10, 1.0], 4) == ["1e-10", "1e+00"]
    assert abbreviate("(Intercept)") == "(Intr)"
    assert abbreviate("ses:sectorCatholic", 11) == "ss:sctrCthl"
    assert make_unique(["a", "a", "b", "a"]) == ["a", "a.1", "b", "a.2"]
