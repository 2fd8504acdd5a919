"""Hostile inputs, shapes and sizes: empty and tiny data, one group, a group per row, more
coefficients than rows, degenerate terms, containers that are not data frames, bad options."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from _hostile import caught, expect_error, small
from multilevel.exceptions import DataError, FormulaError, MissingColumnError, ThetaError

F = "y ~ x + (1 | g)"


def wide(n: int, p: int) -> pd.DataFrame:
    rng = np.random.default_rng(5)
    d = pd.DataFrame(rng.normal(size=(n, p)), columns=[f"x{i}" for i in range(p)])
    d["y"] = rng.normal(size=n)
    d["g"] = np.arange(n) % 6
    return d


WIDE = "y ~ " + " + ".join(f"x{i}" for i in range(40)) + " + (1 | g)"

# fmt: off
ERRORS = [
    pytest.param(lambda d: ml.lmer(F, d.iloc[:0]), DataError, r"the data have no rows", id="no-rows"),
    pytest.param(lambda d: ml.lmer(F, d.iloc[:1]), DataError, r"grouping factor 'g' has 1 level", id="one-row"),
    pytest.param(lambda d: ml.lmer(F, d.assign(g=1)), DataError, r"grouping factor 'g' has 1 level; grouping factors must have > 1 sampled level", id="one-group"),
    pytest.param(lambda d: ml.lmer(F, d.assign(g=np.arange(60))), DataError, r"number of levels of each grouping factor must be < number of observations \(= 60\); problem: 'g'", id="group-per-row"),
    pytest.param(lambda d: ml.lmer("y ~ x + (x + z | g)", d.iloc[:20].assign(g=np.arange(20) % 7)), DataError, r"number of observations \(= 20\) <= number of random effects \(= 21\) for term \(x \+ z \| g\)", id="too-many-random-effects"),
    pytest.param(lambda d: ml.lmer(WIDE, wide(30, 40)), DataError, r"30 observations cannot fit 30 fixed-effect coefficients \(after dropping 11 rank-deficient columns\)", id="more-predictors-than-rows"),
    pytest.param(lambda d: ml.lmer("y ~ x + (0 | g)", d), FormulaError, r"random-effects term \(0 \| g\) has no columns", id="zero-bar"),
    pytest.param(lambda d: ml.lmer("y ~ x + (-1 | g)", d), FormulaError, r"random-effects term \(-1 \| g\) has no columns", id="minus-one-bar"),
    pytest.param(lambda d: ml.lmer(F, d.assign(y=3.0)), DataError, r"the response 'y' is constant \(3 in all 60 rows used\)", id="constant-response"),
    pytest.param(lambda d: ml.lmer(F, d.assign(y=2 * d.x + 1)), DataError, r"the response 'y' is fitted exactly by the fixed effects", id="response-linear-in-x"),
    pytest.param(lambda d: ml.lmer(F, {"y": [1.0, 2.0], "x": [1.0], "g": [1, 2]}), DataError, r"cannot make a data frame from the dict", id="dict-unequal-lengths"),
    pytest.param(lambda d: ml.lmer(F, {"y": 1.0, "x": 2.0, "g": 1}), DataError, r"cannot make a data frame from the dict", id="dict-of-scalars"),
    pytest.param(lambda d: ml.lmer(F, [[1, 2, 3]]), DataError, r"data must be a pandas or polars DataFrame or a dict of arrays, not list", id="data-list"),
    pytest.param(lambda d: ml.lmer(F, d.to_numpy()), DataError, r"not ndarray", id="data-ndarray"),
    pytest.param(lambda d: ml.lmer(F, None), DataError, r"not NoneType", id="data-none"),
    pytest.param(lambda d: ml.lmer(F, d[["y", "x"]]), MissingColumnError, r"column 'g' is not in the data", id="group-column-absent"),
    pytest.param(lambda d: ml.lmer(F, d, threads=0), ValueError, r"threads must be a positive integer or None, not 0", id="threads-zero"),
    pytest.param(lambda d: ml.lmer(F, d, reml="False"), TypeError, r"reml must be True or False, not 'False'", id="reml-string"),
    pytest.param(lambda d: ml.lmer(F, d, max_fun=-5), ValueError, r"max_fun must be a positive integer or None, not -5", id="max-fun-negative"),
    pytest.param(lambda d: ml.lmer(F, d, start=[1.0, 2.0]), ThetaError, r"theta", id="start-wrong-length"),
    pytest.param(lambda d: ml.lmer(F, d, start=[np.nan]), ThetaError, r"theta", id="start-nan"),
    pytest.param(lambda d: ml.ols("y ~ x", d.iloc[:2]), DataError, r"2 usable observations cannot fit 2 coefficients", id="ols-two-rows"),
    pytest.param(lambda d: ml.ols("y ~ x", d.iloc[:0]), DataError, r"the data have no rows", id="ols-no-rows"),
]
# fmt: on


@pytest.mark.parametrize("fn, exc, match", ERRORS)
def test_error(fn, exc, match):
    expect_error(lambda: fn(small()), exc, match)


# fmt: off
FITS = [
    pytest.param(lambda d: ml.lmer("y ~ 1 + (1 | g)", d), lambda f: list(f.fixef.index) == ["(Intercept)"], id="intercept-only"),
    pytest.param(lambda d: ml.lmer("y ~ 0 + x + (1 | g)", d), lambda f: list(f.fixef.index) == ["x"], id="no-intercept"),
    pytest.param(lambda d: ml.lmer("y ~ 0 + x + (1 | g)", d.assign(y=3.0)), lambda f: f.nobs == 60, id="constant-response-no-intercept"),
    pytest.param(lambda d: ml.lmer(F, d.iloc[:4].assign(g=[0, 0, 1, 1])), lambda f: f.nobs == 4 and f.ngroups == {"g": 2}, id="four-rows-two-groups"),
    pytest.param(lambda d: ml.lmer("y ~ x + c + (1 | g)", d.assign(c=2.0)), lambda f: f.design.dropped_columns == ["c"], id="constant-predictor-dropped"),
    pytest.param(lambda d: ml.lmer("y ~ x + x2 + (1 | g)", d.assign(x2=d.x)), lambda f: f.design.dropped_columns == ["x2"], id="duplicate-predictor-dropped"),
    pytest.param(lambda d: ml.lmer("y ~ x + (1 | g) + (1 | g)", d), lambda f: len(f.theta) == 2, id="same-term-twice"),
    pytest.param(lambda d: ml.lmer("y ~ x + (1 | g)", d.assign(g=np.r_[np.zeros(59), 1])), lambda f: f.ngroups == {"g": 2}, id="one-row-group"),
    pytest.param(lambda d: ml.lmer("y ~ x + (1 | g) + (1 | h)", d.assign(h=np.arange(60) % 7)), lambda f: f.ngroups == {"g": 10, "h": 7}, id="crossed-small"),
    pytest.param(lambda d: ml.lmer("y ~ x + (1 | g/h)", d.assign(h=np.arange(60) % 2)), lambda f: f.ngroups == {"h:g": 20, "g": 10}, id="nested-small"),
    pytest.param(lambda d: ml.lmer(F, d, max_fun=3), lambda f: f.optimizer["status"] == "max_fun" and f.optimizer["n_eval"] <= 5, id="max-fun-small"),
]
# fmt: on


@pytest.mark.parametrize("fn, check", FITS)
def test_fits(fn, check):
    fit, _ = caught(lambda: fn(small()))
    assert check(fit)


def test_rank_deficient_warning_names_columns():
    fit, warns = caught(lambda: ml.lmer(WIDE, wide(60, 40)))
    assert fit.nobs == 60 and not fit.design.dropped_columns
    fit, warns = caught(lambda: ml.lmer("y ~ x + c + (1 | g)", small().assign(c=2.0)))
    assert any(w.startswith("RankDeficiencyWarning") and w.endswith(": c") for w in warns), warns
