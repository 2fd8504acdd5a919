"""Sandwich covariances of least-squares coefficients: classical, HC0-HC3 and cluster-robust.

For ``y = X beta + e`` fitted by (weighted) least squares, the covariance of ``beta`` is
estimated in one of these ways (``vcov=`` of :func:`multilevel.ols`):

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

``{"CRV3": col}``
    The leave-one-cluster-out jackknife of pyfixest's ``vcov={"CRV3": col}`` (MacKinnon, Nielsen
    and Webb 2022): ``c sum_g (b_(g) - b)(b_(g) - b)'`` with ``b_(g)`` the estimate without
    cluster ``g`` (``b - b_(g) = (X'WX - X_g'W_gX_g)^-1 X_g'W_g e_g``, no refit) and pyfixest's
    small-sample factor ``c = G/(G-1) * (n-1)/(n-k)``. Without the factor it is clubSandwich's
    CR3 of a linear model. One cluster column; t-tests on ``G - 1`` degrees of freedom.

pyfixest's spellings are accepted wherever ``vcov=`` is (:func:`vcov_alias`): ``"iid"``,
``"hetero"`` (its name for HC1), ``"HC1"``, ``"HC2"``, ``"HC3"`` (as sandwich's ``vcovHC``),
``{"CRV1": col}`` (CR1 above: the same factor ``G/(G-1) * (n-1)/(n-k)``; two-way as
``{"CRV1": "a+b"}`` or a list) and ``{"CRV3": col}``. For ``lmer``, ``"iid"`` is the
model-based covariance and ``{"CRV1": col}`` clubSandwich's CR1S (the same factor on CR0).

Degrees of freedom of the t-tests, intervals and the F test: ``n - k`` for ``"iid"`` and HC;
``G - 1`` for CR0 and CR1 (Stata's convention; ``min(G_1, G_2) - 1`` for two-way clustering);
the Satterthwaite degrees of freedom, one per coefficient, for CR2 (its F test uses ``G - 1``).

The symmetric matrix power :func:`sym_power` and the split of rows by cluster
(:func:`split_rows`) also serve the cluster-robust covariances of lmer fits
(:mod:`multilevel.inference.lmer_robust`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel.exceptions import DataError
from multilevel.factors import combine, factor

__all__ = [
    "CR_TYPES",
    "HC_TYPES",
    "Sandwich",
    "cluster_codes",
    "cluster_label",
    "cluster_sums",
    "sandwich",
    "split_rows",
    "sym_power",
    "vcov_alias",
]

_EIG_TOL = 1e-12  # clubSandwich's matrix_power: eigenvalues <= 10^-12 are set to 0


HC_TYPES = ("HC0", "HC1", "HC2", "HC3")

CR_TYPES = ("CR0", "CR1", "CR2", "CRV3")

_LMER_ALIAS = {"CRV1": "CR1S"}  # clubSandwich's CR1S: G(n-1) / ((G-1)(n-p)) on CR0


def vcov_alias(vcov: Any, model: str = "ols") -> Any:
    """pyfixest's spellings of ``vcov=`` in this package's own (see the module documentation).

    ``model`` is ``"ols"`` (also ``panel``) or ``"lmer"``; anything else is returned as it is.

    Examples
    --------
    >>> vcov_alias("hetero"), vcov_alias({"CRV1": "a + b"}), vcov_alias({"CRV1": "g"}, "lmer")
    ('HC1', {'CR1': ['a', 'b']}, {'CR1S': 'g'})
    >>> vcov_alias("iid", "lmer") is None
    True
    """
    if isinstance(vcov, str):
        key = vcov.strip()
        if key.lower() == "iid":
            return None if model == "lmer" else "iid"
        if key.lower() == "hetero" or (model == "lmer" and key.upper() in HC_TYPES):
            if model == "lmer":
                raise ValueError(
                    f"vcov={vcov!r}: heteroskedasticity-robust (HC) covariances are not defined "
                    "for lmer fits; use a cluster-robust one, e.g. {'CR2': 'school'} or "
                    "{'CRV1': 'school'}"
                )
            return "HC1"
        return vcov
    if isinstance(vcov, dict) and len(vcov) == 1:
        ((kind, spec),) = vcov.items()
        key = str(kind).upper()
        if key not in ("CRV1", "CRV3"):
            return vcov
        if isinstance(spec, str) and "+" in spec:
            spec = [part.strip() for part in spec.split("+")]
        if model == "lmer":
            if key == "CRV3":
                raise ValueError(
                    "vcov={'CRV3': ...} is pyfixest's least-squares jackknife; for lmer fits use "
                    "clubSandwich's {'CR3': column} (or 'CR2', 'CRV1')"
                )
            return {_LMER_ALIAS[key]: spec}
        return {"CR1" if key == "CRV1" else "CRV3": spec}
    return vcov


def cluster_codes(values: Any, name: str = "cluster") -> tuple[np.ndarray, int]:
    """0-based integer codes of a grouping variable and its number of levels."""
    values = pd.Series(np.asarray(values) if not isinstance(values, pd.Series) else values)
    if values.isna().any():
        raise DataError(
            f"{name} has {int(values.isna().sum())} missing value(s); "
            "drop those rows or give them a level"
        )
    codes, levels = factor(values)
    return codes, len(levels)


def cluster_label(spec: Any) -> str:
    """How a cluster is named in reports: its column name, or ``"<array>"``."""
    return spec if isinstance(spec, str) else "<array>"


def cluster_sums(U: np.ndarray, codes: np.ndarray, n_groups: int) -> np.ndarray:
    """Row sums of U within each cluster: (G, k)."""
    out = np.empty((n_groups, U.shape[1]))
    for j in range(U.shape[1]):
        out[:, j] = np.bincount(codes, weights=U[:, j], minlength=n_groups)
    return out


def split_rows(codes: np.ndarray, n_groups: int) -> list[np.ndarray]:
    order = np.argsort(codes, kind="stable")
    bounds = np.cumsum(np.bincount(codes, minlength=n_groups))[:-1]
    return np.split(order, bounds)


def sym_power(S: np.ndarray, power: float) -> np.ndarray:
    """Symmetric matrix power by eigendecomposition; eigenvalues <= 1e-12 give 0 (as
    clubSandwich's ``matrix_power``)."""
    vals, vecs = np.linalg.eigh((S + S.T) / 2.0)
    keep = vals > _EIG_TOL
    scaled = np.zeros_like(vals)
    scaled[keep] = vals[keep] ** power
    return (vecs * scaled) @ vecs.T


@dataclass
class Sandwich:
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
) -> Sandwich:
    """Robust covariance of least-squares coefficients from arrays.

    Parameters
    ----------
    X : (n, k) array
        The regressors of the fit (unweighted).
    resid : (n,) array
        Residuals ``y - X beta`` (unweighted).
    kind : {"iid", "HC0", "HC1", "HC2", "HC3", "CR0", "CR1", "CR2", "CRV3"}
    weights : (n,) array, optional
        Positive prior weights of a weighted least-squares fit.
    clusters : list of (n,) arrays, optional
        One grouping array (CR0, CR1, CR2, CRV3) or two (CR0, CR1: two-way clustering).
    k : int, optional
        Number of parameters for the small-sample factors and ``n - k`` (defaults to the
        number of columns of ``X``; a within estimator counts only its slopes, as plm and Stata).

    Returns
    -------
    Sandwich
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
        return Sandwich(s2 * B, np.full(p, df_resid), df_resid)
    if kind in HC_TYPES:
        u = es.copy()
        factor = 1.0
        if kind == "HC1":
            factor = n / (n - k)
        elif kind in ("HC2", "HC3"):
            h = np.einsum("ij,ij->i", Q, Q)
            u = u / (np.sqrt(1.0 - h) if kind == "HC2" else (1.0 - h))
        S = Xs * u[:, None]
        V = factor * (B @ (S.T @ S) @ B)
        return Sandwich(V, np.full(p, df_resid), df_resid, factor=factor)
    if kind not in CR_TYPES:
        raise ValueError(f"unknown covariance type {kind!r}")
    if not clusters:
        raise ValueError(f"{kind} needs a cluster variable")
    if len(clusters) > 2:
        raise ValueError("at most two cluster variables are supported")
    coded = [cluster_codes(c) for c in clusters]
    for _, G in coded:
        if G < 2:
            raise DataError(
                "cluster-robust covariance needs at least 2 clusters; the cluster variable "
                "has a single value"
            )
    scores = Xs * es[:, None]
    if kind == "CRV3":
        if len(coded) != 1:
            raise ValueError("CRV3 supports one cluster variable only")
        codes, G = coded[0]
        jack = _jackknife(Xs, es, codes, G)
        factor = G / (G - 1) * (n - 1) / (n - k)
        return Sandwich(factor * jack, np.full(p, float(G - 1)), float(G - 1), (G,), factor)
    if kind == "CR2":
        if len(coded) != 1:
            raise ValueError("CR2 supports one cluster variable only")
        codes, G = coded[0]
        V, df = _cr2(X, e, B, codes, G, None if weights is None else np.asarray(weights, float))
        return Sandwich(V, df, float(G - 1), (G,))
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
        Sg = cluster_sums(scores, codes, G)
        meat += sign * adj * (Sg.T @ Sg)
    V = hc1 * (B @ meat @ B)
    Gmin = min(G for _, G in coded)
    factor = hc1 * (coded[0][1] / (coded[0][1] - 1) if kind == "CR1" else 1.0)
    return Sandwich(
        V, np.full(p, float(Gmin - 1)), float(Gmin - 1), tuple(G for _, G in coded), factor
    )


def _jackknife(Xs: np.ndarray, es: np.ndarray, codes: np.ndarray, G: int) -> np.ndarray:
    """``sum_g d_g d_g'`` with ``d_g = b - b_(g) = (X'X - X_g'X_g)^-1 X_g'e_g`` on the weighted
    rows ``Xs = sqrt(w) X``, ``es = sqrt(w) e`` (the estimate without cluster g, not refitted);
    a singular ``X'X - X_g'X_g`` is solved by least squares (pyfixest's pinv)."""
    p = Xs.shape[1]
    XtX = Xs.T @ Xs
    scores = cluster_sums(Xs * es[:, None], codes, G)
    out = np.zeros((p, p))
    for g, rows in enumerate(split_rows(codes, G)):
        Xg = Xs[rows]
        M = XtX - Xg.T @ Xg
        try:
            d = np.linalg.solve(M, scores[g])
        except np.linalg.LinAlgError:
            d = np.linalg.lstsq(M, scores[g], rcond=None)[0]
        out += np.outer(d, d)
    return out


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
    groups = split_rows(codes, G)
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
        Aj = sym_power(Gj, -0.5)
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
    Omega_L = L_U if w is None else np.linalg.cholesky(M_U @ XWWX @ M_U)
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
