"""nlme's denominator degrees of freedom for the fixed effects of a nested model.

Pinheiro and Bates (2000, section 2.4.2): the data split into strata, one per grouping level
from the outermost to the innermost, and the residual stratum. A stratum of level j has
M_j - M_(j-1) degrees of freedom (M_j groups at level j, M_0 = 0) and the residual one
N - M_Q. Each fixed-effect column is estimated in the innermost stratum within whose
enclosing groups it varies (a school-level variable in the school stratum, a student-level
one in the residual stratum), and uses up one degree of freedom there; the intercept uses one
of the outermost stratum. A column's DF is what its stratum has left, the intercept's the
largest of these. This is what ``summary(lme)`` reports (1937 DF for the intercept of
``mathach ~ 1`` with 1977 students in 40 schools).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from multilevel.exceptions import DataError


def nested_levels(terms: list[Any]) -> list[np.ndarray]:
    """Group codes of each distinct grouping factor, outermost first; DataError unless nested."""
    seen: dict[str, Any] = {}
    for t in terms:
        seen.setdefault(t.group, t)
    levels = sorted(seen.values(), key=lambda t: len(t.levels))
    for outer, inner in itertools.pairwise(levels):
        pairs = np.unique(np.column_stack([inner.codes, outer.codes]), axis=0)
        if len(np.unique(pairs[:, 0])) != len(pairs):
            raise DataError(
                f"ddf='nlme' needs nested grouping factors, as nlme's lme: {inner.group!r} "
                f"is not nested in {outer.group!r} (crossed factors: use 'satterthwaite' or "
                "'kenward-roger')"
            )
    return [np.asarray(t.codes) for t in levels]


def _varies_within(x: np.ndarray, codes: np.ndarray | None) -> bool:
    if codes is None:
        return bool(np.ptp(x) > 0)
    n = int(codes.max()) + 1
    lo = np.full(n, np.inf)
    hi = np.full(n, -np.inf)
    np.minimum.at(lo, codes, x)
    np.maximum.at(hi, codes, x)
    return bool(np.any(hi > lo))


def fixed_df(X: np.ndarray, terms: list[Any]) -> np.ndarray:
    """nlme's DF of each column of X."""
    levels = nested_levels(terms)
    n = X.shape[0]
    sizes = [len(np.unique(c)) for c in levels]
    df = np.diff(np.array([0, *sizes, n], dtype=float))
    constant = [not _varies_within(X[:, j], None) for j in range(X.shape[1])]
    stratum = np.zeros(X.shape[1], dtype=int)
    for j in range(X.shape[1]):
        if constant[j]:
            continue
        enclosing = [None, *levels]  # varies overall, then within each level's groups
        stratum[j] = max(k for k, c in enumerate(enclosing) if _varies_within(X[:, j], c))
        df[stratum[j]] -= 1
    if any(constant):
        df[0] -= 1
    else:
        df[1:] += 1
    return np.array([df.max() if constant[j] else df[stratum[j]] for j in range(X.shape[1])])
