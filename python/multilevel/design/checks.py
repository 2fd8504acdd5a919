"""Checks of a mixed-model design before the core fits it, and the reason when the core fails.

:func:`before_fit` refuses, with the cause named, designs whose objective cannot be finite
for any theta, which the core would otherwise report only as a numerical failure (a
matrix "not positive definite (pivot 2)", "no theta gave a finite objective"): a random
term without columns (``(0 | g)``), weights that are all zero, no more rows than fixed
effects, a constant response next to an intercept, a random-effects column of a size no
theta could reach. Each costs one pass over y or Z, or nothing.

:func:`explained` wraps the fit: when the core raises a :class:`FitError`, it looks for a
cause in the data (the response fitted exactly by the fixed effects; a column of values too
large or too small for double precision) and raises a :class:`DataError` that names it,
chained to the core's error. It costs nothing when the fit succeeds.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np

from multilevel.exceptions import DataError, FitError, FormulaError, RowsDroppedWarning

__all__ = [
    "before_fit",
    "check_glmm",
    "check_magnitudes",
    "check_terms",
    "check_z_scale",
    "explained",
    "magnitude_problem",
    "no_formula_offset",
]

# |values| beyond these make squares and cross-products overflow or underflow in float64.
_HUGE, _TINY = 1e150, 1e-150


def before_fit(design: Any) -> None:
    """Raise a named error for a design the core cannot fit (see the module docstring)."""
    check_terms(design)
    _check_rows(design)
    check_z_scale(design)


# A random-effects column whose values are of a size outside this range is refused: theta is
# relative to the column's scale, and the optimiser (which starts at 1) cannot reach a theta of
# 1e-20 or 1e20; fixed-effect columns and the response are rescaled inside the core instead.
Z_SIZE_RANGE = (1e-12, 1e12)


def check_z_scale(design: Any) -> None:
    """Raise DataError naming a random-effects column whose values are out of range."""
    low, high = Z_SIZE_RANGE
    for term in design.terms:
        size = _z_sizes(term)
        if size is None:
            continue
        for name, v in zip(term.names, size, strict=True):
            if np.isfinite(v) and (v > high or 0 < v < low):
                lhs = " + ".join("1" if n == "(Intercept)" else n for n in term.names)
                where = f"({lhs} | {term.group})"
                raise DataError(
                    f"column {name!r} of the random-effects term {where} has values of size "
                    f"{v:.3g}, outside {low:g}..{high:g}: its covariance parameter would be of "
                    f"size {1 / v:.3g}, beyond what the optimiser can find from its start; "
                    f"rescale the column (for example {name} / {v:.0e})"
                )


def _z_sizes(term: Any) -> np.ndarray | None:
    """The largest absolute value of each column of a term's Z (None without rows); a
    ``design.fast.LazyReTerm`` has them from its design's pass over row blocks (no Z)."""
    sizes = getattr(term, "sizes", None)
    if sizes is not None:
        return sizes
    Z = np.asarray(term.Z)
    return np.max(np.abs(Z), axis=0) if Z.shape[0] else None


def check_terms(design: Any) -> None:
    """FormulaError for a random-effects term without columns (``(0 | g)``)."""
    for t in design.terms:
        if t.q == 0:
            text = t.spec.term.text
            raise FormulaError(
                f"random-effects term {text} has no columns: '0 |' (or '-1 |') removes the "
                "intercept and nothing is left; use (1 | g) for a random intercept",
                design.formula,
                _position(design.formula, t.spec.term.group),
            )


def _check_rows(design: Any) -> None:
    n, p = design.nobs, len(design.fixed_names)  # X's shape, without making a lazy X
    w = design.weights
    if w is not None and not np.any(w > 0):
        raise DataError(f"every weight is zero: none of the {n} rows enters the fit")
    if w is not None and np.any(w == 0):
        zero = np.flatnonzero(w == 0)
        shown = ", ".join(str(r) for r in np.asarray(design.rows)[zero[:5]])
        warnings.warn(
            f"{zero.size} row{'s' if zero.size != 1 else ''} with zero weight do not enter the "
            f"fit (rows {shown}{', ...' if zero.size > 5 else ''}); they are counted in nobs as "
            "lme4 counts them (lme4's objective is then NA, this one is the fit without them)",
            RowsDroppedWarning,
            stacklevel=4,
        )
    if n <= p:
        dropped = design.dropped_columns
        extra = (
            f" (after dropping {len(dropped)} rank-deficient column"
            f"{'s' if len(dropped) != 1 else ''})"
            if dropped
            else ""
        )
        raise DataError(
            f"{n} observations cannot fit {p} fixed-effect coefficients{extra}: a mixed model "
            "needs more rows than fixed effects (lme4: 'objective in x0 returns NA')"
        )
    if not (n and "(Intercept)" in design.fixed_names):
        return
    first, spread = _y_spread(design)
    if spread == 0.0:
        raise DataError(
            f"the response {design.parsed.response!r} is constant ({first:g} in all {n} rows "
            "used): with an intercept nothing is left for the random effects or the residual"
        )


