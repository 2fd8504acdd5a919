"""Fits that must not change when the data change only by a change of units (issue 15): the
response shifted (y + 1e8) or rescaled (1e-300 .. 1e300), a predictor rescaled or moved far from
zero, constant prior weights of extreme size, a response near 2^62. The core shifts and scales
the columns of [X y] and the weights inside the cross-product pass (rust/src/model/transform.rs)
and restores beta, sigma, theta and lme4's objective exactly, so each case must equal the
exact transform of the plain sleepstudy fit, which equals lme4's. lme4's own numbers for each
case are in tests/reference/robust/<case>.json (tests/reference/cases_robust.R); where lme4
loses digits or fails the test says so and compares with the exact transform instead.
"""

import json
import math
from pathlib import Path

import numpy as np
import pytest

import multilevel as ml
from multilevel.exceptions import DataError

REF = Path(__file__).parent / "reference" / "robust"
N, P = 180, 2  # sleepstudy rows and fixed-effect columns
RI = "Reaction ~ Days + (1 | Subject)"
RX = "Reaction ~ x + (1 | Subject)"


def ref(case):
    return json.loads((REF / f"{case}.json").read_text())


@pytest.fixture(scope="module")
def data():
    return ml.datasets.load("sleepstudy")


@pytest.fixture(scope="module")
def base(data):
    return ml.lmer(RI, data)


def assert_fit(fit, objective, theta, sigma, beta, rtol_theta=1e-8):
    """The fit against the expected numbers: objective to 1e-10 relative (the same optimum),
    theta and sigma to `rtol_theta`, beta to 1e-8 relative."""
    assert fit.objective == pytest.approx(objective, rel=1e-10, abs=1e-9)
    np.testing.assert_allclose(fit.theta, theta, rtol=rtol_theta)
    assert fit.sigma == pytest.approx(sigma, rel=rtol_theta)
    np.testing.assert_allclose(fit.fixef.to_numpy(), beta, rtol=1e-8)


def test_the_base_fit_is_lme4s(base):
    r = ref("base_intercept")
    assert_fit(base, r["objective"], r["theta"], r["sigma"], r["beta"], rtol_theta=1e-6)


@pytest.mark.parametrize(
    ("case", "formula", "reml"),
    [
        ("y_plus_1e8", RI, True),
        ("y_plus_1e8_ml", RI, False),
        ("y_plus_1e8_slopes", "Reaction ~ Days + (Days | Subject)", True),
    ],
)
def test_a_constant_added_to_the_response(data, case, formula, reml):
    # lme4 loses digits here (theta 1.1978817 against 1.19788153, the slope's beta in its 9th
    # digit): compare with the untransformed fit, whose numbers are lme4's.
    plain = ml.lmer(formula, data, reml=reml)
    fit = ml.lmer(formula, data.assign(Reaction=data.Reaction + 1e8), reml=reml)
    beta = plain.fixef.to_numpy() + [1e8, 0]
    assert_fit(fit, plain.objective, plain.theta, plain.sigma, beta)
    r = ref(case)
    assert fit.objective == pytest.approx(r["objective"], rel=1e-10)  # lme4's, to its digits
    # lme4's theta is off by up to 1e-5 relative (0.0151689 against 0.01516906 with slopes).
    np.testing.assert_allclose(fit.theta, r["theta"], rtol=2e-5)


@pytest.mark.parametrize("k", [-300, -100, -10, 10, 100, 300])
def test_the_response_rescaled(data, base, k):
    fit = ml.lmer(RI, data.assign(Reaction=data.Reaction * 10.0**k))
    # REML: (n - p) log pwrss moves by 2 (n - p) k log 10; everything in y's units scales.
    objective = base.objective + 2 * (N - P) * k * math.log(10)
    s = 10.0**k
    assert_fit(fit, objective, base.theta, base.sigma * s, base.fixef.to_numpy() * s)
    r = ref(f"y_times_1e{k}")
    if abs(k) < 300:  # lme4 gives the same numbers up to 1e+-100
        assert fit.objective == pytest.approx(r["objective"], rel=1e-10)
        np.testing.assert_allclose(fit.theta, r["theta"], rtol=1e-6)


