"""multilevel.families against R's family objects (tests/reference/glmm/families.json, written
by tests/reference/cases_glmm.R): links, variance, deviance residuals, aic, initialize, and the
response checks."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pandas as pd
import pytest

from conftest import REFERENCE_DIR
from multilevel import families as fm
from multilevel.families import ResponseError, ResponseWarning

FAMILIES = json.loads((REFERENCE_DIR / "glmm" / "families.json").read_text(encoding="utf-8"))

# Elementwise functions: 1e-13 relative (R and numpy call the same libm functions; the
# special functions (ndtr, ndtri, lgamma) differ from R's in the last bits only).
RTOL = 1e-13
# aic sums logs of densities: 1e-12 relative.
RTOL_AIC = 1e-12


def _make(entry) -> fm.Family:
    kwargs = {"theta": entry["theta"]} if entry.get("theta") is not None else {}
    return fm.family(entry["family"], link=entry["link"], **kwargs)


def _ids(entries):
    return [f"{e['family']}-{e['link']}" for e in entries]


@pytest.mark.parametrize("entry", FAMILIES["entries"], ids=_ids(FAMILIES["entries"]))
def test_family_functions_match_r(entry):
    fam = _make(entry)
    eta, mu = np.array(entry["eta"], float), np.array(entry["mu"], float)
    y, wt, n = (np.array(entry[k], float) for k in ("y", "wt", "n"))
    np.testing.assert_allclose(fam.linkinv(eta), entry["linkinv"], rtol=RTOL, atol=0)
    np.testing.assert_allclose(fam.mu_eta(eta), entry["mu_eta"], rtol=RTOL, atol=0)
    np.testing.assert_allclose(fam.linkfun(mu), entry["linkfun"], rtol=RTOL, atol=1e-15)
    np.testing.assert_allclose(fam.variance(mu), entry["variance"], rtol=RTOL, atol=0)
    dev = fam.dev_resids(y, mu, wt)
    np.testing.assert_allclose(dev, entry["dev_resids"], rtol=RTOL, atol=1e-15)
    assert fam.aic(y, n, mu, wt, float(np.sum(dev))) == pytest.approx(entry["aic"], rel=RTOL_AIC)
    assert fam.valid_eta(eta) is entry["valid_eta"]
    assert fam.valid_mu(mu) is entry["valid_mu"]


@pytest.mark.parametrize("entry", FAMILIES["entries"], ids=_ids(FAMILIES["entries"]))
def test_initialize_matches_r(entry):
    fam = _make(entry)
    y = np.array(entry["y"], float)
    weights = np.array(entry["wt"], float) if entry["family"] == "binomial" else None
    start = fam.initialize(y, weights)
    # exact arithmetic on the same inputs: 1e-15 relative
    np.testing.assert_allclose(start.mustart, entry["init_mustart"], rtol=1e-15)
    np.testing.assert_allclose(start.weights, entry["init_weights"], rtol=1e-15)
    np.testing.assert_allclose(start.n, entry["init_n"], rtol=1e-15)


@pytest.mark.parametrize(
    "entry", FAMILIES["extremes"], ids=[e["link"] for e in FAMILIES["extremes"]]
)
def test_extreme_eta_clamped_as_r(entry):
    """R clamps mu away from 0 and 1 (and mu_eta away from 0) at extreme eta."""
    lk = fm.link(entry["link"])
    eta = np.array(entry["eta"], float)

    def r_values(key):  # the JSON writer stores R's Inf (exp(800)) as null
        return np.array([np.inf if v is None else v for v in entry[key]], float)

    np.testing.assert_allclose(lk.linkinv(eta), r_values("linkinv"), rtol=RTOL, atol=0)
    np.testing.assert_allclose(lk.mu_eta(eta), r_values("mu_eta"), rtol=RTOL, atol=0)


# ------------------------------------------------------------------------------ bad responses


@pytest.mark.parametrize(
    "key, fam, match",
    [
        ("poisson_negative", fm.Poisson(), "negative counts in rows \\(0-based\\) 1"),
        ("binomial_above_one", fm.Binomial(), "must lie in \\[0, 1\\]"),
        ("gamma_non_positive", fm.Gamma(), "must be positive; rows \\(0-based\\) 1"),
        ("inverse_gaussian_non_positive", fm.InverseGaussian(), "must be positive"),
        ("negative_binomial_negative", fm.NegativeBinomial(1.0), "negative counts"),
    ],
)
def test_response_outside_support_raises(key, fam, match):
    case = FAMILIES["messages"][key]
    assert case["error"]  # R refuses this response too
    with pytest.raises(ResponseError, match=match):
        fam.initialize(np.array(case["y"], float))


def test_response_error_is_a_value_error():
    assert issubclass(ResponseError, ValueError)


def test_non_integer_successes_warn_as_r():
    case = FAMILIES["messages"]["binomial_non_integer"]
    assert case["error"] is None
    with pytest.warns(ResponseWarning, match="non-integer #successes in a binomial glm!"):
        fm.Binomial().initialize(np.array(case["y"]), np.array(case["weights"]))


def test_non_integer_counts_warn():
    with pytest.warns(ResponseWarning, match="non-integer counts"):
        fm.Binomial().initialize(np.array([[1.5, 2.0], [1.0, 3.0]]))


def test_negative_counts_in_two_columns_raise():
    with pytest.raises(ResponseError, match="negative successes or failures"):
        fm.Binomial().initialize(np.array([[1.0, 2.0], [-1.0, 3.0]]))


def test_non_finite_response_raises():
    with pytest.raises(ResponseError, match="non-finite"):
        fm.Poisson().initialize(np.array([1.0, np.nan]))


# ------------------------------------------------------------------------------ binomial forms


def test_binomial_response_forms_agree():
    """cbind(successes, failures), proportions with weights = trials, and 0/1 rows expanded
    give the same deviance at the same mu."""
    s, f = np.array([2.0, 3.0, 0.0]), np.array([12.0, 9.0, 5.0])
    fam = fm.Binomial()
    two = fam.initialize(np.column_stack([s, f]))
    prop = fam.initialize(s / (s + f), s + f)
    np.testing.assert_allclose(two.y, prop.y, rtol=1e-15)
    np.testing.assert_allclose(two.weights, prop.weights, rtol=1e-15)
    mu = np.array([0.2, 0.3, 0.1])
    dev_two = fam.dev_resids(two.y, mu, two.weights).sum()
    y01 = np.concatenate([np.r_[np.ones(int(a)), np.zeros(int(b))] for a, b in zip(s, f)])
    mu01 = np.repeat(mu, (s + f).astype(int))
    dev01 = fam.dev_resids(y01, mu01, np.ones_like(y01)).sum()
    # the deviances differ by the saturated terms; the Bernoulli one is larger
    assert dev01 > dev_two
    # the log-likelihood parts agree: aic of the grouped form + 2 log choose = Bernoulli aic
    from scipy.special import gammaln

    logchoose = np.sum(gammaln(s + f + 1) - gammaln(s + 1) - gammaln(f + 1))
    aic_two = fam.aic(two.y, two.n, mu, two.weights, dev_two)
    aic01 = fam.aic(y01, np.ones_like(y01), mu01, np.ones_like(y01), dev01)
    assert aic_two + 2 * logchoose == pytest.approx(aic01, rel=1e-13)


def test_binomial_factor_response_first_level_is_failure():
    y = pd.Series(pd.Categorical(["Y", "N", "Y"], categories=["N", "Y"]))
    assert fm.Binomial().initialize(y).y.tolist() == [1.0, 0.0, 1.0]
    y = pd.Series(pd.Categorical(["Y", "N", "Y"], categories=["Y", "N"]))
    assert fm.Binomial().initialize(y).y.tolist() == [0.0, 1.0, 0.0]
    assert fm.Binomial().initialize(np.array([True, False])).y.tolist() == [1.0, 0.0]


def test_weight_zero_rows_are_set_to_zero_as_r():
    start = fm.Binomial().initialize(np.array([0.5, 3.0]), np.array([2.0, 0.0]))
    assert start.y.tolist() == [0.5, 0.0]


# ------------------------------------------------------------------------------ resolution


def test_family_resolution():
    assert fm.family("binomial") == fm.Binomial()
    assert fm.family("Binomial", link="probit") == fm.Binomial(link="probit")
    assert fm.family("gamma", link="log") == fm.Gamma(link="log")
    assert fm.family("inverse_gaussian").link.name == "1/mu^2"
    fam = fm.Poisson()
    assert fm.family(fam) is fam
    assert fm.family(fm.Poisson).link.name == "log"
    with pytest.raises(ValueError, match="not available for the poisson family"):
        fm.family("poisson", link="logit")
    with pytest.raises(ValueError, match="needs its dispersion"):
        fm.family("negative.binomial")
    with pytest.raises(ValueError, match="different link"):
        fm.family(fm.Binomial(), link="probit")
    with pytest.raises(TypeError):
        fm.family(3)


def test_negative_binomial_theta_checked():
    with pytest.raises(ValueError, match="positive and finite"):
        fm.NegativeBinomial(0.0)


def test_nb_tends_to_poisson():
    y, mu, wt = np.array([0.0, 2.0, 7.0]), np.array([0.5, 2.5, 6.0]), np.ones(3)
    nb = fm.NegativeBinomial(1e6)
    po = fm.Poisson()
    # V(mu) = mu + mu^2 / theta: the difference is O(mu / theta), plus cancellation
    np.testing.assert_allclose(nb.dev_resids(y, mu, wt), po.dev_resids(y, mu, wt), rtol=1e-4)


def test_no_warnings_on_clean_input():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fm.Binomial().initialize(np.array([0.0, 1.0, 1.0]))
        fm.Poisson().initialize(np.array([0.0, 4.0]))
