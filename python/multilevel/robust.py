"""Ordinary and weighted least squares with robust and cluster-robust covariances.

``ols(formula, data, weights=None, vcov=...)`` fits ``y = X beta + e`` by (weighted) least
squares and estimates the covariance of ``beta`` in one of these ways:

``"iid"``
    ``s^2 (X'WX)^-1`` with ``s^2 = sum(w e^2) / (n - k)`` (R's ``vcov(lm)``).
``"HC0"`` .. ``"HC3"``
    Heteroskedasticity-consistent sandwiches ``B M B`` with ``B = (X'WX)^-1`` and
    ``M = sum_i u_i^2 x_i x_i'`` where ``u_i = sqrt(w_i) e_i`` scaled by 1 (HC0),
    ``sqrt(n / (n - k))`` overall (HC1, Stata's ``vce(robust)``), ``1 / sqrt(1 - h_i)`` (HC2)
    or ``1 / (1 - h_i)`` (HC3); ``h_i`` are the diagonal elements of the (weighted) hat matrix.
    These equal R's ``sandwich::vcovHC(fit, type=...)``.
``{"CR0": col}``
    Cluster-robust ``B (sum_g s_g s_g') B`` with ``s_g`` the sum of the scores ``x_i w_i e_i``
    in cluster ``g``, no small-sample factor
    (``sandwich::vcovCL(fit, cluster, type="HC0", cadjust=FALSE)``).
``{"CR1": col}``
    CR0 times ``G/(G-1) * (n-1)/(n-k)``: Stata's ``vce(cluster col)`` and the default of
    ``sandwich::vcovCL(fit, cluster)``. (clubSandwich's ``"CR1"`` is ``G/(G-1)`` alone,
    which is this matrix times ``(n-k)/(n-1)``.)
``{"CR2": col}``
    Bell and McCaffrey's bias-reduced estimator with the adjustment matrices
    ``A_g = (I - H_gg)^-1/2`` of clubSandwich's ``vcovCR(fit, cluster, type="CR2")`` (working
    model: independent errors of equal variance; with weights, clubSandwich's working model for
    weighted ``lm``). Its t-tests use the Satterthwaite degrees of freedom of clubSandwich's
    ``coef_test(fit, vcov, test="Satterthwaite")``.
``{"CR0" | "CR1": [col1, col2]}``
    Two-way clustering (Cameron, Gelbach and Miller 2011): ``V_1 + V_2 - V_12`` where ``V_12``
    clusters on the intersection of the two columns. With CR1 every term takes its own
    ``G_j/(G_j-1)`` and the whole sum ``(n-1)/(n-k)``, exactly as
    ``sandwich::vcovCL(fit, cluster=~col1+col2)``; no correction is made if the sum is not
    positive semi-definite (sandwich's ``fix=FALSE``).

Degrees of freedom of the t-tests, intervals and the F test: ``n - k`` for ``"iid"`` and HC;
``G - 1`` for CR0 and CR1 (Stata's convention; ``min(G_1, G_2) - 1`` for two-way clustering);
the Satterthwaite degrees of freedom, one per coefficient, for CR2 (its F test uses ``G - 1``).

The module also holds the t, F and chi-square tail functions (thin wrappers of scipy.stats)
used by the results of ``panel`` and ``lmlist``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _stats

from multilevel.exceptions import DataError, MissingColumnError
from multilevel.factors import combine, factor

__all__ = ["OlsFit", "ols", "ols_arrays", "sandwich"]

_HC_TYPES = ("HC0", "HC1", "HC2", "HC3")
_CR_TYPES = ("CR0", "CR1", "CR2")


# --------------------------------------------------------------------------- distributions
# scipy is already a run-time dependency (design.py's QR, results.py's anova); these wrappers
# only fix the conventions used here: two-sided t p-values, ``df = inf`` as the normal limit.
def _t_sf(t: float, df: float) -> float:
    """Upper tail P(T > t) of Student's t with ``df`` degrees of freedom (``inf``: normal)."""
    return float(_stats.t.sf(t, df))


def _t_pvalue(t: float, df: float) -> float:
    """Two-sided p-value of a t statistic."""
    return float(2.0 * _stats.t.sf(abs(t), df))


def _t_ppf(q: float, df: float) -> float:
    """Quantile of Student's t."""
    if not 0.0 < q < 1.0:
        raise ValueError("q must lie strictly between 0 and 1")
    return float(_stats.t.ppf(q, df))


