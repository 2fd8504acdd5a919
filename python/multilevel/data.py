"""Input conversion and the missing-value policy: any data frame -> clean columns at the kept rows.

1. ``data`` -> pandas (:func:`as_pandas`): a pandas DataFrame is used as is (no copy), a
   polars DataFrame goes through ``to_pandas()`` (polars ``Categorical`` columns are cast to
   strings first, so their levels are sorted as for any other column; ``Enum`` keeps its
   order), a dict of arrays or lists through ``pd.DataFrame``.
2. Used columns are checked (``MissingColumnError`` with close matches); rows with a missing
   value (NaN, None, pd.NA, polars null) in any of them are dropped with a
   ``MissingValuesWarning`` and counted (:func:`drop_missing`); infinite values raise
   ``DataError`` naming the column and rows. Unused categories of pandas categoricals are
   dropped (R's ``drop.unused.levels``). Numeric and categorical columns are read as NumPy
   arrays / Categoricals without making Series (:class:`Frame`); a DataFrame of the used
   columns is built only for formulaic.
3. Rows where a transformation in the formula yields NaN (``np.log`` of a negative) are
   dropped and counted as well (:func:`drop_transform_nan`).
"""

from __future__ import annotations

import functools
import warnings
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from multilevel.exceptions import DataError, MissingColumnError, MissingValuesWarning
from multilevel.factors import all_categories_used, cat_codes, codes_seen

__all__ = [
    "Frame",
    "as_pandas",
    "check_columns",
    "check_inf",
    "check_scalars",
    "check_weights",
    "column_values",
    "drop_missing",
    "drop_transform_nan",
    "is_float_like",
    "is_numeric",
    "n_rows",
    "pandas_frame",
    "row_list",
    "weight_vector",
]


def as_pandas(data) -> pd.DataFrame:
    """pandas DataFrame from pandas (as is), polars (``to_pandas``) or a dict of arrays."""
    if isinstance(data, pd.DataFrame):
        return _string_labels(data)
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
            return _string_labels(pd.DataFrame({k: _as_column(v) for k, v in data.items()}))
        except ValueError as exc:
            raise DataError(f"cannot make a data frame from the dict: {exc}") from None
    raise DataError(
        f"data must be a pandas or polars DataFrame or a dict of arrays, not {type(data).__name__}"
    )


def _string_labels(df: pd.DataFrame) -> pd.DataFrame:
    """Column labels as the text a formula names them by: ``0`` -> ``"0"`` (formulas refer to
    such a column as `` `0` ``). A frame whose labels are all strings is returned as is; others
    get new labels over the same data (no copy)."""
    cols = df.columns
    is_text = cols.dtype == object or pd.api.types.is_string_dtype(cols.dtype)
    if is_text and all(isinstance(c, str) for c in cols):
        return df
    return df.set_axis([str(c) for c in cols], axis=1)


def n_rows(data: Any) -> int:
    """Number of rows of a data frame (pandas, polars) or of a dict of arrays."""
    if isinstance(data, dict):
        return len(next(iter(data.values()))) if data else 0
    if not hasattr(data, "shape"):  # not a data frame: as_pandas says what is expected
        return len(as_pandas(data))
    return int(data.shape[0])


def _as_column(v):
    if isinstance(v, (pd.Series, pd.Categorical, np.ndarray)):
        return v
    mod = type(v).__module__
    if mod.startswith("polars"):
        return v.to_pandas()
    return list(v) if not np.isscalar(v) else v


def is_numeric(s: pd.Series) -> bool:
    """Numeric or boolean dtype (``s`` a Series or an array)."""
    if isinstance(s.dtype, np.dtype):
        return s.dtype.kind in "biufc"
    return pd.api.types.is_numeric_dtype(s.dtype) or pd.api.types.is_bool_dtype(s.dtype)


def is_float_like(s: pd.Series) -> bool:
    """Numeric, not boolean, dtype (``s`` a Series or an array)."""
    if isinstance(s.dtype, np.dtype):
        return s.dtype.kind in "iufc"
    return pd.api.types.is_numeric_dtype(s.dtype) and not pd.api.types.is_bool_dtype(s.dtype)


