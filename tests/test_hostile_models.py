"""Hostile inputs of anova and glmer: arguments that are not fits, bad options, responses
outside the family, degenerate terms; each case one line with its exact outcome."""

from __future__ import annotations

import numpy as np
import pytest

import multilevel as ml
from _hostile import caught, expect_error, small
from multilevel.exceptions import DataError, FormulaError, MissingColumnError


@pytest.fixture(scope="module")
def fits():
    d = small()
    f1, _ = caught(lambda: ml.lmer("y ~ x + (1 | g)", d))
    f0, _ = caught(lambda: ml.lmer("y ~ 1 + (1 | g)", d))
    fo, _ = caught(lambda: ml.lmer("y ~ x + (1 | g)", d.iloc[:50]))
    return {"f1": f1, "f0": f0, "short": fo}


# fmt: off
ANOVA_ERRORS = [
    pytest.param(lambda f: ml.anova(f["f0"], f["short"]), DataError, r"models were not all fitted to the same size of dataset: nobs \[50, 60\]", id="different-rows"),
    pytest.param(lambda f: ml.anova(f["f1"], "y ~ x"), TypeError, r"anova\(\) compares fits; argument 2 is a str", id="formula-not-fit"),
    pytest.param(lambda f: ml.anova(small(), f["f1"]), TypeError, r"argument 1 is a DataFrame", id="data-not-fit"),
    pytest.param(lambda f: ml.anova(f["f0"], f["f1"], names=["a"]), ValueError, r"names must have one entry per fit", id="names-short"),
    pytest.param(lambda f: ml.anova(f["f0"], f["f1"], type=3), ValueError, r"tests the terms of one fit \(type III only\)", id="type3-two-fits"),
    pytest.param(lambda f: ml.anova(f["f1"], type=2), ValueError, r"type III only", id="type2"),
    pytest.param(lambda f: ml.anova(f["f1"], type=3, ddf="bogus"), ValueError, r"ddf must be one of .*; got 'bogus'", id="bad-ddf"),
    pytest.param(lambda f: ml.anova(f["f0"], f["f1"], boot=-1), ValueError, r"boot must be a positive number of bootstrap samples, not -1", id="boot-negative"),
    pytest.param(lambda f: ml.anova(f["f0"], f["f1"], boot=2.5), ValueError, r"not 2.5", id="boot-float"),
]
# fmt: on


@pytest.mark.parametrize("call, exc, match", ANOVA_ERRORS)
def test_anova_error(fits, call, exc, match):
    expect_error(lambda: call(fits), exc, match)


def test_anova_same_fit_twice_and_with_ols(fits):
    tab, warns = caught(lambda: ml.anova(fits["f0"], fits["f0"]))
    assert tab["Chisq"].iloc[1] == 0.0 and np.isnan(tab["Pr(>Chisq)"].iloc[1])
    assert warns == ["UserWarning: refitting model(s) with ML (instead of REML)"]


def binary():
    d = small()
    d["yb"] = (d.y > 1).astype(float)
    d["cnt"] = np.random.default_rng(2).poisson(2, 60)
    return d


