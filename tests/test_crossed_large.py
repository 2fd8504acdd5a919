"""Crossed random effects too large for a dense fill-in block.

Two crossed factors of 30,000 and 21,000 levels: the blocked factor would need a dense
21,000 x 21,000 block after fill-in; the supernodal factor fits them. There is no lme4
reference at this size (lme4 takes minutes), so the checks are internal:

- the objective does not depend on the order of the terms in the core (a different ordering and
  a different factor of the same matrix): 1e-10 relative;
- the estimated standard deviations are near the simulated ones (20% relative; several
  standard errors at this sample size).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel import design as _design
from multilevel.models import lmm

pytestmark = pytest.mark.usefixtures("lmm_core")

N_ROWS, N_A, N_B = 70_000, 30_000, 21_000
SD_A, SD_B, SIGMA = 0.8, 0.5, 1.0


def _banded_crossed() -> pd.DataFrame:
    """Every level of ``a`` meets levels of ``b`` near its rescaled position (a banded pattern,
    as in data with locality: a fill-reducing order keeps the factor small)."""
    rng = np.random.default_rng(20240611)
    a = np.concatenate([np.arange(N_A), rng.integers(0, N_A, N_ROWS - N_A)])
    off = np.concatenate([np.full(N_A, 3), rng.integers(0, 7, N_ROWS - N_A)])
    b = np.clip(a * N_B // N_A + off - 3, 0, N_B - 1)
    x = rng.normal(size=N_ROWS)
    y = (
        1.0
        + 0.5 * x
        + SD_A * rng.normal(size=N_A)[a]
        + SD_B * rng.normal(size=N_B)[b]
        + SIGMA * rng.normal(size=N_ROWS)
    )
    return pd.DataFrame({"y": y, "x": x, "a": a.astype(str), "b": b.astype(str)})


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return _banded_crossed()


FORMULA = "y ~ 1 + x + (1 | a) + (1 | b)"


def test_fits_beyond_the_dense_limit(data):
    fit = ml.lmer(FORMULA, data=data, reml=True)
    assert fit.ngroups == {"a": N_A, "b": N_B}
    vc = fit.varcorr.set_index("grp")["sdcor"]
    # 20% relative: several standard errors of these estimates at this size.
    assert vc["a"] == pytest.approx(SD_A, rel=0.2)
    assert vc["b"] == pytest.approx(SD_B, rel=0.2)
    assert vc["Residual"] == pytest.approx(SIGMA, rel=0.2)


def test_objective_does_not_depend_on_the_term_order(data):
    des = _design.build(FORMULA, data)
    prob = lmm.make_problem(des)
    terms = [(t.codes, len(t.levels), t.Z, False) for t in des.terms]
    cls = type(prob)
    swapped = cls(des.y, des.X, terms[::-1], des.weights, des.offset)
    for theta in ([1.0, 1.0], [0.8, 0.5], [0.3, 1.7], [1.1, 0.0]):
        for reml in (True, False):
            a = prob.objective(np.array(theta), reml)
            b = swapped.objective(np.array(theta[::-1]), reml)
            # 1e-10 relative: two factorisations of the same matrix in different orders.
            assert a == pytest.approx(b, rel=1e-10), (theta, reml)
