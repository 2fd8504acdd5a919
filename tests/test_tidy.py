"""Results as data: glance, augment, tidy and the statsmodels names (multilevel.results.tidy)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml

pytestmark = pytest.mark.filterwarnings("ignore::multilevel.MissingValuesWarning")

TIDY = ["term", "estimate", "std.error", "statistic", "p.value", "conf.low", "conf.high"]


@pytest.fixture(scope="module")
def sleep():
    return ml.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def holes(sleep):
    """sleepstudy with a missing response in rows 3 and 7, on a non-default index."""
    d = sleep.copy()
    d.index = pd.RangeIndex(100, 100 + len(d))
    d.loc[[103, 107], "Reaction"] = np.nan
    return d


def test_lmer_glance_as_broom_mixed(sleep):
    reml = ml.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    g = reml.glance()
    assert list(g.columns) == [
        "nobs", "sigma", "logLik", "AIC", "BIC", "REMLcrit", "df.residual"
    ]  # fmt: skip
    # broom.mixed::glance(lmer(Reaction ~ Days + (Days | Subject), sleepstudy))
    np.testing.assert_allclose(
        g.iloc[0].to_numpy(dtype=float),
        [180, 25.5917957, -871.8141360, 1755.6282720, 1774.7861207, 1743.6282720, 174],
        rtol=1e-7,
    )
    ml_fit = reml.refit_ml()
    g = ml_fit.glance()
    assert "deviance" in g.columns and "REMLcrit" not in g.columns
    assert g["deviance"].iat[0] == pytest.approx(1751.939, abs=1e-3)  # lme4's deviance()


def test_lmer_augment(sleep, holes):
    fit = ml.lmer("Reaction ~ Days + (Days | Subject)", holes)
    a = fit.augment()
    assert list(a.columns) == [
        "Reaction", "Days", "Subject",
        ".fitted", ".resid", ".hat", ".cooksd", ".fixed", ".mu", ".offset", ".sqrtXwt",
        ".sqrtrwt", ".weights", ".wtres",
    ]  # fmt: skip
    assert len(a) == 178 and 103 not in a.index and a.index[0] == 100
    np.testing.assert_allclose(a[".fitted"] + a[".resid"], a["Reaction"], rtol=1e-12)
    np.testing.assert_allclose(a[".fixed"], fit.predict(re_form="~0"), rtol=1e-12)
    np.testing.assert_array_equal(a[".mu"], a[".fitted"])
    full = fit.augment(holes)
    assert list(full.columns[:3]) == list(holes.columns) and len(full) == 178


def test_lmer_weighted_augment(sleep):
    d = sleep.assign(w=1.0 + sleep["Days"] / 10.0)
    fit = ml.lmer("Reaction ~ Days + (1 | Subject)", d, weights="w", offset=np.ones(len(d)))
    a = fit.augment()
    np.testing.assert_allclose(a[".wtres"], np.sqrt(d["w"]) * fit.resid)
    np.testing.assert_array_equal(a[".offset"], 1.0)
    np.testing.assert_allclose(a[".fixed"], fit.design.X @ fit.beta + 1.0)


def test_lmer_statsmodels_names(sleep, holes):
    fit = ml.lmer("Reaction ~ Days + (Days | Subject)", sleep)
    pd.testing.assert_series_equal(fit.params, fit.fixef)
    pd.testing.assert_series_equal(fit.bse, fit.se)
    t = fit.coef_table()
    np.testing.assert_array_equal(fit.pvalues, t["p_value"])
    ci = fit.conf_int()
    assert list(ci.columns) == ["lower", "upper"]
    np.testing.assert_array_equal(ci["lower"], t["ci_lower"])
    z = fit.conf_int(level=0.9, ddf=None)
    np.testing.assert_allclose(
        z["upper"] - fit.fixef, 1.6448536269514722 * fit.se.to_numpy(), rtol=1e-9
    )
    fv = ml.lmer("Reaction ~ Days + (Days | Subject)", holes).fittedvalues
    assert fv.index.equals(holes.index) and fv.isna().sum() == 2
    assert np.isnan(fv[103]) and np.isnan(fv[107]) and not np.isnan(fv[104])


def test_ols_tidy_glance_as_broom(sleep):
    fit = ml.ols("Reaction ~ Days", sleep)
    t = fit.tidy()
    assert list(t.columns) == TIDY
    est, se = 10.4672860, 1.2381952  # lm(Reaction ~ Days, sleepstudy)
    q = 1.9733809  # qt(0.975, 178)
    np.testing.assert_allclose(
        t.loc[1, ["estimate", "std.error", "statistic", "conf.low", "conf.high"]].to_numpy(float),
        [est, se, est / se, est - q * se, est + q * se],
        rtol=1e-6,
    )
    g = fit.glance()
    assert list(g.columns) == [
        "r.squared", "adj.r.squared", "sigma", "statistic", "p.value", "df",
        "logLik", "AIC", "BIC", "deviance", "df.residual", "nobs",
    ]  # fmt: skip
    np.testing.assert_allclose(
        g[["r.squared", "sigma", "logLik", "AIC", "deviance"]].iloc[0].to_numpy(float),
        [0.2864714, 47.7147166, -950.1465, 1906.293, 405251.6],
        rtol=1e-6,
    )
    assert g["df.residual"].iat[0] == 178 and g["nobs"].iat[0] == 180


def test_ols_augment_and_names(holes):
    fit = ml.ols("Reaction ~ Days", holes)
    a = fit.augment(holes)
    assert len(a) == 178 and 103 not in a.index
    np.testing.assert_allclose(a[".fitted"] + a[".resid"], a["Reaction"], rtol=1e-12)
    bare = fit.augment()
    assert list(bare.columns) == [".fitted", ".resid"] and 3 not in bare.index
    pd.testing.assert_series_equal(fit.bse, fit.se)
    pd.testing.assert_series_equal(fit.pvalues, fit.p)
    # on the input's index, NaN at the rows dropped (fitted itself is that Series now)
    pd.testing.assert_series_equal(fit.fittedvalues, fit.fitted)
    assert fit.fittedvalues.index.equals(holes.index) and np.isnan(fit.fittedvalues[103])
    positions = ml.ols("Reaction ~ Days", {c: holes[c].to_numpy() for c in holes}).fittedvalues
    assert list(positions.index[:4]) == [0, 1, 2, 4]


def test_panel_tables(sleep):
    fit = ml.panel("Reaction ~ Days", sleep, entity="Subject", model="within")
    t = fit.tidy(level=0.9)
    assert list(t.columns) == TIDY and list(t["term"]) == ["Days"]
    ci = fit.conf_int(0.9)
    assert t["conf.low"].iat[0] == ci["lower"].iat[0]
    assert fit.glance()["nobs"].iat[0] == 180
    a = fit.augment(sleep)
    np.testing.assert_array_equal(a[".resid"], fit.resid.to_numpy())


def test_lmlist_tables(sleep):
    fit = ml.lmlist("Reaction ~ Days", sleep, group="Subject")
    t = fit.tidy()
    assert list(t.columns) == ["level", *TIDY] and len(t) == 36
    row = t[(t["level"] == "308") & (t["term"] == "Days")].iloc[0]
    assert row["estimate"] == fit.coef.loc["308", "Days"]
    assert row["p.value"] == fit.p.loc["308", "Days"]
    half = (row["conf.high"] - row["conf.low"]) / 2
    assert half / row["std.error"] == pytest.approx(1.976575, rel=1e-5)  # qt(0.975, 144)
    a = fit.augment(sleep)
    np.testing.assert_allclose(a[".fitted"] + a[".resid"], sleep["Reaction"], rtol=1e-12)
    # the per-group fits: each group's least squares
    g308 = sleep[sleep["Subject"] == "308"]
    b = np.polyfit(g308["Days"], g308["Reaction"], 1)
    np.testing.assert_allclose(a.loc[g308.index, ".fitted"], np.polyval(b, g308["Days"]))
    gl = fit.glance()
    dev = float((a[".resid"] ** 2).sum())
    assert gl["deviance"].iat[0] == pytest.approx(dev, rel=1e-12)
    n = 180
    assert gl["logLik"].iat[0] == pytest.approx(
        -0.5 * n * (np.log(2 * np.pi) + 1 + np.log(dev / n)), rel=1e-12
    )
    assert gl["df.residual"].iat[0] == 180 - 36


# ------------------------------------------------------------------ Jupyter display
def test_repr_html_of_fits_and_summaries(sleep):
    from multilevel.results.html import pre

    fits = [
        ml.lmer("Reaction ~ Days + (Days | Subject)", sleep),
        ml.ols("Reaction ~ Days", sleep),
        ml.panel("Reaction ~ Days", sleep, entity="Subject"),
        ml.lmlist("Reaction ~ Days", sleep, group="Subject"),
    ]
    for fit in fits:
        h = fit._repr_html_()
        assert h.startswith('<pre class="multilevel-fit">') and h.endswith("</pre>")
        assert h == pre(str(fit.summary()), "fit")
    s = fits[0].summary()
    assert s._repr_html_() == pre(str(s), "summary")
    assert "Random effects:" in s._repr_html_()
    assert (
        pre("p < 2e-16 & <b>", "x")
        == '<pre class="multilevel-x">p &lt; 2e-16 &amp; &lt;b&gt;</pre>'
    )
