"""One expression of a formula -> its model matrix (formulaic, or the NumPy fast path), with
lme4's column names (``(Intercept)``, ``sectorCatholic``)."""

from __future__ import annotations

import functools
import re

import formulaic
import numpy as np
import pandas as pd

from multilevel.contextual import formula_context
from multilevel.data import column_values, is_numeric, pandas_frame
from multilevel.design.numeric import NumericSpec, numeric_spec
from multilevel.exceptions import DataError, FormulaError, MultilevelError
from multilevel.formula import ParsedFormula

__all__ = [
    "as_float_matrix",
    "fixed_columns",
    "lme4_name",
    "lme4_names",
    "model_matrix",
    "reraise_own",
    "response_vector",
    "spec_frame",
]


_LEVEL_SUFFIX = re.compile(r"\[(?:T\.)?([^\[\]]*)\]$")


@functools.lru_cache(maxsize=1024)
def lme4_name(col: str) -> str:
    """formulaic's ``sector[T.Catholic]`` (or ``sector[Catholic]``) is R's ``sectorCatholic``."""
    if col == "Intercept":
        return "(Intercept)"
    return ":".join(_LEVEL_SUFFIX.sub(r"\1", part) for part in col.split(":"))


def lme4_names(cols) -> list[str]:
    return [lme4_name(str(c)) for c in cols]


def spec_frame(model_spec, frame):
    """What ``model_spec.get_model_matrix`` takes: a ``Frame`` for the NumPy fast path,
    a pandas DataFrame for formulaic."""
    return frame if isinstance(model_spec, NumericSpec) else pandas_frame(frame)


def model_matrix(expr: str, frame: pd.DataFrame, formula: str, what: str):
    fast = numeric_spec(expr, frame)
    if fast is not None:
        return fast.get_model_matrix(frame)
    try:
        mm = formulaic.model_matrix(
            expr,
            pandas_frame(frame),
            na_action="ignore",
            output="pandas",
            context=formula_context(),
        )
    except FormulaError:
        raise
    except Exception as exc:
        reraise_own(exc)
        pos = formula.find(expr) if expr in formula else None
        raise FormulaError(f"cannot build the {what} from {expr!r}: {exc}", formula, pos) from None
    return mm


def reraise_own(exc: Exception) -> None:
    """Our own error raised inside a formula function (formulaic wraps it): raise it as is."""
    cause = exc.__cause__
    if isinstance(cause, MultilevelError):
        raise cause from None


def as_float_matrix(mm, what: str) -> np.ndarray:
    try:
        arr = np.asarray(mm, dtype=np.float64)
    except (TypeError, ValueError):
        raise DataError(f"the {what} has non-numeric columns") from None
    return np.asfortranarray(arr)


def response_vector(
    parsed: ParsedFormula, frame: pd.DataFrame, df_columns, formula: str
) -> np.ndarray:
    resp = parsed.response
    if resp in frame.columns:
        s = column_values(frame, resp)
        if not is_numeric(s):
            raise DataError(f"response {resp!r} must be numeric (or boolean), not {s.dtype}")
        return np.array(s, dtype=np.float64)  # a copy: s may be the input's memory
    for v in parsed.response_variables():
        if not is_numeric(frame[v]):
            raise DataError(f"response variable {v!r} must be numeric, not {frame[v].dtype}")
    mm = model_matrix("0 + {" + resp + "}", frame, formula, "response")
    if mm.shape[1] != 1:
        raise DataError(
            f"response {resp!r} gives {mm.shape[1]} columns; one numeric column is needed"
        )
    return as_float_matrix(mm, "response")[:, 0].copy()


def fixed_columns(parsed: ParsedFormula, frame: pd.DataFrame, formula: str):
    """X (all columns) and its formulaic spec."""
    mm = model_matrix(parsed.fixed, frame, formula, "fixed-effects model matrix")
    return as_float_matrix(mm, "fixed-effects model matrix"), mm.model_spec, list(mm.columns)
