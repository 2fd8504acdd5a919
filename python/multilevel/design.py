"""From a formula and a data frame to the arrays the Rust core takes.

``build_fixed`` (formulas without bars: OLS, panels, lmList) is ready for use; ``build``
(mixed models) and ``new_matrices`` (prediction) share its fixed-effects machinery.

Pipeline (every conversion is here, visible; the Rust core borrows the results):

1. ``data`` -> pandas: a pandas DataFrame is used as is (no copy), a polars DataFrame goes
   through ``to_pandas()`` (polars ``Categorical`` columns are cast to strings first, so their
   levels are sorted as for any other column; ``Enum`` keeps its order), a dict of arrays or
   lists through ``pd.DataFrame``.
2. Used columns (response, fixed, random, grouping, weights, offset, ``extra``) are checked
   (``MissingColumnError`` with close matches); rows with a missing value (NaN, None, pd.NA,
   polars null) in any of them are dropped with a ``MissingValuesWarning`` and counted in
   ``n_dropped``; ``rows`` holds the positions of the kept rows. Infinite values raise
   ``DataError`` naming the column and rows. Unused categories of pandas categoricals are
   dropped (R's ``drop.unused.levels``). Numeric and categorical columns are read as NumPy
   arrays / Categoricals without making Series (``_Frame``); a DataFrame of the used columns
   is built only for formulaic.
3. formulaic builds ``X`` (``ModelSpec`` kept for new data) and, for each bar, the bar's left
   side ``Z`` (n x q). Both are float64, Fortran order; ``Intercept`` is renamed
   ``(Intercept)`` as lme4 names it. Rows where a transformation yields NaN (``np.log`` of a
   negative) are dropped and counted as well.
4. Rank deficiency of ``X``: R's ``qr(X, tol = 1e-7)`` rule (LINPACK ``dqrdc2``, limited
   pivoting). A column whose residual, after projection on the earlier kept columns, has a
   norm below ``1e-7`` times its own norm is dropped; earlier columns are always kept. It is
   computed on the triangular factor of an unpivoted QR of ``X`` taken in row blocks
   (``multilevel._tallqr``: same column geometry, one pass over the rows), unless ``X'X``
   shows every column clearly independent (``_clearly_full_rank``). Dropped columns are named
   in a ``RankDeficiencyWarning``.
5. Grouping factors -> ``codes`` (int32, 0-based) and ``levels``: pandas categorical order
   (observed levels only); otherwise sorted (numbers numerically, strings by code point, as R's
   ``factor()`` in the C locale). An interaction ``a:b`` has the observed combinations in R's
   ``a:b`` order (first factor slowest) with labels ``"<a>:<b>"``.
6. Term order (lme4's ``mkReTrms``): with ``nl`` the numbers of levels of the terms in
   formula order, if any ``diff(nl) > 0`` the order is ``rev(order(nl))`` -- R's stable
   ``order`` then reversed, so tied terms end up in reverse formula order -- otherwise the
   formula order is kept. This is also the order of ``theta``.
7. lme4's checks: each grouping factor needs >= 2 levels and fewer levels than observations;
   each term's number of random effects (levels x q) must be below the number of
   observations (``allow_n=True`` relaxes both to "<=", as glmer does).

>>> import pandas as pd
>>> df = pd.DataFrame({"y": [1.0, 2.0, 4.0, 3.0, 5.0, 6.0], "x": [0, 1, 2, 3, 4, 5],
...                    "g": ["b", "a", "b", "a", "c", "c"]})
>>> d = build("y ~ x + (1 | g)", df)
>>> d.fixed_names, d.terms[0].codes.tolist(), list(d.terms[0].levels)
(['(Intercept)', 'x'], [1, 0, 1, 0, 2, 2], ['a', 'b', 'c'])
"""

from __future__ import annotations

import functools
import itertools
import math
import re
import warnings
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import formulaic
import numpy as np
import pandas as pd

from multilevel._tallqr import kept_columns, tall_r
from multilevel.exceptions import (
    DataError,
    FormulaError,
    MissingColumnError,
    MissingValuesWarning,
    MultilevelError,
    RankDeficiencyWarning,
)
from multilevel.factors import (
    all_categories_used,
    cat_codes,
    codes_seen,
    factor,
    interaction,
    label,
    lookup,
    mixed_key,
)
from multilevel.formula import ParsedFormula, RandomTermSpec, parse

__all__ = [
    "Design",
    "FixedDesign",
    "NewMatrices",
    "ReTerm",
    "as_pandas",
    "build",
    "build_fixed",
    "new_matrices",
]

RANK_TOL = 1e-7


# --------------------------------------------------------------------------------------------
# Result objects
# --------------------------------------------------------------------------------------------


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


@dataclass
class TermSpec:
    """What is needed to rebuild a term's Z and codes on new data."""

    model_spec: Any  # formulaic ModelSpec of the bar's left side
    group_factors: tuple[str, ...]
    factor_levels: list[pd.Index]  # per grouping factor, the levels (code order)
    term: RandomTermSpec
    level_keys: np.ndarray | None = None  # interactions: mixed-radix key of each level


@dataclass
class ReTerm:
    """One random-effects term; see docs/internals.md."""

    group: str
    names: list[str]
    codes: np.ndarray
    levels: pd.Index
    Z: np.ndarray
    spec: TermSpec

    @property
    def n_levels(self) -> int:
        return len(self.levels)

    @property
    def q(self) -> int:
        return self.Z.shape[1]

    @property
    def diagonal(self) -> bool:
        """Covariance shape: True for a term from ``||`` (then q == 1)."""
        return not self.spec.term.correlated


