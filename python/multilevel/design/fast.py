"""The large-data path of an in-memory mixed model: no model matrix for all the rows.

For a formula whose fixed part and random-effects terms are an intercept, plain columns
(numeric, or pandas categoricals after an intercept: :mod:`multilevel.design.numeric`) and
products of numeric columns (``x1 * x2``, ``x1:x2``: :class:`ProductSpec`, named and ordered
as formulaic does on the first rows), with no weights, offset or transformation, a mixed
model needs the rows only through the cross-products A = [Z X y]'[Z X y]. On data of
:data:`LAZY_ROWS` rows or more, :func:`lazy_design` therefore builds no ``X`` and no ``Z``
for all the rows: the grouping factors are coded (integer columns by counting, no hashing
and no sort); one pass over row blocks sums X'X for the rank screen and finds what the
pre-fit checks (:mod:`multilevel.design.checks`) need of y and each Z (:class:`BlockSums`);
and :meth:`LazyDesign.problem` adds row blocks of ``X`` and ``Z`` (views of the input's
columns, a block at a time) into ``multilevel._core.Accumulator``. The design's ``X``,
``y``, ``rows`` and each term's ``Z`` are made on first use (fitted values, residuals,
inference), as the general path makes them; names, levels and codes are identical to
:func:`multilevel.design.random.build`'s.

Below :data:`LAZY_ROWS` rows, or for anything else (weights, offsets, transformations,
interactions with factors, rank-deficient X), :func:`lazy_design` returns None and the
general path builds the design.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import pandas as pd

from multilevel.data import (
    Frame,
    _clean_values,
    _column,
    _missing,
    _positions_of,
    is_numeric,
    warn_missing,
)
from multilevel.design.fixed import FixedSpec, fixed_factor_levels
from multilevel.design.matrix import lme4_names
from multilevel.design.numeric import NumericSpec, numeric_spec
from multilevel.design.random import Design, ReTerm, TermSpec, _check_levels, lme4_term_order
from multilevel.exceptions import DataError
from multilevel.factors import interaction
from multilevel.formula import ParsedFormula

__all__ = [
    "LAZY_ROWS",
    "BlockSums",
    "IntCoder",
    "LazyDesign",
    "LazyReTerm",
    "ProductSpec",
    "block_sums",
    "gram_full_rank",
    "int_coder",
    "int_codes",
    "lazy_design",
    "product_names",
]

LAZY_ROWS = 2_000_000  # rows from which an in-memory lmer takes this path
BLOCK_ROWS = 1 << 16  # rows per block added to the accumulator (2 MB for four columns of X)


class IntCoder:
    """The codes of an integer column, by counting: ``levels`` (sorted, as
    :func:`multilevel.factors.factor` gives them) and each row's position among them, made a
    block of rows at a time (:meth:`block`) or for all the rows (:meth:`codes`)."""

    def __init__(self, values: np.ndarray, lo: int, position: np.ndarray, levels: pd.Index):
        self.values, self.lo, self.position, self.levels = values, lo, position, levels

    def block(self, a: int, b: int) -> np.ndarray:
        v = self.values[a:b]
        if self.lo != 0 or v.dtype != np.int64:
            v = v.astype(np.int64) - self.lo
        return np.take(self.position, v)

    def codes(self) -> np.ndarray:
        return self.block(0, len(self.values))


def int_coder(values: Any) -> IntCoder | None:
    """An :class:`IntCoder` for an integer column whose values span no more than four times
    its length (no hashing, no sort); None for any other column."""
    if not (isinstance(values, np.ndarray) and values.dtype.kind in "iu" and values.size):
        return None
    lo, hi = int(values.min()), int(values.max())
    span = hi - lo + 1
    if span > max(4 * values.size, 1 << 16) or span >= 2**31:
        return None
    present = np.zeros(span, dtype=bool)
    for a in range(0, values.size, BLOCK_ROWS * 4):  # no shifted copy of the whole column
        v = values[a : a + BLOCK_ROWS * 4]
        v = v if lo == 0 and v.dtype == np.int64 else v.astype(np.int64) - lo
        present |= np.bincount(v, minlength=span) > 0
    position = np.cumsum(present, dtype=np.int32) - 1
    levels = pd.Index((np.flatnonzero(present) + lo).astype(values.dtype))
    return IntCoder(values, lo, position, levels)


def int_codes(values: np.ndarray) -> tuple[np.ndarray, pd.Index] | None:
    """int32 codes and levels of an integer column by counting (:func:`int_coder`), or None.

    >>> c, lv = int_codes(np.array([7, 3, 7, 5]))
    >>> c.tolist(), lv.tolist()
    ([2, 0, 2, 1], [3, 5, 7])
    """
    coder = int_coder(values)
    return None if coder is None else (coder.codes(), coder.levels)


_PRODUCT_EXPR = re.compile(r"[A-Za-z_][A-Za-z0-9_]*|[01+*: ]")


class ProductSpec(NumericSpec):
    """Columns that are an intercept, numeric columns and products of numeric columns
    (``x1 * x2``, ``x1:x2:x3``), in formulaic's order and names (:func:`product_names`)."""

    def __init__(self, factors: list[tuple[str, ...]]):
        self.factors = factors
        self.intercept = () in factors
        self.columns = sorted({c for f in factors for c in f})
        self.levels = {}
        self.names = [":".join(f) if f else "Intercept" for f in factors]

    def get_model_matrix(self, frame: Any, na_action: str = "ignore", context=None):
        from multilevel.data import column_values
        from multilevel.design.numeric import NumericMatrix

        out = np.empty((len(frame), len(self.names)), dtype=np.float64, order="F")
        for j, f in enumerate(self.factors):
            if not f:
                out[:, j] = 1.0
                continue
            out[:, j] = np.asarray(column_values(frame, f[0]), dtype=np.float64)
            for c in f[1:]:  # left to right, as formulaic multiplies
                out[:, j] *= np.asarray(column_values(frame, c), dtype=np.float64)
        return NumericMatrix(out, list(self.names), self)


