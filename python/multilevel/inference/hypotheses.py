"""Linear hypotheses L beta = r on named coefficients.

A hypothesis is given as a matrix (rows of L, one column per coefficient), a dict of named
rows ``{"label": {"a": 1, "b": -1}}``, or text: ``"sectorCatholic = 0"``,
``"ses + ses:sectorCatholic = 0"``, ``"2*a - b = 1"``, ``["a = 0", "b = c"]``. Coefficient
names may contain any character (``(Intercept)``, ``ses:sectorCatholic``, ``C(x)[T.b]``):
the text is read by matching the longest known name at each position, so names never need
quoting. Unknown names raise :class:`~multilevel.exceptions.HypothesisError` with a caret and
the closest names.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from multilevel.exceptions import HypothesisError

_NUMBER = re.compile(r"\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?")


@dataclass(frozen=True)
class Hypotheses:
    """Rows of L (q x p), right-hand sides r (q,) and a label per row."""

    L: np.ndarray
    rhs: np.ndarray
    labels: list[str]


def _fail(text: str, pos: int, message: str) -> HypothesisError:
    return HypothesisError(f"{message}\n  {text}\n  {' ' * pos}^")


def _read_side(text: str, start: int, end: int, names: list[str]) -> tuple[np.ndarray, float]:
    """Coefficients and constant of the linear expression text[start:end]."""
    row = np.zeros(len(names))
    const = 0.0
    by_length = sorted(range(len(names)), key=lambda k: -len(names[k]))
    sign, factor, after_term = 1.0, None, False
    i = start
    while i < end:
        c = text[i]
        if c.isspace():
            i += 1
        elif c in "+-":
            if factor is not None:  # a constant term ends here
                const += sign * factor
                factor, sign = None, 1.0
            sign *= 1.0 if c == "+" else -1.0
            after_term = False
            i += 1
        elif c == "*":
            if factor is None:
                raise _fail(text, i, "'*' must follow a number, as in 2*x")
            i += 1
        else:
            if after_term:
                raise _fail(text, i, "expected '+', '-' or '=' here")
            m = _NUMBER.match(text, i)
            # A name may start with a digit: the longer match wins.
            k = next((k for k in by_length if text.startswith(names[k], i, end)), None)
            if k is not None and (m is None or len(names[k]) >= m.end() - i):
                row[k] += sign * (1.0 if factor is None else factor)
                sign, factor, after_term = 1.0, None, True
                i += len(names[k])
            elif m is not None and m.end() <= end and factor is None:
                factor = float(m.group())
                i = m.end()
            else:
                word = re.match(r"[^\s+\-*=]+", text[i:end])
                token = word.group() if word else text[i]
                close = difflib.get_close_matches(token, names, n=3, cutoff=0.5)
                hint = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
                raise _fail(text, i, f"unknown coefficient {token!r}{hint}")
    if factor is not None:
        const += sign * factor
    return row, const


def parse(text: str, names: Sequence[str]) -> tuple[np.ndarray, float]:
    """One hypothesis ``lhs = rhs`` (or ``lhs``, meaning ``lhs = 0``) as (row of L, r)."""
    names = list(names)
    parts = text.split("=")
    if len(parts) > 2:
        raise _fail(text, text.index("=", text.index("=") + 1), "more than one '='")
    eq = text.index("=") if len(parts) == 2 else len(text)
    left, lc = _read_side(text, 0, eq, names)
    right, rc = (
        _read_side(text, eq + 1, len(text), names)
        if len(parts) == 2
        else (np.zeros(len(names)), 0.0)
    )
    row = left - right
    if not np.any(row):
        raise _fail(text, 0, "the hypothesis involves no coefficient")
    return row, rc - lc


def build(hypothesis, names: Sequence[str], rhs=None) -> Hypotheses:
    """Hypotheses from a string, a list of strings, a dict of named rows or a matrix."""
    names = list(names)
    p = len(names)
    if isinstance(hypothesis, str):
        hypothesis = [hypothesis]
    if isinstance(hypothesis, Mapping):
        rows, labels = [], []
        for label, spec in hypothesis.items():
            row = np.zeros(p)
            for name, v in dict(spec).items():
                if name not in names:
                    close = difflib.get_close_matches(str(name), names, n=3, cutoff=0.5)
                    hint = f"; did you mean {', '.join(map(repr, close))}?" if close else ""
                    raise HypothesisError(f"unknown coefficient {name!r} in row {label!r}{hint}")
                row[names.index(name)] = float(v)
            rows.append(row)
            labels.append(str(label))
        L, r = np.array(rows), np.zeros(len(rows))
    elif (
        isinstance(hypothesis, Sequence)
        and hypothesis
        and all(isinstance(h, str) for h in hypothesis)
    ):
        parsed = [parse(h, names) for h in hypothesis]
        L = np.array([row for row, _ in parsed])
        r = np.array([c for _, c in parsed])
        labels = [h.strip() for h in hypothesis]
    else:
        L = np.atleast_2d(np.asarray(hypothesis, dtype=float))
        if L.ndim != 2 or L.shape[1] != p:
            raise HypothesisError(
                f"L must have one column per coefficient ({p}: {', '.join(names)}); "
                f"got shape {np.shape(hypothesis)}"
            )
        r = np.zeros(L.shape[0])
        labels = [_label(row, names) for row in L]
    if rhs is not None:
        r = np.broadcast_to(np.asarray(rhs, dtype=float), (L.shape[0],)).copy()
    if L.shape[0] == 0:
        raise HypothesisError("no hypothesis given")
    if not np.all(np.isfinite(L)) or not np.all(np.isfinite(r)):
        raise HypothesisError("L and rhs must be finite")
    if np.linalg.matrix_rank(L) < L.shape[0]:
        raise HypothesisError(
            f"the {L.shape[0]} rows of L are linearly dependent (rank "
            f"{np.linalg.matrix_rank(L)}): drop the redundant ones"
        )
    return Hypotheses(L, r, labels)


def _label(row: np.ndarray, names: list[str]) -> str:
    terms = []
    for v, n in zip(row, names):
        if v == 0:
            continue
        coef = "" if abs(v) == 1 else f"{abs(v):g}*"
        terms.append(("- " if v < 0 else "+ ") + coef + n)
    s = " ".join(terms)
    return s.removeprefix("+ ")
