"""The likelihood as a function of the variance parameters varpar = (theta, sigma).

The profiled objective that the fit minimises eliminates sigma; inference on the fixed
effects needs it back (Kuznetsova, Brockhoff and Christensen 2017, lmerTest): with beta at its
conditional estimate for theta,

    -2 l(theta, sigma) = ldL2 + pwrss / sigma^2 + n log(2 pi sigma^2)                  (ML)
    -2 l_R(theta, sigma) = the same + ldRX2 - p log(2 pi sigma^2)                        (REML)

(ldL2 = log det(L_Z)^2, ldRX2 = log det(R_X)^2, pwrss the penalised weighted residual sum of
squares, all from the factor at theta). The asymptotic covariance of varpar is twice the
inverse of this deviance's Hessian at the estimate, and the covariance of beta at varpar is
sigma^2 (R_X' R_X)^-1 at theta. Both feed the Satterthwaite degrees of freedom.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from multilevel.inference import derivatives

#: Eigenvalues of the deviance's Hessian at or below this are treated as zero (lmerTest's tol).
EIGEN_TOL = 1e-8


def _solution(
    problem: Any, theta: np.ndarray, reml: bool
) -> tuple[float, float, float, np.ndarray]:
    """pwrss, ldL2, ldRX2 and (R_X' R_X)^-1 of the Rust problem at theta."""
    s = problem.solution(np.asarray(theta, dtype=float).tolist(), bool(reml))
    return (
        float(s.pwrss),
        float(s.ld_l2),
        float(s.ld_rx2),
        np.asarray(s.vcov_unscaled, dtype=float),
    )


@dataclass
class VarparModel:
    """A fitted linear mixed model seen as a function of its variance parameters."""

    problem: Any
    theta: np.ndarray
    sigma: float
    reml: bool
    nobs: int
    p: int

    @classmethod
    def of(cls, fit: Any) -> VarparModel:
        return cls(
            fit.problem,
            np.asarray(fit.theta, dtype=float),
            float(fit.sigma),
            bool(fit.reml),
            int(fit.nobs),
            len(fit.beta),
        )

    @property
    def varpar(self) -> np.ndarray:
        """(theta, sigma) at the estimate."""
        return np.append(self.theta, self.sigma)

    def deviance(self, varpar: np.ndarray) -> float:
        """-2 log-likelihood (REML: restricted) at varpar = (theta, sigma)."""
        theta, sigma2 = varpar[:-1], float(varpar[-1]) ** 2
        pwrss, ld_l2, ld_rx2, _ = _solution(self.problem, theta, self.reml)
        dev = ld_l2 + pwrss / sigma2 + self.nobs * math.log(2.0 * math.pi * sigma2)
        if self.reml:
            dev += ld_rx2 - self.p * math.log(2.0 * math.pi * sigma2)
        return dev

    def vcov_beta(self, varpar: np.ndarray) -> np.ndarray:
        """Covariance of the fixed effects at varpar, sigma^2 (R_X' R_X)^-1 at theta."""
        *_, unscaled = _solution(self.problem, varpar[:-1], self.reml)
        return float(varpar[-1]) ** 2 * unscaled

    @cached_property
    def hessian(self) -> np.ndarray:
        """Hessian of :meth:`deviance` at the estimate."""
        return derivatives.hessian(self.deviance, self.varpar)

    @cached_property
    def vcov_varpar(self) -> np.ndarray:
        """Asymptotic covariance of (theta, sigma): 2 H^-1 (lmerTest's ``vcov_varpar``)."""
        # The Moore-Penrose inverse over the eigenvalues above EIGEN_TOL, as lmerTest: on the
        # boundary (a singular fit) the Hessian has eigenvalues near or below zero.
        w, V = np.linalg.eigh(self.hessian)
        keep = w > EIGEN_TOL
        Hinv = (V[:, keep] / w[keep]) @ V[:, keep].T
        return 2.0 * Hinv

    @cached_property
    def jacobian(self) -> list[np.ndarray]:
        """d vcov(beta) / d varpar_k, one p x p matrix per variance parameter."""
        jac = derivatives.jacobian(lambda v: self.vcov_beta(v).ravel(), self.varpar)
        return [jac[:, k].reshape(self.p, self.p) for k in range(jac.shape[1])]

    def restore(self) -> None:
        """Leave the problem's factor at the estimate again (the derivatives moved it)."""
        _solution(self.problem, self.theta, self.reml)