def product_names(expr: str, df: pd.DataFrame, rows: int = 64) -> list | None:
    """formulaic's columns of ``expr`` on the first rows, as factors (``()`` the intercept,
    ``("x1", "x2")`` for ``x1:x2``) when every column is an intercept, a numeric column or a
    product of numeric columns and the products reproduce formulaic's values; else None."""
    import formulaic

    if "".join(_PRODUCT_EXPR.findall(expr)) != expr:
        return None
    head = df.head(rows)
    try:
        mm = formulaic.model_matrix(expr, head, na_action="ignore", output="pandas")
    except Exception:
        return None
    factors = []
    for name in map(str, mm.columns):
        f = () if name == "Intercept" else tuple(name.split(":"))
        for c in f:
            if c not in df.columns or not isinstance(df[c].dtype, np.dtype):
                return None
            if df[c].dtype.kind not in "if":
                return None
        factors.append(f)
    got = ProductSpec(factors).get_model_matrix(head).values
    if not np.array_equal(got, mm.to_numpy(dtype=np.float64), equal_nan=True):
        return None
    return factors


def _grouping(frame: Frame, factors: tuple[str, ...]):
    """(codes int32 or an IntCoder, levels, factor_levels, keys) of a grouping factor, as
    ``interaction``."""
    if len(factors) == 1:
        coder = int_coder(frame.values(factors[0]))
        if coder is not None:
            return coder, coder.levels, [coder.levels], None
    return tuple(interaction([frame.values(f) for f in factors]))


