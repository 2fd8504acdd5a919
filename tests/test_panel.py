"""Panel estimators against plm (tests/reference/econ/panel_*.json, cases_econ.R).

Tolerances stated at each assertion: estimates 1e-8 relative, covariances 1e-6 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.exceptions import DataError
from multilevel.models.panel import hausman, panel

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference" / "econ"
EST_RTOL = 1e-8
SE_RTOL = 1e-6
MODELS = ["within", "random", "between", "pooled", "fd"]
CASES = ["panel_grunfeld", "panel_grunfeld_unbalanced"]


def load(name):
    return json.loads((REF / f"{name}.json").read_text())


def mat(d):
    return pd.DataFrame(d["values"], index=d["rownames"], columns=d["colnames"])


@pytest.fixture(scope="module")
def grunfeld():
    return ml.datasets.load("grunfeld")


def _data(ref, gr):
    if not ref.get("drop"):
        return gr
    keys = set(zip(ref["drop"]["firm"], ref["drop"]["year"]))
    keep = [(int(f), int(y)) not in keys for f, y in zip(gr["firm"], gr["year"])]
    return gr[keep]


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("model", MODELS)
def test_panel_matches_plm(case, model, grunfeld):
    ref = load(case)
    r = ref[model]
    d = _data(ref, grunfeld)
    fit = panel(ref["formula"], d, entity="firm", time="year", model=model)
    names = list(r["coef"])
    assert list(fit.coef.index) == names
    # estimates: 1e-8 relative
    np.testing.assert_allclose(fit.coef.to_numpy(), list(r["coef"].values()), rtol=EST_RTOL)
    # covariance: 1e-6 relative
    np.testing.assert_allclose(fit.vcov.to_numpy(), mat(r["vcov"]).to_numpy(), rtol=SE_RTOL)
    assert fit.nobs == r["nobs"] and fit.df_resid == r["df_resid"]
    # plm's R-squared and adjusted R-squared, SSR: 1e-8 relative
    assert fit.r2 == pytest.approx(r["rsq"], rel=EST_RTOL)
    assert fit.adj_r2 == pytest.approx(r["adjrsq"], rel=EST_RTOL)
    assert fit.ssr == pytest.approx(r["ssr"], rel=EST_RTOL)
    if model == "random":
        # Swamy-Arora variance components and theta: 1e-8 relative
        assert fit.sigma2_e == pytest.approx(r["sigma2_idios"], rel=EST_RTOL)
        assert fit.sigma2_u == pytest.approx(r["sigma2_id"], rel=EST_RTOL)
        theta = np.atleast_1d(np.asarray(fit.theta, dtype=float))
        np.testing.assert_allclose(theta, r["theta"], rtol=EST_RTOL)
        assert np.isscalar(fit.theta) == ref["balanced"]
    if model == "within":
        np.testing.assert_allclose(fit.fixef.to_numpy(), list(r["fixef"].values()), rtol=EST_RTOL)
        assert fit.fvalue == pytest.approx(r["fstat"], rel=EST_RTOL)
        assert fit.f_df == tuple(r["f_df"])


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("model", ["within", "random", "pooled"])
@pytest.mark.parametrize("kind", ["CR0", "CR1"])
def test_cluster_by_firm_matches_plm_vcovhc(case, model, kind, grunfeld):
    """CR1 = plm vcovHC(method="arellano", type="sss") = Stata's vce(cluster firm)."""
    ref = load(case)
    fit = panel(
        ref["formula"],
        _data(ref, grunfeld),
        entity="firm",
        time="year",
        model=model,
        vcov={kind: "firm"},
    )
    # covariance: 1e-6 relative
    np.testing.assert_allclose(
        fit.vcov.to_numpy(), mat(ref[model][f"vcov_{kind}"]).to_numpy(), rtol=SE_RTOL
    )
    assert fit.df.iloc[0] == 9  # G - 1


def test_cluster_shorthand(grunfeld):
    a = panel("inv ~ value + capital", grunfeld, "firm", "year", vcov="cluster")
    b = panel("inv ~ value + capital", grunfeld, "firm", "year", vcov={"CR1": "firm"})
    np.testing.assert_allclose(a.vcov.to_numpy(), b.vcov.to_numpy(), rtol=1e-14)


@pytest.mark.parametrize("case", CASES)
def test_hausman_matches_phtest(case, grunfeld):
    ref = load(case)
    d = _data(ref, grunfeld)
    fe = panel(ref["formula"], d, entity="firm", time="year")
    re = panel(ref["formula"], d, entity="firm", time="year", model="random")
    h = hausman(fe, re)
    # statistic and p-value: 1e-8 relative (the statistic differences two covariances)
    assert h.stat == pytest.approx(ref["hausman"]["stat"], rel=EST_RTOL)
    assert h.df == ref["hausman"]["df"]
    assert h.p == pytest.approx(ref["hausman"]["p"], rel=EST_RTOL)


