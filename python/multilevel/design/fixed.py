"""The fixed part: ``y`` and ``X`` of a formula without bars (OLS, panels, lmList), and ``X``
of new data through the stored spec."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from multilevel.data import (
    as_pandas,
    check_columns,
    check_inf,
    check_scalars,
    check_weights,
    column_values,
    drop_missing,
    drop_transform_nan,
    is_numeric,
    weight_vector,
)
from multilevel.design.matrix import (
    as_float_matrix,
    fixed_columns,
    formula_offset,
    lme4_names,
    model_matrix,
    reraise_own,
    response_vector,
    spec_frame,
)
from multilevel.design.rank import drop_rank_deficient
from multilevel.exceptions import (
    DataError,
    FormulaError,
    MissingColumnError,
    MissingValuesWarning,
    RowsDroppedWarning,
)
from multilevel.factors import factor
from multilevel.formula import ParsedFormula, RandomTermSpec, expr_variables, parse

__all__ = [
    "FixedArrays",
    "FixedDesign",
    "FixedSpec",
    "ModelRows",
    "build_fixed",
    "fixed_arrays",
    "fixed_factor_levels",
    "fixed_matrix",
    "model_rows",
]


@dataclass
class FixedSpec:
    """What is needed to rebuild ``X`` on new data."""

    model_spec: Any  # formulaic ModelSpec of the fixed part
    columns: list[str]  # formulaic names of all columns before dropping
    keep: np.ndarray  # indices of the kept columns (after rank deficiency)
    names: list[str]  # kept names, with (Intercept)
    factor_levels: dict[str, list] = field(default_factory=dict)  # non-numeric fixed columns


@dataclass
class FixedDesign:
    """Fixed-effects arrays for a formula without random-effects terms.

    ``y`` (n,) float64; ``X`` (n, p) float64 Fortran order; ``names`` the column names of
    ``X`` (``"(Intercept)"`` first when present); ``dropped_columns`` the rank-deficient
    columns removed; ``n_dropped`` the rows dropped for missing values; ``rows`` the positions
    (in the input) of the rows used; ``spec`` rebuilds X on new data (``fixed_matrix``);
    ``weights`` (n,) or None; ``extra`` the ``extra`` columns, subset to ``rows``.
    """

    y: np.ndarray
    X: np.ndarray
    names: list[str]
    dropped_columns: list[str]
    n_dropped: int
    rows: np.ndarray
    nobs: int
    spec: FixedSpec
    weights: np.ndarray | None = None
    extra: dict[str, np.ndarray] = field(default_factory=dict)
    formula: str = ""
    parsed: ParsedFormula | None = None
    offset: np.ndarray | None = None  # offset= plus the formula's offset(expr) terms


@dataclass
class ModelRows:
    """The rows a model uses, its response and fixed part, and each bar's ``Z``."""

    frame: Any  # the used columns at the kept rows (multilevel.data.Frame)
    rows: np.ndarray
    n_dropped: int
    y: np.ndarray
    X: np.ndarray  # kept columns only
    weights: np.ndarray | None
    offset: np.ndarray | None
    spec: FixedSpec
    dropped: list[str]  # rank-deficient columns dropped
    bars: list[tuple[np.ndarray, Any, list[str]]]  # each bar's (Z, formulaic spec, names)


def model_rows(
    parsed: ParsedFormula,
    df: pd.DataFrame,
    used: list[str],
    formula: str,
    weights: Any = None,
    offset: Any = None,
    bars: Sequence[RandomTermSpec] = (),
) -> ModelRows:
    """The steps every model shares, in order: used columns checked, rows with missing values
    dropped, y, X and each bar's Z built, rows where a transformation gave NaN dropped,
    infinities and weights checked, rank-deficient columns of X dropped."""
    check_columns(df, used)
    w, wcol = weight_vector(weights, df, "weights")
    vectors = {(wcol or "weights"): w}
    if offset is not None:
        o, ocol = weight_vector(offset, df, "offset")
        vectors[ocol or "offset"] = o
    # stacklevel 5: the warnings point at the caller of build/build_fixed
    frame, rows, n_dropped, vecs = drop_missing(df, used, vectors, stacklevel=5)
    w, o = vecs[wcol or "weights"], (vecs[ocol or "offset"] if offset is not None else None)
    y = response_vector(parsed, frame, df.columns, formula)
    X, spec, cols = fixed_columns(parsed, frame, formula)
    Zs = []
    for t in bars:
        mm = model_matrix(t.expr, frame, formula, f"random-effects term {t.text}")
        Zs.append(
            (
                as_float_matrix(mm, f"random-effects term {t.text}"),
                mm.model_spec,
                lme4_names(mm.columns),
            )
        )
    fo = formula_offset(parsed, frame, formula)  # offset(expr) terms, added to offset=
    if fo is not None:
        o = fo if o is None else o + fo
    (y, X, *Z_arrays), (w, o), rows, n_dropped, frame = drop_transform_nan(
        [y, X, *(z for z, _, _ in Zs), *([o] if fo is not None else [])],
        [w, None if fo is not None else o],
        rows,
        n_dropped,
        frame,
        stacklevel=5,
    )
    if fo is not None:
        *Z_arrays, o = Z_arrays
    Zs = [(z, s, nm) for z, (_, s, nm) in zip(Z_arrays, Zs)]
    check_inf(y, "response", rows)
    check_inf(X, "fixed-effects model matrix", rows)
    check_weights(w)
    names_all = lme4_names(cols)
    X, keep, dropped = drop_rank_deficient(X, names_all, stacklevel=5)
    names = [names_all[j] for j in keep.tolist()]  # (iterating an array is slow when cold)
    fixed_spec = FixedSpec(spec, names_all, keep, names, fixed_factor_levels(parsed, frame))
    return ModelRows(frame, rows, n_dropped, y, X, w, o, fixed_spec, dropped, Zs)


