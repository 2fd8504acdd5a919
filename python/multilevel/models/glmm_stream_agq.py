"""Adaptive Gauss-Hermite quadrature of a streamed GLMM (one scalar random-effects term), as
the core's ``glmm/laplace.rs`` computes it in memory: with devc_j(u) the deviance of level j's
rows plus u^2 and s_j = 1 / L_jj,
``sum_j devc_j(u*_j) + ldL2 - 2 sum_j log sum_k w_k exp(z_k^2 / 2 - (devc_j(u*_j + s_j z_k) -
devc_j(u*_j)) / 2)``. Two passes at the mode: L_jj^2 = 1 + lambda^2 sum w z^2 and devc_j(u*_j)
per level, then devc_j at every node (one pass for all the nodes).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from multilevel.exceptions import FitError


def gauss_hermite(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights (summing to 1) of the k-point rule against the standard normal."""
    x, w = np.polynomial.hermite_e.hermegauss(k)
    w = w / w.sum()
    if k % 2 == 1:
        x[k // 2] = 0.0
    return x, w


def agq_objective(m: Any, s: dict[str, Any], nagq: int) -> float:
    if len(m.q) != 1 or m.q[0] != 1:
        raise FitError(
            "adaptive Gauss-Hermite quadrature (nagq > 1) needs a single scalar random-effects term"
        )
    fam = m.fam
    levels = m.n_levels[0]
    lam = float(s["theta"][0])
    u = s["u"][0][:, 0]
    beta = s["beta"]
    l2 = np.ones(levels)
    devc0 = u * u
    m.count_pass()
    for a, X, terms in m._batches():
        codes, Z = terms[0]
        z = np.asarray(Z[:, 0])
        y, pw, o = np.asarray(a["y"]), np.asarray(a["pw"]), np.asarray(a["o"])
        eta = (o + X @ beta if m.p else np.array(o)) + z * lam * u[codes]
        mu = fam.linkinv(eta)
        me = fam.mu_eta(eta)
        w = pw * me * me / fam.variance(mu)
        l2 += np.bincount(codes, lam * lam * w * z * z, minlength=levels)
        devc0 = devc0 + np.bincount(codes, fam.dev_resids(y, mu, pw), minlength=levels)
    sd = 1.0 / np.sqrt(l2)
    nodes, weights = gauss_hermite(nagq)
    moved = [k for k, zk in enumerate(nodes) if zk != 0.0]
    devk = np.array([(u + nodes[k] * sd) ** 2 for k in moved])
    m.count_pass()
    for a, X, terms in m._batches():
        codes, Z = terms[0]
        z = np.asarray(Z[:, 0])
        y, pw, o = np.asarray(a["y"]), np.asarray(a["pw"]), np.asarray(a["o"])
        eta_fixed = o + X @ beta if m.p else np.array(o)
        for i, k in enumerate(moved):
            mu = fam.linkinv(eta_fixed + z * lam * (u[codes] + nodes[k] * sd[codes]))
            devk[i] += np.bincount(codes, fam.dev_resids(y, mu, pw), minlength=levels)
    mult = np.zeros(levels)
    for k, (zk, wk) in enumerate(zip(nodes, weights, strict=True)):
        if zk == 0.0:
            mult += wk
        else:
            i = moved.index(k)
            mult += wk * np.exp(0.5 * zk * zk - 0.5 * (devk[i] - devc0))
    return float(devc0.sum() + np.log(l2).sum() - 2.0 * np.log(mult).sum())
