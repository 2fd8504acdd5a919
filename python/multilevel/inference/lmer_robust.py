"""Cluster-robust covariance of the fixed effects of a linear mixed model.

This is clubSandwich's ``vcovCR(fit, cluster, type)`` for an lme4 ``lmerMod`` (Pustejovsky
and Tipton 2018; Bell and McCaffrey 2002), with the Satterthwaite degrees of freedom of its
``coef_test(fit, vcov, test = "Satterthwaite")``.

Working model. The fitted random effects imply, for each cluster ``j``, the marginal
covariance ``sigma^2 V_j`` of its rows with ``V_j = Z_j Lambda Lambda' Z_j' + I`` (``Lambda``
the relative covariance factor at the fitted theta). ``sigma^2`` cancels everywhere, so
``V_j`` is used unscaled. ``W_j = V_j^-1`` are the weights of the generalised least-squares
estimate ``beta = B X'W y`` with ``B = (sum_j X_j' W_j X_j)^-1`` (lme4's ``vcov`` over
``sigma^2``), and the target variance is ``V_j`` itself (clubSandwich's default for lmer:
``inverse_var = TRUE``). Residuals are marginal: ``e = y - offset - X beta``.

The estimator is ``B (sum_j E_j e_j e_j' E_j') B`` with ``E_j = X_j' W_j A_j`` and

=======  ==============================================================================
CR0      ``A_j = I``
CR1      ``A_j = sqrt(J / (J - 1)) I`` (J clusters)
CR1p     ``A_j = sqrt(J / (J - p)) I`` (p fixed effects)
CR1S     ``A_j = sqrt(J (N - 1) / ((J - 1) (N - p))) I`` (N rows; Stata's factor)
CR2      ``A_j = D_j' (D_j S_j D_j')^-1/2 D_j`` with ``D_j' D_j = V_j`` and
         ``S_j = V_j - X_j B X_j'`` the working covariance of the residuals: the
         bias-reduced estimator, exactly unbiased when the working model is true
CR3      ``A_j = (I - X_j B X_j' W_j)^-1`` (the jackknife approximation)
CR4      ``E_j = F_j^{1/2}' (F_j^{1/2} (F_j - F_j B F_j) F_j^{1/2}')^-1/2 F_j^{1/2} X_j' W_j``
         with ``F_j = X_j' W_j X_j``
=======  ==============================================================================

Inverse square roots are taken through the eigendecomposition with eigenvalues below 1e-12
set to 0 (clubSandwich's ``matrix_power``). CR2's ``A_j`` does not depend on which square root
``D_j`` of ``V_j`` is used; the lower Cholesky factor is.

Satterthwaite degrees of freedom of coefficient ``i`` (clubSandwich's ``get_GH`` and
``get_P_array``): with ``M_j = B E_j`` (p x n_j), ``d_j = (M_j V_j M_j')_ii`` and the
vectors ``h_j = (M_j X_j L_B)_i.`` where ``L_B L_B' = B``, the J x J matrix
``P = diag(d) - H'H`` (H the p x J matrix of columns ``h_j``) gives
``df = tr(P)^2 / ||P||_F^2``. It is evaluated from ``d`` and the p x p matrix ``H H'``,
never as a J x J matrix.

Clusters. V is block diagonal by cluster only if every random-effects grouping factor is
nested in the cluster: each level of each grouping factor lies in a single cluster. The
cluster is therefore a grouping at or above the highest level of the random effects (the
default is that grouping factor, the one with fewest levels); anything else is an error, as
in clubSandwich. Everything is computed cluster by cluster: ``V_j`` (n_j x n_j) is formed
only for CR2; the other types use ``W_j = I - ZL_j (I + ZL_j' ZL_j)^-1 ZL_j'`` with
``ZL_j = Z_j Lambda`` (the random effects of cluster j only). No n x n matrix is formed.

Not supported: prior weights (clubSandwich does not support them for lmer either).
clubSandwich 0.5.8 does not subtract an offset from its residuals (``y - X beta``); here the
offset is subtracted, so fits with an offset differ from it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as _stats

from multilevel.data import as_pandas, n_rows
from multilevel.exceptions import DataError, MissingColumnError, MissingValuesWarning
from multilevel.factors import factor
from multilevel.inference.sandwich import cluster_label, split_rows, sym_power

__all__ = ["TYPES", "RobustVcov", "cluster_robust", "vcov_robust"]

TYPES = ("CR0", "CR1", "CR1p", "CR1S", "CR2", "CR3", "CR4")
_CANONICAL = {t.upper(): t for t in TYPES}

WEIGHTS_MESSAGE = (
    "cluster-robust covariances of lmer fits with prior weights are not implemented "
    "(clubSandwich does not support them for lmer either)"
)


# --------------------------------------------------------------------------- the result
@dataclass(frozen=True)
class RobustVcov:
    """A cluster-robust covariance of the fixed effects and its Satterthwaite df.

    Attributes
    ----------
    type : str
        ``"CR0"``, ``"CR1"``, ``"CR1p"``, ``"CR1S"``, ``"CR2"``, ``"CR3"`` or ``"CR4"``.
    cluster : str
        The cluster's name (``"<array>"`` for an array).
    n_clusters : int
    names : list of str
        Fixed-effect names.
    vcov : (p, p) array
    df : (p,) array
        Satterthwaite degrees of freedom of each coefficient's t-test (clubSandwich's
        ``coef_test(..., test = "Satterthwaite")``).
    """

    type: str
    cluster: str
    n_clusters: int
    names: list[str]
    vcov: np.ndarray
    df: np.ndarray

    def frame(self) -> pd.DataFrame:
        """The covariance as a DataFrame indexed by the fixed-effect names."""
        return pd.DataFrame(self.vcov, index=self.names, columns=self.names)

    @property
    def se(self) -> pd.Series:
        """Robust standard errors."""
        return pd.Series(np.sqrt(np.diag(self.vcov)), index=self.names, name="se")

    def describe(self) -> str:
        """One line for reports: type, cluster and number of clusters."""
        return (
            f"cluster-robust {self.type} standard errors, {self.n_clusters} clusters "
            f"({self.cluster}), Satterthwaite df"
        )

    def coef_table(self, beta: np.ndarray) -> pd.DataFrame:
        """Estimate, Std. Error, df, t value and Pr(>|t|) (two-sided, Satterthwaite df)."""
        se = np.sqrt(np.diag(self.vcov))
        t = beta / se
        p = 2.0 * _stats.t.sf(np.abs(t), self.df)
        return pd.DataFrame(
            {"Estimate": beta, "Std. Error": se, "df": self.df, "t value": t, "Pr(>|t|)": p},
            index=self.names,
        )


# --------------------------------------------------------------------------- arguments
def canonical_type(kind: Any) -> str:
    """``"cr2"`` -> ``"CR2"``, ``"cr1p"`` -> ``"CR1p"``; an unknown type is a ValueError."""
    key = str(kind).upper()
    if key not in _CANONICAL:
        raise ValueError(f"unknown cluster-robust type {kind!r}; use one of {', '.join(TYPES)}")
    return _CANONICAL[key]


def parse_vcov(vcov: Any) -> tuple[str, Any]:
    """lmer's ``vcov=`` argument -> (type, cluster spec or None for the default grouping).

    ``"CR2"`` clusters on the highest-level grouping factor; ``{"CR2": "school"}`` on a column
    or grouping factor; ``{"CR2": array}`` on an array with one value per row of the data.
    """
    if isinstance(vcov, str):
        return canonical_type(vcov), None
    if isinstance(vcov, dict):
        if len(vcov) != 1:
            raise ValueError("vcov must be a dict with one key, e.g. {'CR2': 'school'}")
        ((kind, spec),) = vcov.items()
        if (
            isinstance(spec, (list, tuple))
            and len(spec) != 0
            and all(isinstance(s, str) for s in spec)
        ):
            raise ValueError("lmer's cluster-robust covariances take one cluster variable")
        return canonical_type(kind), spec
    raise TypeError("vcov must be a type such as 'CR2' or a dict such as {'CR2': 'school'}")


def drop_missing_cluster(spec: Any, data: Any, weights: Any, offset: Any):
    """Before an lmer fit with ``vcov=``: drop the rows whose cluster value is missing.

    Returns ``(data, weights, offset, spec, kept)``: the data (and array weights, offset and
    cluster) without those rows, and the positions of the kept rows in the input (None when
    nothing was dropped). The rows are counted in ``fit.n_dropped`` (see :func:`restore_rows`),
    as :func:`multilevel.ols` counts rows missing a cluster.
    """
    if spec is None:
        return data, weights, offset, spec, None
    df = as_pandas(data)
    if isinstance(spec, str):
        if spec not in df.columns:
            return data, weights, offset, spec, None  # a grouping factor such as "a:b"
        values = df[spec]
    else:
        values = pd.Series(np.asarray(spec)) if not isinstance(spec, pd.Series) else spec
        if len(values) != len(df):
            raise DataError(
                f"the cluster array has {len(values)} values but the data have {len(df)} rows"
            )
    missing = np.asarray(pd.isna(values), dtype=bool)
    if not missing.any():
        return data, weights, offset, spec, None
    keep = np.flatnonzero(~missing)
    k = int(missing.sum())
    warnings.warn(
        f"dropped {k} row{'s' if k != 1 else ''} with a missing cluster value "
        f"(in {cluster_label(spec)!r})",
        MissingValuesWarning,
        stacklevel=3,
    )

    def sub(v: Any) -> Any:
        if v is None or isinstance(v, str):
            return v
        return np.asarray(v)[keep]

    spec = spec if isinstance(spec, str) else np.asarray(values)[keep]
    return (df.iloc[keep].reset_index(drop=True), sub(weights), sub(offset), spec, keep)


def restore_rows(design: Any, kept: np.ndarray | None, n_input: int) -> Any:
    """The design of a fit to the rows ``kept`` of the input, with ``rows`` and ``n_dropped``
    referring to the whole input again."""
    if kept is None:
        return design
    rows = np.asarray(kept)[np.asarray(design.rows)]
    return replace(design, rows=rows, n_dropped=n_input - len(rows))


# --------------------------------------------------------------------------- clusters
def _outer_group(design: Any) -> int:
    """Index of the first term on the grouping factor with fewest levels (clubSandwich's
    ``get_outer_group``)."""
    best = 0
    for k, t in enumerate(design.terms):
        if len(t.levels) < len(design.terms[best].levels):
            best = k
    return best


def resolve_cluster(fit: Any, spec: Any) -> tuple[np.ndarray, int, str]:
    """Cluster codes (0-based, one per row used by the fit), number of clusters and a label.

    ``spec``: None (the grouping factor with fewest levels), a grouping factor's name as
    lme4 prints it (``"school"``, ``"cask:batch"``), a column of the fit's data, or an array
    with one value per row of the data or per row used by the fit.
    """
    design = fit.design
    nobs = len(design.y)
    if spec is None:
        if not design.terms:
            raise DataError("the model has no random effects to cluster on")
        t = design.terms[_outer_group(design)]
        return np.asarray(t.codes, dtype=np.int64), len(t.levels), t.group
    label = cluster_label(spec)
    if isinstance(spec, str):
        for t in design.terms:
            if t.group == spec:
                return np.asarray(t.codes, dtype=np.int64), len(t.levels), spec
        data = getattr(fit, "_data", None)
        if data is None:
            raise DataError(
                f"cluster {spec!r} is not a grouping factor of the model and the "
                "fit keeps no data; give the cluster as an array"
            )
        df = as_pandas(data)
        if spec not in df.columns:
            raise MissingColumnError(spec, df.columns)
        values = df[spec].to_numpy()[np.asarray(design.rows)]
    else:
        values = np.asarray(spec.to_numpy() if isinstance(spec, pd.Series) else spec)
        if values.ndim != 1:
            raise DataError("the cluster array must be one-dimensional")
        data = getattr(fit, "_data", None)
        n_input = None if data is None else n_rows(data)
        if n_input is not None and len(values) == n_input:
            values = values[np.asarray(design.rows)]
        elif len(values) != nobs:
            raise DataError(
                f"the cluster array has {len(values)} values; give one per row of the data"
                + (f" ({n_input})" if n_input is not None else "")
                + f" or one per row used by the fit ({nobs})"
            )
    missing = np.asarray(pd.isna(values), dtype=bool)
    if missing.any():
        raise DataError(
            f"cluster {label!r} has {int(missing.sum())} missing value(s) among the rows of "
            "the fit; pass vcov={...} to lmer() to drop those rows before fitting, or give "
            "them a level"
        )
    codes, levels = factor(pd.Series(values))
    return codes, len(levels), label


def check_nested(design: Any, codes: np.ndarray, n_clusters: int, label: str) -> None:
    """Every level of every random-effects grouping factor must lie in a single cluster."""
    if n_clusters < 2:
        raise DataError(
            "cluster-robust covariance needs at least 2 clusters; the cluster "
            f"{label!r} has a single value among the rows of the fit"
        )
    for t in design.terms:
        c = np.asarray(t.codes)
        owner = np.full(len(t.levels), -1, dtype=np.int64)
        owner[c] = codes  # the last row of each level wins; all rows must agree with it
        bad = owner[c] != codes
        if bad.any():
            lev = t.levels[int(c[np.flatnonzero(bad)[0]])]
            raise DataError(
                f"the random effects of {t.group!r} are not nested in the cluster {label!r} "
                f"(level {lev!r} of {t.group!r} falls in more than one cluster); cluster on "
                "a grouping at or above the highest level of the random effects"
            )


# --------------------------------------------------------------------------- linear algebra
def _psd_root(F: np.ndarray) -> np.ndarray:
    """R with R'R = F for a positive semi-definite F (clubSandwich's ``chol_psd``)."""
    vals, vecs = np.linalg.eigh((F + F.T) / 2.0)
    return np.sqrt(np.maximum(vals, 0.0))[:, None] * vecs.T


def _local_levels(
    level_codes: np.ndarray, cluster_codes: np.ndarray, n_clusters: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the index of its level among the levels of its cluster; per cluster, the
    number of levels. Levels must be nested in the clusters."""
    n_lev = int(level_codes.max()) + 1 if len(level_codes) else 0
    owner = np.zeros(n_lev, dtype=np.int64)
    owner[level_codes] = cluster_codes
    present = np.zeros(n_lev, dtype=bool)
    present[level_codes] = True
    levs = np.flatnonzero(present)
    order = levs[np.argsort(owner[levs], kind="stable")]
    counts = np.bincount(owner[levs], minlength=n_clusters)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    local = np.zeros(n_lev, dtype=np.int64)
    local[order] = np.arange(len(order)) - np.repeat(starts, counts)
    return local[level_codes], counts


