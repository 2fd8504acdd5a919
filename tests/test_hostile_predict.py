"""Hostile inputs, predict: empty, partial and odd new data for lmer fits (new levels, missing
values, missing columns, other dtypes, unseen factor levels, formula functions)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from _hostile import caught, expect_error, small
from multilevel.exceptions import DataError, MissingColumnError


@pytest.fixture(scope="module")
def fit():
    return caught(lambda: ml.lmer("y ~ x + f + (1 | g)", small()))[0]


def new(**cols):
    d = small().iloc[:4].copy()
    for k, v in cols.items():
        d[k] = v
    return d


# fmt: off
ERRORS = [
    pytest.param(lambda f: f.predict(new(g=[99, 0, 1, 2])), DataError, r"new levels", id="new-level"),
    pytest.param(lambda f: f.predict(new(f=["a", "b", "zz", "a"])), DataError, r"factor 'f' has new levels in newdata: 'zz'", id="new-factor-level"),
    pytest.param(lambda f: f.predict(new().drop(columns="x")), MissingColumnError, r"column 'x' is not in the data", id="missing-predictor"),
    pytest.param(lambda f: f.predict(new().drop(columns="g")), MissingColumnError, r"column 'g' is not in the data", id="missing-group"),
    pytest.param(lambda f: f.predict(new(x=[np.inf, 0, 0, 0])), DataError, r"'x'.*inf.*rows 0", id="inf-predictor"),
    pytest.param(lambda f: f.predict([1, 2, 3]), DataError, r"data must be a pandas or polars DataFrame or a dict of arrays, not list", id="newdata-list"),
]
# fmt: on


@pytest.mark.parametrize("call, exc, match", ERRORS)
def test_error(fit, call, exc, match):
    expect_error(lambda: call(fit), exc, match)


# fmt: off
RESULTS = [  # call, check of the predictions
    pytest.param(lambda f: f.predict(small().iloc[:0]), lambda p, f: p.shape == (0,), id="no-rows"),
    pytest.param(lambda f: f.predict(new(x=[np.nan, 0.1, 0.2, 0.3])), lambda p, f: np.isnan(p[0]) and np.isfinite(p[1:]).all(), id="missing-predictor-value"),
    pytest.param(lambda f: f.predict(new(g=[None, 0, 1, 2])), lambda p, f: np.isnan(p[0]) and np.isfinite(p[1:]).all(), id="missing-group-value"),
    pytest.param(lambda f: f.predict(new(g=[99, 0, 1, 2]), allow_new_levels=True), lambda p, f: np.isclose(p[0], f.beta[0] + f.beta[1] * small().x[0] + f.beta[2] * (small().f[0] == "b") + f.beta[3] * (small().f[0] == "c")), id="new-level-allowed-is-population"),
    pytest.param(lambda f: f.predict(new(g=["0", "0", "0", "0"])), lambda p, f: np.allclose(p, f.fitted[:4]), id="group-as-text"),
    pytest.param(lambda f: f.predict(new(g=[0.0, 0.0, 0.0, 0.0])), lambda p, f: np.allclose(p, f.fitted[:4]), id="group-as-float"),
    pytest.param(lambda f: f.predict(new(f=pd.Categorical(["a", "b", "a", "c"], categories=["c", "b", "a"]))), lambda p, f: np.allclose(p, f.predict(new(f=["a", "b", "a", "c"]))), id="factor-other-category-order"),
    pytest.param(lambda f: f.predict(new(f=["a", "a", "a", "a"])), lambda p, f: p.shape == (4,), id="factor-one-level"),
    pytest.param(lambda f: f.predict({"x": [0.0], "f": ["a"], "g": [0]}), lambda p, f: np.isclose(p[0], f.beta[0] + f.ranef["g"].iloc[0, 0]), id="dict-one-row"),
    pytest.param(lambda f: f.predict(new().set_index(pd.Index([10, 11, 12, 13]))), lambda p, f: np.allclose(p, f.fitted[:4]), id="other-index"),
    pytest.param(lambda f: f.predict(new(), re_form="~0"), lambda p, f: np.allclose(p, f.design.X[:4] @ f.beta), id="re-form-none"),
    pytest.param(lambda f: f.predict(new()[["g", "f", "x"]]), lambda p, f: np.allclose(p, f.fitted[:4]), id="response-absent"),
]
# fmt: on


@pytest.mark.parametrize("call, check", RESULTS)
def test_result(fit, call, check):
    p, _ = caught(lambda: call(fit))
    assert check(np.asarray(p), fit)


def test_predict_with_scale_offset_and_dotted_names():
    d = small().rename(columns={"x": "my.x"})
    f, _ = caught(lambda: ml.lmer("y ~ scale(my.x) + offset(np.log(t)) + (1 | g)", d))
    np.testing.assert_allclose(f.predict(d.iloc[:5]), f.fitted[:5], rtol=1e-12)