# fmt: off
GLMER_ERRORS = [
    pytest.param(lambda d: ml.glmer("yb ~ x + (1 | g)", d, family="bogus"), ValueError, r"unknown family 'bogus'; families are binomial, poisson", id="unknown-family"),
    pytest.param(lambda d: ml.glmer("y ~ x + (1 | g)", d), DataError, r"binomial response: proportions must lie in \[0, 1\]; rows \(0-based\) 0, 1, 3, 4, 5 and 39 more", id="binomial-out-of-range"),
    pytest.param(lambda d: ml.glmer("cnt ~ x + (1 | g)", d.assign(cnt=-d.cnt - 1), family="poisson"), DataError, r"poisson response: negative counts in rows \(0-based\) 0, 1, 2, 3, 4 and 55 more", id="poisson-negative"),
    pytest.param(lambda d: ml.glmer("yb ~ x + (1 | g)", d, nagq=-1), ValueError, r"nagq must be >= 0", id="nagq-negative"),
    pytest.param(lambda d: ml.glmer("yb ~ x + (x | g)", d, nagq=5), ValueError, r"nagq > 1 is only available for models with a single, scalar random-effects term", id="nagq-vector-term"),
    pytest.param(lambda d: ml.glmer("cbind(cnt, 3 - cnt) ~ x + (1 | g)", d), DataError, r"binomial response: negative successes or failures", id="cbind-negative-failures"),
    pytest.param(lambda d: ml.glmer("cbind(cnt, 10 - cnt) ~ x + (1 | g)", d, family="poisson"), DataError, r"cbind\(successes, failures\) needs the binomial family", id="cbind-poisson"),
    pytest.param(lambda d: ml.glmer("yb ~ x + (1 | g)", d.assign(yb=1.0)), DataError, r"the binomial response 'yb' is 1 in every row used", id="binomial-all-ones"),
    pytest.param(lambda d: ml.glmer("yb ~ x + (1 | g)", d.assign(yb=0.0)), DataError, r"is 0 in every row used", id="binomial-all-zeros"),
    pytest.param(lambda d: ml.glmer("yb ~ x + (0 | g)", d), FormulaError, r"random-effects term \(0 \| g\) has no columns", id="zero-bar"),
    pytest.param(lambda d: ml.glmer("cnt ~ x + (1 | g)", d, family="poisson", weights=-np.ones(60)), DataError, r"weights must be non-negative \(negative at rows 0, 1, 2, 3, 4, \.\.\.\)", id="negative-weights"),
    pytest.param(lambda d: ml.glmer("yb ~ x + (1 | g)", d.assign(yb=d.yb * 2)), DataError, r"proportions must lie in \[0, 1\]", id="binomial-twos"),
    pytest.param(lambda d: ml.glmer("yb ~ x + (1 | g)", d.assign(x=np.where(d.index == 4, np.inf, d.x))), DataError, r"'x'.*rows 4", id="inf-predictor"),
    pytest.param(lambda d: ml.glmer("yb ~ x + (1 | gg)", d), MissingColumnError, r"column 'gg' is not in the data; did you mean 'g'", id="missing-group"),
]
# fmt: on


@pytest.mark.parametrize("fn, exc, match", GLMER_ERRORS)
def test_glmer_error(fn, exc, match):
    expect_error(lambda: fn(binary()), exc, match)


# fmt: off
GLMER_FITS = [
    pytest.param(lambda d: ml.glmer("cnt ~ x + (1 | g)", d.assign(cnt=d.cnt + 0.5), family="poisson"), lambda f: np.isfinite(f.loglik), id="poisson-non-integer"),
    pytest.param(lambda d: ml.glmer("cnt ~ x + offset(np.log(t)) + (1 | g)", d, family="poisson"), lambda f: list(f.fixef.index) == ["(Intercept)", "x"], id="poisson-formula-offset"),
    pytest.param(lambda d: ml.glmer("yb ~ x + (1 | g)", d.assign(yb=d.yb > 0)), lambda f: f.nobs == 60, id="binomial-boolean"),
    pytest.param(lambda d: ml.glmer("yb ~ x + (1 | g)", d, nagq=0), lambda f: np.isfinite(f.loglik), id="nagq-zero"),
    pytest.param(lambda d: ml.glmer("yb ~ my.x + (1 | g)", d.rename(columns={"x": "my.x"})), lambda f: list(f.fixef.index) == ["(Intercept)", "my.x"], id="dotted-name"),
]
# fmt: on


@pytest.mark.parametrize("fn, check", GLMER_FITS)
def test_glmer_fits(fn, check):
    fit, _ = caught(lambda: fn(binary()))
    assert check(fit)