def _f_sf(f: float, df1: float, df2: float) -> float:
    """Upper tail P(F > f) of the F distribution (``df2 = inf``: chi-square / df1)."""
    if math.isinf(df2):
        return _chi2_sf(f * df1, df1)
    return float(_stats.f.sf(f, df1, df2))


def _chi2_sf(x: float, df: float) -> float:
    """Upper tail P(X > x) of the chi-square distribution."""
    return float(_stats.chi2.sf(x, df))


# --------------------------------------------------------------------------- cluster codes
def _codes(values: Any, name: str = "cluster") -> tuple[np.ndarray, int]:
    """0-based integer codes of a grouping variable and its number of levels."""
    values = pd.Series(np.asarray(values) if not isinstance(values, pd.Series) else values)
    if values.isna().any():
        raise DataError(
            f"{name} has {int(values.isna().sum())} missing value(s); "
            "drop those rows or give them a level"
        )
    codes, levels = factor(values)
    return codes, len(levels)


def _cluster_sums(U: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Row sums of U within each cluster: (G, k)."""
    out = np.empty((n_groups, U.shape[1]))
    for j in range(U.shape[1]):
        out[:, j] = np.bincount(codes, weights=U[:, j], minlength=n_groups)
    return out


def _split_rows(codes: np.ndarray, n_groups: int) -> list[np.ndarray]:
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=n_groups))[:-1]
    return np.split(order, bounds)


def _sym_power(S: np.ndarray, power: float) -> np.ndarray:
    """Symmetric matrix power through the eigendecomposition; eigenvalues near 0 give 0."""
    vals, vecs = np.linalg.eigh((S + S.T) / 2.0)
    keep = vals > 1e-12
    scaled = np.zeros_like(vals)
    scaled[keep] = vals[keep] ** power
    return (vecs * scaled) @ vecs.T


# --------------------------------------------------------------------------- sandwiches
@dataclass
class _Sandwich:
    vcov: np.ndarray
    df: np.ndarray  # degrees of freedom of each coefficient's t-test
    df_f: float  # denominator degrees of freedom of the F test
    n_clusters: tuple[int, ...] = ()
    factor: float = 1.0  # the small-sample factor applied (1 for HC2, HC3, CR2)


def sandwich(
    X: np.ndarray,
    resid: np.ndarray,
    kind: str,
    weights: np.ndarray | None = None,
    clusters: Sequence[np.ndarray] | None = None,
    k: int | None = None,
) -> _Sandwich:
    """Robust covariance of least-squares coefficients from arrays.

    Parameters
    ----------
    X : (n, k) array
        The regressors of the fit (unweighted).
    resid : (n,) array
        Residuals ``y - X beta`` (unweighted).
    kind : {"iid", "HC0", "HC1", "HC2", "HC3", "CR0", "CR1", "CR2"}
    weights : (n,) array, optional
        Positive prior weights of a weighted least-squares fit.
    clusters : list of (n,) arrays, optional
        One grouping array (CR0, CR1, CR2) or two (CR0, CR1: two-way clustering).
    k : int, optional
        Number of parameters for the small-sample factors and ``n - k`` (defaults to the
        number of columns of ``X``; a within estimator counts only its slopes, as plm and Stata).

    Returns
    -------
    _Sandwich
        ``vcov`` (k, k), ``df`` (per coefficient), ``df_f``, ``n_clusters``, ``factor``.
    """
    X = np.asarray(X, dtype=float)
    e = np.asarray(resid, dtype=float)
    n, p = X.shape
    k = p if k is None else int(k)
    sw = None if weights is None else np.sqrt(np.asarray(weights, dtype=float))
    Xs = X if sw is None else X * sw[:, None]
    es = e if sw is None else e * sw
    Q, R = np.linalg.qr(Xs)
    Rinv = np.linalg.solve(R, np.eye(p))
    B = Rinv @ Rinv.T  # (X'WX)^-1
    df_resid = float(n - k)
    if kind == "iid":
        s2 = float(es @ es) / (n - k)
        return _Sandwich(s2 * B, np.full(p, df_resid), df_resid)
    if kind in _HC_TYPES:
        u = es.copy()
        factor = 1.0
        if kind == "HC1":
            factor = n / (n - k)
        elif kind in ("HC2", "HC3"):
            h = np.einsum("ij,ij->i", Q, Q)
            u = u / (np.sqrt(1.0 - h) if kind == "HC2" else (1.0 - h))
        S = Xs * u[:, None]
        V = factor * (B @ (S.T @ S) @ B)
        return _Sandwich(V, np.full(p, df_resid), df_resid, factor=factor)
    if kind not in _CR_TYPES:
        raise ValueError(f"unknown covariance type {kind!r}")
    if not clusters:
        raise ValueError(f"{kind} needs a cluster variable")
    if len(clusters) > 2:
        raise ValueError("at most two cluster variables are supported")
    coded = [_codes(c) for c in clusters]
    for codes, G in coded:
        if G < 2:
            raise DataError(
                "cluster-robust covariance needs at least 2 clusters; the cluster variable "
                "has a single value"
            )
    scores = Xs * es[:, None]
    if kind == "CR2":
        if len(coded) != 1:
            raise ValueError("CR2 supports one cluster variable only")
        codes, G = coded[0]
        V, df = _cr2(X, e, B, codes, G, None if weights is None else np.asarray(weights, float))
        return _Sandwich(V, df, float(G - 1), (G,))
    hc1 = (n - 1) / (n - k) if kind == "CR1" else 1.0
    terms: list[tuple[float, np.ndarray, int]] = []
    if len(coded) == 1:
        terms.append((1.0, *coded[0]))
    else:
        (c1, g1), (c2, g2) = coded
        c12, g12 = combine([c1, c2], [g1, g2])
        terms += [(1.0, c1, g1), (1.0, c2, g2), (-1.0, c12, g12)]
    meat = np.zeros((p, p))
    for sign, codes, G in terms:
        adj = G / (G - 1) if kind == "CR1" else 1.0
        Sg = _cluster_sums(scores, codes, G)
        meat += sign * adj * (Sg.T @ Sg)
    V = hc1 * (B @ meat @ B)
    Gmin = min(G for _, G in coded)
    factor = hc1 * (coded[0][1] / (coded[0][1] - 1) if kind == "CR1" else 1.0)
    return _Sandwich(
        V, np.full(p, float(Gmin - 1)), float(Gmin - 1), tuple(G for _, G in coded), factor
    )


def _cr2(
    X: np.ndarray,
    e: np.ndarray,
    B: np.ndarray,
    codes: np.ndarray,
    G: int,
    w: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray]:
    """CR2 covariance and Satterthwaite degrees of freedom (clubSandwich, working model I).

    With weights W (scaled to mean 1, which changes nothing) and target Theta = I:
    ``G_j = I - H_jj - H_jj' + X_j B (X'W^2X) B X_j'`` with ``H_jj = X_j B X_j' W_j``,
    ``A_j = G_j^-1/2`` and ``V = B [sum_j X_j'W_j A_j e_j e_j' A_j W_j X_j] B``.
    Unweighted, ``G_j = I - H_jj``.
    """
    p = X.shape[1]
    if w is not None:
        w = w / w.mean()
        B = np.linalg.inv(X.T @ (X * w[:, None]))
        XW = X * w[:, None]
        XWWX = XW.T @ XW
    groups = _split_rows(codes, G)
    meat = np.zeros((p, p))
    ME = []  # B X_j' W_j A_j (p x n_j), clubSandwich's "ME"
    for rows in groups:
        Xj = X[rows]
        if w is None:
            Gj = np.eye(len(rows)) - Xj @ B @ Xj.T
            XWj = Xj
        else:
            wj = w[rows]
            Hj = Xj @ B @ Xj.T * wj[None, :]
            Gj = np.eye(len(rows)) - Hj - Hj.T + Xj @ B @ XWWX @ B @ Xj.T
            XWj = Xj * wj[:, None]
        Aj = _sym_power(Gj, -0.5)
        Ej = XWj.T @ Aj  # p x n_j
        s = Ej @ e[rows]
        meat += np.outer(s, s)
        ME.append(B @ Ej)
    V = B @ meat @ B
    # Satterthwaite degrees of freedom: df_i = (tr P_i)^2 / ||P_i||_F^2 with the J x J matrix
    # P_i = diag(||g_ij||^2) + H3_i'H3_i - H1_i'H2_i - H2_i'H1_i (clubSandwich's P_array), kept
    # in factored form so that no J x J matrix is formed.
    M_U = B
    L_U = np.linalg.cholesky(M_U)
    if w is None:
        Omega_L = L_U
    else:
        Omega_L = np.linalg.cholesky(M_U @ XWWX @ M_U)
    H1 = np.empty((p, p, G))
    H2 = np.empty((p, p, G))
    H3 = np.empty((p, p, G))
    gsq = np.empty((p, G))
    for j, rows in enumerate(groups):
        Xj = X[rows]
        MEj = ME[j]
        MEU = MEj @ Xj
        H1[:, :, j] = MEU @ L_U
        H3[:, :, j] = MEU @ Omega_L
        if w is None:
            H2[:, :, j] = H1[:, :, j]
        else:
            H2[:, :, j] = (MEj * w[rows][None, :]) @ Xj @ L_U
        gsq[:, j] = np.einsum("ij,ij->i", MEj, MEj)
    df = np.empty(p)
    for i in range(p):
        h1, h2, h3 = H1[i].T, H2[i].T, H3[i].T  # J x p
        Lf = np.hstack([h3, -h1, -h2])  # P = D + Lf Rf'
        Rf = np.hstack([h3, h2, h1])
        d = gsq[i]
        diag_lr = np.einsum("ij,ij->i", Lf, Rf)
        trace = d.sum() + diag_lr.sum()
        frob = (d * d).sum() + 2.0 * (d * diag_lr).sum() + ((Lf.T @ Lf) * (Rf.T @ Rf)).sum()
        df[i] = trace * trace / frob
    return V, df


# --------------------------------------------------------------------------- results
def _has_intercept(X: np.ndarray) -> bool:
    if X.shape[0] == 0:
        return False
    return bool(np.any(np.all(X == X[0:1, :], axis=0) & (X[0] != 0)))


class OlsFit:
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
    resid, fitted : numpy.ndarray
        Residuals and fitted values of the rows used.
    n_clusters : tuple of int
        Numbers of clusters (cluster-robust covariances only).
    """

    def __init__(
        self,
        coef: np.ndarray,
        names: Sequence[str],
        sw: _Sandwich,
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
        self.dropped_columns = list(dropped_columns)
        self.formula = formula
        self.model = model
        self.rows = rows
        self.fitted = X @ coef if fitted is None else fitted
        self.resid = y - self.fitted
        self.weights = weights
        # Sums of squares as dot products: no row-sized temporaries when there are no weights.
        wr = self.resid if weights is None else weights * self.resid
        ssr = float(wr @ self.resid)
        self.ssr = ssr
        self.sigma = math.sqrt(ssr / self.df_resid) if self.df_resid > 0 else math.nan
        has_int = _has_intercept(X) if intercept is None else intercept
        if has_int:
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
            const = np.all(X == X[0:1, :], axis=0) & (X[0] != 0)
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
            self.f_pvalue = _f_sf(stat, len(test), sw.df_f)
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

        return wald_fixed_df(self.coef, self.vcov.to_numpy(), self.df.to_numpy(), self.f_df[1],
                             L, rhs, level)

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
        vals = [_t_pvalue(t, d) for t, d in zip(self.t, self.df)]
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
        q = np.array([_t_ppf(0.5 + level / 2.0, d) for d in self.df])
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
        return _summary_text(self, self._header(), level)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.model}, {self.nobs} obs, vcov={self.vcov_type}>"