@pytest.mark.parametrize("k", [-100, -10, 10, 100, 300])
def test_a_predictor_rescaled(data, base, k):
    fit = ml.lmer(RX, data.assign(x=data.Days * 10.0**k))
    # REML: log det(X' V^-1 X) moves by 2 log 10^k.
    objective = base.objective + 2 * k * math.log(10)
    beta = base.fixef.to_numpy() / [1, 10.0**k]
    assert_fit(fit, objective, base.theta, base.sigma, beta)
    r = ref(f"x_times_1e{k}")
    if k != 300:  # lme4: "objective in x0 returns NA" at 1e300
        assert fit.objective == pytest.approx(r["objective"], rel=1e-10)
    else:
        assert "returns NA" in r["error"]


def test_a_predictor_far_from_zero(data, base):
    # Days + 1e6 sd(Days): lme4's sigma is 30.98894 against 30.99123 (digits lost in X'X).
    shift = 1e6 * data.Days.std()
    fit = ml.lmer(RX, data.assign(x=data.Days + shift))
    b0, b1 = base.fixef.to_numpy()
    assert fit.objective == pytest.approx(base.objective, rel=1e-10)
    np.testing.assert_allclose(fit.theta, base.theta, rtol=1e-6)
    assert fit.sigma == pytest.approx(base.sigma, rel=1e-7)
    assert fit.fixef.iloc[1] == pytest.approx(b1, rel=1e-6)
    assert fit.fixef.iloc[0] == pytest.approx(b0 - shift * b1, rel=1e-6)
    assert ref("x_plus_1e6_sd")["sigma"] == pytest.approx(30.98894, rel=1e-6)


@pytest.mark.parametrize("c", [4.0, 1e-300, 1e300])
def test_constant_weights(data, base, c):
    # Weights c: Var(e) = sigma^2 / c, so sigma = sigma_1 sqrt(c) and theta = theta_1 /
    # sqrt(c) (lme4 at c = 4: 61.98 and 0.599); the likelihood, and lme4's objective with its
    # -sum log w, are unchanged. lme4 gives theta 0.8887 at 1e-300 and fails at 1e300
    # ("Downdated VtV is not positive definite").
    # c is not a power of four: the optimiser's path differs from the unweighted fit's, and
    # the optimum agrees to its tolerance (1e-6), not to the last digits.
    fit = ml.lmer(RI, data, weights=np.full(N, c))
    root = math.sqrt(c)
    assert_fit(fit, base.objective, base.theta / root, base.sigma * root, base.fixef, 1e-6)
    r = ref({4.0: "weights_4", 1e-300: "weights_1e-300", 1e300: "weights_1e300"}[c])
    if c == 4:
        assert fit.sigma == pytest.approx(r["sigma"], rel=1e-6)
        np.testing.assert_allclose(fit.theta, r["theta"], rtol=1e-6)
    elif c < 1:
        assert r["theta"] == pytest.approx(0.8886821, rel=1e-6)
    else:
        assert "not positive definite" in r["error"]


def test_a_response_near_2_to_the_62(data):
    # Integers 2^62 + 1024 k are exact doubles; lme4 loses them (theta 0.9275) and gives the
    # shifted response's fit only without the 2^62.
    k = data.Reaction.round()
    fit = ml.lmer(RI, data.assign(Reaction=(2**62 + 1024 * k).astype("int64")))
    r = ref("y_near_2_62_shifted")
    beta = np.array(r["beta"]) + [2.0**62, 0]
    assert_fit(fit, r["objective"], r["theta"], r["sigma"], beta, rtol_theta=1e-6)
    assert ref("y_near_2_62")["theta"] == pytest.approx(0.92754164, rel=1e-6)


@pytest.mark.parametrize("k", [20, 200, -20, -200])
def test_a_random_slope_out_of_range_is_a_data_error(data, k):
    with pytest.raises(DataError, match=r"column 'x' of the random-effects term \(1 \+ x \| Su"):
        ml.lmer("Reaction ~ x + (x | Subject)", data.assign(x=data.Days * 10.0**k))
