"""Shared helpers of the hostile-input catalogue (tests/test_hostile_*.py): small data, the
lme4 references of tests/reference/hostile/ (written by tests/reference/cases_hostile.R), and a
runner that records the warnings of a call."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd

from conftest import load_reference

# Tolerances against lme4 (relative): estimates and the objective at its optimum; a better
# optimum than lme4's is allowed by `check_lme4`.
OBJ_RTOL = 1e-6
EST_RTOL = 2e-4


def small(n: int = 60, groups: int = 10, seed: int = 1) -> pd.DataFrame:
    """y, x, z (numeric), t (positive), f (3-level text), g (groups of equal size)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), n // groups)
    u = rng.normal(size=groups)[g]
    x = rng.normal(size=n)
    return pd.DataFrame(
        {
            "y": 1.0 + 0.5 * x + u + rng.normal(size=n),
            "x": x,
            "z": rng.normal(size=n),
            "t": rng.uniform(1.0, 3.0, n),
            "f": rng.choice(["a", "b", "c"], n),
            "g": g,
        }
    )


def sleepstudy() -> pd.DataFrame:
    from multilevel import datasets

    return datasets.load("sleepstudy").copy()


def reference(case: str) -> dict:
    return load_reference(case, "hostile")


def check_lme4(fit, ref: dict, names: list[str] | None = None) -> None:
    """A fit against an lme4 reference: objective within OBJ_RTOL (lower allowed), theta,
    beta, their SEs and sigma within EST_RTOL, nobs exact."""
    obj = float(fit.objective)
    if ref["objective"] is None:  # lme4's is -sum(log w) = inf with a zero weight: NA
        pass  # (multilevel leaves the zero-weight rows out of the sum: finite)
    else:
        assert obj <= ref["objective"] * (1 + OBJ_RTOL) + 1e-9
        assert obj >= ref["objective"] * (1 - OBJ_RTOL) - 1e-9
    # theta's small elements (a slope's 0.006 on sleepstudy) move with the optimisers' stopping
    # points: compared relative to the largest element (ours reaches the lower objective there)
    theta_atol = max(1e-6, EST_RTOL * float(np.max(np.abs(ref["theta"]))))
    np.testing.assert_allclose(fit.theta, ref["theta"], rtol=EST_RTOL, atol=theta_atol)
    np.testing.assert_allclose(fit.fixef.to_numpy(), ref["beta"], rtol=EST_RTOL, atol=1e-6)
    np.testing.assert_allclose(fit.se.to_numpy(), ref["se"], rtol=EST_RTOL)
    np.testing.assert_allclose(fit.sigma, ref["sigma"], rtol=EST_RTOL)
    assert fit.nobs == ref["nobs"]
    if names is not None:
        assert list(fit.fixef.index) == names


def caught(fn):
    """(result, [warning messages]) of ``fn()``, every warning recorded."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        out = fn()
    return out, [f"{type(x.message).__name__}: {x.message}" for x in w]


def put(d: pd.DataFrame, col: str, rows, value) -> pd.DataFrame:
    """A copy of ``d`` with ``d.loc[rows, col] = value`` (the column made object or float
    first when the value needs it)."""
    d = d.copy()
    if value is None or isinstance(value, str):
        d[col] = d[col].astype(object)
    elif isinstance(value, float) and d[col].dtype.kind in "iub":
        d[col] = d[col].astype(float)
    d.loc[rows, col] = value
    return d


def expect_error(fn, exc, match: str) -> None:
    """``fn()`` raises ``exc`` (one of the library's classes) whose text matches ``match``."""
    import re

    import pytest

    with pytest.raises(exc) as info:
        fn()
    assert re.search(match, str(info.value), re.S), f"{match!r} not in {str(info.value)!r}"
