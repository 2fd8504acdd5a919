"""Ordinary and weighted least squares with robust and cluster-robust covariances.

``ols(formula, data, weights=None, vcov=...)`` fits ``y = X beta + e`` by (weighted) least
squares and estimates the covariance of ``beta``:
``vcov`` is ``"iid"``, ``"HC0"`` .. ``"HC3"`` or cluster-robust ``{"CR0" | "CR1" | "CR2": col}``
(two-way: ``{"CR0" | "CR1": [col1, col2]}``); :mod:`multilevel.inference.sandwich` states each
estimator, its small-sample factor and the degrees of freedom of its tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from multilevel.design.checks import check_magnitudes
from multilevel.design.fixed import fixed_arrays
from multilevel.exceptions import DataError
from multilevel.inference.sandwich import (
    CR_TYPES,
    HC_TYPES,
    Sandwich,
    cluster_label,
    sandwich,
    vcov_alias,
)
from multilevel.inference.tails import f_sf, t_ppf, t_pvalue
from multilevel.results.html import HtmlFitMixin
from multilevel.results.keep import KeepMixin
from multilevel.results.tidy import AlignedRows, OlsTables, input_index

__all__ = ["OlsFit", "ols", "ols_arrays", "parse_vcov", "summary_text", "vcov_label"]


def _has_intercept(X: np.ndarray) -> bool:
    if X.shape[0] == 0:
        return False
    return bool(np.any(np.all(X[0:1, :] == X, axis=0) & (X[0] != 0)))


class OlsFit(AlignedRows, KeepMixin, OlsTables, HtmlFitMixin):
    """Result of :func:`ols`: coefficients, their covariance and tests.

    Attributes
    ----------
    coef : pandas.Series
        Coefficients named by the columns of the model matrix.
    vcov : pandas.DataFrame
        Their estimated covariance (of the kind ``vcov_type``).
    se, t, p : pandas.Series
        Standard errors, t statistics and two-sided p-values.
    df : pandas.Series
        Degrees of freedom of each t-test (see the module documentation).
    nobs, df_resid : int
        Rows used and ``n - k``.
    n_dropped : int
        Rows dropped for missing values.
    r2, adj_r2 : float
        R-squared (centred when the model has an intercept, as R's ``summary.lm``).
    fvalue, f_df, f_pvalue : float, tuple, float
        Wald F test that all coefficients but the intercept are 0, with the chosen covariance.
    sigma : float
        Residual standard error ``sqrt(sum(w e^2) / (n - k))``.
    resid, fitted : pandas.Series or numpy.ndarray
        Residuals and fitted values: a Series on the input's full index (NaN at rows dropped
        for missing values) when the data were a pandas DataFrame, else the array of the rows
        used (``rows`` holds their positions in the input).
    n_clusters : tuple of int
        Numbers of clusters (cluster-robust covariances only).
    """

    def __init__(
        self,
        coef: np.ndarray,
        names: Sequence[str],
        sw: Sandwich,
        *,
        y: np.ndarray,
        X: np.ndarray,
        weights: np.ndarray | None,
        vcov_type: str,
        k: int | None = None,
        n_dropped: int = 0,
        dropped_columns: Sequence[str] = (),
        formula: str | None = None,
        model: str = "OLS",
        intercept: bool | None = None,
        rows: np.ndarray | None = None,
        fitted: np.ndarray | None = None,
        input_index: pd.Index | None = None,
        n_zero_weight: int = 0,
        offset: np.ndarray | None = None,
    ) -> None:
        names = list(names)
        self.coef = pd.Series(coef, index=names, name="coef")
        self.vcov = pd.DataFrame(sw.vcov, index=names, columns=names)
        self.vcov_type = vcov_type
        self.df = pd.Series(sw.df, index=names, name="df")
        self.n_clusters = sw.n_clusters
        self.small_sample_factor = sw.factor
        self.nobs = len(y)
        k = X.shape[1] if k is None else k
        self.df_resid = self.nobs - k
        self.n_dropped = int(n_dropped)
        self.n_zero_weight = int(n_zero_weight)  # rows left out for a zero weight
        self.dropped_columns = list(dropped_columns)
        self.formula = formula
        self.model = model
        self.rows = rows
        self.input_index = input_index
        self._fitted_rows = X @ coef if fitted is None else fitted
        self._resid_rows = y - self._fitted_rows
        self.weights = weights
        self.offset = offset
        # Sums of squares as dot products: no row-sized temporaries when there are no weights.
        e = self._resid_rows
        wr = e if weights is None else weights * e
        ssr = float(wr @ e)
        self.ssr = ssr
        self.sigma = math.sqrt(ssr / self.df_resid) if self.df_resid > 0 else math.nan
        has_int = _has_intercept(X) if intercept is None else intercept
        if offset is not None:  # R's summary.lm: the fitted values without the offset
            tss = ssr + _explained_ss(self._fitted_rows - offset, weights, has_int)
        elif has_int:
            ybar = float(np.mean(y) if weights is None else (weights @ y) / np.sum(weights))
            yc = y - ybar
            tss = float((yc if weights is None else weights * yc) @ yc)
        else:
            tss = float((y if weights is None else weights * y) @ y)
        self.r2 = 1.0 - ssr / tss if tss > 0 else math.nan
        self.adj_r2 = 1.0 - (1.0 - self.r2) * (self.nobs - int(has_int)) / self.df_resid
        # Wald F test of all coefficients but a constant column.
        if "(Intercept)" in names:
            const = np.array([nm == "(Intercept)" for nm in names])
        elif has_int:
            const = np.all(X[0:1, :] == X, axis=0) & (X[0] != 0)
        else:
            const = np.zeros(len(names), dtype=bool)
        test = np.flatnonzero(~const)
        if len(test):
            b = coef[test]
            Vt = sw.vcov[np.ix_(test, test)]
            try:
                stat = float(b @ np.linalg.solve(Vt, b)) / len(test)
            except np.linalg.LinAlgError:
                stat = math.nan
            self.fvalue = stat
            self.f_df = (len(test), sw.df_f)
            self.f_pvalue = f_sf(stat, len(test), sw.df_f)
        else:
            self.fvalue, self.f_df, self.f_pvalue = math.nan, (0, sw.df_f), math.nan

    @property
    def params(self) -> pd.Series:
        """Alias of :attr:`coef` (statsmodels' name)."""
        return self.coef

    # -- likelihood (Gaussian, as R's logLik.lm), for anova() against mixed models ---------
    reml = False

    def refit_ml(self) -> OlsFit:
        """Least squares is already the maximum-likelihood fit."""
        return self

    @property
    def npar(self) -> int:
        """Parameters of the Gaussian likelihood: the coefficients and sigma."""
        return len(self.coef) + 1

    @property
    def loglik(self) -> float:
        """Gaussian log-likelihood at the least-squares fit (R's ``logLik.lm``)."""
        n = self.nobs
        ldw = 0.0 if self.weights is None else float(np.sum(np.log(self.weights)))
        return 0.5 * (ldw - n * (math.log(2.0 * math.pi) + 1.0 - math.log(n) + math.log(self.ssr)))

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.npar

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + math.log(self.nobs) * self.npar

    def wald(self, L: Any, rhs: Any = None, level: float = 0.95) -> Any:
        """Tests of linear hypotheses L beta = rhs with this fit's covariance and df
        (see :meth:`multilevel.LmerFit.wald` for the forms of L)."""
        from multilevel.inference.wald import wald_fixed_df

        return wald_fixed_df(
            self.coef, self.vcov.to_numpy(), self.df.to_numpy(), self.f_df[1], L, rhs, level
        )

    @property
    def se(self) -> pd.Series:
        """Standard errors: square roots of the diagonal of :attr:`vcov`."""
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self.coef.index, name="se")

    @property
    def t(self) -> pd.Series:
        """t statistics ``coef / se``."""
        return (self.coef / self.se).rename("t")

    @property
    def p(self) -> pd.Series:
        """Two-sided p-values of the t statistics with :attr:`df` degrees of freedom."""
        vals = [t_pvalue(t, d) for t, d in zip(self.t, self.df)]
        return pd.Series(vals, index=self.coef.index, name="p")

    def conf_int(self, level: float = 0.95) -> pd.DataFrame:
        """Confidence intervals ``coef -/+ q * se`` with t quantiles on :attr:`df`.

        Parameters
        ----------
        level : float
            Coverage, between 0 and 1.

        Returns
        -------
        pandas.DataFrame
            Columns ``lower`` and ``upper``, one row per coefficient.
        """
        if not 0.0 < level < 1.0:
            raise ValueError("level must lie strictly between 0 and 1")
        q = np.array([t_ppf(0.5 + level / 2.0, d) for d in self.df])
        se = self.se.to_numpy()
        return pd.DataFrame(
            {"lower": self.coef.to_numpy() - q * se, "upper": self.coef.to_numpy() + q * se},
            index=self.coef.index,
        )

    def _header(self) -> list[tuple[str, str]]:
        rows = [
            ("Model:", self.model),
            ("Dep. formula:", self.formula or "-"),
            ("No. observations:", f"{self.nobs}"),
            ("Rows dropped (NA):", f"{self.n_dropped}"),
            *(
                [("Rows with zero weight:", f"{self.n_zero_weight}")]
                if getattr(self, "n_zero_weight", 0)
                else []
            ),
            ("Df residuals:", f"{self.df_resid}"),
            ("Covariance:", self.vcov_type),
        ]
        if self.n_clusters:
            rows.append(("No. clusters:", ", ".join(str(g) for g in self.n_clusters)))
        rows += [
            ("R-squared:", f"{self.r2:.4f}"),
            ("Adj. R-squared:", f"{self.adj_r2:.4f}"),
            (
                f"F({self.f_df[0]}, {self.f_df[1]:g}):",
                f"{self.fvalue:.4f}" if np.isfinite(self.fvalue) else "-",
            ),
            ("Prob > F:", f"{self.f_pvalue:.4g}" if np.isfinite(self.f_pvalue) else "-"),
            ("Residual std. error:", f"{self.sigma:.4f}"),
        ]
        return rows

    def summary(self, level: float = 0.95) -> str:
        """A statsmodels/Stata-like report: header, then one line per coefficient."""
        return summary_text(self, self._header(), level)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model}, {self.nobs} obs, vcov={self.vcov_type}>"