def check_columns(df: pd.DataFrame, names: Sequence[str]) -> None:
    pos = _column_positions(df.columns)
    if pos is not None and all(n in pos for n in names):
        return
    cols = set(map(str, df.columns))
    for n in names:
        if n not in cols:
            raise MissingColumnError(n, df.columns)
    # Several columns of one name are ambiguous only when the model uses that name.
    dup = [n for n in names if int(np.sum(df.columns.astype(str) == n)) > 1]
    if dup:
        raise DataError(
            f"the data have more than one column named {dup[0]!r}, which the model uses: "
            "rename them"
        )


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


def weight_vector(arg, df: pd.DataFrame, what: str) -> tuple[np.ndarray | None, str | None]:
    """weights/offset: a column name or an array of length len(df). Returns (values, column)."""
    if arg is None:
        return None, None
    if isinstance(arg, str):
        check_columns(df, [arg])
        s = df[arg]
        if not is_numeric(s):
            raise DataError(f"{what} column {arg!r} must be numeric, not {s.dtype}")
        return pd.to_numeric(s, errors="coerce").to_numpy(dtype=float, na_value=np.nan), arg
    if not isinstance(arg, pd.Series) and np.ndim(arg) != 1:
        raise DataError(
            f"{what} must be a column name or one value per row, not an array of shape "
            f"{np.shape(arg)}"
        )
    try:
        a = pd.Series(np.asarray(arg)) if not isinstance(arg, pd.Series) else arg
        a = a.to_numpy(dtype=float, na_value=np.nan)
    except (TypeError, ValueError):
        raise DataError(f"{what} must be numeric") from None
    if a.ndim != 1 or len(a) != len(df):
        raise DataError(f"{what} has length {a.size} but the data have {len(df)} rows")
    return a, None


def row_list(mask: np.ndarray, k: int = 5) -> str:
    idx = np.flatnonzero(mask)
    s = ", ".join(str(i) for i in idx[:k])
    return s + (", ..." if idx.size > k else "")


class Frame:
    """The used columns at the kept rows, as ``drop_missing`` returns them.

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

    def take(self, sel: np.ndarray) -> Frame:
        """The rows at positions ``sel``."""
        return Frame(
            {
                c: (v.iloc[sel] if isinstance(v, pd.Series) else v[sel])
                for c, v in self._cols.items()
            },
            len(sel),
        )


def pandas_frame(frame) -> pd.DataFrame:
    """A pandas DataFrame for formulaic from a ``Frame`` (or a DataFrame, as is)."""
    return frame.pandas() if isinstance(frame, Frame) else frame


def column_values(frame, name: str):
    """A column's values from a ``Frame`` (array) or a DataFrame (Series)."""
    return frame.values(name) if isinstance(frame, Frame) else frame[name]


def _column(df: pd.DataFrame, name: str, pos: dict[str, int] | None):
    """A used column of the input: its NumPy array (numeric, boolean) or its Categorical when
    stored so, otherwise the Series ``df[name]``. Arrays may be views of the input's memory:
    read them, never write (``response_vector`` copies y).

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
            raise DataError(f"column {name!r} has non-finite values (inf) at rows {row_list(inf)}")
        return np.isnan(v)
    if isinstance(v, pd.Categorical):
        codes = cat_codes(v)
        return codes < 0 if codes_seen(codes, len(v.dtype.categories))[-1] else None
    m = np.asarray(pd.isna(v), dtype=bool)
    if is_float_like(v):
        inf = np.isinf(v.to_numpy(dtype=float, na_value=np.nan))
        if inf.any():
            raise DataError(f"column {name!r} has non-finite values (inf) at rows {row_list(inf)}")
    return m if m.any() else None


def check_scalars(s: pd.Series, name: str) -> None:
    """DataError for an object column holding containers (lists, dicts, sets, arrays): a
    value of a factor or a predictor is one number, string or category (a tuple, hashable,
    is a level like any other)."""
    if pd.api.types.infer_dtype(s, skipna=True) not in ("mixed", "unknown-array"):
        return
    bad = np.fromiter(
        (isinstance(x, (list, dict, set, np.ndarray, pd.Series)) for x in s),
        dtype=bool,
        count=len(s),
    )
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise DataError(
            f"column {name!r} holds {type(s.iloc[k]).__name__} values (rows {row_list(bad)}); "
            "each value must be a single number, string or category"
        )


def warn_missing(n_dropped: int, culprits: Any = (), stacklevel: int = 2) -> None:
    """The one warning for rows dropped for missing values, naming the columns that had them
    when known; ``stacklevel`` as warnings.warn's, counted from the caller of this function."""
    where = f" (in {', '.join(repr(c) for c in culprits)})" if culprits else ""
    warnings.warn(
        f"dropped {n_dropped} row{'s' if n_dropped != 1 else ''} with missing values{where}",
        MissingValuesWarning,
        stacklevel=stacklevel + 1,
    )


