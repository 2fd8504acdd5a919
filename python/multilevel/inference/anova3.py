"""Type III F tests of the fixed-effect terms (lmerTest's ``anova(fit, type = 3)``).

The type III hypothesis of a term is that its coefficients are zero when every factor is
coded by sum-to-zero contrasts: the term's effect averaged with equal weights over the levels
of the factors it interacts with, numeric predictors held at zero (SAS's type III; lmerTest's
"marginal" contrasts). It does not depend on the coding the model was fitted with: with X_s
the sum-coded model matrix of the same formula and X = X_s T (both span the same columns),
the sum-coded coefficients are T beta, and the term's rows of T are its hypothesis L. Each is
then tested by ``wald.wald`` with the requested denominator degrees of freedom.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from multilevel.exceptions import HypothesisError
from multilevel.inference import wald


def _plain_name(factor: str) -> str:
    """A factor's name in the table: ``C(x)`` shown as ``x``, any other call kept whole."""
    if factor.startswith("C(") and factor.endswith(")") and "," not in factor:
        return factor[2:-1]
    return factor


def _sum_coded(fit: Any) -> tuple[np.ndarray, dict[str, list[int]]]:
    """The sum-coded model matrix of the fit's fixed part on its rows, and each term's columns."""
    import formulaic

    from multilevel.contextual import formula_context
    from multilevel.data import as_pandas

    d = fit.design
    frame = as_pandas(fit._data).iloc[np.asarray(d.rows)]
    context = formula_context()
    spec = formulaic.model_matrix(d.parsed.fixed, frame, context=context).model_spec
    categorical = {str(f) for f in spec.factor_contrasts}
    parts, names = [], []
    for term in spec.terms:
        factors = [str(f) for f in term.factors]
        if not factors or factors == ["1"]:
            continue
        parts.append(":".join(f"C({f}, contr.sum)" if f in categorical else f for f in factors))
        names.append(":".join(_plain_name(f) for f in factors))
    intercept = any(str(t) == "1" for t in spec.terms)
    rhs = ("1" if intercept else "0") + "".join(f" + {p}" for p in parts)
    mm = formulaic.model_matrix(rhs, frame, context=context)
    indices = [list(i) for t, i in mm.model_spec.term_indices.items() if str(t) != "1"]
    return np.asarray(mm, dtype=float), dict(zip(names, indices))


def contrasts(fit: Any) -> dict[str, np.ndarray]:
    """The type III hypothesis matrix L (rows x coefficients) of each fixed-effect term."""
    if getattr(fit.design, "dropped_columns", None):
        raise HypothesisError(
            "type III tests need full-rank fixed effects; these columns were dropped as "
            f"rank-deficient: {', '.join(fit.design.dropped_columns)}"
        )
    X = np.asarray(fit.design.X, dtype=float)
    Xs, cols = _sum_coded(fit)
    T, *_ = np.linalg.lstsq(Xs, X, rcond=None)
    if not np.allclose(Xs @ T, X, rtol=1e-8, atol=1e-8 * max(1.0, np.abs(X).max())):
        raise HypothesisError(
            "could not express the model's columns in sum-to-zero coding "
            "(a formula function that type III tests do not support)"
        )
    return {name: T[idx] for name, idx in cols.items()}


def anova(fit: Any, ddf: str | None = "satterthwaite") -> pd.DataFrame:
    """lmerTest's type III table: Sum Sq, Mean Sq, NumDF, DenDF, F value, Pr(>F) per term."""
    rows = []
    s2 = float(fit.sigma) ** 2
    hyps = contrasts(fit)
    for L in hyps.values():
        t = wald.wald(fit, L, ddf=ddf)
        F = t.statistic / t.numdf if t.kind == "chi2" else t.statistic
        rows.append((F * s2 * t.numdf, F * s2, t.numdf, t.dendf, F, t.p_value))
    return pd.DataFrame(
        rows,
        index=pd.Index(list(hyps), name="term"),
        columns=["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"],
    )