def _z_lambda(
    zlam: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], rows: np.ndarray, j: int
) -> np.ndarray:
    """``Z_j Lambda`` restricted to the random effects of cluster ``j`` (rows ``rows``)."""
    blocks = []
    n = len(rows)
    for local, counts, ZL in zlam:
        q = ZL.shape[1]
        block = np.zeros((n, int(counts[j]) * q))
        cols = local[rows][:, None] * q + np.arange(q)[None, :]
        block[np.arange(n)[:, None], cols] = ZL[rows]
        blocks.append(block)
    return blocks[0] if len(blocks) == 1 else np.hstack(blocks)


@dataclass
class _Cluster:
    rows: np.ndarray
    ZL: np.ndarray  # n_j x m_j
    WX: np.ndarray  # W_j X_j, n_j x p
    F: np.ndarray  # X_j' W_j X_j, p x p


def cr_scale(kind: str, J: int, p: int, n: int) -> float:
    """The small-sample factor of a CR type on the squared adjustment (clubSandwich's):
    J / (J - 1) for CR1, J / (J - p) for CR1p, J (n - 1) / ((J - 1)(n - p)) for CR1S, else 1;
    J clusters, p fixed effects, n observations."""
    return {
        "CR1": J / (J - 1),
        "CR1p": J / (J - p) if p < J else math.nan,
        "CR1S": J * (n - 1) / ((J - 1) * (n - p)),
    }.get(kind, 1.0)


