"""The NumPy fast path of a model matrix: an intercept and plain columns, as formulaic names them.

formulaic spends several milliseconds parsing and materialising even the simplest formula;
for ``1 + Days``, ``0 + x`` or ``1 + service`` (numeric columns, and pandas categoricals
after an intercept) :func:`numeric_spec` gives the same columns and the same names directly.
"""

from __future__ import annotations

import functools
import re

import numpy as np
import pandas as pd

from multilevel.data import column_values, is_float_like

__all__ = ["NumericMatrix", "NumericSpec", "numeric_spec"]


class NumericMatrix:
    """The model matrix of a fast-path expression, shaped like formulaic's result."""

    def __init__(self, values: np.ndarray, columns: list[str], model_spec: NumericSpec):
        self.values = values
        self.columns = columns
        self.model_spec = model_spec
        self.shape = values.shape

    def __array__(self, dtype=None, copy=None):
        return self.values if dtype is None else self.values.astype(dtype, copy=False)


class NumericSpec:
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
    ) -> NumericMatrix:
        n = len(frame)
        out = np.empty((n, len(self.names)), dtype=np.float64, order="F")
        j = 0
        if self.intercept:
            out[:, 0] = 1.0
            j = 1
        for c in self.columns:
            values = column_values(frame, c)
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
        return NumericMatrix(out, list(self.names), self)


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
    return token in frame.columns and is_float_like(column_values(frame, token))


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


def numeric_spec(expr: str, frame: pd.DataFrame) -> NumericSpec | None:
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
        cats = _fast_categories(column_values(frame, c)) if intercept else None
        if cats is None:
            return None
        levels[c] = cats
    return NumericSpec(intercept, list(columns), levels)
