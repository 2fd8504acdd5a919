"""Hostile inputs of the single-level models: ols (clusters, weights), panel (entities,
periods, models) and lmlist (groups); each case one line with its exact outcome."""

from __future__ import annotations

import numpy as np
import pytest

import multilevel as ml
from _hostile import caught, expect_error, put, small
from multilevel.exceptions import DataError, FormulaError, MissingColumnError


def panel_data():
    d = small()
    d["t"] = np.tile(np.arange(6), 10)
    return d


# fmt: off
ERRORS = [
    pytest.param(lambda d: ml.ols("y ~ x", d, vcov="HC9"), ValueError, r"unknown vcov 'HC9'; use 'iid', 'HC0'..'HC3' or \{'CR1': column\}", id="ols-unknown-vcov"),
    pytest.param(lambda d: ml.ols("y ~ x", d, vcov=5), TypeError, r"vcov must be a string such as 'HC1' or a dict", id="ols-vcov-int"),
    pytest.param(lambda d: ml.ols("y ~ x", d, vcov={"CR1": "nosuch"}), MissingColumnError, r"column 'nosuch' is not in the data", id="ols-cluster-absent"),
    pytest.param(lambda d: ml.ols("y ~ x", d, vcov={"CR1": np.arange(5)}), DataError, r"a grouping array has 5 values but the data have 60 rows", id="ols-cluster-array-short"),
    pytest.param(lambda d: ml.ols("y ~ x + (1 | g)", d), FormulaError, r"this function takes formulas without random-effects terms; found \(1 \| g\)", id="ols-bar"),
    pytest.param(lambda d: ml.ols("y ~ x", d.assign(c=d.g.map(lambda v: [v])), vcov={"CR1": "c"}), DataError, r"column 'c' holds list values", id="ols-cluster-lists"),
    pytest.param(lambda d: ml.panel("y ~ x", panel_data(), entity="g", model="bogus"), ValueError, r"model must be one of within, random, between, pooled, fd; got 'bogus'", id="panel-bad-model"),
    pytest.param(lambda d: ml.panel("y ~ x", panel_data(), entity="g", model="fd"), ValueError, r"model='fd' needs the time column \(time=\)", id="panel-fd-no-time"),
    pytest.param(lambda d: ml.panel("y ~ x", panel_data(), entity="nosuch"), MissingColumnError, r"column 'nosuch' is not in the data", id="panel-entity-absent"),
    pytest.param(lambda d: ml.panel("y ~ x", panel_data().assign(t=0), entity="g", time="t"), DataError, r"duplicate \(g, t\) pairs: 10 pair\(s\) occur more than once, e.g. \(0, 0\)", id="panel-duplicate-periods"),
    pytest.param(lambda d: ml.panel("y ~ x", panel_data().assign(t=0, e=np.arange(60)), entity="e", time="t", model="fd"), DataError, r"model='fd' needs two periods of an entity to difference; each of the 60 entities of 'e' has one row", id="panel-fd-one-period"),
    pytest.param(lambda d: ml.panel("y ~ x", panel_data(), entity="g", vcov="HC1"), ValueError, r"panel supports vcov='iid', 'cluster' or", id="panel-hc-vcov"),
    pytest.param(lambda d: ml.panel("y ~ x", panel_data(), entity="g", vcov={"CR2": "g"}), ValueError, r"CR2 is not available for panel models", id="panel-cr2"),
    pytest.param(lambda d: ml.panel("y ~ c", panel_data().assign(c=panel_data().g * 1.0), entity="g"), DataError, r"no regressor varies within entities", id="panel-time-invariant-only"),
    pytest.param(lambda d: ml.panel("y ~ x", panel_data(), entity="g", model="between", vcov="cluster"), ValueError, r"cluster-robust errors are not available for the between model", id="panel-between-cluster"),
    pytest.param(lambda d: ml.panel("y ~ x + (1 | g)", panel_data(), entity="g"), FormulaError, r"without random-effects terms", id="panel-bar"),
    pytest.param(lambda d: ml.panel("y ~ x", panel_data().assign(g=[[1]] * 60), entity="g"), DataError, r"column 'g' holds list values", id="panel-entity-lists"),
    pytest.param(lambda d: ml.lmlist("y ~ x", d, group="nosuch"), MissingColumnError, r"column 'nosuch' is not in the data", id="lmlist-group-absent"),
    pytest.param(lambda d: ml.lmlist("y ~ x", d.assign(g=np.arange(60)), group="g"), DataError, r"no level of 'g' has enough rows for 'y ~ x' \(needs 3 rows and a full-rank model matrix\)", id="lmlist-group-per-row"),
    pytest.param(lambda d: ml.lmlist("y ~ x", d, group="g", min_obs=100), DataError, r"needs 100 rows", id="lmlist-min-obs-too-large"),
    pytest.param(lambda d: ml.lmlist("y ~ x + (1 | g)", d, group="g"), FormulaError, r"without random-effects terms", id="lmlist-bar"),
    pytest.param(lambda d: ml.lmlist("y ~ x", d.assign(g=[[1]] * 60), group="g"), DataError, r"column 'g' holds list values", id="lmlist-group-lists"),
    pytest.param(lambda d: ml.lmlist("y ~ x", d, group=None), TypeError, r"group must be the name of the grouping column, not None", id="lmlist-group-none"),
    pytest.param(lambda d: ml.lmlist("y ~ x", d.assign(x=d.g), group="g"), DataError, r"rank-deficient model matrix", id="lmlist-x-constant-in-groups"),
]
# fmt: on