def _summary_text(fit: Any, header: list[tuple[str, str]], level: float = 0.95) -> str:
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
    lines.append(
        f"{'':<16}{'coef':>11}{'std err':>11}{'t':>9}{'P>|t|':>8}{lo:>11}{hi:>11}"
    )
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


# --------------------------------------------------------------------------- front end
def _parse_vcov(vcov: Any) -> tuple[str, list[Any]]:
    """Normalise ``vcov`` to (kind, list of cluster specs)."""
    if isinstance(vcov, str):
        kind = vcov.upper() if vcov.lower() != "iid" else "iid"
        if kind in ("ROBUST",):
            kind = "HC1"
        if kind not in ("iid", *_HC_TYPES):
            if kind in _CR_TYPES:
                raise ValueError(
                    f"{kind} needs a cluster column: vcov={{{kind!r}: 'column'}}"
                )
            raise ValueError(
                f"unknown vcov {vcov!r}; use 'iid', 'HC0'..'HC3' or {{'CR1': column}}"
            )
        return kind, []
    if isinstance(vcov, dict):
        if len(vcov) != 1:
            raise ValueError("vcov must be a dict with one key, e.g. {'CR1': 'school'}")
        ((kind, spec),) = vcov.items()
        kind = str(kind).upper()
        if kind not in _CR_TYPES:
            raise ValueError(f"unknown cluster-robust type {kind!r}; use CR0, CR1 or CR2")
        specs = list(spec) if isinstance(spec, (list, tuple)) else [spec]
        if not 1 <= len(specs) <= 2:
            raise ValueError("give one or two cluster columns")
        if kind == "CR2" and len(specs) != 1:
            raise ValueError("CR2 supports one cluster column only")
        return kind, specs
    raise TypeError("vcov must be a string such as 'HC1' or a dict such as {'CR1': 'school'}")


