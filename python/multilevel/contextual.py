"""Contextual effects: group means of a variable, deviations from them, data at the group level.

A variable measured on individuals (a student's ``ses``) carries two effects in a multilevel
model: the effect of the individual's position within the group and the effect of the group's
composition (the "contextual" effect). Both come from one object, the mean of ``x`` within the
groups of ``g``:

``cvar(x, g)``
    The mean of ``x`` over the rows of the row's group: R's ``ave(x, g)``, Stata's
    ``egen xbar = mean(x), by(g)``, spida2's ``cvar``.
``dvar(x, g)``
    The deviation ``x - cvar(x, g)`` (group-mean centring).
``up(data, by, agg=None)``
    The data at the level of ``by``: one row per group with the columns that are constant
    within every group and, when asked, aggregates (means, ...) of the others, as nlme's
    ``gsummary``, Stata's ``collapse`` or spida2's ``up``.

``cvar`` and ``dvar`` are usable in every formula of the package -- the fixed part and the
left side of random terms of :func:`~multilevel.lmer`, and :func:`~multilevel.ols`,
:func:`~multilevel.panel`, :func:`~multilevel.lmlist` -- e.g.
``"mathach ~ dvar(ses, school) + cvar(ses, school) + (1 + dvar(ses, school) | school)"``.
Coefficients are named by the call, ``"cvar(ses, school)"``, as R names them.

The rules, the same in every formula:

- The means are those of the rows the fit uses: rows with a missing value in any variable of
  the formula (``x`` and ``g`` included) are dropped first (and counted in ``n_dropped``), so
  the means are R's ``ave(x, g)`` on the complete cases. They are unweighted, whatever the
  fit's weights. Rows that a transformation inside ``x`` makes missing (``cvar(np.log(x), g)``
  with ``x <= 0``) are left out of the means and out of the fit.
- The means are computed once, at fitting time, and stored with the model (a formulaic
  stateful transform, like ``center`` or ``scale``): predictions for new data use the
  training means of the groups, not the means of the new rows.
- A group absent from the training data has no training mean. Predicting for it raises
  :class:`~multilevel.exceptions.DataError` naming the groups, unless the caller asks for new
  levels (``LmerFit.predict(newdata, allow_new_levels=True)``): then such a group's mean is
  the mean of its rows in the new data -- what a user of lme4 or Stata would compute by hand
  for a school that joins later -- while known groups keep their training means.
- ``x`` must be numeric (or boolean: the mean is a proportion); ``g`` is a factor of any type
  (one column). Anything else raises :class:`~multilevel.exceptions.DataError` naming the
  column; a column that is not in the data raises
  :class:`~multilevel.exceptions.MissingColumnError`.

Examples
--------
>>> import multilevel as ml
>>> hsb = ml.datasets.load("hsb")
>>> fit = ml.lmer("mathach ~ ses + cvar(ses, school) + (1 | school)", hsb)
>>> fit.fixef.round(4).to_dict()
{'(Intercept)': 12.6833, 'ses': 2.1912, 'cvar(ses, school)': 3.675}

New data use the training means: a student of school 1224 (mean ses -0.434) with ses 0.5

>>> fit.predict({"ses": [0.5], "school": ["1224"]}).round(4).tolist()
[11.8578]
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import pandas as pd
from formulaic.utils.stateful_transforms import stateful_transform

from multilevel.data import as_pandas, is_numeric
from multilevel.exceptions import DataError, MissingColumnError, MissingValuesWarning
from multilevel.factors import factor, interaction, label, lookup

__all__ = ["cvar", "dvar", "formula_context", "up"]

# Key of the formula evaluation context that says what to do with groups not seen in training.
NEW_GROUPS_KEY = "__multilevel_new_groups__"
CONTEXTUAL_FUNCTIONS = ("cvar", "dvar")


# --------------------------------------------------------------------------------------------
# cvar / dvar
# --------------------------------------------------------------------------------------------


def _column_name(v: Any, default: str) -> str:
    name = getattr(v, "name", None)
    return name if isinstance(name, str) else default


def _x_values(x: Any, fname: str) -> np.ndarray:
    name = _column_name(x, "x")
    if np.ndim(x) != 1:
        raise DataError(
            f"{fname}({name}, ...): the first argument must be a column of the data, e.g. "
            f"{fname}(ses, school)"
        )
    s = x if isinstance(x, pd.Series) else pd.Series(np.asarray(x))
    if not is_numeric(s):
        raise DataError(
            f"{fname}(): column {name!r} is not numeric ({s.dtype}); {fname} needs a numeric "
            "variable (use a 0/1 indicator for a proportion)"
        )
    return s.to_numpy(dtype=np.float64, na_value=np.nan)


def _g_series(g: Any, n: int, fname: str, xname: str) -> pd.Series:
    if np.ndim(g) != 1:
        raise DataError(
            f"{fname}({xname}, ...): the second argument must be a column of the data (the "
            f"grouping factor), e.g. {fname}({xname}, school); got {g!r}"
        )
    s = g if isinstance(g, pd.Series) else pd.Series(np.asarray(g))
    if len(s) != n:
        raise DataError(f"{fname}(): the variable and the groups differ in length")
    return s.reset_index(drop=True)


def _means(values: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    """Mean of ``values`` per code, missing values left out; two passes (as R's ``mean``).

    An infinite value makes its group's mean infinite (the fit then refuses it, naming rows)."""
    ok = ~np.isnan(values)
    c, v = codes[ok], values[ok]
    n = np.bincount(c, minlength=k).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        m = np.bincount(c, weights=v, minlength=k) / n
        fin = np.isfinite(m)
        r = np.where(fin[c], v - m[c], 0.0)
        m = np.where(fin, m + np.bincount(c, weights=r, minlength=k) / n, m)
    return m


def _row_means(x: Any, groups: tuple, state: dict, context: Any, fname: str) -> np.ndarray:
    """The group mean of ``x`` at each row: training means (stored in ``state``)."""
    xv = _x_values(x, fname)
    xname = _column_name(x, "x")
    if len(groups) != 1:
        raise DataError(
            f"{fname}() takes a variable and one grouping column, e.g. {fname}({xname}, school); "
            f"got {len(groups)} grouping argument{'s' if len(groups) != 1 else ''}"
        )
    g = groups[0]
    gs = _g_series(g, len(xv), fname, xname)
    if "levels" not in state:  # fitting: compute and keep the means of the rows used
        codes, levels = factor(gs)
        state["levels"] = levels
        state["means"] = _means(xv, codes, len(levels))
        state["group"] = _column_name(g, "g")
        out = state["means"][codes]
    else:  # new data: the training means of known groups
        levels, means = state["levels"], state["means"]
        idx = lookup(levels, gs)
        out = np.where(idx >= 0, means[np.maximum(idx, 0)], np.nan)
        unseen = idx < 0
        if unseen.any():
            out = _unseen_groups(xv, gs, unseen, out, context, fname, xname, state["group"])
    out = np.asarray(out, dtype=np.float64)
    out[np.isnan(xv)] = np.nan
    return out


def _unseen_groups(xv, gs, unseen, out, context, fname, xname, gname) -> np.ndarray:
    labels = pd.unique(np.asarray([label(v) for v in gs[unseen]], dtype=object))
    allow = bool(context.get(NEW_GROUPS_KEY, False)) if context is not None else False
    if not allow:
        shown = ", ".join(repr(v) for v in labels[:10]) + (", ..." if len(labels) > 10 else "")
        raise DataError(
            f"{fname}({xname}, {gname}): group{'s' if len(labels) != 1 else ''} of {gname!r} "
            f"not in the training data: {shown}; the model uses the training means of "
            f"{xname!r} by {gname!r} (lmer's predict(..., allow_new_levels=True) takes the new "
            "data's own means for new groups)"
        )
    codes, lv = factor(gs[unseen].reset_index(drop=True))
    own = _means(xv[unseen], codes, len(lv))
    out = out.copy()
    out[unseen] = own[codes]
    return out


@stateful_transform
def cvar(x, *g, _state: dict = {}, _context=None) -> np.ndarray:  # noqa: B006 (formulaic's)
    """The mean of ``x`` within the groups of ``g``, at each row (R's ``ave(x, g)``).

    In a formula, ``cvar(ses, school)``; the means of the fitting data are kept for new data
    (see the module documentation). Called directly it returns the means of its arguments.

    Parameters
    ----------
    x : numeric column (pandas Series or array)
    g : grouping column of any type

    Returns
    -------
    numpy.ndarray
        float64, one value per row; NaN where ``x`` is missing.

    Examples
    --------
    >>> import pandas as pd
    >>> cvar(pd.Series([1.0, 2.0, 4.0, 10.0]), pd.Series(["a", "a", "b", "b"])).tolist()
    [1.5, 1.5, 7.0, 7.0]
    """
    return _row_means(x, g, _state, _context, "cvar")


@stateful_transform
def dvar(x, *g, _state: dict = {}, _context=None) -> np.ndarray:  # noqa: B006 (formulaic's)
    """``x`` minus its mean within the groups of ``g`` (group-mean centring).

    In a formula, ``dvar(ses, school)``; new data are centred on the fitting data's means.

    Examples
    --------
    >>> import pandas as pd
    >>> dvar(pd.Series([1.0, 2.0, 4.0, 10.0]), pd.Series(["a", "a", "b", "b"])).tolist()
    [-0.5, 0.5, -3.0, 3.0]
    """
    means = _row_means(x, g, _state, _context, "dvar")
    return _x_values(x, "dvar") - means


def formula_context(allow_new_groups: bool = False) -> dict[str, Any]:
    """Names that formulas of the package may use beyond formulaic's own: ``cvar``, ``dvar``.

    ``allow_new_groups``: for new data, give groups unseen in training the new data's own
    means instead of raising :class:`~multilevel.exceptions.DataError`.
    """
    return {"cvar": cvar, "dvar": dvar, NEW_GROUPS_KEY: allow_new_groups}


def strip_calls(expr: str) -> str:
    """``expr`` with every ``cvar(...)``/``dvar(...)`` call replaced by ``0``: the text whose
    variables are used other than through group means.

    >>> strip_calls("ses + cvar(ses, school) + C(sector)")
    'ses + 0 + C(sector)'
    """
    out, i = [], 0
    while True:
        hits = [(expr.find(f + "(", i), f) for f in CONTEXTUAL_FUNCTIONS]
        hits = [(p, f) for p, f in hits if p >= 0 and (p == 0 or not _ident(expr[p - 1]))]
        if not hits:
            out.append(expr[i:])
            return "".join(out)
        p, f = min(hits)
        depth, j = 0, p + len(f)
        while j < len(expr):
            depth += {"(": 1, ")": -1}.get(expr[j], 0)
            j += 1
            if depth == 0:
                break
        out.append(expr[i:p] + "0")
        i = j


def _ident(ch: str) -> bool:
    return ch.isalnum() or ch in "_."


# --------------------------------------------------------------------------------------------
# up
# --------------------------------------------------------------------------------------------


_AGGREGATES: dict[str, Callable[[np.ndarray, np.ndarray, int], np.ndarray]] = {}


def _agg(name: str):
    def register(f):
        _AGGREGATES[name] = f
        return f

    return register


@_agg("mean")
def _agg_mean(v: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    return _means(v, codes, k)


@_agg("sum")
def _agg_sum(v: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    ok = ~np.isnan(v)
    return np.bincount(codes[ok], weights=v[ok], minlength=k)


@_agg("count")
def _agg_count(v: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
    return np.bincount(codes[~np.isnan(v)], minlength=k).astype(np.float64)


def _by_group(stat: str):
    def f(v: np.ndarray, codes: np.ndarray, k: int) -> np.ndarray:
        s = pd.Series(v).groupby(codes).agg(stat)
        return s.reindex(range(k)).to_numpy(dtype=np.float64)

    return f


for _name, _stat in (("median", "median"), ("min", "min"), ("max", "max"), ("sd", "std")):
    _AGGREGATES[_name] = _by_group(_stat)


def _group_keys(df: pd.DataFrame, by: list[str]) -> tuple[np.ndarray, int, pd.DataFrame]:
    """Codes of the groups (package factor order) and a frame of the ``by`` values per group."""
    codes, levels, _, _ = interaction([df[c] for c in by])
    codes = codes.astype(np.intp)
    k = len(levels)
    first = np.full(k, len(codes), dtype=np.intp)
    np.minimum.at(first, codes, np.arange(len(codes)))
    out = df[by].iloc[first].reset_index(drop=True)
    for c in by:
        if isinstance(df[c].dtype, pd.CategoricalDtype):
            out[c] = out[c].cat.remove_unused_categories()
    return codes, k, out


def _invariant(col: pd.Series, codes: np.ndarray, first: np.ndarray) -> bool:
    """Constant within every group (a missing value counts as one more value, as nlme's)."""
    vcodes = factor(col).codes  # missing -> -1, a value of its own
    return bool(np.all(vcodes == vcodes[first[codes]]))


def up(data, by: str | Sequence[str], agg: str | Callable | None = None):
    """The data at the level of ``by``: one row per group.

    Parameters
    ----------
    data : pandas or polars DataFrame, or dict of arrays
    by : str or list of str
        The grouping column(s); several columns group by their combinations.
    agg : None, str or callable
        ``None`` (default): only the columns constant within every group (nlme's
        ``gsummary(invariantsOnly = TRUE)``, spida2's ``up``). ``"mean"`` (also ``"median"``,
        ``"sum"``, ``"min"``, ``"max"``, ``"sd"``, ``"count"``): in addition, that aggregate of
        every numeric column that varies within some group, missing values skipped (R's
        ``mean(x, na.rm = TRUE)``; ``"sd"`` divides by n - 1; a group without values gets
        NaN), as Stata's ``collapse (mean)``. A callable receives each group's values as a
        NumPy array (missing values removed) and returns a number. Varying columns that are
        not numeric are left out.

    Returns
    -------
    pandas or polars DataFrame
        polars for polars input, pandas otherwise. The ``by`` columns first, then the other
        kept columns in their original order, under their own names. Rows in the package's
        factor order of ``by`` (pandas categorical order, otherwise sorted; combinations with
        the first column slowest), only groups that occur. Rows with a missing ``by`` value
        are dropped with a :class:`~multilevel.exceptions.MissingValuesWarning`. A column is
        constant within a group when all its values there are equal, a missing value counting
        as a value of its own; invariant columns keep their dtype.

    Examples
    --------
    >>> import multilevel as ml
    >>> hsb = ml.datasets.load("hsb")
    >>> schools = ml.up(hsb, "school")
    >>> schools.shape, list(schools.columns)
    ((160, 3), ['school', 'sector', 'meanses'])
    >>> print(ml.up(hsb, "school", agg="mean").head(3).round(4))
      school  mathach     ses  sector  meanses
    0   1224   9.7154 -0.4344  Public   -0.428
    1   1288  13.5108  0.1216  Public    0.128
    2   1296   7.6360 -0.4255  Public   -0.420
    """
    polars_in = type(data).__module__.startswith("polars")
    df = as_pandas(data)
    cols = [by] if isinstance(by, str) else list(by)
    if not cols:
        raise DataError("up(): `by` names no column")
    for c in cols:
        if c not in df.columns:
            raise MissingColumnError(c, df.columns)
    if isinstance(agg, str) and agg not in _AGGREGATES:
        raise ValueError(
            f"agg must be None, a callable or one of {', '.join(map(repr, _AGGREGATES))}; "
            f"got {agg!r}"
        )
    missing = np.zeros(len(df), dtype=bool)
    for c in cols:
        missing |= np.asarray(pd.isna(df[c]), dtype=bool)
    if missing.any():
        k = int(missing.sum())
        warnings.warn(
            f"up(): dropped {k} row{'s' if k != 1 else ''} with a missing value in "
            + ", ".join(repr(c) for c in cols if pd.isna(df[c]).any()),
            MissingValuesWarning,
            stacklevel=2,
        )
        df = df.loc[~missing]
    df = df.reset_index(drop=True)
    if len(df) == 0:
        raise DataError("up(): no rows with a group")
    codes, k, out = _group_keys(df, cols)
    first = np.full(k, len(codes), dtype=np.intp)
    np.minimum.at(first, codes, np.arange(len(codes)))
    for c in df.columns:
        if c in cols:
            continue
        s = df[c]
        if _invariant(s, codes, first):
            out[c] = s.iloc[first].reset_index(drop=True)
        elif agg is not None and is_numeric(s):
            v = s.to_numpy(dtype=np.float64, na_value=np.nan)
            if callable(agg):
                vals = pd.Series(v).dropna().groupby(pd.Series(codes)[~np.isnan(v)])
                res = vals.agg(lambda a: agg(a.to_numpy())).reindex(range(k))
                out[c] = res.to_numpy(dtype=np.float64)
            else:
                out[c] = _AGGREGATES[agg](v, codes, k)
    if polars_in:
        import polars as pl

        return pl.from_pandas(out)
    return out