@pytest.mark.parametrize("fn, exc, match", ERRORS)
def test_error(fn, exc, match):
    expect_error(lambda: fn(small()), exc, match)


def _counted(nobs, n_dropped, warn):
    def check(fit, warns):
        assert (fit.nobs if np.isscalar(fit.nobs) else int(fit.nobs.sum())) == nobs
        assert fit.n_dropped == n_dropped
        assert warns == [warn]

    return check


# fmt: off
COUNTED = [  # rows dropped for a missing cluster, entity or group: warned (as lmer) and counted
    pytest.param(lambda d: ml.ols("y ~ x", put(d, "g", [0, 1, 2], None), vcov={"CR1": "g"}), _counted(57, 3, "MissingValuesWarning: dropped 3 rows with missing values (in 'g')"), id="ols-missing-cluster"),
    pytest.param(lambda d: ml.ols("y ~ x", d, vcov={"CR1": np.r_[np.nan, np.arange(59) % 5]}), _counted(59, 1, "MissingValuesWarning: dropped 1 row with missing values (in a grouping array)"), id="ols-missing-cluster-array"),
    pytest.param(lambda d: ml.ols("y ~ x", put(put(d, "g", [0], None), "z", [5], np.nan), vcov={"CR1": ["g", "z"]}), _counted(58, 2, "MissingValuesWarning: dropped 2 rows with missing values (in 'g', 'z')"), id="ols-missing-two-way-clusters"),
    pytest.param(lambda d: ml.panel("y ~ x", put(panel_data(), "g", [7, 8], None), entity="g", time="t"), _counted(58, 2, "MissingValuesWarning: dropped 2 rows with missing values (in 'g')"), id="panel-missing-entity"),
    pytest.param(lambda d: ml.panel("y ~ x", put(panel_data(), "t", [7], None), entity="g", time="t"), _counted(59, 1, "MissingValuesWarning: dropped 1 row with missing values (in 't')"), id="panel-missing-period"),
    pytest.param(lambda d: ml.lmlist("y ~ x", put(d, "g", [0, 59], None), group="g"), _counted(58, 2, "MissingValuesWarning: dropped 2 rows with missing values (in 'g')"), id="lmlist-missing-group"),
]
# fmt: on


@pytest.mark.parametrize("fn, check", COUNTED)
def test_counted(fn, check):
    fit, warns = caught(lambda: fn(small()))
    check(fit, warns)


# fmt: off
FITS = [
    pytest.param(lambda d: ml.ols("y ~ x + x2", d.assign(x2=d.x)), lambda f: f.dropped_columns == ["x2"], id="ols-collinear-dropped"),
    pytest.param(lambda d: ml.ols("y ~ x", d.assign(y=3.0)), lambda f: abs(f.coef["x"]) < 1e-12 and f.coef["(Intercept)"] == pytest.approx(3.0), id="ols-constant-response"),
    pytest.param(lambda d: ml.ols("my.y ~ my.x", d.rename(columns={"y": "my.y", "x": "my.x"})), lambda f: list(f.coef.index) == ["(Intercept)", "my.x"], id="ols-dotted"),
    pytest.param(lambda d: ml.ols("y ~ scale(x)", d), lambda f: list(f.coef.index) == ["(Intercept)", "scale(x)"], id="ols-scale"),
    pytest.param(lambda d: ml.panel("y ~ x", panel_data().iloc[:10], entity="g"), lambda f: f.n_entities == 2, id="panel-two-entities"),
    pytest.param(lambda d: ml.panel("y ~ x", panel_data().assign(g=panel_data().g.astype(str)), entity="g", time="t", model="fd"), lambda f: f.nobs == 50, id="panel-fd-text-entity"),
    pytest.param(lambda d: ml.panel("y ~ x", panel_data().drop(index=[3, 14]), entity="g", time="t", model="fd"), lambda f: f.nobs == 58 - 10, id="panel-fd-gaps"),
    pytest.param(lambda d: ml.lmlist("y ~ x", d.assign(g=np.r_[np.zeros(58), 1, 1]), group="g"), lambda f: f.skipped == [1.0], id="lmlist-small-group-skipped"),
    pytest.param(lambda d: ml.lmlist("y ~ x", d.assign(g=d.g.astype("category")), group="g"), lambda f: len(f.coef) == 10, id="lmlist-categorical-group"),
]
# fmt: on


@pytest.mark.parametrize("fn, check", FITS)
def test_fits(fn, check):
    fit, _ = caught(lambda: fn(small()))
    assert check(fit)
