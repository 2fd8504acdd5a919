"""One expression of a formula -> its model matrix (formulaic, or the NumPy fast path), with
lme4's column names (``(Intercept)``, ``sectorCatholic``)."""

from __future__ import annotations

import functools
import keyword
import re

import numpy as np
import pandas as pd

from multilevel.data import column_values, is_numeric, pandas_frame
from multilevel.design.numeric import NumericSpec, numeric_spec
from multilevel.exceptions import DataError, FormulaError, MultilevelError
from multilevel.formula import NAMESPACES, ParsedFormula, formula_functions

__all__ = [
    "as_float_matrix",
    "fixed_columns",
    "formula_offset",
    "lme4_name",
    "lme4_names",
    "model_matrix",
    "new_formula_offset",
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


_NAME = re.compile(r"`[^`]*`|'(?:\\'|[^'])*'|\"(?:\\\"|[^\"])*\"|[A-Za-z_.][A-Za-z0-9_.]*")


_NUMBER = re.compile(r"[0-9.eE+-]+")


def quote_columns(expr: str, columns, formula: str) -> tuple[str, list[str]]:
    """``expr`` with the column names formulaic would misread put in backticks: R-style dotted
    names (``my.x``, read as an attribute) and names of formula functions or modules used as
    variables (a column ``I``, ``C`` or ``np``). Returns the text and the names quoted.

    A column that shadows a function or module the expression also calls (a column ``np``
    with ``np.log(x)``) is a FormulaError naming it: formulaic would look the call up in the
    data."""
    cols = set(map(str, columns))
    out, quoted, i = [], [], 0
    for m in _NAME.finditer(expr):
        tok = m.group(0)
        if tok[0] == "`" and _NUMBER.fullmatch(tok[1:-1]) and tok[1:-1] in cols:
            head = expr[: m.start()]
            if head.count("(") == head.count(")") and head.count("{") == head.count("}"):
                # formulaic reads a bare `1` as the literal 1: evaluate it as a name
                out.append(head[i:] + "{" + tok + "}")
                i = m.end()
                quoted.append(tok[1:-1])
            continue
        if tok[0] in "`'\"" or tok not in cols:
            continue
        after = expr[m.end() :].lstrip()
        before = expr[: m.start()].rstrip()
        if after.startswith("(") or before.endswith("."):
            continue
        clash = tok in formula_functions() or tok in NAMESPACES
        if not (clash or "." in tok or keyword.iskeyword(tok)):
            continue
        if clash and re.search(r"(?<![\w.`])" + re.escape(tok) + r"\s*[(.]", expr):
            pos = formula.find(tok) if tok in formula else None
            raise FormulaError(
                f"column {tok!r} has the name of a formula function or module that the "
                "formula also calls: rename the column",
                formula,
                pos,
            )
        out.append(expr[i : m.start()] + "`" + tok + "`")
        i = m.end()
        quoted.append(tok)
    out.append(expr[i:])
    return "".join(out), quoted


def _bool_columns(frame) -> list[str]:
    out = []
    for c in frame.columns:
        v = column_values(frame, c)
        if v.dtype == bool or pd.api.types.is_bool_dtype(v.dtype):
            out.append(str(c))
    return out


def _r_bool_names(mm, frame):
    """A logical column's coefficient is ``lateTRUE`` in R (formulaic says ``late``)."""
    bools = _bool_columns(frame)
    if bools:
        names = [
            ":".join(p + "TRUE" if p in bools else p for p in str(c).split(":")) for c in mm.columns
        ]
        mm.columns = names
    return mm


def model_matrix(expr: str, frame: pd.DataFrame, formula: str, what: str):
    fast = numeric_spec(expr, frame)
    if fast is not None:
        return _r_bool_names(fast.get_model_matrix(frame), frame)
    import formulaic  # imported here: a plain formula never needs it (see formula.py)

    from multilevel.contextual import formula_context

    expr_q, quoted = quote_columns(expr, frame.columns, formula)
    try:
        mm = formulaic.model_matrix(
            expr_q,
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
    if quoted:  # names as the user wrote them: "my.x", not "`my.x`"
        names = [str(c) for c in mm.columns]
        for q in quoted:
            names = [c.replace(f"`{q}`", q) for c in names]
        mm.columns = names
    return _r_bool_names(mm, frame)


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


def formula_offset(parsed: ParsedFormula, frame, formula: str) -> np.ndarray | None:
    """The sum of the formula's ``offset(expr)`` terms at the rows of ``frame`` (None when it
    has none), as lme4 adds them to ``offset=``; NaN where an expression gives one."""
    total = None
    for e in parsed.offsets:
        mm = model_matrix("0 + {" + e + "}", frame, formula, f"offset({e})")
        if mm.shape[1] != 1:
            raise DataError(f"offset({e}) gives {mm.shape[1]} columns; one is needed")
        v = as_float_matrix(mm, f"offset({e})")[:, 0]
        total = v.copy() if total is None else total + v
    return total


def new_formula_offset(design, newdata) -> np.ndarray:
    """The formula's ``offset(expr)`` terms evaluated on every row of ``newdata`` (lme4's
    predict adds them)."""
    from multilevel.data import as_pandas

    df = as_pandas(newdata)
    out = formula_offset(design.parsed, df, design.formula)
    return np.zeros(len(df)) if out is None else out
