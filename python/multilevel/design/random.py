"""The mixed-model design: y, X and, per random-effects term, its codes, levels and Z.

Grouping factors are coded by :mod:`multilevel.factors` (R's level order; an interaction
``a:b`` has the observed combinations, first factor slowest, labelled ``"<a>:<b>"``). Terms are
put in lme4's ``mkReTrms`` order (:func:`lme4_term_order`), which is also the order of
``theta``. lme4's checks follow: each grouping factor needs >= 2 levels and fewer levels than
observations; each term's number of random effects (levels x q) must be below the number of
observations (``allow_n=True`` relaxes both to "<=", as glmer does).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from multilevel.data import (
    as_pandas,
    check_inf,
    column_values,
)
from multilevel.design.fixed import FixedSpec, model_rows
from multilevel.exceptions import DataError
from multilevel.factors import interaction
from multilevel.formula import ParsedFormula, RandomTermSpec, parse

__all__ = ["Design", "ReTerm", "TermSpec", "build", "lme4_term_order"]


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


def build(
    formula: str,
    data,
    weights=None,
    offset=None,
    data_name: str | None = None,
    allow_n: bool = False,
    lazy: bool = False,
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
    lazy : bool
        On large data with plain columns, a :class:`multilevel.design.fast.LazyDesign`
        (X and Z made on first use; its ``problem()`` accumulates row blocks).

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
    if lazy and not allow_n:
        from multilevel.design.fast import lazy_design

        design = lazy_design(parsed, df, formula, weights, offset, data_name)
        if design is not None:
            return design
    used = parsed.variables()
    m = model_rows(parsed, df, used, formula, weights, offset, bars=parsed.random)
    frame, rows, nobs = m.frame, m.rows, len(m.y)
    terms: list[ReTerm] = []
    for t, (Z, zspec, znames) in zip(parsed.random, m.bars):
        check_inf(Z, f"random-effects term {t.text}", rows)
        codes, levels, factor_levels, keys = interaction(
            [column_values(frame, f) for f in t.group_factors]
        )
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
        y=m.y,
        X=m.X,
        fixed_names=m.spec.names,
        dropped_columns=m.dropped,
        terms=terms,
        weights=m.weights,
        offset=m.offset,
        n_dropped=m.n_dropped,
        rows=rows,
        nobs=nobs,
        formula=formula,
        parsed=parsed,
        data_name=data_name,
        fixed_spec=m.spec,
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