def test_stata_r2_definitions(grunfeld):
    """Stata's within/between/overall R-squared are squared correlations with x'b."""
    fit = panel("inv ~ value + capital", grunfeld, "firm", "year", model="random")
    b = fit.coef[["value", "capital"]].to_numpy()
    xb = grunfeld[["value", "capital"]].to_numpy() @ b
    g = grunfeld.groupby("firm", observed=True)
    ybar = g["inv"].transform("mean").to_numpy()
    xbbar = pd.Series(xb).groupby(grunfeld["firm"].to_numpy()).transform("mean").to_numpy()
    y = grunfeld["inv"].to_numpy()
    assert fit.r2_overall == pytest.approx(np.corrcoef(y, xb)[0, 1] ** 2, rel=1e-12)
    assert fit.r2_within == pytest.approx(np.corrcoef(y - ybar, xb - xbbar)[0, 1] ** 2, rel=1e-12)
    means = pd.DataFrame({"y": y, "xb": xb, "f": grunfeld["firm"].to_numpy()}).groupby("f").mean()
    assert fit.r2_between == pytest.approx(means.corr().iloc[0, 1] ** 2, rel=1e-12)
    fe = panel("inv ~ value + capital", grunfeld, "firm", "year")
    assert fe.r2_within == pytest.approx(fe.r2, rel=1e-12)  # Stata's fe: within R2 = r2
    assert "R-sq between" in fit.summary() and "theta" in fit.summary()


def test_row_order_does_not_matter(grunfeld):
    shuffled = grunfeld.sample(frac=1.0, random_state=1)
    for model in MODELS:
        a = panel("inv ~ value + capital", grunfeld, "firm", "year", model=model)
        b = panel("inv ~ value + capital", shuffled, "firm", "year", model=model)
        np.testing.assert_allclose(b.coef.to_numpy(), a.coef.to_numpy(), rtol=1e-10)


def test_time_invariant_regressor_drops_from_within(grunfeld):
    d = grunfeld.assign(size=grunfeld["firm"].astype(int) % 3)
    with pytest.warns(ml.MultilevelWarning, match="size"):
        fit = panel("inv ~ value + capital + size", d, "firm", "year")
    assert list(fit.coef.index) == ["value", "capital"]


# ---------------------------------------------------------------- bad input
def test_duplicate_entity_time_pairs(grunfeld):
    d = pd.concat([grunfeld, grunfeld.iloc[[5, 42]]], ignore_index=True)
    with pytest.raises(DataError, match=r"duplicate \(firm, year\) pairs: 2 pair"):
        panel("inv ~ value + capital", d, entity="firm", time="year")


def test_duplicate_pairs_named(grunfeld):
    d = pd.concat([grunfeld, grunfeld.iloc[[5]]], ignore_index=True)
    firm, year = grunfeld["firm"].iloc[5], grunfeld["year"].iloc[5]
    with pytest.raises(DataError, match=rf"1 pair\(s\).*\({firm}, {year}\)"):
        panel("inv ~ value + capital", d, entity="firm", time="year")


def test_collinear_after_demeaning(grunfeld):
    # value2 differs from value by a firm constant: collinear with value once demeaned,
    # although the raw columns are not.
    d = grunfeld.assign(value2=grunfeld["value"] + grunfeld["firm"].astype(int) ** 2)
    with pytest.raises(DataError, match="collinear with the others: value2"):
        panel("inv ~ value + value2 + capital", d, entity="firm", time="year")


def test_fd_needs_time(grunfeld):
    with pytest.raises(ValueError, match="time"):
        panel("inv ~ value + capital", grunfeld, entity="firm", model="fd")


def test_one_cluster(grunfeld):
    d = grunfeld.assign(one="a")
    with pytest.raises(DataError, match="at least 2 clusters"):
        panel("inv ~ value + capital", d, "firm", "year", vcov={"CR1": "one"})


def test_unknown_model(grunfeld):
    with pytest.raises(ValueError, match="model must be one of"):
        panel("inv ~ value", grunfeld, "firm", "year", model="twoways")


def test_exports():
    assert ml.hausman is hausman
    gr = ml.datasets.load("grunfeld")
    fit = ml.panel("inv ~ value + capital", gr, entity="firm", time="year")
    assert isinstance(fit, ml.panel.PanelFit if hasattr(ml.panel, "PanelFit") else type(fit))