@dataclass
class Design:
    """Everything a mixed model needs from the formula and the data; see docs/internals.md."""

    y: np.ndarray
    X: np.ndarray
    fixed_names: list[str]
    dropped_columns: list[str]
    terms: list[ReTerm]
    weights: np.ndarray | None
    offset: np.ndarray | None
    n_dropped: int
    rows: np.ndarray
    nobs: int
    formula: str
    parsed: ParsedFormula
    data_name: str | None = None
    fixed_spec: FixedSpec | None = None
    term_order: list[int] = field(default_factory=list)  # formula index of each term

    @property
    def ngroups(self) -> dict[str, int]:
        return {t.group: t.n_levels for t in self.terms}


@dataclass
class NewMatrices:
    """Matrices for new data: ``X``, per selected term ``(codes, Z)``, and the rows used.

    ``terms`` lists one entry per term of the design, in the design's order; a term left out
    by ``re_form`` is ``None``.
    """

    X: np.ndarray
    terms: list[tuple[np.ndarray, np.ndarray] | None]
    rows: np.ndarray


# --------------------------------------------------------------------------------------------
# Data conversion
# --------------------------------------------------------------------------------------------


def as_pandas(data) -> pd.DataFrame:
    """pandas DataFrame from pandas (as is), polars (``to_pandas``) or a dict of arrays."""
    if isinstance(data, pd.DataFrame):
        return data
    mod = type(data).__module__
    if mod.startswith("polars"):
        import polars as pl

        if isinstance(data, pl.LazyFrame):
            data = data.collect()
        casts = [pl.col(n).cast(pl.Utf8) for n, t in data.schema.items() if t == pl.Categorical]
        if casts:
            data = data.with_columns(casts)
        return data.to_pandas()
    if isinstance(data, Mapping):
        try:
            return pd.DataFrame({k: _as_column(v) for k, v in data.items()})
        except ValueError as exc:
            raise DataError(f"cannot make a data frame from the dict: {exc}") from None
    raise DataError(
        f"data must be a pandas or polars DataFrame or a dict of arrays, not {type(data).__name__}"
    )


def _as_column(v):
    if isinstance(v, (pd.Series, pd.Categorical, np.ndarray)):
        return v
    mod = type(v).__module__
    if mod.startswith("polars"):
        return v.to_pandas()
    return list(v) if not np.isscalar(v) else v


def _is_numeric(s: pd.Series) -> bool:
    """Numeric or boolean dtype (``s`` a Series or an array)."""
    if isinstance(s.dtype, np.dtype):
        return s.dtype.kind in "biufc"
    return pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)


def _is_float_like(s: pd.Series) -> bool:
    """Numeric, not boolean, dtype (``s`` a Series or an array)."""
    if isinstance(s.dtype, np.dtype):
        return s.dtype.kind in "iufc"
    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)


def _check_columns(df: pd.DataFrame, names: Sequence[str]) -> None:
    pos = _column_positions(df.columns)
    if pos is not None and all(n in pos for n in names):
        return
    cols = set(map(str, df.columns))
    for n in names:
        if n not in cols:
            raise MissingColumnError(n, df.columns)


_COLUMN_POSITIONS: dict[int, tuple[weakref.ref, dict]] = {}


def _column_positions(cols: pd.Index) -> dict | None:
    """Column name -> position for unique names, None otherwise; kept per Index object (an
    Index never changes: a data frame whose columns change gets a new one), so a data frame
    used again is looked up in a dict rather than in pandas' Index engine."""
    key = id(cols)
    hit = _COLUMN_POSITIONS.get(key)
    if hit is not None and hit[0]() is cols:
        return hit[1]
    if not cols.is_unique:
        return None
    pos = {c: i for i, c in enumerate(cols)}

    def forget(ref, key=key):
        if _COLUMN_POSITIONS.get(key, (None,))[0] is ref:
            del _COLUMN_POSITIONS[key]

    try:
        ref = weakref.ref(cols, forget)
    except TypeError:  # not weakly referenceable: not kept
        return pos
    if len(_COLUMN_POSITIONS) >= 64:
        _COLUMN_POSITIONS.clear()
    _COLUMN_POSITIONS[key] = (ref, pos)
    return pos


def _vector(arg, df: pd.DataFrame, what: str) -> tuple[np.ndarray | None, str | None]:
    """weights/offset: a column name or an array of length len(df). Returns (values, column)."""
    if arg is None:
        return None, None
    if isinstance(arg, str):
        _check_columns(df, [arg])
        s = df[arg]
        if not _is_numeric(s):
            raise DataError(f"{what} column {arg!r} must be numeric, not {s.dtype}")
        return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan), arg
    try:
        a = pd.Series(np.asarray(arg)) if not isinstance(arg, pd.Series) else arg
        a = a.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numeric") from None
    if a.ndim != 1 or len(a) != len(df):
        raise DataError(f"{what} has length {a.size} but the data have {len(df)} rows")
    return a, None


def _positions(mask: np.ndarray, k: int = 5) -> str:
    idx = np.flatnonzero(mask)
    s = ", ".join(str(i) for i in idx[:k])
    return s + (", ..." if idx.size > k else "")