def _explained_ss(f: np.ndarray, weights: np.ndarray | None, centred: bool) -> float:
    """R's ``mss`` of ``summary.lm``: the (weighted) sum of squares of the fitted values,
    about their (weighted) mean when the model has an intercept."""
    w = np.ones(len(f)) if weights is None else weights
    if centred:
        f = f - float(w @ f) / float(np.sum(w))
    return float(w @ (f * f))


def summary_text(fit: Any, header: list[tuple[str, str]], level: float = 0.95) -> str:
    width = 78
    lines = ["=" * width]
    half = (len(header) + 1) // 2
    left, right = header[:half], header[half:]
    for i in range(half):
        a = f"{left[i][0]:<20}{left[i][1]:>18}"
        b = f"{right[i][0]:<22}{right[i][1]:>16}" if i < len(right) else ""
        lines.append(f"{a}  {b}".rstrip())
    lines.append("=" * width)
    ci = fit.conf_int(level)
    lo = f"[{(1 - level) / 2:.3g}"
    hi = f"{1 - (1 - level) / 2:.3g}]"
    lines.append(f"{'':<16}{'coef':>11}{'std err':>11}{'t':>9}{'P>|t|':>8}{lo:>11}{hi:>11}")
    lines.append("-" * width)
    for name in fit.coef.index:
        label = name if len(name) <= 15 else name[:14] + "~"
        lines.append(
            f"{label:<16}{fit.coef[name]:>11.4g}{fit.se[name]:>11.4g}{fit.t[name]:>9.3f}"
            f"{fit.p[name]:>8.3f}{ci.loc[name, 'lower']:>11.4g}{ci.loc[name, 'upper']:>11.4g}"
        )
    lines.append("=" * width)
    if getattr(fit, "vcov_type", "").startswith("CR2"):
        lines.append("t-tests use Satterthwaite degrees of freedom (clubSandwich).")
    if getattr(fit, "dropped_columns", None):
        lines.append("Dropped (rank deficient): " + ", ".join(fit.dropped_columns))
    return "\n".join(lines)