def _vcov_label(kind: str, specs: list[Any]) -> str:
    if not specs:
        return kind
    names = [s if isinstance(s, str) else "<array>" for s in specs]
    return f"{kind} ({', '.join(names)})"


@dataclass
class _Prepared:
    y: np.ndarray
    X: np.ndarray
    names: list[str]
    weights: np.ndarray | None
    extras: list[np.ndarray]
    rows: np.ndarray
    n_dropped: int
    dropped_columns: list[str]


def _prepare(formula: str, data: Any, weights: Any, extras: Sequence[Any]) -> _Prepared:
    """Build y and X through ``design.build_fixed`` and align extra columns (clusters,
    entity, time, groups) with the rows used. Rows missing an extra column are dropped and
    counted with the others."""
    from multilevel.data import as_pandas
    from multilevel.design import build_fixed

    df = as_pandas(data)
    n_in = len(df)
    keep = np.ones(n_in, dtype=bool)
    extra_values = []
    for spec in extras:
        if isinstance(spec, str):
            if spec not in df.columns:
                raise MissingColumnError(spec, df.columns)
            vals = df[spec]
        else:
            vals = pd.Series(np.asarray(spec))
            if len(vals) != n_in:
                raise DataError(
                    f"a grouping array has {len(vals)} values but the data have {n_in} rows"
                )
        keep &= ~pd.isna(vals).to_numpy()
        extra_values.append(vals)
    sub = df if keep.all() else df.loc[keep]
    if isinstance(weights, str) or weights is None:
        w_arg = weights
    else:
        w_arg = np.asarray(weights, dtype=float)[keep]
    design = build_fixed(formula, sub, weights=w_arg)
    base = np.flatnonzero(keep)
    rows = base[np.asarray(design.rows)]
    w = getattr(design, "weights", None)
    if w is None and weights is not None:
        w = (
            df[weights].to_numpy(dtype=float)[rows]
            if isinstance(weights, str)
            else np.asarray(weights, dtype=float)[rows]
        )
    if w is not None:
        w = np.asarray(w, dtype=float)
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise DataError("weights must be finite and non-negative")
    y = np.asarray(design.y, dtype=float)
    X = np.asarray(design.X, dtype=float)
    all_rows = len(rows) == n_in  # rows is then 0..n-1: no gather needed
    ex = [np.asarray(v.to_numpy() if all_rows else v.to_numpy()[rows]) for v in extra_values]
    if w is not None and np.any(w == 0):
        pos = w > 0  # zero weights: the row does not enter the fit (as in R's lm)
        y, X, w, rows = y[pos], X[pos], w[pos], rows[pos]
        ex = [v[pos] for v in ex]
    return _Prepared(
        y=y,
        X=X,
        names=list(design.names),
        weights=w,
        extras=ex,
        rows=rows,
        n_dropped=n_in - len(np.asarray(design.rows)),
        dropped_columns=list(getattr(design, "dropped_columns", [])),
    )


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
        errors, ``{"CR0" | "CR1": [col1, col2]}`` for two-way clustering. The module
        documentation states the small-sample factor and test degrees of freedom of each.

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
    kind, specs = _parse_vcov(vcov)
    prep = _prepare(formula, data, weights, specs)
    n, p = prep.X.shape
    if n <= p:
        raise DataError(f"{n} usable observations cannot fit {p} coefficients")
    beta = _wls(prep.y, prep.X, prep.weights)
    sw = sandwich(prep.X, prep.y - prep.X @ beta, kind, weights=prep.weights,
                  clusters=prep.extras or None)
    return OlsFit(
        beta,
        prep.names,
        sw,
        y=prep.y,
        X=prep.X,
        weights=prep.weights,
        vcov_type=_vcov_label(kind, specs),
        n_dropped=prep.n_dropped,
        dropped_columns=prep.dropped_columns,
        formula=formula,
        model="OLS" if prep.weights is None else "WLS",
        rows=prep.rows,
    )