class _Frame:
    """The used columns at the kept rows, as ``_prepare`` returns them.

    A light stand-in for a pandas DataFrame. Each column is held as a NumPy array (numeric and
    boolean columns), a ``pd.Categorical``, or, for any other dtype, a cleaned pandas Series;
    without dropped rows these are the input's own data (no copy: read, never write).
    ``frame.values(name)`` gives the array (what the NumPy fast paths use), ``frame[name]`` a
    Series with a RangeIndex (made on first use), ``frame.columns`` the names, ``len(frame)``
    the rows. formulaic needs a real DataFrame: :meth:`pandas` builds it on first use, and any
    other DataFrame attribute (``frame.iloc``, ``frame.dtypes``) is taken from it.
    """

    def __init__(self, cols: dict[str, Any], n: int):
        self._cols = cols
        self.columns = list(cols)
        self._n = n
        self._series: dict[str, pd.Series] = {}
        self._pandas: pd.DataFrame | None = None

    def values(self, name: str):
        """The column as a NumPy array or a pandas ExtensionArray (a Categorical)."""
        v = self._cols[name]
        if isinstance(v, pd.Series):
            return v.to_numpy() if isinstance(v.dtype, np.dtype) else v.array
        return v

    def __getitem__(self, name: str) -> pd.Series:
        s = self._series.get(name)
        if s is None:
            v = self._cols[name]
            if isinstance(v, pd.Series):
                s = v.reset_index(drop=True)
            else:
                if isinstance(v, np.ndarray):  # it may be the input's memory
                    v = v.view()
                    v.flags.writeable = False
                s = pd.Series(v, index=pd.RangeIndex(self._n), name=name, copy=False)
            self._series[name] = s
        return s

    def __len__(self) -> int:
        return self._n

    def __getattr__(self, name: str):
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.pandas(), name)

    def pandas(self) -> pd.DataFrame:
        """The columns as a DataFrame with a RangeIndex (built once)."""
        if self._pandas is None:
            cols = {c: self[c] for c in self.columns}
            self._pandas = pd.DataFrame(cols, index=pd.RangeIndex(self._n), copy=False)
        return self._pandas

    def take(self, sel: np.ndarray) -> _Frame:
        """The rows at positions ``sel``."""
        return _Frame(
            {
                c: (v.iloc[sel] if isinstance(v, pd.Series) else v[sel])
                for c, v in self._cols.items()
            },
            len(sel),
        )


def _pandas(frame) -> pd.DataFrame:
    """A pandas DataFrame for formulaic from a ``_Frame`` (or a DataFrame, as is)."""
    return frame.pandas() if isinstance(frame, _Frame) else frame


def _col(frame, name: str):
    """A column's values from a ``_Frame`` (array) or a DataFrame (Series)."""
    return frame.values(name) if isinstance(frame, _Frame) else frame[name]


def _column(df: pd.DataFrame, name: str, pos: dict[str, int] | None):
    """A used column of the input: its NumPy array (numeric, boolean) or its Categorical when
    stored so, otherwise the Series ``df[name]``. Arrays may be views of the input's memory:
    read them, never write (``_response`` copies y).

    The arrays come from ``DataFrame._get_column_array`` (pandas' own accessor for the array of
    a column, no Series made) when the column names are unique; ``pos`` maps names to
    positions, None when that accessor is not used."""
    if pos is not None:
        v = df._get_column_array(pos[name])
        if isinstance(v, np.ndarray) and v.ndim == 1 and v.dtype.kind in "fiub":
            return v
        if isinstance(v, pd.Categorical):
            return v
    s = df[name]
    if isinstance(s.dtype, np.dtype) and s.dtype.kind in "fiub":
        return s.to_numpy()
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.array
    return s


def _positions_of(df: pd.DataFrame, names: Sequence[str]) -> dict[str, int] | None:
    """Positions of ``names`` among unique columns, for ``_column``; None to use ``df[name]``."""
    if not hasattr(df, "_get_column_array"):
        return None
    pos = _column_positions(df.columns)
    if pos is None or not all(n in pos for n in names):
        return None
    return pos


def _missing(v, name: str) -> np.ndarray | None:
    """Mask of missing values of a column from ``_column`` (None when there are none);
    DataError on inf.

    One NumPy pass for float columns (finite everywhere is the common case); categorical
    codes of -1; nothing for integer and boolean arrays; pandas for other Series."""
    if isinstance(v, np.ndarray):
        if v.dtype.kind != "f" or np.isfinite(v).all():
            return None
        inf = np.isinf(v)
        if inf.any():
            raise DataError(
                f"column {name!r} has non-finite values (inf) at rows {_positions(inf)}"
            )
        return np.isnan(v)
    if isinstance(v, pd.Categorical):
        codes = cat_codes(v)
        return codes < 0 if codes_seen(codes, len(v.dtype.categories))[-1] else None
    m = np.asarray(pd.isna(v), dtype=bool)
    if _is_float_like(v):
        inf = np.isinf(v.to_numpy(dtype=float, na_value=np.nan))
        if inf.any():
            raise DataError(
                f"column {name!r} has non-finite values (inf) at rows {_positions(inf)}"
            )
    return m if m.any() else None


def _prepare(
    df: pd.DataFrame,
    used: list[str],
    vectors: dict[str, np.ndarray | None],
    warn: bool = True,
) -> tuple[_Frame, np.ndarray, int, dict[str, np.ndarray]]:
    """Drop rows with missing values in used columns/vectors; check infinities.

    Returns (used columns at kept rows, rows, n_dropped, vectors at kept rows)."""
    n = len(df)
    missing = None
    culprits: list[str] = []
    cols = {}
    pos = _positions_of(df, used)
    for c in used:  # inf in a column is an error (the first such column is named)
        cols[c] = v = _column(df, c, pos)
        m = _missing(v, c)
        if m is not None:
            culprits.append(c)
            missing = m if missing is None else missing | m
    for name, v in vectors.items():
        if v is None:
            continue
        m = np.isnan(v)
        if m.any():
            culprits.append(name)
            missing = m if missing is None else missing | m
    for name, v in vectors.items():
        if v is not None and np.isinf(v).any():
            raise DataError(f"{name} has non-finite values (inf) at rows {_positions(np.isinf(v))}")
    n_dropped = int(missing.sum()) if missing is not None else 0
    rows = np.flatnonzero(~missing) if n_dropped else _all_rows(n)
    if n_dropped and warn:
        warnings.warn(
            f"dropped {n_dropped} row{'s' if n_dropped != 1 else ''} with missing values "
            f"(in {', '.join(repr(c) for c in culprits)})",
            MissingValuesWarning,
            stacklevel=4,
        )
    if rows.size == 0:
        raise DataError(
            "no rows left after dropping rows with missing values" if n else "the data have no rows"
        )
    if n_dropped:
        cols = {c: (v.iloc[rows] if isinstance(v, pd.Series) else v[rows]) for c, v in cols.items()}
    frame = _Frame({c: _clean_values(v) for c, v in cols.items()}, rows.size)
    vecs = {k: (v[rows] if v is not None else None) for k, v in vectors.items()}
    return frame, rows, n_dropped, vecs