def _y_spread(design: Any) -> tuple[float, float]:
    """The response's first value and its range (``np.ptp``); a ``design.fast.LazyDesign``
    has them from its pass over row blocks (no copy of y)."""
    own = getattr(design, "y_range", None)
    if own is not None:
        return own[0], float(own[2] - own[1])
    y = design.y
    return y[0], float(np.ptp(y))


@contextlib.contextmanager
def explained(design: Any) -> Iterator[None]:
    """Turn a numerical failure of the core into a DataError naming its cause in the data,
    when one is found (see the module docstring); other errors pass unchanged."""
    try:
        yield
    except FitError as exc:
        cause = _cause(design)
        if cause is None:
            raise
        raise DataError(f"{cause} (the core reported: {exc})") from exc


def magnitude_problem(names, columns) -> str | None:
    """The first column whose nonzero values are too large or too small to be squared in
    double precision (beyond 1e150 or below 1e-150), said in words; None when all are fine."""
    for name, v in zip(names, columns):
        a = np.abs(np.asarray(v, dtype=float))
        a = a[np.isfinite(a) & (a > 0)]
        if a.size and (a.max() > _HUGE or a.min() < _TINY):
            big = a.max() > _HUGE
            return (
                f"column {name!r} has values of magnitude {a.max() if big else a.min():.3g}, "
                f"too {'large' if big else 'small'} for the cross-products in double "
                "precision: rescale it"
            )
    return None


def check_magnitudes(names, columns) -> None:
    """DataError from :func:`magnitude_problem`, before a fit that squares the columns."""
    why = magnitude_problem(names, columns)
    if why is not None:
        raise DataError(why)


def _cause(design: Any) -> str | None:
    names = [design.parsed.response, *design.fixed_names]
    cols = [np.asarray(design.y, dtype=float)] + [design.X[:, j] for j in range(design.X.shape[1])]
    why = magnitude_problem(names, cols)
    if why is not None:
        return why
    y, X = np.asarray(design.y, dtype=float), np.asarray(design.X, dtype=float)
    if X.shape[1]:
        w = None if design.weights is None else np.sqrt(np.asarray(design.weights, dtype=float))
        Xw, yw = (X, y) if w is None else (X * w[:, None], y * w)
        beta = np.linalg.lstsq(Xw, yw, rcond=None)[0]
        r = yw - Xw @ beta
        if float(r @ r) <= 1e-20 * max(float(yw @ yw), 1e-300):
            return (
                f"the response {design.parsed.response!r} is fitted exactly by the fixed effects "
                "(residuals all zero): nothing is left for the random effects or the residual; "
                "is the response, or a copy of it, among the predictors?"
            )
    return None


def _position(formula: str, group: str) -> int | None:
    i = formula.find("|")
    while i >= 0:
        if formula[i + 1 :].lstrip().startswith(group):
            return formula.rfind("(", 0, i) + 1
        i = formula.find("|", i + 1)
    return None


def no_formula_offset(formula: str, what: str, why: str = "lmer and glmer do") -> None:
    """FormulaError for ``offset()`` in the formula of a model that does not take one."""
    from multilevel.formula import parse

    if isinstance(formula, str) and parse(formula).offsets:
        raise FormulaError(
            f"{what}() does not take offset() terms ({why}): subtract the offset "
            "from the response instead",
            formula,
            formula.find("offset("),
        )


def check_glmm(design: Any, family: str) -> None:
    """glmer's checks before the core: terms with columns, and a binomial response that is
    not 0 (or 1) in every row (its intercept would be infinite: lme4 fails to converge)."""
    check_terms(design)
    y = np.asarray(design.y, dtype=float)
    X = design.X
    check_magnitudes(
        [design.parsed.response, *design.fixed_names], [y] + [X[:, j] for j in range(X.shape[1])]
    )
    if family == "binomial" and y.size and float(np.ptp(y)) == 0.0 and y[0] in (0.0, 1.0):
        raise DataError(
            f"the binomial response {design.parsed.response!r} is {y[0]:g} in every row used: "
            "the log-odds would be infinite; nothing can be estimated"
        )