def build_fixed(
    formula: str, data, weights=None, extra: Sequence[str] = (), offset=None
) -> FixedDesign:
    """Fixed-effects design of a formula without random-effects terms.

    Parameters
    ----------
    formula : str
        ``"y ~ x + C(f)"``; bars are refused.
    data : pandas or polars DataFrame, or dict of arrays
    weights : str or array, optional
        Column name or array of prior weights (>= 0, finite).
    offset : str or array, optional
        Column name or array of an offset, added to the formula's ``offset(expr)`` terms
        (``FixedDesign.offset``; None when there is neither).
    extra : sequence of str
        Further columns (cluster, entity, time identifiers) whose missing values also drop
        rows; returned as NumPy arrays at the kept rows in ``FixedDesign.extra``.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     fd = build_fixed("y ~ x", {"y": [1.0, 2.0, 2.5, None], "x": [1, 2, 3, 4]})
    >>> fd.names, fd.nobs, fd.n_dropped, fd.rows.tolist()
    (['(Intercept)', 'x'], 3, 1, [0, 1, 2])
    """
    parsed = parse(formula)
    if parsed.random:
        t = parsed.random[0]
        raise FormulaError(
            f"this function takes formulas without random-effects terms; found {t.text}",
            formula,
            formula.find("|"),
        )
    df = as_pandas(data)
    used = parsed.variables()
    for e in extra:
        if e not in used:
            used.append(e)
    m = model_rows(parsed, df, used, formula, weights, offset)
    ex = {e: m.frame[e].to_numpy() for e in extra}
    return FixedDesign(
        y=m.y,
        X=m.X,
        names=m.spec.names,
        dropped_columns=m.dropped,
        n_dropped=m.n_dropped,
        rows=m.rows,
        nobs=len(m.y),
        spec=m.spec,
        weights=m.weights,
        extra=ex,
        formula=formula,
        parsed=parsed,
        offset=m.offset,
    )


def fixed_factor_levels(parsed: ParsedFormula, frame: pd.DataFrame) -> dict[str, list]:
    out = {}
    variables = parsed.fixed_variables()
    if "var(" in parsed.fixed:  # a grouping factor only seen by cvar/dvar is not a factor of X
        from multilevel.contextual import strip_calls

        variables = [v for v in variables if v in expr_variables(strip_calls(parsed.fixed))]
    for v in variables:
        s = column_values(frame, v)
        if not is_numeric(s):
            out[v] = list(factor(s)[1])
    return out


def fixed_matrix(
    spec: FixedSpec, frame: pd.DataFrame, allow_new_groups: bool = False
) -> np.ndarray:
    """X for new data (already cleaned) through the stored formulaic spec, kept columns only.

    A level of a factor that the training data did not have raises ``DataError`` naming the
    column and the levels (R's predict: "factor f has new levels z"). ``cvar``/``dvar`` use
    the training means; a group they have not seen is an error unless ``allow_new_groups``
    (then the new data's own mean; see multilevel.contextual)."""
    for v, levels in spec.factor_levels.items():
        if v not in frame.columns:
            continue
        known = pd.Index(levels)
        vals = (
            frame[v].astype(object) if isinstance(frame[v].dtype, pd.CategoricalDtype) else frame[v]
        )
        new = pd.unique(vals[~pd.Index(vals.to_numpy()).isin(known)].to_numpy())
        if len(new):
            raise DataError(
                f"factor {v!r} has new levels in newdata: "
                + ", ".join(repr(x) for x in list(new)[:10])
            )
    import formulaic  # imported here: a plain formula never needs it (see formula.py)

    from multilevel.contextual import formula_context

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", formulaic.errors.DataMismatchWarning)
            mm = spec.model_spec.get_model_matrix(
                spec_frame(spec.model_spec, frame),
                na_action="ignore",
                context=formula_context(allow_new_groups),
            )
    except Exception as exc:
        reraise_own(exc)
        raise DataError(f"cannot build the fixed-effects matrix for new data: {exc}") from None
    X = as_float_matrix(mm, "fixed-effects model matrix")
    return np.asfortranarray(X[:, spec.keep])