def _all_rows(n: int) -> np.ndarray:
    """``np.arange(n)``; read-only and shared for small n (the positions of the rows when
    none is dropped, made once per size)."""
    return _arange_read_only(n) if n <= 16384 else np.arange(n)


@functools.lru_cache(maxsize=16)
def _arange_read_only(n: int) -> np.ndarray:
    rows = np.arange(n)
    rows.flags.writeable = False
    return rows


def _clean_values(v):
    """``_clean_column`` for a column from ``_column``: arrays stay arrays."""
    if isinstance(v, pd.Series):
        return _clean_column(v)
    if isinstance(v, pd.Categorical):
        return v if all_categories_used(v) else v.remove_unused_categories()
    kind = v.dtype.kind
    if kind == "f" and v.dtype != np.float64:
        return v.astype(np.float64)
    if kind in "iu" and v.dtype != np.int64:
        return v.astype(np.int64)
    return v


def _clean_column(s: pd.Series) -> pd.Series:
    """Nullable and Arrow dtypes -> NumPy dtypes (no missing values remain); drop unused
    categories."""
    dt = s.dtype
    if isinstance(dt, np.dtype) and dt in (np.float64, np.int64, np.bool_):
        return s  # already what the steps below would give
    if isinstance(dt, pd.CategoricalDtype):
        if all_categories_used(s):
            return s
        return s.cat.remove_unused_categories()
    if pd.api.types.is_bool_dtype(dt):
        return s.astype(bool)
    if pd.api.types.is_integer_dtype(dt):
        return s.astype(np.int64)
    if pd.api.types.is_float_dtype(dt):
        return s.astype(np.float64)
    if pd.api.types.is_numeric_dtype(dt):
        return s.astype(np.float64)
    if pd.api.types.is_string_dtype(dt) or dt == object:
        return s.astype(object)
    return s


# --------------------------------------------------------------------------------------------
# Fixed effects
# --------------------------------------------------------------------------------------------


_LEVEL_SUFFIX = re.compile(r"\[(?:T\.)?([^\[\]]*)\]$")


@functools.lru_cache(maxsize=1024)
def _lme4_name(col: str) -> str:
    """formulaic's ``sector[T.Catholic]`` (or ``sector[Catholic]``) is R's ``sectorCatholic``."""
    if col == "Intercept":
        return "(Intercept)"
    return ":".join(_LEVEL_SUFFIX.sub(r"\1", part) for part in col.split(":"))


def _lme4_names(cols) -> list[str]:
    return [_lme4_name(str(c)) for c in cols]


class _NumericMatrix:
    """The model matrix of a fast-path expression, shaped like formulaic's result."""

    def __init__(self, values: np.ndarray, columns: list[str], model_spec: _NumericSpec):
        self.values = values
        self.columns = columns
        self.model_spec = model_spec
        self.shape = values.shape

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype, copy=False)


class _NumericSpec:
    """An intercept and plain columns (``1 + Days``, ``0 + x``, ``1 + service``): built with
    NumPy.

    formulaic spends several milliseconds parsing and materialising even the simplest formula
    (12 ms for InstEval's ``1 + service``); for the common case of numeric columns, and of
    pandas categoricals after an intercept, this gives the same columns and names directly:
    a categorical by treatment contrasts against its first category, ``f[T.level]``, as
    formulaic. Anything else (object columns, no intercept with a factor, transforms,
    interactions) goes through formulaic.
    """

    def __init__(self, intercept: bool, columns: list[str], levels: dict | None = None):
        self.intercept = intercept
        self.columns = columns
        # The categories of each categorical column at fit time.
        self.levels = levels or {}
        self.names = ["Intercept"] if intercept else []
        for c in columns:
            if c in self.levels:
                self.names += [f"{c}[T.{lv}]" for lv in self.levels[c][1:]]
            else:
                self.names.append(c)

    def get_model_matrix(
        self, frame: pd.DataFrame, na_action: str = "ignore", context=None
    ) -> _NumericMatrix:
        n = len(frame)
        out = np.empty((n, len(self.names)), dtype=np.float64, order="F")
        j = 0
        if self.intercept:
            out[:, 0] = 1.0
            j = 1
        for c in self.columns:
            values = _col(frame, c)
            levels = self.levels.get(c)
            if levels is None:
                out[:, j] = np.asarray(values, dtype=np.float64)
                j += 1
                continue
            # Codes against the fit's categories (new data may order or subset them).
            codes = np.asarray(pd.Categorical(values, categories=levels).codes)
            for k in range(1, len(levels)):
                np.equal(codes, k, out=out[:, j])
                j += 1
        return _NumericMatrix(out, list(self.names), self)


def _fast_categories(values) -> tuple | None:
    """The categories of a pandas categorical column whose names formulaic would spell as
    ``str`` does (strings, integers), else None."""
    dtype = getattr(values, "dtype", None)
    if not isinstance(dtype, pd.CategoricalDtype):
        return None
    cats = dtype.categories
    if not (pd.api.types.is_integer_dtype(cats.dtype) or pd.api.types.is_string_dtype(cats.dtype)):
        return None
    levels = tuple(cats.tolist())
    if len(levels) < 2 or not all(isinstance(v, (str, int)) for v in levels):
        return None
    return levels


