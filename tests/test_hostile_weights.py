"""Hostile inputs, weights and offsets: each case one line, with its exact outcome (error class
and the words naming the problem, or lme4's numbers from tests/reference/hostile/)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from _hostile import caught, check_lme4, expect_error, reference, sleepstudy, small
from multilevel.exceptions import DataError, FormulaError, MissingColumnError, RankDeficiencyWarning

F = "y ~ x + (1 | g)"
ones = np.ones(60)

# fmt: off
ERRORS = [
    pytest.param(lambda d: ml.lmer(F, d, weights=np.r_[1, 1, 1, -1.0, ones[4:]]), DataError, r"weights must be non-negative \(negative at rows 3\)", id="negative-weight"),
    pytest.param(lambda d: ml.lmer(F, d, weights=np.zeros(60)), DataError, r"every weight is zero: none of the 60 rows", id="all-zero-weights"),
    pytest.param(lambda d: ml.lmer(F, d, weights=np.ones(59)), DataError, r"weights has length 59 but the data have 60 rows", id="weights-short"),
    pytest.param(lambda d: ml.lmer(F, d, weights=np.ones((60, 2))), DataError, r"weights must be a column name or one value per row, not an array of shape \(60, 2\)", id="weights-2d"),
    pytest.param(lambda d: ml.lmer(F, d, weights=1.0), DataError, r"weights must be a column name or one value per row, not an array of shape \(\)", id="weights-scalar"),
    pytest.param(lambda d: ml.lmer(F, d, weights="f"), DataError, r"weights column 'f' must be numeric", id="weights-text-column"),
    pytest.param(lambda d: ml.lmer(F, d, weights="wt"), MissingColumnError, r"column 'wt' is not in the data", id="weights-missing-column"),
    pytest.param(lambda d: ml.lmer(F, d, weights=["a"] * 60), DataError, r"weights must be numeric", id="weights-strings"),
    pytest.param(lambda d: ml.lmer(F, d, offset=np.ones(61)), DataError, r"offset has length 61 but the data have 60 rows", id="offset-long"),
    pytest.param(lambda d: ml.lmer(F, d, offset="f"), DataError, r"offset column 'f' must be numeric", id="offset-text-column"),
    pytest.param(lambda d: ml.lmer(F, d, offset="off"), MissingColumnError, r"'off' is not in the data", id="offset-missing-column"),
    pytest.param(lambda d: ml.lmer("y ~ x + offset(t2) + (1 | g)", d), MissingColumnError, r"'t2' is not in the data; did you mean 't'", id="formula-offset-missing-column"),
    pytest.param(lambda d: ml.lmer("y ~ x + offset() + (1 | g)", d), FormulaError, r"offset\(\) needs an expression", id="formula-offset-empty"),
    pytest.param(lambda d: ml.lmer("y ~ x + offset(f) + (1 | g)", d), DataError, r"offset\(f\)", id="formula-offset-text"),
    pytest.param(lambda d: ml.ols("y ~ x + offset(t2)", d), MissingColumnError, r"'t2' is not in the data; did you mean 't'", id="ols-formula-offset-missing-column"),
    pytest.param(lambda d: ml.ols("y ~ x", d, offset=np.ones(61)), DataError, r"offset has length 61 but the data have 60 rows", id="ols-offset-long"),
    pytest.param(lambda d: ml.panel("y ~ x + offset(t)", d, entity="g"), FormulaError, r"panel\(\) does not take offset\(\) terms \(R's plm has no offset", id="panel-formula-offset"),
    pytest.param(lambda d: ml.lmlist("y ~ x", d, group="g", offset="f"), DataError, r"offset column 'f' must be numeric", id="lmlist-offset-text-column"),
    pytest.param(lambda d: ml.ols("y ~ x", d, weights=np.r_[-2.0, ones[1:]]), DataError, r"non-negative", id="ols-negative-weight"),
    pytest.param(lambda d: ml.ols("y ~ x", d, weights=np.r_[np.inf, ones[1:]]), DataError, r"weights.*inf.*rows 0", id="ols-inf-weight"),
    pytest.param(lambda d: ml.ols("y ~ x", d, weights=np.zeros(60)), DataError, r"0 usable observations cannot fit 2 coefficients", id="ols-all-zero-weights"),
]
# fmt: on


@pytest.mark.parametrize("fn, exc, match", ERRORS)
def test_error(fn, exc, match):
    expect_error(lambda: fn(small()), exc, match)


def _fit(formula, data, **kw):
    return caught(lambda: ml.lmer(formula, data, **kw))


SAME = [  # two spellings of one fit: identical objective (1e-12 relative)
    pytest.param(dict(weights=ones), dict(), id="unit-weights-are-no-weights"),
    pytest.param(dict(weights=list(ones)), dict(weights=ones), id="weights-list"),
    pytest.param(
        dict(weights="w"), dict(weights=np.arange(60) % 4 + 1.0), id="weights-column-vs-array"
    ),
    pytest.param(dict(weights="wi"), dict(weights=np.arange(60) % 4 + 1.0), id="integer-weights"),
    pytest.param(
        dict(offset="t"),
        dict(formula="y ~ x + offset(t) + (1 | g)"),
        id="offset-argument-vs-formula",
    ),
    pytest.param(dict(offset=np.zeros(60)), dict(), id="zero-offset"),
    pytest.param(
        dict(formula="y ~ x + offset(np.log(t)) + (1 | g)"),
        dict(formula="y ~ x + offset(log(t)) + (1 | g)"),
        id="offset-np-log-vs-log",
    ),
    pytest.param(
        dict(formula="y ~ x + offset(t) + offset(t) + (1 | g)"),
        dict(offset="t2"),
        id="two-offset-terms-add",
    ),
]


@pytest.mark.parametrize("a, b", SAME)
def test_same_fit(a, b):
    d = small().assign(w=np.arange(60) % 4 + 1.0, wi=np.arange(60) % 4 + 1)
    d["t2"] = 2 * d.t
    fa, _ = _fit(a.pop("formula", F), d, **a)
    fb, _ = _fit(b.pop("formula", F), d, **b)
    assert abs(fa.objective - fb.objective) <= 1e-12 * abs(fb.objective)
    np.testing.assert_allclose(fa.fixef.to_numpy(), fb.fixef.to_numpy(), rtol=1e-10)


# fmt: off
LME4 = [
    pytest.param("offset_log", "Reaction ~ Days + offset(log(Days + 1)) + (1 | Subject)", {}, id="offset-log"),
    pytest.param("offset_log", "Reaction ~ Days + offset(np.log(Days + 1)) + (1 | Subject)", {}, id="offset-np-log"),
    pytest.param("offset_log_ml", "Reaction ~ Days + offset(10 * log(Days + 1)) + (Days | Subject)", {}, id="offset-scaled-ml"),
    pytest.param("offset_formula_and_column", "Reaction ~ Days + offset(off) + offset(log(Days + 1)) + (1 | Subject)", {}, id="two-offset-terms"),
    pytest.param("offset_formula_and_column", "Reaction ~ Days + offset(log(Days + 1)) + (1 | Subject)", {"offset": "off"}, id="offset-formula-plus-argument"),
    pytest.param("weights_constant_7", "Reaction ~ Days + (Days | Subject)", {"weights": np.full(180, 7.0)}, id="constant-weights-7"),
    pytest.param("weights_varying_ml", "Reaction ~ Days + (1 | Subject)", {"weights": 1.0 + np.arange(1, 181) % 3}, id="varying-weights-ml"),
]
# fmt: on


@pytest.mark.parametrize("case, formula, kw", LME4)
def test_lme4(case, formula, kw):
    ref = reference(case)
    ss = sleepstudy()
    ss["off"] = 3 * ss.Days
    fit, _ = _fit(formula, ss, reml=ref["reml"], **kw)
    check_lme4(fit, ref)


def test_constant_weights_scale_sigma_not_theta():
    """lme4 (weights_constant_7.json): weights c*w leave beta and the random-effect variances
    as they are; sigma is multiplied by sqrt(c), so theta (relative to sigma) by 1/sqrt(c)."""
    ss = sleepstudy()
    f1, _ = _fit("Reaction ~ Days + (Days | Subject)", ss)
    f7, _ = _fit("Reaction ~ Days + (Days | Subject)", ss, weights=np.full(180, 7.0))
    # the same distribution: the same criterion at corresponding theta (exactly) and optimum
    p1, p7 = f1.problem, f7.problem
    th = np.array([0.9, 0.02, 0.2])
    o1, o7 = p1.objective(th, True), p7.objective(th / np.sqrt(7.0), True)
    assert abs(o7 - o1) <= 1e-10 * abs(o1)
    assert abs(f7.objective - f1.objective) <= 1e-8 * abs(f1.objective)
    # the optimiser stops within its tolerance of the optimum (theta's smallest element 1e-3)
    np.testing.assert_allclose(f7.theta * np.sqrt(7.0), f1.theta, rtol=2e-3)
    np.testing.assert_allclose(f7.fixef.to_numpy(), f1.fixef.to_numpy(), rtol=1e-6)
    np.testing.assert_allclose(f7.sigma, f1.sigma * np.sqrt(7.0), rtol=1e-5)


def test_zero_weights_lmer_is_the_fit_without_those_rows():
    """lme4 keeps zero-weight rows in nobs and its objective is NA (-sum(log w)); multilevel
    warns, counts them in nobs as lme4, and fits as if they were absent (lme4's estimates
    differ: theta 0.889 against 1.300 without the rows)."""
    ss = sleepstudy()
    w0 = np.ones(180)
    w0[[0, 1, 2, 49, 50]] = 0
    fit, warns = _fit("Reaction ~ Days + (1 | Subject)", ss, weights=w0)
    ref = reference("weights_zero_five")
    assert ref["objective"] is None and fit.nobs == ref["nobs"] == 180
    assert warns == [
        "RowsDroppedWarning: 5 rows with zero weight do not enter the fit (rows 0, 1, 2, 49, "
        "50); they are counted in nobs as lme4 counts them (lme4's objective is then NA, this "
        "one is the fit without them)"
    ]
    without, _ = _fit("Reaction ~ Days + (1 | Subject)", ss.drop(index=[0, 1, 2, 49, 50]))
    np.testing.assert_allclose(fit.theta, without.theta, rtol=1e-5)
    np.testing.assert_allclose(fit.fixef.to_numpy(), without.fixef.to_numpy(), rtol=1e-7)


def test_ols_zero_weights_warned_counted_and_lm():
    ss = sleepstudy()
    w0 = np.ones(180)
    w0[[0, 1, 2, 49, 50]] = 0
    fit, warns = caught(lambda: ml.ols("Reaction ~ Days", ss, weights=w0))
    ref = reference("lm_zero_weights")
    np.testing.assert_allclose(fit.coef.to_numpy(), ref["coef"], rtol=1e-10)
    np.testing.assert_allclose(fit.se.to_numpy(), ref["se"], rtol=1e-10)
    assert fit.df_resid == ref["df_resid"] == 173
    assert (fit.nobs, fit.n_dropped, fit.n_zero_weight) == (175, 0, 5)
    assert warns == [
        "RowsDroppedWarning: 5 rows with zero weight left out of the fit (rows 0, 1, 2, 49, "
        "50; counted in n_zero_weight)"
    ]
    assert "Rows with zero weight:" in fit.summary()


def test_formula_offset_in_predictions():
    ss = sleepstudy()
    fit, _ = _fit("Reaction ~ Days + offset(log(Days + 1)) + (1 | Subject)", ss)
    p = fit.predict(ss.iloc[:5])
    np.testing.assert_allclose(p, fit.fitted[:5], rtol=1e-12)
    p0 = fit.predict(ss.iloc[:5], re_form="~0")
    X = np.column_stack([np.ones(5), ss.Days[:5]])
    np.testing.assert_allclose(p0, X @ fit.beta + np.log(ss.Days[:5] + 1), rtol=1e-12)


def test_ols_level_seen_only_in_zero_weight_rows_is_aliased():
    """Found by hypothesis (test_hypothesis_data): a level of x only in zero-weight rows made
    X singular among the rows fitted (LinAlgError in the sandwich). R's lm fits the
    positive-weight rows: xb is NA, (Intercept) 1 (R 4.2.2:
    lm(y ~ x, weights = c(0, 1, 1, 1, 0)) on these rows)."""
    d = pd.DataFrame({"y": [0.0, 1, 2, 0, 5], "x": list("aaaab"), "g": [0, 1, 0, 1, 0]})
    w = np.array([0.0, 1, 1, 1, 0])
    with pytest.warns(RankDeficiencyWarning, match="xb"):
        fit = ml.ols("y ~ x", d, weights=w, vcov={"CR1": "g"})
    assert fit.coef.to_dict() == pytest.approx({"(Intercept)": 1.0}, abs=1e-12)
    assert fit.dropped_columns == ["xb"] and fit.n_zero_weight == 2