@dataclass
class FixedArrays:
    """y, X and extra columns (clusters, entity, time, groups) at the rows a single-level
    model uses (see :func:`fixed_arrays`)."""

    y: np.ndarray
    X: np.ndarray
    names: list[str]
    weights: np.ndarray | None
    extras: list[np.ndarray]
    rows: np.ndarray
    n_dropped: int
    dropped_columns: list[str]
    n_zero_weight: int = 0  # rows left out for a zero weight (not in n_dropped)
    offset: np.ndarray | None = None  # offset= plus the formula's offset(expr) terms


def row_list_of(rows: np.ndarray, k: int = 5) -> str:
    """The first ``k`` row positions, for a message."""
    return ", ".join(map(str, rows[:k])) + (", ..." if len(rows) > k else "")


def fixed_arrays(
    formula: str, data: Any, weights: Any, extras: Sequence[Any], offset: Any = None
) -> FixedArrays:
    """Build y and X through :func:`build_fixed` and align extra columns (clusters,
    entity, time, groups) with the rows used. Rows missing an extra column are dropped and
    counted with the others."""
    df = as_pandas(data)
    n_in = len(df)
    keep = np.ones(n_in, dtype=bool)
    extra_values, culprits = [], []
    for spec in extras:
        if isinstance(spec, str):
            if spec not in df.columns:
                raise MissingColumnError(spec, df.columns)
            vals = df[spec]
        else:
            vals = pd.Series(np.asarray(spec))
            if len(vals) != n_in:
                raise DataError(
                    f"a grouping array has {len(vals)} values but the data have {n_in} rows"
                )
        if isinstance(spec, str) and vals.dtype == object:
            check_scalars(vals, spec)
        miss = pd.isna(vals).to_numpy()
        if miss.any():
            culprits.append(repr(spec) if isinstance(spec, str) else "a grouping array")
        keep &= ~miss
        extra_values.append(vals)
    if culprits:  # counted in n_dropped with the formula's, and said as lmer says it
        k = int((~keep).sum())
        warnings.warn(
            f"dropped {k} row{'s' if k != 1 else ''} with missing values (in "
            f"{', '.join(culprits)})",
            MissingValuesWarning,
            stacklevel=3,
        )
    sub = df if keep.all() else df.loc[keep]
    if isinstance(weights, str) or weights is None:
        w_arg = weights
    else:
        w_arg = np.asarray(weights, dtype=float)[keep]
    if isinstance(offset, str) or offset is None:
        o_arg = offset
    else:
        o_arg = weight_vector(offset, df, "offset")[0][keep]  # checked as lmer's offset=
    design = build_fixed(formula, sub, weights=w_arg, offset=o_arg)
    o = None if design.offset is None else np.asarray(design.offset, dtype=float)
    base = np.flatnonzero(keep)
    rows = base[np.asarray(design.rows)]
    w = getattr(design, "weights", None)
    if w is None and weights is not None:
        w = (
            df[weights].to_numpy(dtype=float)[rows]
            if isinstance(weights, str)
            else np.asarray(weights, dtype=float)[rows]
        )
    if w is not None:
        w = np.asarray(w, dtype=float)
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise DataError("weights must be finite and non-negative")
    y = np.asarray(design.y, dtype=float)
    X = np.asarray(design.X, dtype=float)
    all_rows = len(rows) == n_in  # rows is then 0..n-1: no gather needed
    ex = [np.asarray(v.to_numpy() if all_rows else v.to_numpy()[rows]) for v in extra_values]
    n_zero = 0
    names = list(design.names)
    dropped_columns = list(getattr(design, "dropped_columns", []))
    if w is not None and np.any(w == 0):
        pos = w > 0  # zero weights: the row does not enter the fit (as in R's lm)
        n_zero = int((~pos).sum())
        warnings.warn(
            f"{n_zero} row{'s' if n_zero != 1 else ''} with zero weight left out of the fit "
            f"(rows {row_list_of(rows[~pos])}; counted in n_zero_weight)",
            RowsDroppedWarning,
            stacklevel=3,
        )
        y, X, w, rows = y[pos], X[pos], w[pos], rows[pos]
        o = None if o is None else o[pos]
        ex = [v[pos] for v in ex]
        # R's lm.wfit fits the positive-weight rows alone: a column left constant at zero by
        # the zero-weight rows (a level seen only there) is aliased, as R's NA coefficient
        from multilevel.design.rank import drop_rank_deficient

        if len(y) > X.shape[1]:  # (too few rows: the caller says so, naming the counts)
            X, keep, aliased = drop_rank_deficient(np.asfortranarray(X), names, stacklevel=3)
            names = [names[j] for j in keep.tolist()]
            dropped_columns = dropped_columns + list(aliased)
    return FixedArrays(
        y=y,
        X=X,
        names=names,
        weights=w,
        extras=ex,
        rows=rows,
        n_dropped=n_in - len(np.asarray(design.rows)),
        dropped_columns=dropped_columns,
        n_zero_weight=n_zero,
        offset=o,
    )
