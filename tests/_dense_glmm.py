"""Dense test oracle for generalized linear mixed models: PIRLS, Laplace and adaptive
Gauss-Hermite quadrature with an explicit n x q matrix Z, for small problems only.

The model. Given theta, the relative covariance factor Lambda(theta) (block diagonal, one
lower-triangular q_k x q_k block per level of term k, filled column by column from theta as
lme4 fills it) maps spherical random effects u ~ N(0, I) to b = Lambda u. The linear
predictor is eta = offset + X beta + Z Lambda u and mu = g^{-1}(eta).

PIRLS (penalised iteratively reweighted least squares). For fixed (theta, beta) the
conditional mode u* minimises the penalised deviance

    pdev(u) = sum_i d(y_i, mu_i(u), wt_i) + ||u||^2,

where d are the family's deviance residuals. Each Fisher-scoring step forms the working
weights w_i = wt_i mu_eta(eta_i)^2 / V(mu_i) and working response
z_i = eta_i - offset_i - (X beta)_i + (y_i - mu_i) / mu_eta(eta_i), and solves

    (Lambda' Z' W Z Lambda + I) u_new = Lambda' Z' W z,

halving the step while pdev does not decrease. For the nAGQ = 0 stage, beta joins u in the
same penalised weighted least-squares solve (only u is penalised).

Laplace (nAGQ = 1). With L the Cholesky factor of Lambda' Z' W Z Lambda + I at the mode,
lme4's objective is

    ldL2 + ||u*||^2 + aic(y, n, mu*, wt, sum d),    ldL2 = log det(L)^2 = 2 sum log diag(L),

where aic is R's family$aic: -2 log p(y | u*) for binomial, Poisson and negative binomial;
for Gamma it plugs in the dispersion sum(d) / sum(wt) and adds 2 (lme4's definition, which
this oracle reproduces rather than corrects).

Adaptive Gauss-Hermite quadrature (nAGQ > 1, one scalar random-effect term). The integral
over u factors into one-dimensional integrals, one per level j. With devc_j(u_j) the sum
of the deviance residuals of the level's rows plus u_j^2, and s_j = 1 / L_jj the Laplace
standard deviation, substituting u_j = u*_j + s_j z gives

    -2 log(level j's integral) = devc_j(u*_j) + 2 log L_jj - 2 log M_j + const_j,
    M_j = sum_k w_k exp(z_k^2 / 2 - (devc_j(u*_j + s_j z_k) - devc_j(u*_j)) / 2),

with (z_k, w_k) the Gauss-Hermite rule for the weight exp(-z^2/2), the weights normalised
to sum 1 (lme4's GHrule). lme4's nAGQ > 1 objective is sum_j of the first three terms (the
deviance residuals, not aic: it omits the saturated model's constant).

GLM start. ``glm_fit`` is R's glm.fit: IRLS from the family's starting mu, stopping when
|dev - dev_old| / (|dev| + 0.1) < epsilon (1e-8), with step halving on a non-finite
deviance; it reproduces R's glm coefficients, which the Rust GLMM uses as its beta start.

Written from the mathematics of Bates, Maechler, Bolker and Walker (2015) and the lme4
vignettes; counterparts: lme4's pwrssUpdate / glmerLaplace / glmerAGQ and MixedModels.jl's
pirls! and deviance(m, nAGQ).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import linalg

from multilevel.families import Family

# ------------------------------------------------------------------------------ problem


@dataclass
class RandomTerm:
    """One random-effects term: per-row level codes (0-based), the number of levels and the
    n x q model columns (q = 1 for a random intercept)."""

    codes: np.ndarray
    n_levels: int
    columns: np.ndarray

    @property
    def q(self) -> int:
        return self.columns.shape[1]

    @property
    def n_theta(self) -> int:
        return self.q * (self.q + 1) // 2

    def z(self) -> np.ndarray:
        """Dense n x (n_levels q) block, level-major (level j's q columns are adjacent)."""
        n = self.codes.size
        out = np.zeros((n, self.n_levels * self.q))
        for c in range(self.q):
            out[np.arange(n), self.codes * self.q + c] = self.columns[:, c]
        return out

    def lambda_(self, theta: np.ndarray) -> np.ndarray:
        """Block diagonal Lambda for this term: the q x q lower triangle filled column by
        column from theta (lme4's order), repeated for each level."""
        block = np.zeros((self.q, self.q))
        rows, cols = np.tril_indices(self.q)
        order = np.lexsort((rows, cols))  # column-major order of the lower triangle
        block[rows[order], cols[order]] = theta
        return np.kron(np.eye(self.n_levels), block)


@dataclass
class PirlsResult:
    u: np.ndarray
    beta: np.ndarray
    eta: np.ndarray
    mu: np.ndarray
    L: np.ndarray  # lower Cholesky factor of Lambda'Z'WZLambda + I at the mode
    dev_resids: np.ndarray
    iterations: int

    @property
    def ldL2(self) -> float:
        return float(2.0 * np.sum(np.log(np.diag(self.L))))

    @property
    def sqr_u(self) -> float:
        return float(self.u @ self.u)


class DenseGlmm:
    """A GLMM with dense X and Z. ``y`` is the response as the family's initialize leaves it
    (proportions for the binomial), ``weights`` the prior weights (trials for cbind
    responses), ``n`` the binomial trials of R's initialize (1 elsewhere)."""

    def __init__(
        self, y, X, terms: list[RandomTerm], family: Family, weights=None, offset=None, n=None
    ):
        self.y = np.asarray(y, float)
        self.X = np.asarray(X, float)
        self.terms = terms
        self.family = family
        nobs = self.y.size
        self.weights = np.ones(nobs) if weights is None else np.asarray(weights, float)
        self.offset = np.zeros(nobs) if offset is None else np.asarray(offset, float)
        self.n = np.ones(nobs) if n is None else np.asarray(n, float)
        self.Z = np.hstack([t.z() for t in terms])

    @property
    def n_theta(self) -> int:
        return sum(t.n_theta for t in self.terms)

    def lambda_(self, theta) -> np.ndarray:
        theta = np.asarray(theta, float)
        blocks, start = [], 0
        for t in self.terms:
            blocks.append(t.lambda_(theta[start : start + t.n_theta]))
            start += t.n_theta
        return linalg.block_diag(*blocks)

    # -------------------------------------------------------------- pieces of PIRLS

    def _pdev(self, eta: np.ndarray, u: np.ndarray) -> tuple[float, np.ndarray]:
        mu = self.family.linkinv(eta)
        d = self.family.dev_resids(self.y, mu, self.weights)
        return float(np.sum(d) + u @ u), mu

    def _working(self, eta: np.ndarray, mu: np.ndarray):
        """Working weights w and working response z (on the eta scale)."""
        fam = self.family
        mu_eta = fam.mu_eta(eta)
        w = self.weights * mu_eta**2 / fam.variance(mu)
        z = eta + (self.y - mu) / mu_eta
        return w, z

    def _factor(self, ZL: np.ndarray, w: np.ndarray) -> np.ndarray:
        A = ZL.T @ (w[:, None] * ZL)
        A[np.diag_indices_from(A)] += 1.0
        return linalg.cholesky(A, lower=True)

    def pirls(self, theta, beta=None, tol: float = 1e-14, maxit: int = 200) -> PirlsResult:
        """Conditional modes at (theta, beta); with ``beta=None`` beta is estimated jointly
        with u (lme4's nAGQ = 0 stage, starting from the family's starting mu)."""
        ZL = self.Z @ self.lambda_(theta)
        q, p = ZL.shape[1], self.X.shape[1]
        joint = beta is None
        beta = np.zeros(p) if joint else np.asarray(beta, float)
        u = np.zeros(q)
        # lme4's start: eta from the family's starting mu (joint), else X beta + offset
        eta = self.family.linkfun(self._mustart()) if joint else self.offset + self.X @ beta
        pdev, mu = self._pdev(eta, u)
        if joint:
            pdev = np.inf  # that eta is not of the form X beta + Z Lambda u: no comparison
        it = 0
        for it in range(1, maxit + 1):  # noqa: B007 (the count is returned)
            w, z = self._working(eta, mu)
            target = z - self.offset
            if joint:
                u_new, beta_new = self._solve_joint(ZL, w, target)
            else:
                L = self._factor(ZL, w)
                rhs = ZL.T @ (w * (target - self.X @ beta))
                u_new = linalg.cho_solve((L, True), rhs)
                beta_new = beta
            step_u, step_b = u_new - u, beta_new - beta
            for _ in range(30):  # step halving
                eta_new = self.offset + self.X @ (beta + step_b) + ZL @ (u + step_u)
                pdev_new, mu_new = self._pdev(eta_new, u + step_u)
                if np.isfinite(pdev_new) and pdev_new <= pdev * (1 + 1e-15):
                    break
                step_u, step_b = step_u / 2, step_b / 2
            else:
                raise RuntimeError("PIRLS step halving failed")
            u, beta, eta, mu = u + step_u, beta + step_b, eta_new, mu_new
            change = abs(pdev - pdev_new) / (abs(pdev_new) + 0.1)
            pdev = pdev_new
            if (
                change < tol
                and max(np.max(np.abs(step_u), initial=0), np.max(np.abs(step_b), initial=0))
                < 1e-10
            ):
                break
        else:
            raise RuntimeError(f"PIRLS did not converge in {maxit} iterations")
        w, _ = self._working(eta, mu)
        L = self._factor(ZL, w)
        d = self.family.dev_resids(self.y, mu, self.weights)
        return PirlsResult(u, beta, eta, mu, L, d, it)

    def _mustart(self) -> np.ndarray:
        """R's starting mu for the binomial ((wt y + 0.5) / (wt + 1)) and the others."""
        fam = self.family
        if fam.name == "binomial":
            return (self.weights * self.y + 0.5) / (self.weights + 1.0)
        return fam.initialize(self.y).mustart

    def _solve_joint(self, ZL, w, target):
        """Penalised weighted least squares for (u, beta): u penalised, beta not."""
        q = ZL.shape[1]
        M = np.hstack([ZL, self.X])
        A = M.T @ (w[:, None] * M)
        A[np.arange(q), np.arange(q)] += 1.0
        sol = linalg.solve(A, M.T @ (w * target), assume_a="pos")
        return sol[:q], sol[q:]

    # -------------------------------------------------------------- objectives

    def laplace(self, theta, beta) -> float:
        """lme4's nAGQ = 1 objective at (theta, beta): ldL2 + ||u*||^2 + aic."""
        r = self.pirls(theta, beta)
        return r.ldL2 + r.sqr_u + self._aic(r)

    def nagq0(self, theta) -> tuple[float, np.ndarray]:
        """lme4's nAGQ = 0 objective at theta (beta estimated in PIRLS) and that beta."""
        r = self.pirls(theta, None)
        return r.ldL2 + r.sqr_u + self._aic(r), r.beta

    def _aic(self, r: PirlsResult) -> float:
        return self.family.aic(self.y, self.n, r.mu, self.weights, float(np.sum(r.dev_resids)))

    def agq(self, theta, beta, nagq: int) -> float:
        """lme4's nAGQ > 1 objective for a single scalar random-effect term."""
        if len(self.terms) != 1 or self.terms[0].q != 1:
            raise ValueError("adaptive Gauss-Hermite quadrature needs one scalar term")
        term = self.terms[0]
        r = self.pirls(theta, beta)
        ZL = self.Z @ self.lambda_(theta)
        sd = 1.0 / np.diag(r.L)
        z, w = gauss_hermite(nagq)
        eta_fixed = self.offset + self.X @ np.asarray(beta, float)

        def devc(u):
            mu = self.family.linkinv(eta_fixed + ZL @ u)
            d = self.family.dev_resids(self.y, mu, self.weights)
            return np.bincount(term.codes, weights=d, minlength=term.n_levels) + u * u

        devc0 = devc(r.u)
        mult = np.zeros(term.n_levels)
        for zk, wk in zip(z, w):
            delta = devc(r.u + zk * sd) - devc0 if zk != 0 else 0.0
            mult += wk * np.exp(0.5 * zk * zk - 0.5 * delta)
        return float(np.sum(devc0) + r.ldL2 - 2.0 * np.sum(np.log(mult)))


def gauss_hermite(k: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes and weights for integrals against the standard normal density (weights sum
    to 1), lme4's GHrule(k)."""
    z, w = np.polynomial.hermite_e.hermegauss(k)
    return z, w / np.sqrt(2.0 * np.pi)


# ------------------------------------------------------------------------------ GLM start


@dataclass
class GlmFit:
    coefficients: np.ndarray
    deviance: float
    iterations: int
    converged: bool


def glm_fit(
    X,
    y,
    family: Family,
    weights=None,
    offset=None,
    mustart=None,
    epsilon: float = 1e-8,
    maxit: int = 25,
) -> GlmFit:
    """R's glm.fit (IRLS): the GLM of the fixed part, the Rust GLMM's beta start.

    ``y`` and ``weights`` as the family's initialize leaves them; ``mustart`` its starting mu
    (computed from y and weights if None)."""
    X = np.asarray(X, float)
    y = np.asarray(y, float)
    nobs = y.size
    weights = np.ones(nobs) if weights is None else np.asarray(weights, float)
    offset = np.zeros(nobs) if offset is None else np.asarray(offset, float)
    if mustart is None:
        mustart = (
            family.initialize(y, weights).mustart
            if family.name == "binomial"
            else family.initialize(y).mustart
        )
    eta = family.linkfun(mustart)
    mu = family.linkinv(eta)
    dev_old = float(np.sum(family.dev_resids(y, mu, weights)))
    coef_old = None
    converged = False
    it = 0
    for it in range(1, maxit + 1):  # noqa: B007 (the count is returned)
        mu_eta = family.mu_eta(eta)
        good = (weights > 0) & (mu_eta != 0)
        z = (eta - offset)[good] + (y - mu)[good] / mu_eta[good]
        sw = np.sqrt(weights[good] * mu_eta[good] ** 2 / family.variance(mu)[good])
        coef, *_ = np.linalg.lstsq(X[good] * sw[:, None], z * sw, rcond=None)
        eta = X @ coef + offset
        mu = family.linkinv(eta)
        dev = float(np.sum(family.dev_resids(y, mu, weights)))
        halvings = 0
        while not (np.isfinite(dev) and family.valid_eta(eta) and family.valid_mu(mu)):
            if coef_old is None or halvings > maxit:
                raise RuntimeError("glm_fit: no valid set of coefficients")
            coef = (coef + coef_old) / 2
            eta = X @ coef + offset
            mu = family.linkinv(eta)
            dev = float(np.sum(family.dev_resids(y, mu, weights)))
            halvings += 1
        if abs(dev - dev_old) / (abs(dev) + 0.1) < epsilon:
            converged = True
            break
        dev_old, coef_old = dev, coef
    return GlmFit(coef, dev, it, converged)