class LazyReTerm(ReTerm):
    """A :class:`ReTerm` whose ``Z`` (and, for an integer grouping column, ``codes``) are
    made from the data on first use; :meth:`block_codes` gives a block's codes meanwhile.
    ``sizes``: the largest absolute value of each column of Z (:class:`BlockSums`), for the
    pre-fit checks."""

    def __init__(self, group, names, codes, levels, spec, make_z, sizes):
        self._z = None
        self.sizes = sizes
        self._make_z = make_z
        self._coder = codes if isinstance(codes, IntCoder) else None
        super().__init__(group, names, None if self._coder else codes, levels, None, spec)

    @property  # type: ignore[override]
    def codes(self) -> np.ndarray:
        if self._codes is None:
            self._codes = self._coder.codes()
        return self._codes

    @codes.setter
    def codes(self, value: Any) -> None:
        self._codes = value

    def block_codes(self, a: int, b: int) -> np.ndarray:
        if self._codes is None:
            return self._coder.block(a, b)
        return self._codes[a:b]

    @property  # type: ignore[override]
    def Z(self) -> np.ndarray:
        if self._z is None:
            self._z = self._make_z()
        return self._z

    @Z.setter
    def Z(self, value: Any) -> None:
        self._z = value

    @property
    def q(self) -> int:
        return len(self.names)

    def __reduce__(self):
        return (ReTerm, (self.group, self.names, self.codes, self.levels, self.Z, self.spec))


class LazyDesign(Design):
    """A :class:`Design` whose ``y``, ``X`` and ``rows`` are made on first use; its
    :meth:`problem` accumulates the cross-products block by block. ``y_range``: the
    response's first, smallest and largest value (:class:`BlockSums`), for the pre-fit
    checks."""

    y_range: tuple[float, float, float]

    _LAZY = ("y", "X", "rows")

    def __init__(self, frame: Frame, response: str, x_spec: NumericSpec, z_specs, **fields):
        self._frame, self._response = frame, response
        self._x_spec, self._z_specs = x_spec, z_specs
        self._lazy: dict[str, Any] = {}
        super().__init__(y=None, X=None, rows=None, **fields)

    def _make(self, name: str) -> Any:
        if name == "y":  # a copy, as the general path's (the input may change later)
            return np.array(self._frame.values(self._response), dtype=np.float64)
        if name == "X":
            return self._x_spec.get_model_matrix(self._frame).values
        return np.arange(self.nobs)

    def __reduce__(self):
        fields = {f: getattr(self, f) for f in self.__dataclass_fields__}
        fields["terms"] = [t.__reduce__()[0](*t.__reduce__()[1]) for t in self.terms]
        return (_plain_design, (fields,))

    def problem(self, threads: int = 0) -> Any:
        """The core's ``LmmProblem`` from the rows added block by block into an
        ``Accumulator`` (terms in the design's order)."""
        from multilevel import _core

        frame, n = self._frame, self.nobs
        acc = _core.Accumulator(
            [t.n_levels for t in self.terms],
            [t.q for t in self.terms],
            len(self.fixed_names),
            threads=threads,
        )
        y_all = np.asarray(frame.values(self._response))
        z_specs = [self._z_specs[k] for k in self.term_order]
        prefix = _z_prefixes(self._x_spec, z_specs)
        for a in range(0, n, BLOCK_ROWS):
            b = min(a + BLOCK_ROWS, n)
            block = _block(frame, a, b)
            y = np.ascontiguousarray(y_all[a:b], dtype=np.float64)
            X = self._x_spec.get_model_matrix(block).values
            terms = [
                (
                    t.block_codes(a, b),
                    X[:, : len(spec.names)] if pre else spec.get_model_matrix(block).values,
                )
                for t, spec, pre in zip(self.terms, z_specs, prefix)
            ]
            acc.add(y, X, terms)
        return acc.problem(reset=True)  # the sums move into the problem (no copy)


def _lazy_property(name: str) -> property:
    def get(self: LazyDesign) -> Any:
        v = self._lazy.get(name)
        if v is None:
            v = self._lazy[name] = self._make(name)
        return v

    def set_(self: LazyDesign, value: Any) -> None:
        if value is None:
            self._lazy.pop(name, None)
        else:
            self._lazy[name] = value

    return property(get, set_)


