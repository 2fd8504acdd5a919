"""OLS with robust and cluster-robust covariances against sandwich and clubSandwich.

Golden values: tests/reference/econ/ols_*.json, written by tests/reference/cases_econ.R.
Tolerances (stated at each assertion): estimates 1e-8 relative, standard errors and
covariances 1e-6 relative.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.exceptions import DataError, MissingColumnError
from multilevel.inference.tails import chi2_sf as _chi2_sf
from multilevel.inference.tails import f_sf as _f_sf
from multilevel.inference.tails import t_ppf as _t_ppf
from multilevel.inference.tails import t_pvalue as _t_pvalue
from multilevel.models.ols import ols, ols_arrays

ROOT = Path(__file__).resolve().parents[1]
REF = ROOT / "tests" / "reference" / "econ"
EST_RTOL = 1e-8  # estimates
SE_RTOL = 1e-6  # standard errors, covariances, df


def load(name):
    return json.loads((REF / f"{name}.json").read_text())


def mat(d):
    return pd.DataFrame(d["values"], index=d["rownames"], columns=d["colnames"])


@pytest.fixture(scope="module")
def hetero():
    return pd.read_csv(ROOT / "tests" / "reference" / "data" / "hetero.csv")


@pytest.fixture(scope="module")
def hsb():
    return ml.datasets.load("hsb")


CASES = ["ols_hetero", "ols_hetero_weighted", "ols_hsb"]
KINDS = ["iid", "HC0", "HC1", "HC2", "HC3", "CR0", "CR1", "CR2"]


def _data(case, hetero, hsb):
    return hsb if case == "ols_hsb" else hetero


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("kind", KINDS)
def test_vcov_matches_r(case, kind, hetero, hsb):
    ref = load(case)
    data = _data(case, hetero, hsb)
    vcov = {kind: ref["cluster"]} if kind.startswith("CR") else kind
    fit = ols(ref["formula"], data, weights=ref.get("weights"), vcov=vcov)
    names = list(ref["coef"])
    assert list(fit.coef.index) == names
    # estimates: 1e-8 relative
    np.testing.assert_allclose(fit.coef.to_numpy(), list(ref["coef"].values()), rtol=EST_RTOL)
    expected = mat(ref[f"vcov_{kind}"]).loc[names, names].to_numpy()
    # covariance and standard errors: 1e-6 relative
    np.testing.assert_allclose(fit.vcov.to_numpy(), expected, rtol=SE_RTOL)
    np.testing.assert_allclose(fit.se.to_numpy(), np.sqrt(np.diag(expected)), rtol=SE_RTOL)
    if kind == "CR2":
        # Satterthwaite df and p-values of clubSandwich::coef_test: 1e-6 relative
        np.testing.assert_allclose(fit.df.to_numpy(), list(ref["CR2_df"].values()), rtol=SE_RTOL)
        np.testing.assert_allclose(fit.p.to_numpy(), list(ref["CR2_p"].values()), rtol=SE_RTOL)
    if kind.startswith("CR"):
        assert fit.n_clusters == (ref["G"],)


@pytest.mark.parametrize("case", ["ols_hetero", "ols_hetero_weighted"])
@pytest.mark.parametrize("kind", ["CR0", "CR1"])
def test_two_way_clustering_matches_vcovcl(case, kind, hetero):
    ref = load(case)
    fit = ols(
        ref["formula"],
        hetero,
        weights=ref.get("weights"),
        vcov={kind: [ref["cluster"], ref["cluster2"]]},
    )
    # covariance: 1e-6 relative to sandwich::vcovCL(cluster = ~g + h)
    np.testing.assert_allclose(
        fit.vcov.to_numpy(), mat(ref[f"vcov_{kind}_twoway"]).to_numpy(), rtol=SE_RTOL
    )
    assert (
        fit.df.iloc[0]
        == min(hetero[ref["cluster"]].nunique(), hetero[ref["cluster2"]].nunique()) - 1
    )


@pytest.mark.parametrize("case", CASES)
def test_fit_statistics_match_lm(case, hetero, hsb):
    ref = load(case)
    fit = ols(ref["formula"], _data(case, hetero, hsb), weights=ref.get("weights"))
    assert fit.nobs == ref["nobs"] and fit.df_resid == ref["df_resid"]
    # summary.lm statistics: 1e-8 relative
    assert fit.r2 == pytest.approx(ref["r2"], rel=EST_RTOL)
    assert fit.adj_r2 == pytest.approx(ref["adj_r2"], rel=EST_RTOL)
    assert fit.sigma == pytest.approx(ref["sigma"], rel=EST_RTOL)
    assert fit.fvalue == pytest.approx(ref["fstat"], rel=EST_RTOL)
    assert fit.f_df == (ref["f_df1"], ref["f_df2"])


def test_small_sample_factors_relate_the_types(hsb):
    """CR1 = CR0 * G/(G-1) * (n-1)/(n-k) (Stata); HC1 = HC0 * n/(n-k)."""
    cr0 = ols("mathach ~ ses", hsb, vcov={"CR0": "school"})
    cr1 = ols("mathach ~ ses", hsb, vcov={"CR1": "school"})
    n, k, G = cr0.nobs, 2, 160
    factor = G / (G - 1) * (n - 1) / (n - k)
    np.testing.assert_allclose(cr1.vcov.to_numpy(), factor * cr0.vcov.to_numpy(), rtol=1e-12)
    assert cr1.small_sample_factor == pytest.approx(factor, rel=1e-14)
    hc0 = ols("mathach ~ ses", hsb, vcov="HC0")
    hc1 = ols("mathach ~ ses", hsb, vcov="robust")
    np.testing.assert_allclose(hc1.vcov.to_numpy(), n / (n - k) * hc0.vcov.to_numpy(), rtol=1e-12)
    assert cr1.df.iloc[0] == G - 1  # Stata's t(G-1) for cluster-robust tests


@pytest.mark.parametrize("k", [2, 3])
def test_duplicated_rows_clustered_equal_hc(k, hetero):
    """The documented check: stack k copies of every row and cluster on the original row id.

    Each cluster's score is k times the row's score and the bread is 1/k times, so
    CR0 on the stacked data equals HC0 on the original data exactly. With small-sample
    factors, CR1 (stacked, n' = k n rows, G = n clusters) equals
    HC0 (original) * G/(G-1) * (kn-1)/(kn-p): we check that factor, and that HC1
    differs from it only by n/(n-p) against (kn-1)/(kn-p) * n/(n-1).
    """
    d = hetero.assign(row_id=np.arange(len(hetero)))
    stacked = pd.concat([d] * k, ignore_index=True)
    hc0 = ols("y ~ x1 + x2", d, vcov="HC0")
    cr0 = ols("y ~ x1 + x2", stacked, vcov={"CR0": "row_id"})
    # identical up to rounding: 1e-10 relative
    np.testing.assert_allclose(cr0.coef.to_numpy(), hc0.coef.to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(cr0.se.to_numpy(), hc0.se.to_numpy(), rtol=1e-10)
    cr1 = ols("y ~ x1 + x2", stacked, vcov={"CR1": "row_id"})
    n, p = len(d), 3
    factor = n / (n - 1) * (k * n - 1) / (k * n - p)
    np.testing.assert_allclose(cr1.se.to_numpy(), math.sqrt(factor) * hc0.se.to_numpy(), rtol=1e-10)
    hc1 = ols("y ~ x1 + x2", d, vcov="HC1")
    np.testing.assert_allclose(
        cr1.se.to_numpy(), hc1.se.to_numpy() * math.sqrt(factor / (n / (n - p))), rtol=1e-10
    )


def test_conf_int_and_p_use_t(hsb):
    fit = ols("mathach ~ ses", hsb, vcov="HC1")
    ci = fit.conf_int(0.9)
    q = _t_ppf(0.95, fit.df_resid)
    np.testing.assert_allclose(ci["upper"] - fit.coef, q * fit.se, rtol=1e-12)
    assert fit.p["ses"] == pytest.approx(_t_pvalue(fit.t["ses"], fit.df_resid), rel=1e-14)
    text = fit.summary()
    assert "ses" in text and "HC1" in text and "R-squared" in text


def test_distribution_functions_match_scipy():
    stats = pytest.importorskip("scipy.stats")
    # 1e-10 relative up to 1e5 degrees of freedom (1e-8 at 1e7, checked below)
    for df in (1.0, 2.5, 7.0, 38.97, 400.0, 1e5):
        for t in (0.1, 1.0, 2.2, 5.0, 30.0):
            assert _t_pvalue(t, df) == pytest.approx(2 * stats.t.sf(t, df), rel=1e-10, abs=1e-300)
        for q in (0.6, 0.95, 0.975, 0.999):
            assert _t_ppf(q, df) == pytest.approx(stats.t.ppf(q, df), rel=1e-10)
        for f in (0.3, 1.0, 4.0, 50.0):
            assert _f_sf(f, 3, df) == pytest.approx(stats.f.sf(f, 3, df), rel=1e-9, abs=1e-300)
    assert _t_pvalue(3.0, 1e7) == pytest.approx(2 * stats.t.sf(3.0, 1e7), rel=1e-8)
    for df in (1, 2, 5, 30):
        for x in (0.01, 1.0, 4.0, 25.0, 100.0):
            assert _chi2_sf(x, df) == pytest.approx(stats.chi2.sf(x, df), rel=1e-10, abs=1e-300)


def test_arrays_front_end_equals_formula(hetero):
    X = np.column_stack([np.ones(len(hetero)), hetero.x1, hetero.x2])
    a = ols_arrays(
        hetero.y.to_numpy(),
        X,
        ["(Intercept)", "x1", "x2"],
        vcov="CR2",
        clusters=[hetero.g.to_numpy()],
    )
    b = ols("y ~ x1 + x2", hetero, vcov={"CR2": "g"})
    np.testing.assert_allclose(a.vcov.to_numpy(), b.vcov.to_numpy(), rtol=1e-12)


def test_polars_and_dict_give_the_same_fit(hetero):
    pl = pytest.importorskip("polars")
    a = ols("y ~ x1 + x2", hetero, vcov={"CR1": "g"})
    b = ols("y ~ x1 + x2", pl.from_pandas(hetero), vcov={"CR1": "g"})
    c = ols("y ~ x1 + x2", {k: hetero[k].to_numpy() for k in hetero}, vcov={"CR1": "g"})
    for other in (b, c):
        np.testing.assert_allclose(other.vcov.to_numpy(), a.vcov.to_numpy(), rtol=1e-12)


def test_missing_values_dropped_and_counted(hetero):
    d = hetero.copy()
    d.loc[[3, 10], "x1"] = np.nan
    d.loc[[20], "g"] = np.nan
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ols("y ~ x1 + x2", d, vcov={"CR1": "g"})
    assert fit.n_dropped == 3 and fit.nobs == len(d) - 3
    ref = ols("y ~ x1 + x2", hetero.drop(index=[3, 10, 20]), vcov={"CR1": "g"})
    np.testing.assert_allclose(fit.vcov.to_numpy(), ref.vcov.to_numpy(), rtol=1e-12)


# ---------------------------------------------------------------- bad input
def test_one_cluster_is_an_error(hetero):
    d = hetero.assign(one=1)
    for kind in ("CR0", "CR1", "CR2"):
        with pytest.raises(DataError, match="at least 2 clusters"):
            ols("y ~ x1", d, vcov={kind: "one"})


def test_unknown_cluster_column(hetero):
    with pytest.raises(MissingColumnError, match="did you mean 'g'"):
        ols("y ~ x1", hetero, vcov={"CR1": "gg"})


def test_bad_vcov_specs(hetero):
    with pytest.raises(ValueError, match="needs a cluster column"):
        ols("y ~ x1", hetero, vcov="CR1")
    with pytest.raises(ValueError, match="unknown vcov"):
        ols("y ~ x1", hetero, vcov="HC9")
    with pytest.raises(ValueError, match="one cluster column"):
        ols("y ~ x1", hetero, vcov={"CR2": ["g", "h"]})


def test_lazy_export():
    assert ml.ols is ols