def parse_vcov(vcov: Any) -> tuple[str, list[Any]]:
    """Normalise ``vcov`` to (kind, list of cluster specs); pyfixest's spellings ("hetero",
    {"CRV1": col}, {"CRV3": col}) are read as :func:`~multilevel.inference.sandwich.vcov_alias`
    says."""
    vcov = vcov_alias(vcov, "ols")
    if isinstance(vcov, str):
        kind = vcov.upper() if vcov.lower() != "iid" else "iid"
        if kind in ("ROBUST",):
            kind = "HC1"
        if kind not in ("iid", *HC_TYPES):
            if kind in CR_TYPES:
                raise ValueError(f"{kind} needs a cluster column: vcov={{{kind!r}: 'column'}}")
            raise ValueError(f"unknown vcov {vcov!r}; use 'iid', 'HC0'..'HC3' or {{'CR1': column}}")
        return kind, []
    if isinstance(vcov, dict):
        if len(vcov) != 1:
            raise ValueError("vcov must be a dict with one key, e.g. {'CR1': 'school'}")
        ((kind, spec),) = vcov.items()
        kind = str(kind).upper()
        if kind not in CR_TYPES:
            raise ValueError(
                f"unknown cluster-robust type {kind!r}; use CR0, CR1, CR2 (or pyfixest's CRV1, "
                "CRV3)"
            )
        specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
        if not 1 <= len(specs) <= 2:
            raise ValueError("give one or two cluster columns")
        if kind in ("CR2", "CRV3") and len(specs) != 1:
            raise ValueError(f"{kind} supports one cluster column only")
        return kind, specs
    raise TypeError("vcov must be a string such as 'HC1' or a dict such as {'CR1': 'school'}")


