"""fitted and resid as pandas Series on the input's index (NaN at rows dropped, never shifted)
for lmer, ols, panel and lmlist fits of a pandas DataFrame; NumPy arrays of the rows used for
any other input."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel as ml


@pytest.fixture(scope="module")
def holes():
    """sleepstudy shuffled, on a string index, with a missing response at three rows and a
    missing regressor at one."""
    d = ml.datasets.load("sleepstudy").sample(frac=1.0, random_state=3)
    d.index = pd.Index([f"r{k}" for k in range(len(d))], name="row")
    d.loc[["r5", "r17", "r100"], "Reaction"] = np.nan
    d.loc["r42", "Days"] = np.nan
    return d


DROPPED = sorted(["r5", "r17", "r42", "r100"])


def _fits(d):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "lmer": ml.lmer("Reaction ~ Days + (Days | Subject)", d),
            "ols": ml.ols("Reaction ~ Days", d),
            "panel": ml.panel("Reaction ~ Days", d, entity="Subject"),
            "pooled": ml.panel("Reaction ~ Days", d, entity="Subject", model="pooled"),
            "lmlist": ml.lmlist("Reaction ~ Days", d, group="Subject"),
        }


@pytest.fixture(scope="module")
def fits(holes):
    return _fits(holes)


@pytest.mark.parametrize("kind", ["lmer", "ols", "pooled", "lmlist"])
def test_series_on_the_input_index(fits, holes, kind):
    fit = fits[kind]
    f, r = fit.fitted, fit.resid
    assert isinstance(f, pd.Series) and isinstance(r, pd.Series)
    assert f.index.equals(holes.index) and r.index.equals(holes.index)
    assert sorted(f.index[f.isna()]) == DROPPED and sorted(r.index[r.isna()]) == DROPPED
    # each value sits at its own row: y = fitted + resid row by row, in the shuffled order
    kept = holes.drop(index=DROPPED)
    np.testing.assert_allclose((f + r)[kept.index], kept["Reaction"], rtol=1e-12)


def test_lmer_values_are_the_predictions(fits, holes):
    fit = fits["lmer"]
    kept = holes.drop(index=DROPPED)
    np.testing.assert_allclose(fit.fitted[kept.index], fit.predict(kept), rtol=1e-12)
    np.testing.assert_allclose(fit.scaled_residuals(), fit.resid.dropna() / fit.sigma, rtol=1e-12)
    assert "NaN" not in str(fit.summary())  # the residual quantiles are of the rows used
    np.testing.assert_array_equal(fit.predict(), fit.fitted.dropna())  # predict(): the rows used


def test_within_panel_is_aligned(fits, holes):
    fit = fits["panel"]
    f = fit.fitted
    assert f.index.equals(holes.index) and sorted(f.index[f.isna()]) == DROPPED
    # the fitted values of the demeaned regression: slope times the demeaned Days
    kept = holes.drop(index=DROPPED)
    days = kept["Days"] - kept.groupby("Subject", observed=True)["Days"].transform("mean")
    np.testing.assert_allclose(f[kept.index], fit.coef["Days"] * days, rtol=1e-10, atol=1e-9)


def test_first_differences_align_with_the_later_row(holes):
    d = holes.assign(t=holes["Days"].fillna(-1))
    fit = ml.panel("Reaction ~ Days", d.dropna(), entity="Subject", time="t", model="fd")
    f = fit.fitted
    assert f.index.equals(d.dropna().index)
    firsts = d.dropna().sort_values("t").groupby("Subject", observed=True).head(1).index
    assert set(f.index[f.isna()]) == set(firsts)


@pytest.mark.parametrize(
    "convert", [lambda d: {c: d[c].to_numpy() for c in d}, lambda d: d.reset_index(drop=True)]
)
def test_arrays_without_a_pandas_index(holes, convert):
    d = convert(holes)
    for kind, fit in _fits(d).items():
        if isinstance(d, dict):
            assert isinstance(fit.fitted, np.ndarray), kind
            assert len(fit.fitted) == len(fit.resid) == 176, kind
        else:  # a default RangeIndex is still an index: the Series keeps it
            assert isinstance(fit.fitted, pd.Series) and len(fit.fitted) == 180


def test_lmlist_skipped_groups_are_nan(holes):
    d = holes[~((holes["Subject"] == "308") & (holes["Days"] > 1))]
    with pytest.warns(ml.MultilevelWarning, match="skipped"):
        fit = ml.lmlist("Reaction ~ Days", d, group="Subject", min_obs=5)
    f = fit.fitted
    assert f.index.equals(d.index)
    assert f[d["Subject"] == "308"].isna().all() and f.notna().sum() == len(d) - 4 - 2


def test_augment_and_fittedvalues_agree(fits, holes):
    for kind in ("lmer", "ols", "lmlist"):
        fit = fits[kind]
        a = fit.augment(holes)
        assert len(a) == 176
        np.testing.assert_array_equal(a[".fitted"], fit.fitted[a.index])
        if kind != "lmlist":
            pd.testing.assert_series_equal(fit.fittedvalues, fit.fitted, check_names=False)


@pytest.mark.parametrize("kind", ["lmer", "ols", "panel", "lmlist"])
def test_pickle_and_save_keep_the_index(fits, kind, tmp_path):
    fit = fits[kind]
    for back in (pickle.loads(pickle.dumps(fit)), _saved(fit, tmp_path / f"{kind}.mlfit")):
        pd.testing.assert_series_equal(back.fitted, fit.fitted, check_index_type=False)
        pd.testing.assert_series_equal(back.resid, fit.resid, check_index_type=False)


def test_multiindex_input_saves(tmp_path):
    d = ml.datasets.load("sleepstudy")
    d.index = pd.MultiIndex.from_arrays([d["Subject"].astype(str), d["Days"]], names=["s", "d"])
    for fit in (ml.lmer("Reaction ~ Days + (1 | Subject)", d), ml.ols("Reaction ~ Days", d)):
        back = _saved(fit, tmp_path / "m.mlfit")
        assert isinstance(back.fitted.index, pd.MultiIndex)
        assert back.fitted.index.equals(d.index) and back.fitted.index.names == ["s", "d"]
        np.testing.assert_array_equal(back.fitted.to_numpy(), fit.fitted.to_numpy())


def test_lmer_with_a_missing_cluster_keeps_the_input_rows():
    d = ml.datasets.load("sleepstudy")
    d["clu"] = d["Subject"].astype(str)
    d.loc[[7, 8], "clu"] = None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = ml.lmer("Reaction ~ Days + (Days | Subject)", d, vcov={"CR2": "clu"})
    assert fit.fitted.index.equals(d.index) and list(fit.fitted.index[fit.fitted.isna()]) == [7, 8]


def _saved(fit, path):
    fit.save(path)
    return ml.load(path)
