"""Hostile inputs, dtypes: every pandas/NumPy/Arrow/polars dtype a user may hand over as the
response, a predictor or a grouping factor, with its outcome (a fit equal to the float64 one,
or an error naming the column and its type)."""

from __future__ import annotations

import datetime
import decimal

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from _hostile import caught, expect_error, small
from multilevel.exceptions import DataError

F = "y ~ x + (1 | g)"


def base():
    return caught(lambda: ml.lmer(F, small()))[0].objective


# fmt: off
SAME = [  # a dtype that must give exactly the float64 fit
    pytest.param(lambda d: d.assign(g=d.g.astype(np.int8)), id="group-int8"),
    pytest.param(lambda d: d.assign(g=d.g.astype(np.uint64)), id="group-uint64"),
    pytest.param(lambda d: d.assign(g=d.g.astype(float)), id="group-float"),
    pytest.param(lambda d: d.assign(g=d.g.astype(str)), id="group-str"),
    pytest.param(lambda d: d.assign(g=d.g.astype("category")), id="group-category"),
    pytest.param(lambda d: d.assign(g=pd.Categorical(d.g, categories=list(range(12)))), id="group-unused-categories"),
    pytest.param(lambda d: d.assign(g=d.g.astype("Int64")), id="group-nullable-Int64"),
    pytest.param(lambda d: d.assign(g=d.g.astype(str).astype("string[pyarrow]")), id="group-string-pyarrow"),
    pytest.param(lambda d: d.assign(g=d.g.map(lambda v: f"s{v}").astype(object)), id="group-object-str"),
    pytest.param(lambda d: d.assign(g=pd.to_datetime("2020-01-01") + pd.to_timedelta(d.g, "D")), id="group-datetime"),
    pytest.param(lambda d: d.assign(g=d.g.map(lambda v: (v, "a"))), id="group-tuples"),
    pytest.param(lambda d: d.assign(y=d.y.astype("Float64")), id="y-nullable-Float64"),
    pytest.param(lambda d: d.assign(y=d.y.astype("float64[pyarrow]")), id="y-arrow-float"),
    pytest.param(lambda d: d.assign(x=d.x.astype(object)), id="x-object-floats"),
    pytest.param(lambda d: d.assign(x=d.x.map(decimal.Decimal)), id="x-decimal"),
    pytest.param(lambda d: d.assign(x=pd.Series(d.x.to_numpy()[::-1], index=d.index[::-1])), id="x-series-other-index-order"),
    pytest.param(lambda d: d.set_index(d.index * 10 + 7), id="non-default-index"),
    pytest.param(lambda d: d.set_index(pd.MultiIndex.from_arrays([d.g, d.index])), id="multiindex"),
]
# fmt: on


@pytest.mark.parametrize("make", SAME)
def test_same_fit(make):
    fit, _ = caught(lambda: ml.lmer(F, make(small())))
    assert abs(fit.objective - base()) <= 1e-10 * abs(base())


def test_integer_response_and_predictor():
    d = small()
    d["yi"] = np.round(d.y * 10).astype(np.int64)
    d["xi"] = np.round(d.x * 10).astype(np.int16)
    a, _ = caught(lambda: ml.lmer("yi ~ xi + (1 | g)", d))
    b, _ = caught(lambda: ml.lmer("yi ~ xi + (1 | g)", d.astype({"yi": float, "xi": float})))
    assert a.objective == pytest.approx(b.objective, rel=1e-12)


def test_boolean_response_and_predictor_named_as_r():
    d = small().assign(yb=lambda v: v.y > 1, xb=lambda v: v.x > 0)
    fit, _ = caught(lambda: ml.lmer("yb ~ xb + (1 | g)", d))
    assert list(fit.fixef.index) == ["(Intercept)", "xbTRUE"]


# fmt: off
ERRORS = [
    pytest.param(lambda d: ml.lmer("f ~ x + (1 | g)", d), DataError, r"response 'f' must be numeric \(or boolean\), not object", id="y-text"),
    pytest.param(lambda d: ml.lmer(F, d.assign(y=d.y.astype(str).astype("category"))), DataError, r"response 'y' must be numeric \(or boolean\), not category", id="y-category"),
    pytest.param(lambda d: ml.lmer(F, d.assign(y=pd.Timestamp("2020-01-01") + pd.to_timedelta(d.index, "D"))), DataError, r"response 'y' must be numeric \(or boolean\), not datetime64", id="y-datetime"),
    pytest.param(lambda d: ml.lmer(F, d.assign(y=d.y.map(lambda v: [v]))), DataError, r"column 'y' holds list values", id="y-lists"),
    pytest.param(lambda d: ml.lmer(F, d.assign(x=d.x.map(lambda v: [v, v]))), DataError, r"column 'x' holds list values \(rows 0, 1, 2, 3, 4, \.\.\.\)", id="x-lists"),
    pytest.param(lambda d: ml.lmer(F, d.assign(g=d.g.map(lambda v: [v % 3]))), DataError, r"column 'g' holds list values", id="group-lists"),
    pytest.param(lambda d: ml.lmer(F, d.assign(g=d.g.map(lambda v: {"k": v}))), DataError, r"column 'g' holds dict values", id="group-dicts"),
    pytest.param(lambda d: ml.lmer(F, d.assign(g=d.g.map(lambda v: np.array([v])))), DataError, r"column 'g' holds ndarray values", id="group-arrays"),
    pytest.param(lambda d: ml.lmer(F, d.assign(x=d.x.map(lambda v: {v}))), DataError, r"column 'x' holds set values", id="x-sets"),
    pytest.param(lambda d: ml.lmer(F, d, weights=d.f), DataError, r"weights must be numeric", id="weights-text-series"),
]
# fmt: on


@pytest.mark.parametrize("fn, exc, match", ERRORS)
def test_error(fn, exc, match):
    expect_error(lambda: fn(small()), exc, match)


# fmt: off
FACTORS = [  # non-numeric predictors become factors with R's level order and names
    pytest.param(lambda d: d.assign(xs=np.where(d.x > 0, "hi", "lo")), ["(Intercept)", "xslo"], id="text-predictor"),
    pytest.param(lambda d: d.assign(xs=pd.Categorical(np.where(d.x > 0, "hi", "lo"), categories=["lo", "hi"])), ["(Intercept)", "xshi"], id="categorical-order-kept"),
    pytest.param(lambda d: d.assign(xs=np.where(d.x > 0, "2.5", "10")), ["(Intercept)", "xs2.5"], id="numbers-as-text-sorted-as-text"),
    pytest.param(lambda d: d.assign(xs=pd.array(np.where(d.x > 0, "b", "a"), dtype="string")), ["(Intercept)", "xsb"], id="string-dtype"),
]
# fmt: on


@pytest.mark.parametrize("make, names", FACTORS)
def test_factor_predictor(make, names):
    fit, _ = caught(lambda: ml.lmer("y ~ xs + (1 | g)", make(small())))
    assert list(fit.fixef.index) == names


def test_polars_dtypes():
    pl = pytest.importorskip("polars")
    d = small()
    p = pl.from_pandas(d).with_columns(
        pl.col("g").cast(pl.Utf8).cast(pl.Categorical), pl.col("x").cast(pl.Float32)
    )
    fit, _ = caught(lambda: ml.lmer(F, p))
    ref, _ = caught(lambda: ml.lmer(F, d.assign(x=d.x.astype(np.float32).astype(float))))
    assert fit.objective == pytest.approx(ref.objective, rel=1e-12)
    assert isinstance(datetime.date.today(), datetime.date)