for _name in LazyDesign._LAZY:
    setattr(LazyDesign, _name, _lazy_property(_name))


def _plain_design(fields: dict) -> Design:
    return Design(**fields)


def _block(frame: Frame, a: int, b: int) -> Frame:
    cols = {}
    for c in frame.columns:
        v = frame._cols[c]
        cols[c] = v.iloc[a:b] if isinstance(v, pd.Series) else v[a:b]
    return Frame(cols, b - a)


class BlockSums:
    """What the pre-fit checks and the rank screen need of all the rows, from one pass over
    row blocks (:func:`block_sums`) instead of X, y and each Z made for all the rows: X'X, the
    response's first, smallest and largest value, and each random-effects term's largest
    absolute value per column (``np.max(np.abs(Z), axis=0)``; NaN as NumPy propagates it)."""

    def __init__(self, G: np.ndarray, y_first: float, y_min: float, y_max: float, z_sizes):
        self.G, self.y_first, self.y_min, self.y_max = G, y_first, y_min, y_max
        self.z_sizes = z_sizes


def block_sums(x_spec: NumericSpec, z_specs: list, frame: Frame, response: str) -> BlockSums:
    """:class:`BlockSums` of the rows of ``frame`` (``z_specs`` in the formula's order)."""
    p, n = len(x_spec.names), len(frame)
    prefix = _z_prefixes(x_spec, z_specs)
    G = np.zeros((p, p))
    y_all = np.asarray(frame.values(response))
    y_min, y_max = np.inf, -np.inf
    z_sizes = [np.zeros(len(s.names)) for s in z_specs]
    for a in range(0, n, BLOCK_ROWS):
        block = _block(frame, a, min(a + BLOCK_ROWS, n))
        X = x_spec.get_model_matrix(block).values
        G += X.T @ X
        y = y_all[a : a + BLOCK_ROWS]
        y_min, y_max = np.minimum(y_min, y.min()), np.maximum(y_max, y.max())
        for k, (spec, pre) in enumerate(zip(z_specs, prefix)):
            Z = X[:, : len(spec.names)] if pre else spec.get_model_matrix(block).values
            if Z.shape[1]:
                z_sizes[k] = np.maximum(z_sizes[k], np.max(np.abs(Z), axis=0))
    return BlockSums(G, float(y_all[0]), float(y_min), float(y_max), z_sizes)


def _z_prefixes(x_spec: NumericSpec, z_specs: list) -> list[bool]:
    """For each Z spec, whether its columns are the first columns of X (``(1 + x1 | g)`` with
    ``1 + x1 + ...``): then a block's Z is a view of the block's X."""
    x_names = x_spec.names
    return [
        len(s.names) <= len(x_names)
        and s.names == x_names[: len(s.names)]
        and s.levels == x_spec.levels
        for s in z_specs
    ]


def gram_full_rank(G: np.ndarray) -> bool:
    """``rank._clearly_full_rank``'s screen on a Gram matrix X'X: True when the smallest
    eigenvalue of the column-normalised X'X is at least 1e-6 (R's rule then keeps every
    column); False means the exact rule (a QR of X) must decide."""
    d = np.diag(G)
    if not (np.isfinite(G).all() and (d > 0).all()):
        return False
    s = 1.0 / np.sqrt(d)
    return len(d) <= 1 or bool(np.linalg.eigvalsh(G * np.outer(s, s))[0] >= 1e-6)


def _finite_float(v: Any) -> bool:
    """A float array finite everywhere (``_missing``'s common case), checked a block of rows
    at a time instead of with a mask of all the rows."""
    if not (isinstance(v, np.ndarray) and v.dtype.kind == "f"):
        return False
    step = BLOCK_ROWS * 4
    return all(np.isfinite(v[a : a + step]).all() for a in range(0, v.size, step))