def vcov_label(kind: str, specs: list[Any]) -> str:
    if not specs:
        return kind
    names = [cluster_label(s) for s in specs]
    return f"{kind} ({', '.join(names)})"


def _wls(y: np.ndarray, X: np.ndarray, weights: np.ndarray | None) -> np.ndarray:
    if weights is None:
        return np.linalg.lstsq(X, y, rcond=None)[0]
    sw = np.sqrt(weights)
    return np.linalg.lstsq(X * sw[:, None], y * sw, rcond=None)[0]


def ols_arrays(
    y: np.ndarray,
    X: np.ndarray,
    names: Sequence[str] | None = None,
    weights: np.ndarray | None = None,
    vcov: str = "iid",
    clusters: Sequence[np.ndarray] | None = None,
) -> OlsFit:
    """:func:`ols` on arrays: ``y`` (n,), ``X`` (n, k), cluster arrays for CR types.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.column_stack([np.ones(4), [1.0, 2.0, 3.0, 4.0]])
    >>> fit = ols_arrays(np.array([1.0, 3.0, 2.0, 5.0]), X, ["(Intercept)", "x"], vcov="HC0")
    >>> print(round(fit.coef["x"], 6))
    1.1
    """
    y = np.asarray(y, dtype=float)
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[0] != y.shape[0]:
        raise DataError("X must be a 2-d array with one row per element of y")
    n, p = X.shape
    names = [f"x{j}" for j in range(p)] if names is None else list(names)
    if n <= p:
        raise DataError(f"{n} observations cannot fit {p} coefficients")
    w = None if weights is None else np.asarray(weights, dtype=float)
    beta = _wls(y, X, w)
    kind = vcov if vcov == "iid" else vcov.upper()
    sw = sandwich(X, y - X @ beta, kind, weights=w, clusters=clusters)
    return OlsFit(
        beta, names, sw, y=y, X=X, weights=w, vcov_type=kind, model="OLS" if w is None else "WLS"
    )


