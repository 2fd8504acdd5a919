"""glmer results people keep: broom.mixed's tidy/glance/augment, fitted and resid aligned
with the input, pickle and save/load (also in a fresh process), and perfect separation.

broom.mixed references: tests/reference/glmm/glmm_broom_cbpp.json (cases_glmm.R,
`Rscript tests/reference/make_reference.R glmm_broom`). The Rust fit of cbpp is a little
better than lme4's (-2 logLik lower by 5.7e-4), so estimates are compared at the tiers of
tests/test_glmer.py: 1% of a standard error, fitted values 2e-3, and standard errors to 1.5%
(tests/test_glmer.py's SE_TOL for cbpp: lme4's Hessian is that of its loosely converged
PIRLS, 1.1-2.7% high on the diagonal); statistics and intervals follow.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import multilevel as ml
from conftest import load_reference
from multilevel.models.glmm import SeparationWarning

ROOT = Path(__file__).resolve().parents[1]
FORMULA = "cbind(incidence, size - incidence) ~ period + (1 | herd)"


@pytest.fixture(scope="module")
def cbpp():
    return ml.datasets.load("cbpp")


@pytest.fixture(scope="module")
def fit(cbpp):
    return ml.glmer(FORMULA, cbpp, family="binomial")


@pytest.fixture(scope="module")
def broom():
    return load_reference("glmm_broom_cbpp", "glmm")


# ------------------------------------------------------------------------ broom.mixed
def test_tidy_matches_broom_mixed(fit, broom):
    t = fit.tidy(conf_int=True)
    b = broom["tidy"]
    assert list(t.columns) == b["columns"]
    assert t["effect"].tolist() == b["effect"] and t["term"].tolist() == b["term"]
    assert t["group"].tolist() == b["group"]

    def col(name):
        return np.array([np.nan if v is None else v for v in b[name]], float)

    se = col("std.error")
    fixed = t["effect"] == "fixed"
    est = col("estimate")
    assert np.all(np.abs(t["estimate"][fixed] - est[fixed]) < 0.01 * se[fixed])
    np.testing.assert_allclose(t["std.error"][fixed], se[fixed], rtol=1.5e-2)
    np.testing.assert_allclose(t["statistic"][fixed], col("statistic")[fixed], rtol=2e-2)
    # p-values follow z (1.5% here moves a p of 1e-9 by 20%): compared on the log scale
    p = t["p.value"][fixed].to_numpy()
    np.testing.assert_allclose(np.log(p), np.log(col("p.value")[fixed]), rtol=3e-2)
    np.testing.assert_allclose(p, 2 * stats.norm.sf(np.abs(t["statistic"][fixed])), rtol=1e-12)
    for c in ("conf.low", "conf.high"):
        assert np.all(np.abs(t[c][fixed] - col(c)[fixed]) < 0.04 * se[fixed])
    # the random-effect SD: within 0.5% (the variance-component tier)
    assert t["estimate"].iloc[-1] == pytest.approx(est[-1], rel=5e-3)
    assert t[~fixed]["std.error"].isna().all()


def test_glance_matches_broom_mixed(fit, broom):
    g = fit.glance()
    b = broom["glance"]
    assert list(g.columns) == b["columns"]
    row = g.iloc[0]
    assert row["nobs"] == b["nobs"] and row["df.residual"] == b["df.residual"]
    assert row["sigma"] == 1.0
    # a better optimum is allowed: logLik no lower than lme4's, within 1e-5 relative
    assert row["logLik"] >= b["logLik"] - 1e-9
    for col in ("logLik", "AIC", "BIC"):
        assert row[col] == pytest.approx(b[col], rel=1e-5)
    assert row["deviance"] == pytest.approx(b["deviance"], rel=2e-3)


def test_augment_matches_broom_mixed(fit, broom, cbpp):
    a = fit.augment()
    b = broom["augment"]
    added = [c for c in b["columns"] if c.startswith(".")]
    assert [c for c in a.columns if c.startswith(".")] == added
    assert list(a.columns[:4]) == ["incidence", "size", "period", "herd"]
    assert a.index.equals(cbpp.index)
    for col in added:
        tol = dict(rtol=2e-2, atol=5e-3) if col in (".resid", ".wtres") else dict(rtol=2e-3)
        if col == ".cooksd":  # proportional to .wtres squared (tests/test_leverage.py)
            tol = dict(rtol=5e-2, atol=1e-3)
        np.testing.assert_allclose(a[col], b[col], err_msg=col, **tol)


def test_statsmodels_names(fit):
    assert fit.params.equals(fit.fixef) and fit.bse.equals(fit.se)
    assert (fit.pvalues < 0.01).all()
    ci = fit.conf_int()
    np.testing.assert_allclose(ci["lower"], fit.fixef - 1.959963984540054 * fit.se, rtol=1e-12)


# ------------------------------------------------------------------------ alignment
def test_fitted_and_resid_are_aligned_with_the_input(cbpp):
    d = cbpp.copy()
    d.index = pd.Index([f"r{i}" for i in range(len(d))])
    d.loc["r3", "period"] = None  # a dropped row
    d.loc["r10", "size"] = np.nan
    with pytest.warns(ml.exceptions.MissingValuesWarning) as rec:
        fit = ml.glmer(FORMULA, d, family="binomial")
    # the warning names the columns as written, not the derived ones
    assert "'period'" in str(rec[0].message) and "__ml_" not in str(rec[0].message)
    assert fit.nobs == len(d) - 2
    for s in (fit.fitted, fit.resid(), fit.resid("pearson"), fit.fittedvalues):
        assert isinstance(s, pd.Series) and s.index.equals(d.index) and s.index is fit.input_index
        assert s.isna().tolist() == [i in ("r3", "r10") for i in d.index]
    used = fit.fitted.dropna()
    np.testing.assert_array_equal(used.to_numpy(), fit.fitted_values)
    np.testing.assert_array_equal(fit.resid("response").dropna(), fit.y - fit.fitted_values)
    # the values at a row are that row's: refit without the dropped rows gives them again
    fit2 = ml.glmer(FORMULA, d.drop(index=["r3", "r10"]), family="binomial")
    np.testing.assert_allclose(fit2.fitted, used.loc[fit2.fitted.index], rtol=1e-10)
    # not a pandas DataFrame: arrays of the rows used
    fit3 = ml.glmer(FORMULA, {c: cbpp[c].to_numpy() for c in cbpp.columns}, family="binomial")
    assert isinstance(fit3.fitted, np.ndarray) and isinstance(fit3.resid(), np.ndarray)
    assert len(fit3.fitted) == len(cbpp)


# ------------------------------------------------------------------------ keep
def _same_fit(a, b) -> None:
    assert a.fixef.equals(b.fixef) and a.vcov.equals(b.vcov)
    np.testing.assert_array_equal(a.theta, b.theta)
    assert a.loglik == b.loglik and a.summary() == b.summary()
    for g in a.ranef:
        assert a.ranef[g].equals(b.ranef[g])


@pytest.mark.parametrize(
    "formula, family, data",
    [
        (FORMULA, "binomial", "cbpp"),
        ("y ~ x + offset(log(t)) + (1 | g)", "poisson", "sim_poisson_offset"),
    ],
)
def test_pickle_and_save_round_trip(formula, family, data, tmp_path):
    if data == "cbpp":
        df = ml.datasets.load("cbpp")
    else:
        from conftest import load_reference_data

        df = load_reference_data(load_reference("poisson_offset", "glmm"))
    fit = ml.glmer(formula, df, family=family)
    back = pickle.loads(pickle.dumps(fit))
    assert back.__dict__["_problem"] is None
    _same_fit(fit, back)
    assert back.problem.objective(list(fit.theta), list(fit.fixef), 1) == pytest.approx(
        fit.objective, rel=1e-12
    )
    path = tmp_path / "glmer.mlfit"
    fit.save(path)
    loaded = ml.load(path)
    _same_fit(fit, loaded)
    assert loaded.family.name == family
    new = df.iloc[:5]
    np.testing.assert_array_equal(loaded.predict(new), fit.predict(new))
    np.testing.assert_array_equal(loaded.predict(re_form="~0"), fit.predict(re_form="~0"))
    assert loaded.augment().equals(fit.augment())
    assert loaded.fitted.equals(fit.fitted)
    pd.testing.assert_frame_equal(
        loaded.confint(method="profile", parm=[fit.fixef.index[1]]),
        fit.confint(method="profile", parm=[fit.fixef.index[1]]),
    )


def test_glmer_nb_saves_its_theta(tmp_path):
    from conftest import load_reference_data

    r = load_reference("negbin", "glmm")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ml.glmer(r["formula"], load_reference_data(r), family="negative.binomial")
    fit.save(tmp_path / "nb.mlfit")
    back = ml.load(tmp_path / "nb.mlfit")
    assert back.family.theta == fit.family.theta == fit.nb_theta
    assert back.nb_theta == fit.nb_theta and back.summary() == fit.summary()


def test_saved_glmer_answers_in_a_fresh_process(fit, tmp_path):
    path = tmp_path / "cbpp.mlfit"
    fit.save(path)
    pkl = tmp_path / "cbpp.pkl"
    pkl.write_bytes(pickle.dumps(fit))
    code = textwrap.dedent(
        f"""
        import pickle
        import multilevel as ml
        for fit in (ml.load({str(path)!r}), pickle.loads(open({str(pkl)!r}, "rb").read())):
            print(fit.summary())
            new = {{"period": ["1", "4"], "herd": ["1", "99"]}}
            print(fit.predict(new, type="response", allow_new_levels=True).round(6).tolist())
            print(fit.confint(method="profile", parm=["period4"]).round(4).to_numpy().tolist())
        """
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    ).stdout
    assert out.count("Generalized linear mixed model fit by maximum likelihood") == 2
    new = {"period": ["1", "4"], "herd": ["1", "99"]}
    pred = fit.predict(new, type="response", allow_new_levels=True).round(6).tolist()
    assert out.count(str(pred)) == 2
    prof = fit.confint(method="profile", parm=["period4"]).round(4).to_numpy().tolist()
    assert out.count(str(prof)) == 2


def test_loading_a_file_that_is_not_a_fit(tmp_path):
    from multilevel.results.keep import FitFileError

    p = tmp_path / "x.mlfit"
    p.write_bytes(b"not a zip")
    with pytest.raises(FitFileError, match="not a saved multilevel fit"):
        ml.load(p)


# ------------------------------------------------------------------------ separation
def test_complete_separation_returns_a_fit():
    # y = 1 exactly when x >= 3: glmer (lme4 1.1-31) returns beta = (-181.7, 72.7) with
    # warnings; here the fit returns with x held where the probabilities of the rows it
    # separates are within 1e-8 of 0 or 1 (its threshold in the middle of the gap).
    x = np.tile(np.arange(6, dtype=float), 10)
    df = pd.DataFrame({"y": (x >= 3).astype(float), "x": x, "g": np.repeat(np.arange(10), 6)})
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        fit = ml.glmer("y ~ x + (1 | g)", df, family="binomial")
    sep = [w for w in rec if issubclass(w.category, SeparationWarning)]
    assert len(sep) == 1
    assert "column 'x'" in str(sep[0].message) and "diverges" in str(sep[0].message)
    assert fit.separated == ["x"]
    span = 2 * np.log((1 - 1e-8) / 1e-8)
    assert fit.fixef["x"] == pytest.approx(span, rel=1e-9)
    # the threshold between x = 2 and x = 3: eta = 0 at x = 2.5
    assert fit.fixef["(Intercept)"] + 2.5 * fit.fixef["x"] == pytest.approx(0, abs=1e-6)
    mu = fit.fitted_values
    assert np.all(np.where(x >= 3, 1 - mu, mu) <= 1e-8 * (1 + 1e-6))
    assert np.isinf(fit.se["x"]) and fit.loglik > -1e-6
    s = fit.summary()
    assert "x" in s and fit.tidy().shape[0] == 3
