"""Hostile inputs, missing and non-finite values: each case one line, with its exact outcome
(the error class and the words that name the column and rows, or the rows counted)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from _hostile import caught, check_lme4, expect_error, put, reference, sleepstudy, small
from multilevel.exceptions import DataError, MissingValuesWarning

F = "y ~ x + (1 | g)"
inf, nan = np.inf, np.nan

# fmt: off
ERRORS = [
    pytest.param(lambda d: ml.lmer(F, put(d, "y", [3], inf)), DataError, r"'y'.*inf.*rows 3", id="inf-y"),
    pytest.param(lambda d: ml.lmer(F, put(d, "y", [3, 7], -inf)), DataError, r"'y'.*rows 3, 7", id="minus-inf-y"),
    pytest.param(lambda d: ml.lmer(F, put(d, "x", [0], inf)), DataError, r"'x'.*inf.*rows 0", id="inf-x"),
    pytest.param(lambda d: ml.lmer("y ~ x + (x | g)", put(d, "x", [59], -inf)), DataError, r"'x'.*rows 59", id="inf-slope"),
    pytest.param(lambda d: ml.lmer(F, d, weights=np.r_[inf, np.ones(59)]), DataError, r"weights.*inf.*rows 0", id="inf-weights-array"),
    pytest.param(lambda d: ml.lmer(F, d.assign(w=np.r_[np.ones(10), inf, np.ones(49)]), weights="w"), DataError, r"w.*inf.*rows 10", id="inf-weights-column"),
    pytest.param(lambda d: ml.lmer(F, d, offset=np.r_[np.ones(5), -inf, np.ones(54)]), DataError, r"offset.*inf.*rows 5", id="inf-offset"),
    pytest.param(lambda d: ml.lmer("y ~ np.exp(x * 1000) + (1 | g)", d), DataError, r"fixed-effects model matrix.*non-finite.*rows", id="inf-from-transform"),
    pytest.param(lambda d: ml.lmer("np.exp(y * 1000) ~ x + (1 | g)", d), DataError, r"response.*non-finite", id="inf-response-transform"),
    pytest.param(lambda d: ml.lmer(F, d.assign(y=nan)), DataError, r"no rows left after dropping rows with missing values", id="all-y-missing"),
    pytest.param(lambda d: ml.lmer(F, d.assign(g=None)), DataError, r"no rows left", id="all-groups-missing"),
    pytest.param(lambda d: ml.lmer(F, d.assign(x=np.where(d.g < 9, nan, d.x))), DataError, r"grouping factor 'g' has 1 level", id="missing-leaves-one-group"),
    pytest.param(lambda d: ml.lmer("np.log(y - 100) ~ x + (1 | g)", d), DataError, r"no rows left", id="log-negative-all-rows"),
    pytest.param(lambda d: ml.ols("y ~ x", d.assign(y=nan)), DataError, r"no rows left", id="ols-all-missing"),
    pytest.param(lambda d: ml.ols("y ~ x", put(d, "x", [2], inf)), DataError, r"'x'.*inf.*rows 2", id="ols-inf-x"),
    pytest.param(lambda d: ml.panel("y ~ x", put(d, "x", [4], inf), entity="g"), DataError, r"'x'.*rows 4", id="panel-inf-x"),
    pytest.param(lambda d: ml.lmlist("y ~ x", put(d, "y", [1], -inf), group="g"), DataError, r"'y'.*rows 1", id="lmlist-inf-y"),
    pytest.param(lambda d: ml.glmer("yb ~ x + (1 | g)", put(d.assign(yb=(d.y > 1).astype(float)), "x", [8], inf)), DataError, r"'x'.*rows 8", id="glmer-inf-x"),
]
# fmt: on


@pytest.mark.parametrize("fn, exc, match", ERRORS)
def test_error(fn, exc, match):
    expect_error(lambda: fn(small()), exc, match)


def _dropped(k, cols):
    def check(fit, warns):
        assert fit.n_dropped == k
        assert fit.nobs == 60 - k
        assert any(w.startswith("MissingValuesWarning") and cols in w for w in warns), warns

    return check


# fmt: off
COUNTED = [
    pytest.param(lambda d: ml.lmer(F, put(d, "y", [1, 2], nan)), _dropped(2, "'y'"), id="nan-y"),
    pytest.param(lambda d: ml.lmer(F, put(d, "x", [5], None)), _dropped(1, "'x'"), id="none-x"),
    pytest.param(lambda d: ml.lmer(F, put(d, "g", [0, 30], None)), _dropped(2, "'g'"), id="none-group"),
    pytest.param(lambda d: ml.lmer(F, put(d, "g", [0], nan)), _dropped(1, "'g'"), id="nan-group"),
    pytest.param(lambda d: ml.lmer(F, d.assign(x=pd.array(np.r_[[None], d.x[1:]], dtype="Float64"))), _dropped(1, "'x'"), id="pd-NA-Float64"),
    pytest.param(lambda d: ml.lmer(F, d.assign(g=pd.array(np.r_[[None], d.g[1:]], dtype="Int64"))), _dropped(1, "'g'"), id="pd-NA-Int64-group"),
    pytest.param(lambda d: ml.lmer(F, d.assign(g=pd.Categorical(np.where(d.index == 3, None, d.g.astype(str))))), _dropped(1, "'g'"), id="nan-categorical-group"),
    pytest.param(lambda d: ml.lmer("y ~ x + f + (1 | g)", put(d, "f", [9], None)), _dropped(1, "'f'"), id="none-factor"),
    pytest.param(lambda d: ml.lmer(F, d, weights=np.r_[nan, np.ones(59)]), _dropped(1, "'weights'"), id="nan-weight"),
    pytest.param(lambda d: ml.lmer(F, d, offset=np.r_[np.ones(59), nan]), _dropped(1, "'offset'"), id="nan-offset"),
    pytest.param(lambda d: ml.lmer("y ~ x + (1 | g)", put(put(d, "y", [0], nan), "x", [0, 1], nan)), _dropped(2, "'y', 'x'"), id="nan-two-columns-union"),
    pytest.param(lambda d: ml.lmer("np.log(y + 1.5) ~ x + (1 | g)", d.assign(y=np.where(d.index < 3, -5.0, np.abs(d.y)))), _dropped(3, "transformation"), id="log-negative-some-rows"),
    pytest.param(lambda d: ml.lmer("y ~ x + (1 | g)", put(d, "z", [0, 1, 2], nan)), lambda f, w: f.n_dropped == 0 and not w, id="nan-in-unused-column"),
    pytest.param(lambda d: ml.ols("y ~ x", put(d, "x", [3], nan)), _dropped(1, "'x'"), id="ols-nan-x"),
    pytest.param(lambda d: ml.lmer("y ~ x + (1 | g)", d.assign(x=pd.array(np.r_[[pd.NA], d.x[1:]], dtype="float64[pyarrow]"))), _dropped(1, "'x'"), id="arrow-null-x"),
]
# fmt: on


@pytest.mark.parametrize("fn, check", COUNTED)
def test_rows_counted(fn, check):
    fit, warns = caught(lambda: fn(small()))
    out = check(fit, warns)
    assert out is None or out is True


def test_missing_values_polars_null():
    pl = pytest.importorskip("polars")
    d = small()
    d.loc[[1, 2], "x"] = nan
    p = pl.from_pandas(d).with_columns(pl.col("x").fill_nan(None))
    fit, warns = caught(lambda: ml.lmer(F, p))
    assert fit.n_dropped == 2 and any("'x'" in w for w in warns)


def test_missing_group_and_missing_y_match_lme4():
    ss = sleepstudy()
    na = ss.copy()
    na["Subject"] = na.Subject.astype(object)
    na.loc[[4, 39, 40], "Subject"] = None
    fit, warns = caught(lambda: ml.lmer("Reaction ~ Days + (1 | Subject)", na))
    check_lme4(fit, reference("missing_group"))
    assert fit.n_dropped == 3 and warns == [
        "MissingValuesWarning: dropped 3 rows with missing values (in 'Subject')"
    ]
    na = ss.copy()
    na.loc[[0, 99], "Reaction"] = nan
    na.loc[6, "Days"] = nan
    fit, warns = caught(lambda: ml.lmer("Reaction ~ Days + (Days | Subject)", na))
    check_lme4(fit, reference("missing_y_x"))
    assert fit.n_dropped == 3


def test_fitted_has_nan_at_dropped_rows():
    d = put(small(), "y", [4], nan)
    fit, _ = caught(lambda: ml.lmer(F, d))
    # fitted is on the input's index: NaN at the dropped row, nothing shifted
    assert len(fit.fitted) == 60 and np.isnan(fit.fitted[4]) and fit.fitted.notna().sum() == 59
    assert fit.design.rows.tolist() == [r for r in range(60) if r != 4]
    assert isinstance(MissingValuesWarning("x"), UserWarning)