def ols(
    formula: str,
    data: Any,
    weights: str | np.ndarray | None = None,
    vcov: str | dict[str, Any] = "iid",
    offset: str | np.ndarray | None = None,
) -> OlsFit:
    """Least squares with classical, robust or cluster-robust standard errors.

    Parameters
    ----------
    formula : str
        ``"y ~ x1 + x2"`` in the package's formula language (no random-effect bars).
    data : pandas or polars DataFrame, or dict of arrays
    weights : str or array, optional
        Prior weights (a column name or an array with one value per row of ``data``):
        weighted least squares as R's ``lm(weights=)``; zero weights leave a row out.
    vcov : str or dict
        ``"iid"`` (default), ``"HC0"``, ``"HC1"`` (= ``"robust"``, Stata's ``vce(robust)``),
        ``"HC2"``, ``"HC3"``, or ``{"CR0" | "CR1" | "CR2": column}`` for cluster-robust
        errors, ``{"CR0" | "CR1": [col1, col2]}`` for two-way clustering; pyfixest's
        ``"hetero"``, ``{"CRV1": column}`` and ``{"CRV3": column}`` too. The module
        documentation of :mod:`multilevel.inference.sandwich` states the small-sample factor
        and test degrees of freedom of each.
    offset : str or array, optional
        A term with coefficient 1 (a column name or one value per row), added to any
        ``offset(expr)`` terms of the formula, as R's ``lm(offset=)``: the coefficients are
        those of ``y - offset``, ``fitted`` includes the offset, and R-squared and F are
        those of R's current ``summary.lm`` (from the fitted values without the offset;
        R 4.2's kept the offset in them).

    Returns
    -------
    OlsFit

    Examples
    --------
    >>> import multilevel as ml
    >>> hsb = ml.datasets.load("hsb")
    >>> fit = ml.ols("mathach ~ ses", hsb, vcov={"CR1": "school"})
    >>> print(round(fit.coef["ses"], 4), round(fit.se["ses"], 4), fit.n_clusters)
    3.1839 0.1335 (160,)
    """
    kind, specs = parse_vcov(vcov)
    prep = fixed_arrays(formula, data, weights, specs, offset)
    n, p = prep.X.shape
    if n <= p:
        raise DataError(f"{n} usable observations cannot fit {p} coefficients")
    check_magnitudes(
        [formula.split("~")[0].strip(), *prep.names],
        [prep.y, *(prep.X[:, j] for j in range(p))],
    )
    if prep.weights is not None:
        check_magnitudes(["weights"], [prep.weights])
    o = prep.offset
    beta = _wls(prep.y if o is None else prep.y - o, prep.X, prep.weights)
    fitted = prep.X @ beta if o is None else prep.X @ beta + o
    sw = sandwich(prep.X, prep.y - fitted, kind, weights=prep.weights, clusters=prep.extras or None)
    return OlsFit(
        beta,
        prep.names,
        sw,
        y=prep.y,
        X=prep.X,
        weights=prep.weights,
        vcov_type=vcov_label(kind, specs),
        n_dropped=prep.n_dropped,
        dropped_columns=prep.dropped_columns,
        formula=formula,
        model="OLS" if prep.weights is None else "WLS",
        rows=prep.rows,
        input_index=input_index(data),
        n_zero_weight=prep.n_zero_weight,
        fitted=None if o is None else fitted,
        offset=o,
    )