def cluster_robust(
    X: np.ndarray,
    resid: np.ndarray,
    terms: Sequence[tuple[np.ndarray, np.ndarray]],
    lambdas: Sequence[np.ndarray],
    codes: np.ndarray,
    n_clusters: int,
    kind: str,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster-robust covariance and Satterthwaite df from arrays (the module's mathematics).

    Parameters
    ----------
    X : (n, p) array
        Fixed-effects model matrix.
    resid : (n,) array
        Marginal residuals ``y - offset - X beta`` at the GLS estimate ``beta``.
    terms : list of (codes (n,), Z (n, q))
        The random-effects terms; every grouping must be nested in the clusters.
    lambdas : list of (q, q) arrays
        Each term's relative covariance factor ``Lambda``.
    codes : (n,) int array
        0-based cluster codes; ``n_clusters`` clusters.
    kind : str
        One of :data:`TYPES`.

    Returns
    -------
    (vcov (p, p), df (p,))

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> g = np.repeat(np.arange(6), 4)
    >>> X = np.column_stack([np.ones(24), rng.normal(size=24)])
    >>> V, df = cluster_robust(X, rng.normal(size=24), [(g, np.ones((24, 1)))],
    ...                        [np.array([[0.5]])], g, 6, "CR2")
    >>> V.shape, df.shape
    ((2, 2), (2,))
    """
    kind = canonical_type(kind)
    X = np.asarray(X, dtype=float)
    e = np.asarray(resid, dtype=float)
    n, p = X.shape
    J = int(n_clusters)
    codes = np.asarray(codes, dtype=np.int64)
    zlam = [
        (
            *_local_levels(np.asarray(c, dtype=np.int64), codes, J),
            np.asarray(Z, dtype=float).reshape(n, -1) @ np.asarray(lam, float),
        )
        for (c, Z), lam in zip(terms, lambdas)
    ]
    clusters: list[_Cluster] = []
    F_sum = np.zeros((p, p))
    for j, rows in enumerate(split_rows(codes, J)):
        Xj = X[rows]
        if zlam:
            ZL = _z_lambda(zlam, rows, j)
            K = np.eye(ZL.shape[1]) + ZL.T @ ZL
            WX = Xj - ZL @ np.linalg.solve(K, ZL.T @ Xj)  # Woodbury: V_j^-1 X_j
        else:
            ZL = np.zeros((len(rows), 0))
            WX = Xj
        F = Xj.T @ WX
        F_sum += F
        clusters.append(_Cluster(rows, ZL, WX, F))
    B = np.linalg.inv(F_sum)
    B = (B + B.T) / 2.0

    root = math.sqrt(cr_scale(kind, J, p, n))
    meat = np.zeros((p, p))
    Hs = np.empty((J, p, p))  # rows h_j' stacked: Hs[j, i, :] = (M_j X_j L_B)_i.
    D = np.empty((J, p))  # D[j, i] = (M_j V_j M_j')_ii
    L_B = np.linalg.cholesky(B)
    for j, cl in enumerate(clusters):
        ej = e[cl.rows]
        if kind == "CR2":
            Xj = X[cl.rows]
            V = cl.ZL @ cl.ZL.T
            V[np.diag_indices_from(V)] += 1.0
            L = np.linalg.cholesky(V)
            S = V - Xj @ B @ Xj.T
            Gm = sym_power(L.T @ S @ L, -0.5)
            E = ((cl.WX.T @ L) @ Gm) @ L.T  # X_j' W_j A_j with A_j = L G^-1/2 L'
            s = E @ ej
            ME = B @ E
            Hs[j] = (ME @ Xj) @ L_B
            D[j] = np.einsum("ij,ij->i", ME @ L, ME @ L)
        else:
            F = cl.F
            if kind == "CR3":
                T = np.linalg.solve(np.eye(p) - F @ B, np.eye(p))
            elif kind == "CR4":
                R = _psd_root(F)
                T = R.T @ sym_power(R @ (F - F @ B @ F) @ R.T, -0.5) @ R
            else:
                T = root * np.eye(p)
            s = T @ (cl.WX.T @ ej)
            BT = B @ T
            Hs[j] = (BT @ F) @ L_B
            D[j] = np.einsum("ij,ji->i", BT @ F, T.T @ B)
        meat += np.outer(s, s)
    vcov = B @ meat @ B
    vcov = (vcov + vcov.T) / 2.0
    return vcov, satterthwaite_df(Hs, D)


def satterthwaite_df(Hs: np.ndarray, D: np.ndarray) -> np.ndarray:
    """clubSandwich's Satterthwaite df of each coefficient: trace^2 / ||.||_F^2 of the
    coefficient's cluster matrix, from its rows h_j (``Hs[j, i, :]``) and diagonal
    (``D[j, i]``), J clusters by p coefficients."""
    p = Hs.shape[1]
    df = np.empty(p)
    for i in range(p):
        Ki = Hs[:, i, :]  # J x p: the vectors h_j as rows
        h2 = np.einsum("ij,ij->i", Ki, Ki)
        d = D[:, i]
        KtK = Ki.T @ Ki
        trace = d.sum() - h2.sum()
        frob = (d * d).sum() - 2.0 * (d * h2).sum() + (KtK * KtK).sum()
        df[i] = trace * trace / frob
    return df


# --------------------------------------------------------------------------- the fit
def vcov_robust(fit: Any, kind: str = "CR2", cluster: Any = None) -> RobustVcov:
    """Cluster-robust covariance of an :class:`~multilevel.results.LmerFit`'s fixed effects.

    Parameters
    ----------
    fit : LmerFit
    kind : str
        ``"CR0"``, ``"CR1"``, ``"CR1p"``, ``"CR1S"``, ``"CR2"`` (default), ``"CR3"``, ``"CR4"``
        as clubSandwich's ``vcovCR(fit, cluster, type)``.
    cluster : str, array or None
        A grouping factor's name, a column of the fit's data, or an array (one value per row
        of the data or per row used); None clusters on the grouping factor with fewest levels
        (clubSandwich's default). Random-effects groupings must be nested in the clusters.

    Returns
    -------
    RobustVcov

    Examples
    --------
    >>> import multilevel as ml
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
    >>> r = vcov_robust(fit, "CR2", "Subject")
    >>> r.se.round(3).tolist(), r.n_clusters
    ([6.825, 1.546], 18)
    """
    kind = canonical_type(kind)
    design = fit.design
    if design.weights is not None:
        raise NotImplementedError(WEIGHTS_MESSAGE)
    codes, n_clusters, label = resolve_cluster(fit, cluster)
    check_nested(design, codes, n_clusters, label)
    X = np.asarray(design.X, dtype=float)
    y = np.asarray(design.y, dtype=float)
    if design.offset is not None:
        y = y - np.asarray(design.offset, dtype=float)
    resid = y - X @ fit.beta
    terms = [(t.codes, t.Z) for t in design.terms]
    V, df = cluster_robust(X, resid, terms, fit.lambda_, codes, n_clusters, kind)
    return RobustVcov(kind, label, n_clusters, list(design.fixed_names), V, df)
