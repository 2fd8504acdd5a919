"""What every plot needs: matplotlib on demand, an Axes, and a grouping factor and term chosen
by name or position from a fit's public attributes (``ranef``, ``design.terms``)."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

INSTALL_HINT = "multilevel.plot needs matplotlib: pip install multilevel[plot]"


def pyplot() -> Any:
    """``matplotlib.pyplot``, imported on first use (matplotlib is an optional extra)."""
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return plt


def axes(ax: Any = None, figsize: tuple[float, float] | None = None) -> Any:
    """The Axes to draw on: ``ax`` itself, or one on a new figure."""
    if ax is not None:
        return ax
    _, ax = pyplot().subplots(figsize=figsize)
    return ax


def group_name(fit: Any, group: str | None) -> str:
    """The grouping factor asked for; the fit's first one when ``group`` is None."""
    groups = list(fit.ranef)
    if group is None:
        return groups[0]
    if not isinstance(group, str):
        raise TypeError(
            f"group must be the name of a grouping factor ({groups}), got {type(group).__name__}"
        )
    if group not in groups:
        raise KeyError(f"no grouping factor {group!r} in this fit; it has {groups}")
    return group


def term_index(columns: list[str], term: int | str | None, group: str) -> int:
    """Position of ``term`` (a name or a position) among a group's random-effect columns."""
    if term is None:
        return 0
    if isinstance(term, (int, np.integer)) and not isinstance(term, bool):
        if not -len(columns) <= term < len(columns):
            raise IndexError(f"term {term} out of range: {group!r} has terms {columns}")
        return int(term) % len(columns)
    if term not in columns:
        raise KeyError(f"no random-effect term {term!r} for {group!r}; it has {columns}")
    return columns.index(term)


def group_codes(fit: Any, group: str) -> np.ndarray:
    """Level (0-based) of each row used by the fit in ``group``."""
    for t in fit.design.terms:
        if t.group == group:
            return np.asarray(t.codes)
    raise KeyError(group)


def group_z(fit: Any, group: str) -> np.ndarray:
    """The random-effect columns of ``group``'s terms side by side, as ``ranef[group]``."""
    zs = [
        np.asarray(t.Z, dtype=float).reshape(len(t.codes), -1)
        for t in fit.design.terms
        if t.group == group
    ]
    return np.hstack(zs)


def re_covariance(fit: Any, group: str, names: list[str]) -> np.ndarray:
    """Estimated covariance matrix of ``group``'s random effects ``names``, from ``varcorr``.

    ``varcorr`` names the blocks of one factor "g", "g.1", ... (lme4's make.unique); terms in
    different blocks (``||``) have covariance 0."""
    vc = fit.varcorr
    own = re.compile(re.escape(group) + r"(\.\d+)?")
    vc = vc[[bool(own.fullmatch(str(g))) for g in vc["grp"]]]
    k = len(names)
    S = np.zeros((k, k))
    for _, row in vc.iterrows():
        v1 = row["var1"]
        v2 = None if row["var2"] is None or pd.isna(row["var2"]) else row["var2"]
        if v1 not in names or (v2 is not None and v2 not in names):
            continue
        i = names.index(v1)
        j = i if v2 is None else names.index(v2)
        S[i, j] = S[j, i] = float(row["vcov"])
    return S


def normal_quantile(level: float) -> float:
    """z with P(|Z| <= z) = level."""
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be between 0 and 1, got {level}")
    from scipy import stats

    return float(stats.norm.ppf(0.5 + level / 2.0))


def ppoints(n: int) -> np.ndarray:
    """R's ``ppoints(n)``: the probabilities at which ``qqnorm`` places n sorted values."""
    a = 3.0 / 8.0 if n <= 10 else 0.5
    return (np.arange(1, n + 1) - a) / (n + 1 - 2 * a)


def level_labels(
    ax: Any, positions: np.ndarray, labels: list[str], axis: str, max_labels: int = 40
) -> None:
    """Label the levels on ``axis`` ("x" or "y"), or none when there are too many to read."""
    set_ticks = ax.set_yticks if axis == "y" else ax.set_xticks
    if len(labels) <= max_labels:
        set_ticks(positions, labels)
    else:
        set_ticks([])