_SIGNED_TERM = re.compile(r"([+-]?)([^+-]+)")
_PLAIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")


def _fast_column(token: str, frame: pd.DataFrame) -> bool:
    return token in frame.columns and _is_float_like(_col(frame, token))


@functools.lru_cache(maxsize=512)
def _numeric_terms(expr: str) -> tuple[bool, tuple[str, ...]] | None:
    """(intercept, names) when ``expr`` is only 1/0/-1 and plain names, else None (cached:
    a pure function of the text)."""
    text = expr.replace(" ", "")
    if not text or _SIGNED_TERM.sub("", text):
        return None
    intercept, columns = True, []
    for sign, token in _SIGNED_TERM.findall(text):
        if token == "1":
            intercept = sign != "-"
        elif token == "0" and sign != "-":
            intercept = False
        elif sign == "-" or _PLAIN_NAME.match(token) is None:
            return None
        elif token not in columns:
            columns.append(token)
    return intercept, tuple(columns)


def _numeric_spec(expr: str, frame: pd.DataFrame) -> _NumericSpec | None:
    """The fast-path spec of ``expr`` when it is only 1/0/-1 and numeric columns, or pandas
    categoricals after an intercept, else None."""
    terms = _numeric_terms(expr)
    if terms is None:
        return None
    intercept, columns = terms
    levels = {}
    for c in columns:
        if c not in frame.columns:
            return None
        if _fast_column(c, frame):
            continue
        cats = _fast_categories(_col(frame, c)) if intercept else None
        if cats is None:
            return None
        levels[c] = cats
    return _NumericSpec(intercept, list(columns), levels)


def _spec_frame(model_spec, frame):
    """What ``model_spec.get_model_matrix`` takes: a ``_Frame`` for the NumPy fast path,
    a pandas DataFrame for formulaic."""
    return frame if isinstance(model_spec, _NumericSpec) else _pandas(frame)


def _model_matrix(expr: str, frame: pd.DataFrame, formula: str, what: str):
    fast = _numeric_spec(expr, frame)
    if fast is not None:
        return fast.get_model_matrix(frame)
    try:
        mm = formulaic.model_matrix(
            expr, _pandas(frame), na_action="ignore", output="pandas", context=_formula_context()
        )
    except FormulaError:
        raise
    except Exception as exc:  # noqa: BLE001 - formulaic/evaluation errors, reported with context
        _reraise_own(exc)
        pos = formula.find(expr) if expr in formula else None
        raise FormulaError(f"cannot build the {what} from {expr!r}: {exc}", formula, pos) from None
    return mm


def _formula_context(allow_new_groups: bool = False) -> dict:
    """Functions of the package that formulas may call (``cvar``, ``dvar``)."""
    from multilevel.contextual import formula_context

    return formula_context(allow_new_groups)


def _reraise_own(exc: Exception) -> None:
    """Our own error raised inside a formula function (formulaic wraps it): raise it as is."""
    cause = exc.__cause__
    if isinstance(cause, MultilevelError):
        raise cause from None


def _as_float_matrix(mm, what: str) -> np.ndarray:
    try:
        arr = np.asarray(mm, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"the {what} has non-numeric columns") from None
    return np.asfortranarray(arr)


def _response(parsed: ParsedFormula, frame: pd.DataFrame, df_columns, formula: str) -> np.ndarray:
    resp = parsed.response
    if resp in frame.columns:
        s = _col(frame, resp)
        if not _is_numeric(s):
            raise DataError(f"response {resp!r} must be numeric (or boolean), not {s.dtype}")
        return np.array(s, dtype=np.float64)  # a copy: s may be the input's memory
    for v in parsed.response_variables():
        if not _is_numeric(frame[v]):
            raise DataError(f"response variable {v!r} must be numeric, not {frame[v].dtype}")
    mm = _model_matrix("0 + {" + resp + "}", frame, formula, "response")
    if mm.shape[1] != 1:
        raise DataError(
            f"response {resp!r} gives {mm.shape[1]} columns; one numeric column is needed"
        )
    return _as_float_matrix(mm, "response")[:, 0].copy()


def _clearly_full_rank(X: np.ndarray) -> bool:
    """A screen on the Gram matrix, cheaper than the QR of ``_rank_keep``.

    When the smallest eigenvalue of the column-normalised X'X is >= 1e-6, each column's
    residual after projection on all the others is >= 1e-3 times its norm, far above the
    tolerance, so R's rule keeps every column. The eigenvalue's rounding error (about n * eps
    relative) is far below that margin; anything closer goes to the exact rule."""
    if X.shape[1] <= 2:  # in Python floats; for two columns the eigenvalues are 1 +- |G01| / ..
        a, b = X[:, 0], X[:, -1]
        g = [float(np.add.reduce(a * a)), float(np.add.reduce(a * b)), float(np.add.reduce(b * b))]
        if not all(math.isfinite(v) for v in g) or min(g[0], g[-1]) <= 0.0:
            return False
        return X.shape[1] == 1 or 1.0 - abs(g[1]) / (math.sqrt(g[0]) * math.sqrt(g[2])) >= 1e-6
    G = X.T @ X
    d = np.diag(G)
    if not (np.isfinite(G).all() and (d > 0).all()):
        return False
    s = 1.0 / np.sqrt(d)
    return bool(np.linalg.eigvalsh(G * np.outer(s, s))[0] >= 1e-6)


def _rank_keep(X: np.ndarray, tol: float = RANK_TOL) -> np.ndarray:
    """Indices of the columns kept by R's ``qr(X, tol)`` rule (earlier columns win)."""
    n, p = X.shape
    if p == 0:
        return np.arange(0)
    if _clearly_full_rank(X):
        return np.arange(p, dtype=np.intp)
    return kept_columns(tall_r(X) if n >= p else np.asarray(X), tol)


