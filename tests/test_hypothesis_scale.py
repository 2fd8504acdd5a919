"""Invariance of a fit (issue 15; the centring and power-of-two scaling of model/transform.rs):
it must not change when the response is shifted by a constant up to 1e8 times its spread, a
predictor by up to 1e6 times its spread (beyond about 1e7 the rounding of x + c itself makes
the column rank-deficient by R's QR rule, which lme4 and this library share, and it is
dropped), when a predictor is rescaled by a power of ten from 1e-100 to 1e100, or when all
weights are multiplied by 10**k, |k| <= 100 (the estimates restored on the original scale).

Without shrinking, so that a failing property costs one example, not a search."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from hypothesis import Phase, given, settings
from hypothesis import strategies as st

import _hypothesis_profiles  # noqa: F401  (settings profile)
import multilevel as ml

NO_SHRINK = settings(phases=[Phase.explicit, Phase.reuse, Phase.generate])
FORMULA = "y ~ x + (1 | g)"


@st.composite
def dataset(draw):
    n = draw(st.integers(20, 40))
    k = draw(st.integers(3, n // 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    g = np.r_[np.arange(k), rng.integers(0, k, n - k)]
    x = rng.normal(size=n)
    y = 1.0 + 0.5 * x + rng.normal(size=k)[g] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "x": x, "g": g, "w": rng.uniform(0.5, 2.0, n)})


def _fit(d, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ml.lmer(FORMULA, d, **kw)


def _same_optimum(a: float, b: float, n: int = 20) -> None:
    """1e-7 relative to max(|b|, rows): the optimiser's tolerance (see
    test_hypothesis_invariance._fit_close)."""
    assert abs(a - b) <= 1e-7 * max(abs(b), n), (a, b)


def _close(a, b, rtol=1e-4):
    """Estimates of two fits of one optimum: to the optimiser's tolerance."""
    np.testing.assert_allclose(np.atleast_1d(a), np.atleast_1d(b), rtol=rtol, atol=1e-6)


@NO_SHRINK
@given(d=dataset(), k=st.floats(-8.0, 8.0), sign=st.sampled_from([-1.0, 1.0]), reml=st.booleans())
def test_response_shift(d, k, sign, reml):
    shift = sign * 10.0**k * d.y.std()
    f0, f1 = _fit(d, reml=reml), _fit(d.assign(y=d.y + shift), reml=reml)
    _same_optimum(f1.objective, f0.objective, len(d))
    _close(f1.theta, f0.theta)
    _close(f1.sigma, f0.sigma)
    _close(f1.beta[0] - shift, f0.beta[0])
    _close(f1.beta[1], f0.beta[1])


@NO_SHRINK
@given(d=dataset(), k=st.floats(-8.0, 6.0), reml=st.booleans())
def test_predictor_shift(d, k, reml):
    shift = 10.0**k * d.x.std()
    f0, f1 = _fit(d, reml=reml), _fit(d.assign(x=d.x + shift), reml=reml)
    _same_optimum(f1.objective, f0.objective, len(d))
    _close(f1.theta, f0.theta)
    _close(f1.beta[1], f0.beta[1])


@NO_SHRINK
@given(d=dataset(), k=st.integers(-100, 100), reml=st.booleans())
def test_predictor_rescale(d, k, reml):
    c = 10.0**k
    f0, f1 = _fit(d, reml=reml), _fit(d.assign(x=d.x * c), reml=reml)
    # REML's log|R_X|^2 grows by 2 log|c| (lme4's criterion too); ML's is unchanged
    _same_optimum(f1.objective - (2.0 * np.log(c) if reml else 0.0), f0.objective, len(d))
    _close(f1.theta, f0.theta)
    _close(f1.beta[1] * c, f0.beta[1])


@NO_SHRINK
@given(d=dataset(), k=st.integers(-100, 100), reml=st.booleans())
def test_weights_power_of_ten(d, k, reml):
    c = 10.0**k
    f0, f1 = _fit(d, weights="w", reml=reml), _fit(d.assign(w=d.w * c), weights="w", reml=reml)
    _same_optimum(f1.objective, f0.objective, len(d))
    _close(f1.theta * np.sqrt(c), f0.theta)
    _close(f1.sigma, f0.sigma * np.sqrt(c))
    _close(f1.beta, f0.beta)
