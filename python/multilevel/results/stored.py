"""The core's result of one fit as plain Python values, for fits that are kept.

``multilevel._core.FitResult`` (with its ``OptimizerSummary`` and ``ConvergenceCheck``) lives
in Rust and does not pickle. :func:`snapshot` copies its fields into the dataclasses below,
which have the same attribute names, so that :class:`~multilevel.results.lmer.LmerFit` reads
either without knowing which it holds. Pickling (``LmerFit.__getstate__``) and
``fit.save`` (:mod:`multilevel.results.keep`) both store a snapshot.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

import numpy as np

__all__ = ["StoredCheck", "StoredOptimizer", "StoredResult", "snapshot"]


@dataclass
class StoredOptimizer:
    """``OptimizerSummary``: start and final theta and objective, evaluations, status."""

    theta0: np.ndarray
    theta: np.ndarray
    f0: float
    f: float
    n_eval: int
    status: int | str
    message: str


@dataclass
class StoredCheck:
    """``ConvergenceCheck``: lme4's checkConv at the optimum."""

    gradient: np.ndarray
    hessian: Any
    scaled_gradient: np.ndarray
    converged: bool
    singular: bool
    message: str


@dataclass
class StoredResult:
    """``FitResult``: the solution at the optimum (theta, beta, u, b, sigma, ...)."""

    theta: np.ndarray
    beta: np.ndarray
    u: list[np.ndarray]
    b: list[np.ndarray]
    sigma: float
    objective: float
    pwrss: float
    ld_l2: float
    ld_rx2: float
    vcov_unscaled: np.ndarray
    lambda_: list[np.ndarray]
    nobs: int
    optimizer: StoredOptimizer | None = None
    check: StoredCheck | None = None


def _plain(value: Any) -> Any:
    """A value of the core as NumPy arrays, lists of arrays or Python scalars."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        if all(isinstance(v, (bool, int, float)) for v in value):
            return [v for v in value]
        return [np.array(v) for v in value]
    return np.array(value)


def _copy(cls: type, obj: Any) -> Any:
    if obj is None or isinstance(obj, cls):
        return obj
    return cls(**{f.name: _plain(getattr(obj, f.name)) for f in fields(cls)})


def snapshot(result: Any) -> StoredResult:
    """A :class:`StoredResult` with the fields of ``result`` (itself if it is one)."""
    if isinstance(result, StoredResult):
        return result
    kw = {
        f.name: _plain(getattr(result, f.name))
        for f in fields(StoredResult)
        if f.name not in ("optimizer", "check")
    }
    kw["optimizer"] = _copy(StoredOptimizer, getattr(result, "optimizer", None))
    kw["check"] = _copy(StoredCheck, getattr(result, "check", None))
    return StoredResult(**kw)