def _fixed(parsed: ParsedFormula, frame: pd.DataFrame, formula: str):
    """X (all columns) and its formulaic spec."""
    mm = _model_matrix(parsed.fixed, frame, formula, "fixed-effects model matrix")
    return _as_float_matrix(mm, "fixed-effects model matrix"), mm.model_spec, list(mm.columns)


def _drop_rank_deficient(X: np.ndarray, names: list[str]):
    keep = _rank_keep(X)
    dropped = [names[j] for j in range(len(names)) if j not in set(keep.tolist())]
    if dropped:
        k = len(dropped)
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {k} "
            f"column{'s' if k != 1 else ''} / coefficient{'s' if k != 1 else ''}: "
            + ", ".join(dropped),
            RankDeficiencyWarning,
            stacklevel=4,
        )
        X = np.asfortranarray(X[:, keep])
    return X, keep, dropped


def _nan_rows(*arrays) -> np.ndarray:
    bad = None
    for a in arrays:
        if a is None or np.isfinite(a).all():
            continue
        m = np.isnan(a) if a.ndim == 1 else np.isnan(a).any(axis=1)
        bad = m if bad is None else (bad | m)
    return bad


def _check_inf(arr: np.ndarray, what: str, rows: np.ndarray) -> None:
    if np.isfinite(arr).all():
        return
    m = np.isinf(arr) if arr.ndim == 1 else np.isinf(arr).any(axis=1)
    if m.any():
        raise DataError(
            f"the {what} has non-finite values at rows {', '.join(map(str, rows[m][:5]))}"
        )


# --------------------------------------------------------------------------------------------
# build_fixed
# --------------------------------------------------------------------------------------------