def drop_missing(
    df: pd.DataFrame,
    used: list[str],
    vectors: dict[str, np.ndarray | None],
    warn: bool = True,
    stacklevel: int = 4,
) -> tuple[Frame, np.ndarray, int, dict[str, np.ndarray]]:
    """Drop rows with missing values in used columns/vectors; check infinities.

    Returns (used columns at kept rows, rows, n_dropped, vectors at kept rows)."""
    n = len(df)
    missing = None
    culprits: list[str] = []
    cols = {}
    pos = _positions_of(df, used)
    for c in used:  # inf in a column is an error (the first such column is named)
        cols[c] = v = _column(df, c, pos)
        if isinstance(v, pd.Series) and v.dtype == object:
            check_scalars(v, c)
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
            raise DataError(f"{name} has non-finite values (inf) at rows {row_list(np.isinf(v))}")
    n_dropped = int(missing.sum()) if missing is not None else 0
    rows = np.flatnonzero(~missing) if n_dropped else _all_rows(n)
    if n_dropped and warn:
        warn_missing(n_dropped, culprits, stacklevel)
    if rows.size == 0:
        raise DataError(
            "no rows left after dropping rows with missing values" if n else "the data have no rows"
        )
    if n_dropped:
        cols = {c: (v.iloc[rows] if isinstance(v, pd.Series) else v[rows]) for c, v in cols.items()}
    frame = Frame({c: _clean_values(v) for c, v in cols.items()}, rows.size)
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
    if dt == np.dtype(object) and pd.api.types.infer_dtype(s, skipna=True) in _NUMBERS:
        return s.astype(np.float64)  # numbers stored as objects (with None): a numeric column
    if pd.api.types.is_string_dtype(dt) or dt == np.dtype(object):
        return s.astype(object)
    return s


_NUMBERS = ("floating", "integer", "mixed-integer-float", "decimal")


def _nan_rows(*arrays) -> np.ndarray:
    bad = None
    for a in arrays:
        if a is None or np.isfinite(a).all():
            continue
        m = np.isnan(a) if a.ndim == 1 else np.isnan(a).any(axis=1)
        bad = m if bad is None else (bad | m)
    return bad


def check_inf(arr: np.ndarray, what: str, rows: np.ndarray) -> None:
    if np.isfinite(arr).all():
        return
    m = np.isinf(arr) if arr.ndim == 1 else np.isinf(arr).any(axis=1)
    if m.any():
        raise DataError(
            f"the {what} has non-finite values at rows {', '.join(map(str, rows[m][:5]))}"
        )


def drop_transform_nan(
    checked: list, carried: list, rows: np.ndarray, n_dropped: int, frame, stacklevel: int = 4
):
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
        stacklevel=stacklevel,
    )
    sel = np.flatnonzero(~bad)
    if sel.size == 0:
        raise DataError("no rows left after dropping rows with missing values")
    checked = [np.asfortranarray(a[sel]) if a.ndim == 2 else a[sel] for a in checked]
    carried = [None if a is None else a[sel] for a in carried]
    return checked, carried, rows[sel], n_dropped + k, frame.take(sel)


def check_weights(w: np.ndarray | None) -> None:
    if w is None:
        return
    if not np.all(np.isfinite(w)):
        raise DataError(f"weights must be finite (rows {row_list(~np.isfinite(w))})")
    if (w < 0).any():
        raise DataError(f"weights must be non-negative (negative at rows {row_list(w < 0)})")
