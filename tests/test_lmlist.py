"""Per-group fits against nlme::lmList (tests/reference/econ/lmlist_hsb.json).

Tolerances stated at each assertion: estimates 1e-8 relative, standard errors 1e-6 relative.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.exceptions import DataError, MultilevelWarning
from multilevel.models.lmlist import lmlist

ROOT = Path(__file__).resolve().parents[1]
REF = json.loads((ROOT / "tests" / "reference" / "econ" / "lmlist_hsb.json").read_text())
EST_RTOL = 1e-8
SE_RTOL = 1e-6


def mat(d):
    return pd.DataFrame(d["values"], index=d["rownames"], columns=d["colnames"])


@pytest.fixture(scope="module")
def hsb():
    return ml.datasets.load("hsb")


def test_coefficients_and_ses_match_lmlist(hsb):
    fit = lmlist(REF["formula"], hsb, group=REF["group"])
    assert [str(g) for g in fit.coef.index] == REF["groups"]
    # per-group coefficients: 1e-8 relative
    np.testing.assert_allclose(fit.coef.to_numpy(), mat(REF["coef"]).to_numpy(), rtol=EST_RTOL)
    # pooled standard errors (summary(lmList, pool=TRUE)): 1e-6 relative
    np.testing.assert_allclose(fit.se.to_numpy(), mat(REF["se_pooled"]).to_numpy(), rtol=SE_RTOL)
    assert fit.pooled_sigma == pytest.approx(REF["pooled_sigma"], rel=EST_RTOL)
    # covariance and mean of the coefficients across groups: 1e-8 relative
    np.testing.assert_allclose(
        fit.coef_cov.to_numpy(), mat(REF["coef_cov"]).to_numpy(), rtol=EST_RTOL
    )
    np.testing.assert_allclose(
        fit.coef_mean.to_numpy(), list(REF["coef_mean"].values()), rtol=EST_RTOL
    )


def test_unpooled_ses_match(hsb):
    fit = lmlist(REF["formula"], hsb, group=REF["group"], pool=False)
    # per-group standard errors (pool=FALSE): 1e-6 relative
    np.testing.assert_allclose(fit.se.to_numpy(), mat(REF["se"]).to_numpy(), rtol=SE_RTOL)
    assert "Correlation" in fit.summary()


def test_small_group_is_skipped_with_a_warning(hsb):
    tiny = pd.DataFrame({"mathach": [10.0, 12.0], "ses": [0.1, 0.3], "school": ["tiny", "tiny"]})
    d = pd.concat(
        [hsb[["mathach", "ses", "school"]].astype({"school": str}), tiny], ignore_index=True
    )
    with pytest.warns(MultilevelWarning, match="'tiny'"):
        fit = lmlist("mathach ~ ses", d, group="school")
    assert "tiny" in fit.skipped and "tiny" not in fit.coef.index
    assert len(fit.coef) == 160
    # min_obs raises the bar: every school with fewer than 40 students is skipped
    with pytest.warns(MultilevelWarning):
        big = lmlist("mathach ~ ses", hsb, group="school", min_obs=40)
    assert (big.nobs >= 40).all()


def test_constant_regressor_in_a_group_is_skipped():
    d = pd.DataFrame(
        {
            "y": [1.0, 2, 3, 4, 5, 6, 7, 8],
            "x": [1.0, 2, 3, 4, 5, 5, 5, 5],
            "g": ["a"] * 4 + ["b"] * 4,
        }
    )
    with pytest.warns(MultilevelWarning, match="'b' \\(rank-deficient"):
        fit = lmlist("y ~ x", d, group="g")
    assert list(fit.coef.index) == ["a"]


def test_no_group_left_is_an_error():
    d = pd.DataFrame({"y": [1.0, 2, 3, 4], "x": [1.0, 2, 3, 5], "g": ["a", "a", "b", "b"]})
    with pytest.raises(DataError, match="no level of 'g'"):
        lmlist("y ~ x", d, group="g")


def test_export():
    assert callable(ml.lmlist)
