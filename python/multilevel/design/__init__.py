"""From a formula and a data frame to the arrays the Rust core takes.

The rooms, in the order a fit walks through them (every conversion is visible here; the Rust
core borrows the results):

1. :mod:`multilevel.data`: the data -> pandas, used columns checked, rows with missing
   values dropped and counted, infinities refused.
2. :mod:`multilevel.design.matrix` (with the NumPy fast path of
   :mod:`multilevel.design.numeric`): formulaic builds ``X`` (``ModelSpec`` kept for new data)
   and, for each bar, the bar's left side ``Z`` (n x q), float64 in Fortran order, with lme4's
   names (``(Intercept)``).
3. :mod:`multilevel.design.rank`: rank-deficient columns of ``X`` dropped by R's rule.
4. :mod:`multilevel.design.fixed`: ``build_fixed`` (formulas without bars: OLS, panels,
   lmList) and ``X`` for new data.
5. :mod:`multilevel.design.random`: ``build`` (mixed models): grouping factors coded by
   :mod:`multilevel.factors` in R's level order, terms in lme4's order, lme4's checks.
6. :mod:`multilevel.design.newdata`: ``new_matrices`` for prediction.

>>> import pandas as pd
>>> df = pd.DataFrame({"y": [1.0, 2.0, 4.0, 3.0, 5.0, 6.0], "x": [0, 1, 2, 3, 4, 5],
...                    "g": ["b", "a", "b", "a", "c", "c"]})
>>> d = build("y ~ x + (1 | g)", df)
>>> d.fixed_names, d.terms[0].codes.tolist(), list(d.terms[0].levels)
(['(Intercept)', 'x'], [1, 0, 1, 0, 2, 2], ['a', 'b', 'c'])
"""

from __future__ import annotations

from multilevel.data import as_pandas
from multilevel.design.fixed import FixedDesign, FixedSpec, build_fixed, fixed_matrix
from multilevel.design.newdata import NewMatrices, new_matrices
from multilevel.design.random import Design, ReTerm, TermSpec, build, lme4_term_order
from multilevel.design.rank import RANK_TOL

__all__ = [
    "RANK_TOL",
    "Design",
    "FixedDesign",
    "FixedSpec",
    "NewMatrices",
    "ReTerm",
    "TermSpec",
    "as_pandas",
    "build",
    "build_fixed",
    "fixed_matrix",
    "lme4_term_order",
    "new_matrices",
]
