"""Prior weights of non-binomial glmer fits: lme4 1.1-31 (tests/reference/glmer_prior_weights.R,
values printed with %.12f). They were silently dropped for every family but the binomial.

Tolerances: the objective is never worse than lme4's by more than 1e-7 relative and within
1e-5 relative of it (lme4 stops its optimiser earlier); estimates within 5e-4 absolute."""

import numpy as np
import pytest

import multilevel as ml

# -2 logLik, fixef (4), theta[, sigma]
POISSON = [353.427393447491, 1.349622609516, -1.010151529799, -1.468273771926,
           -2.168644490227, 0.566566394053]  # fmt: skip
GAMMA_LOG = [211.543446543746, 1.339006102268, -0.621789131757, -0.474454887367,
             -1.053453460233, 0.953291414426, 0.602671578137]  # fmt: skip


@pytest.fixture
def cbpp():
    d = ml.datasets.load("cbpp")
    d["w2"] = np.tile([1.0, 3.0], len(d) // 2)
    return d


def _check(fit, golden):
    obj = golden[0]
    assert fit.objective <= obj * (1 + 1e-7)
    assert fit.objective == pytest.approx(obj, rel=1e-5)
    np.testing.assert_allclose(fit.fixef.to_numpy(), golden[1:5], atol=5e-4)
    np.testing.assert_allclose(fit.theta, golden[5:6], atol=5e-4)


def test_poisson_prior_weights_match_lme4(cbpp):
    fit = ml.glmer("incidence ~ period + (1 | herd)", cbpp, family="poisson", weights="w2")
    _check(fit, POISSON)
    unweighted = ml.glmer("incidence ~ period + (1 | herd)", cbpp, family="poisson")
    assert abs(unweighted.objective - fit.objective) > 100


def test_gamma_prior_weights_match_lme4(cbpp):
    d = cbpp[cbpp.incidence > 0]
    fam = ml.families.Gamma(link="log")
    fit = ml.glmer("incidence ~ period + (1 | herd)", d, family=fam, weights="w2")
    _check(fit, GAMMA_LOG)
    assert fit.sigma == pytest.approx(GAMMA_LOG[6], abs=5e-4)


def test_streamed_poisson_prior_weights_match_lme4(cbpp):
    import pyarrow as pa

    table = pa.Table.from_pandas(cbpp, preserve_index=False)
    fit = ml.glmer(
        "incidence ~ period + (1 | herd)", table, family="poisson", weights="w2", batch_rows=20
    )
    _check(fit, POISSON)