def build_fixed(formula: str, data, weights=None, extra: Sequence[str] = ()) -> FixedDesign:
    """Fixed-effects design of a formula without random-effects terms.

    Parameters
    ----------
    formula : str
        ``"y ~ x + C(f)"``; bars are refused.
    data : pandas or polars DataFrame, or dict of arrays
    weights : str or array, optional
        Column name or array of prior weights (>= 0, finite).
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
    _check_columns(df, used)
    w, wcol = _vector(weights, df, "weights")
    vectors = {("weights" if wcol is None else wcol): w}
    frame, rows, n_dropped, vecs = _prepare(df, used, vectors)
    w = next(iter(vecs.values()))
    y = _response(parsed, frame, df.columns, formula)
    X, spec, cols = _fixed(parsed, frame, formula)
    (y, X), (w,), rows, n_dropped, frame = _drop_transform_nan([y, X], [w], rows, n_dropped, frame)
    _check_inf(y, "response", rows)
    _check_inf(X, "fixed-effects model matrix", rows)
    _check_weights(w)
    names_all = _lme4_names(cols)
    X, keep, dropped = _drop_rank_deficient(X, names_all)
    names = [names_all[j] for j in keep.tolist()]  # (iterating an array is slow when cold)
    ex = {e: frame[e].to_numpy() for e in extra}
    return FixedDesign(
        y=y,
        X=X,
        names=names,
        dropped_columns=dropped,
        n_dropped=n_dropped,
        rows=rows,
        nobs=len(y),
        spec=FixedSpec(spec, names_all, keep, names, _fixed_factor_levels(parsed, frame)),
        weights=w,
        extra=ex,
        formula=formula,
        parsed=parsed,
    )


def _drop_transform_nan(checked: list, carried: list, rows: np.ndarray, n_dropped: int, frame):
    """Drop, with a warning, the rows where a transformation in the formula made one of the
    ``checked`` arrays (y, X, each Z) NaN: from those arrays (matrices stay Fortran-ordered),
    from the ``carried`` ones (weights, offset; None stays None), from ``rows`` and from the
    frame. Returns them all, with ``n_dropped`` updated."""
    bad = _nan_rows(*checked)
    if bad is None or not bad.any():
        return checked, carried, rows, n_dropped, frame
    k = int(bad.sum())
    warnings.warn(
        f"dropped {k} row{'s' if k != 1 else ''} where a transformation in the formula gave "
        f"a missing value (rows {', '.join(map(str, rows[bad][:5]))}{', ...' if k > 5 else ''})",
        MissingValuesWarning,
        stacklevel=4,
    )
    sel = np.flatnonzero(~bad)
    if sel.size == 0:
        raise DataError("no rows left after dropping rows with missing values")
    checked = [np.asfortranarray(a[sel]) if a.ndim == 2 else a[sel] for a in checked]
    carried = [None if a is None else a[sel] for a in carried]
    return checked, carried, rows[sel], n_dropped + k, frame.take(sel)


def _check_weights(w: np.ndarray | None) -> None:
    if w is None:
        return
    if not np.all(np.isfinite(w)):
        raise DataError(f"weights must be finite (rows {_positions(~np.isfinite(w))})")
    if (w < 0).any():
        raise DataError(f"weights must be non-negative (negative at rows {_positions(w < 0)})")


def _fixed_factor_levels(parsed: ParsedFormula, frame: pd.DataFrame) -> dict[str, list]:
    out = {}
    variables = parsed.fixed_variables()
    if "var(" in parsed.fixed:  # a grouping factor only seen by cvar/dvar is not a factor of X
        from multilevel.contextual import strip_calls
        from multilevel.formula import _expr_variables

        variables = [v for v in variables if v in _expr_variables(strip_calls(parsed.fixed))]
    for v in variables:
        s = _col(frame, v)
        if not _is_numeric(s):
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
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", formulaic.errors.DataMismatchWarning)
            mm = spec.model_spec.get_model_matrix(
                _spec_frame(spec.model_spec, frame),
                na_action="ignore",
                context=_formula_context(allow_new_groups),
            )
    except Exception as exc:  # noqa: BLE001
        _reraise_own(exc)
        raise DataError(f"cannot build the fixed-effects matrix for new data: {exc}") from None
    X = _as_float_matrix(mm, "fixed-effects model matrix")
    return np.asfortranarray(X[:, spec.keep])


# --------------------------------------------------------------------------------------------
# Grouping factors
# --------------------------------------------------------------------------------------------


def lme4_term_order(nlevels: Sequence[int]) -> list[int]:
    """lme4's ``mkReTrms`` order: ``rev(order(nl))`` if any ``diff(nl) > 0``, else as given.

    >>> lme4_term_order([10, 30])
    [1, 0]
    >>> lme4_term_order([5, 5, 3])
    [0, 1, 2]
    >>> lme4_term_order([5, 5, 7])
    [2, 1, 0]
    """
    nl = list(nlevels)
    if any(b > a for a, b in itertools.pairwise(nl)):
        order = sorted(range(len(nl)), key=lambda i: nl[i])  # stable, as R's order()
        return order[::-1]
    return list(range(len(nl)))


# --------------------------------------------------------------------------------------------
# build
# --------------------------------------------------------------------------------------------


def build(
    formula: str,
    data,
    weights=None,
    offset=None,
    data_name: str | None = None,
    allow_n: bool = False,
) -> Design:
    """Arrays for a mixed model: y, X, and for each random term its codes, levels and Z.

    Parameters
    ----------
    formula : str
        lme4 formula, e.g. ``"Reaction ~ Days + (Days | Subject)"``.
    data : pandas or polars DataFrame, or dict of arrays
    weights, offset : str or array, optional
        Column name or array (length of ``data``).
    data_name : str, optional
        Name of the data set, kept for printing.
    allow_n : bool
        lme4's ``allow.n`` (glmer): allow as many levels / random effects as observations.

    Returns
    -------
    Design
        See docs/internals.md; ``terms`` already in lme4's order.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> df = pd.DataFrame({"y": rng.normal(size=12), "x": np.arange(12.0),
    ...                    "g": np.repeat(["a", "b", "c"], 4)})
    >>> d = build("y ~ x + (x | g)", df)
    >>> d.X.shape, d.terms[0].names, d.terms[0].Z.shape
    ((12, 2), ['(Intercept)', 'x'], (12, 2))
    """
    parsed = parse(formula)
    df = as_pandas(data)
    used = parsed.variables()
    _check_columns(df, used)
    w, wcol = _vector(weights, df, "weights")
    o, ocol = _vector(offset, df, "offset")
    vectors = {(wcol or "weights"): w, (ocol or "offset"): o}
    frame, rows, n_dropped, vecs = _prepare(df, used, vectors)
    w, o = vecs[wcol or "weights"], vecs[ocol or "offset"]

    y = _response(parsed, frame, df.columns, formula)
    X, spec, cols = _fixed(parsed, frame, formula)
    Zs = []
    for t in parsed.random:
        mm = _model_matrix(t.expr, frame, formula, f"random-effects term {t.text}")
        Zs.append(
            (
                _as_float_matrix(mm, f"random-effects term {t.text}"),
                mm.model_spec,
                _lme4_names(mm.columns),
            )
        )
    (y, X, *Z_arrays), (w, o), rows, n_dropped, frame = _drop_transform_nan(
        [y, X, *(z for z, _, _ in Zs)], [w, o], rows, n_dropped, frame
    )
    Zs = [(z, s, nm) for z, (_, s, nm) in zip(Z_arrays, Zs)]
    _check_inf(y, "response", rows)
    _check_inf(X, "fixed-effects model matrix", rows)
    _check_weights(w)
    nobs = len(y)

    names_all = _lme4_names(cols)
    X, keep, dropped = _drop_rank_deficient(X, names_all)
    names = [names_all[j] for j in keep.tolist()]  # (iterating an array is slow when cold)

    terms: list[ReTerm] = []
    for t, (Z, zspec, znames) in zip(parsed.random, Zs):
        _check_inf(Z, f"random-effects term {t.text}", rows)
        codes, levels, factor_levels, keys = interaction([_col(frame, f) for f in t.group_factors])
        terms.append(
            ReTerm(
                t.group,
                znames,
                codes,
                levels,
                Z,
                TermSpec(zspec, t.group_factors, factor_levels, t, keys),
            )
        )
    _check_levels(terms, nobs, allow_n)
    order = lme4_term_order([t.n_levels for t in terms])
    terms = [terms[i] for i in order]

    return Design(
        y=y,
        X=X,
        fixed_names=names,
        dropped_columns=dropped,
        terms=terms,
        weights=w,
        offset=o,
        n_dropped=n_dropped,
        rows=rows,
        nobs=nobs,
        formula=formula,
        parsed=parsed,
        data_name=data_name,
        fixed_spec=FixedSpec(spec, names_all, keep, names, _fixed_factor_levels(parsed, frame)),
        term_order=order,
    )


def _check_levels(terms: list[ReTerm], nobs: int, allow_n: bool) -> None:
    seen = set()
    for t in terms:
        if t.group in seen:
            continue
        seen.add(t.group)
        if t.n_levels < 2:
            raise DataError(
                f"grouping factor {t.group!r} has {t.n_levels} level; grouping factors must "
                "have > 1 sampled level"
            )
    too_many = sorted(
        {t.group for t in terms if (t.n_levels > nobs if allow_n else t.n_levels >= nobs)}
    )
    if too_many:
        raise DataError(
            "number of levels of each grouping factor must be "
            f"{'<=' if allow_n else '<'} number of observations (= {nobs}); problem: "
            + ", ".join(f"{g!r}" for g in too_many)
        )
    for t in terms:
        nre = t.n_levels * t.q
        if (nre > nobs) if allow_n else (nre >= nobs):
            raise DataError(
                f"number of observations (= {nobs}) {'<' if allow_n else '<='} number of "
                f"random effects (= {nre}) for term {t.spec.term.text}; the random-effects "
                "parameters are probably unidentifiable"
            )


# --------------------------------------------------------------------------------------------
# new data
# --------------------------------------------------------------------------------------------


def _select_terms(design: Design, re_form) -> list[bool]:
    k = len(design.terms)
    if re_form is None:
        return [True] * k
    if re_form is pd.NA or (isinstance(re_form, float) and np.isnan(re_form)):
        return [False] * k
    if not isinstance(re_form, str):
        raise FormulaError(f"re_form must be None, NA, '~0' or a formula, not {re_form!r}")
    text = re_form.strip()
    if text in ("~0", "~ 0", "0", "~ -1", "~-1", "NA"):
        return [False] * k
    if "~" not in text:
        text = "~" + text
    parsed = parse(".re_form " + text)
    wanted = {(t.expr, t.group) for t in parsed.random}
    keys = [(_compact(t.spec.term.expr), t.group) for t in design.terms]
    chosen = [False] * k
    for expr, group in wanted:
        hits = [i for i, key in enumerate(keys) if key == (_compact(expr), group)]
        if not hits:
            raise FormulaError(
                f"re_form term ({expr} | {group}) is not a random-effects term of the model "
                f"({', '.join(t.spec.term.text for t in design.terms)})",
                re_form,
            )
        for i in hits:
            chosen[i] = True
    return chosen


def _compact(s: str) -> str:
    return "".join(s.split())


def new_matrices(
    design: Design, newdata, re_form=None, allow_new_levels: bool = False
) -> NewMatrices:
    """X and, for the selected terms, (codes, Z) for new data, using the training levels.

    Parameters
    ----------
    design : Design
    newdata : pandas or polars DataFrame, or dict of arrays
        Needs the fixed and random variables and grouping factors, not the response.
    re_form : None, NA, "~0" or a formula string
        None: all terms; ``np.nan``, ``pd.NA``, ``"~0"``, ``"0"``: none; ``"~(1 | g)"``: the
        terms named (matched on expression and group).
    allow_new_levels : bool
        Unseen levels get code -1 (b = 0); otherwise a ``DataError`` names them.

    Rows with missing values in the needed columns are dropped (``rows`` lists those kept).
    """
    chosen = _select_terms(design, re_form)
    df = as_pandas(newdata)
    parsed = design.parsed
    used = list(parsed.fixed_variables())
    for t, c in zip(design.terms, chosen):
        if c:
            for v in parse("y ~ " + t.spec.term.expr).fixed_variables() + list(
                t.spec.group_factors
            ):
                if v not in used:
                    used.append(v)
    _check_columns(df, used)
    if len(df) == 0:
        return NewMatrices(
            np.zeros((0, design.X.shape[1]), order="F"),
            [
                None if not c else (np.zeros(0, np.int32), np.zeros((0, t.q), order="F"))
                for t, c in zip(design.terms, chosen)
            ],
            np.zeros(0, np.intp),
        )
    frame, rows, _, _ = _prepare(df, used, {}, warn=True)
    frame = _align_categories(frame, design)
    X = fixed_matrix(design.fixed_spec, frame, allow_new_levels)
    out_terms: list[tuple[np.ndarray, np.ndarray] | None] = []
    for t, c in zip(design.terms, chosen):
        if not c:
            out_terms.append(None)
            continue
        try:
            mm = t.spec.model_spec.get_model_matrix(
                _spec_frame(t.spec.model_spec, frame),
                na_action="ignore",
                context=_formula_context(allow_new_levels),
            )
        except Exception as exc:  # noqa: BLE001
            _reraise_own(exc)
            raise DataError(f"cannot build Z of {t.spec.term.text} for new data: {exc}") from None
        Z = _as_float_matrix(mm, f"random-effects term {t.spec.term.text}")
        codes = _map_codes(t, frame)
        unseen = codes < 0
        if unseen.any() and not allow_new_levels:
            new = _new_level_labels(t, frame, unseen)
            raise DataError(
                f"new levels of grouping factor {t.group!r} in newdata: "
                + ", ".join(new[:10])
                + (", ..." if len(new) > 10 else "")
                + " (use allow_new_levels=True to predict them with random effects 0)"
            )
        out_terms.append((codes, Z))
    return NewMatrices(X=X, terms=out_terms, rows=rows)


def _align_categories(frame: pd.DataFrame, design: Design) -> pd.DataFrame:
    return frame


def _map_codes(t: ReTerm, frame: pd.DataFrame) -> np.ndarray:
    per = []
    for f, levels in zip(t.spec.group_factors, t.spec.factor_levels):
        per.append(lookup(levels, frame[f]))
    if len(per) == 1:
        return per[0].astype(np.int32)
    known = np.all([p >= 0 for p in per], axis=0)
    sizes = [len(lv) for lv in t.spec.factor_levels]
    key = mixed_key([np.where(known, p, 0) for p in per], sizes)
    keys = t.spec.level_keys
    pos = np.clip(np.searchsorted(keys, key), 0, len(keys) - 1)
    found = known & (keys[pos] == key)
    return np.where(found, pos, -1).astype(np.int32)


def _new_level_labels(t: ReTerm, frame: pd.DataFrame, unseen: np.ndarray) -> list[str]:
    labs = []
    for i in np.flatnonzero(unseen):
        lab = ":".join(label(frame[f].iloc[i]) for f in t.spec.group_factors)
        if lab not in labs:
            labs.append(lab)
    return labs