def _complete_frame(df: pd.DataFrame, used: list[str], stacklevel: int):
    """``drop_missing`` without the row positions when no row is dropped: (frame, rows or
    None, n_dropped)."""

    pos = _positions_of(df, used)
    cols, missing, culprits = {}, None, []
    for c in used:
        cols[c] = v = _column(df, c, pos)
        m = None if _finite_float(v) else _missing(v, c)
        if m is not None:
            culprits.append(c)
            missing = m if missing is None else missing | m
    if missing is None:
        return Frame({c: _clean_values(v) for c, v in cols.items()}, len(df)), None, 0
    rows = np.flatnonzero(~missing)
    n_dropped = len(df) - len(rows)
    warn_missing(n_dropped, culprits, stacklevel)
    if rows.size == 0:
        raise DataError("no rows left after dropping rows with missing values")
    cols = {c: (v.iloc[rows] if isinstance(v, pd.Series) else v[rows]) for c, v in cols.items()}
    return Frame({c: _clean_values(v) for c, v in cols.items()}, rows.size), rows, n_dropped


def lazy_design(
    parsed: ParsedFormula,
    df: pd.DataFrame,
    formula: str,
    weights: Any,
    offset: Any,
    data_name: str | None,
) -> LazyDesign | None:
    """The design of :func:`multilevel.design.random.build` without X and Z for all the rows,
    or None when the general path is needed (see the module's docstring)."""
    if len(df) < LAZY_ROWS or weights is not None or offset is not None or not parsed.random:
        return None
    used = parsed.variables()
    resp = parsed.response
    if resp not in df.columns or any(u not in df.columns for u in used):
        return None
    exprs = [parsed.fixed] + [t.expr for t in parsed.random]
    probed = [numeric_spec(e, df) or product_names(e, df) for e in exprs]
    if any(s is None for s in probed):
        return None
    if not isinstance(df[resp].dtype, np.dtype) or not is_numeric(df[resp]):
        return None
    frame, rows, n_dropped = _complete_frame(df, used, stacklevel=5)
    x_spec, *z_specs = [
        numeric_spec(e, frame) if not isinstance(s, list) else ProductSpec(s)
        for e, s in zip(exprs, probed)
    ]
    if x_spec is None or any(s is None for s in z_specs):
        return None
    sums = block_sums(x_spec, z_specs, frame, resp)
    if not gram_full_rank(sums.G):
        return None  # the general path applies R's rule (and warns)
    nobs = len(frame)
    terms = []
    for t, zs, sizes in zip(parsed.random, z_specs, sums.z_sizes):
        codes, levels, factor_levels, keys = _grouping(frame, t.group_factors)

        def make_z(zs=zs) -> np.ndarray:
            return zs.get_model_matrix(frame).values

        terms.append(
            LazyReTerm(
                t.group,
                lme4_names(zs.names),
                codes,
                levels,
                TermSpec(zs, t.group_factors, factor_levels, t, keys),
                make_z,
                sizes,
            )
        )
    _check_levels(terms, nobs, False)
    order = lme4_term_order([t.n_levels for t in terms])
    names = lme4_names(x_spec.names)
    spec = FixedSpec(
        x_spec,
        names,
        np.arange(len(names), dtype=np.intp),
        list(names),
        fixed_factor_levels(parsed, frame),
    )
    design = LazyDesign(
        frame,
        resp,
        x_spec,
        z_specs,
        fixed_names=names,
        dropped_columns=[],
        terms=[terms[i] for i in order],
        weights=None,
        offset=None,
        n_dropped=n_dropped,
        nobs=nobs,
        formula=formula,
        parsed=parsed,
        data_name=data_name,
        fixed_spec=spec,
        term_order=order,
    )
    design.y_range = (sums.y_first, sums.y_min, sums.y_max)
    if rows is not None:
        design.rows = rows
    return design
