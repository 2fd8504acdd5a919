"""Simulation from a fitted linear mixed model and the parametric bootstrap (lme4's
``simulate`` and ``bootMer``).

A response is simulated as y* = X beta + offset + sum_k Z_k b_k* + e*, with
b_k* = sigma Lambda_k u, u ~ N(0, I) per level (or the fitted conditional modes, when
simulating conditionally on the random effects), and e* ~ N(0, sigma^2 / w). Each replicate
draws from its own random stream, spawned from the seed by its index
(``numpy.random.SeedSequence``), so a seed gives the same replicates whatever the number of
threads. The bootstrap refits each simulated response from theta_hat in the Rust core, which
releases the GIL: replicates run side by side on a thread pool.
"""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel.inference import varcomp


def _conditional(re_form: Any) -> bool:
    """lme4's re.form: None conditions on every random effect; NA / "~0" on none."""
    if re_form is None:
        return True
    if isinstance(re_form, float) and np.isnan(re_form):
        return False
    if isinstance(re_form, str) and re_form.replace(" ", "") in ("~0", "NA", "~1-1"):
        return False
    raise ValueError(
        f"re_form must be None (condition on the random effects) or '~0' / "
        f"np.nan (simulate them anew); got {re_form!r}"
    )


def _simulate_one(fit: Any, rng: np.random.Generator, conditional: bool) -> np.ndarray:
    d = fit.design
    mu = np.asarray(d.X, dtype=float) @ np.asarray(fit.beta, dtype=float)
    if d.offset is not None:
        mu = mu + np.asarray(d.offset, dtype=float)
    sigma = float(fit.sigma)
    for t, lam, b_hat in zip(d.terms, fit.lambda_, fit.b):
        if conditional:
            b = b_hat
        else:
            u = rng.standard_normal((len(t.levels), lam.shape[0]))
            b = sigma * u @ lam.T
        codes = np.asarray(t.codes)
        mu = mu + np.einsum("ij,ij->i", np.asarray(t.Z, dtype=float), b[codes])
    e = rng.standard_normal(mu.shape[0]) * sigma
    if d.weights is not None:
        e = e / np.sqrt(np.asarray(d.weights, dtype=float))
    return mu + e


def _streams(seed: Any, n: int) -> list[np.random.Generator]:
    return [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(n)]


def simulate(fit: Any, nsim: int = 1, seed: Any = None, re_form: Any = "~0") -> pd.DataFrame:
    """``nsim`` simulated responses (columns ``sim_1`` ...) for the rows of the fit."""
    if int(nsim) < 1:
        raise ValueError(f"nsim must be a positive integer; got {nsim!r}")
    cond = _conditional(re_form)
    cols = {f"sim_{i + 1}": _simulate_one(fit, g, cond) for i, g in enumerate(_streams(seed, nsim))}
    return pd.DataFrame(cols)


def parameter_names(fit: Any) -> list[str]:
    """Names of the bootstrapped parameters: lme4's sd/cor ones, then the fixed effects."""
    return [p.name for p in varcomp.params(fit)] + list(fit.fixef.index)


def parameters(fit: Any, theta: np.ndarray, sigma: float, beta: np.ndarray) -> np.ndarray:
    """The sd/cor parameters and the fixed effects at (theta, sigma, beta)."""
    return np.concatenate([varcomp.sdcor(fit, np.append(theta, sigma), "sd"), beta])


@dataclass
class BootResult:
    """Replicates of the parametric bootstrap (lme4's ``bootMer``), with their intervals."""

    t0: pd.Series  # the estimates of the fit
    replicates: pd.DataFrame  # one row per replicate
    seed: Any

    def confint(self, level: float = 0.95, type: str = "perc") -> pd.DataFrame:
        """Percentile (``"perc"``), basic (``"basic"``) or normal (``"norm"``) intervals."""
        a = (1.0 - level) / 2.0
        r = self.replicates
        if type == "perc":
            lo, hi = r.quantile(a), r.quantile(1.0 - a)
        elif type == "basic":
            lo, hi = 2 * self.t0 - r.quantile(1.0 - a), 2 * self.t0 - r.quantile(a)
        elif type == "norm":
            from scipy import stats

            z = stats.norm.ppf(1.0 - a)
            bias = r.mean() - self.t0
            lo = self.t0 - bias - z * r.std(ddof=1)
            hi = self.t0 - bias + z * r.std(ddof=1)
        else:
            raise ValueError(f"type must be 'perc', 'basic' or 'norm'; got {type!r}")
        pct = [f"{100 * a:.3g} %", f"{100 * (1 - a):.3g} %"]
        return pd.DataFrame({pct[0]: lo, pct[1]: hi})


def refit_response(fit: Any, y: np.ndarray, threads: int = 1) -> Any:
    """The Rust fit of the same model to another response, started at the fit's theta."""
    from multilevel.models.lmm import make_problem

    design = dataclasses.replace(fit.design, y=np.ascontiguousarray(y, dtype=float))
    problem = make_problem(design, threads=threads)
    return problem.fit(bool(fit.reml), theta0=np.asarray(fit.theta, dtype=float))


def bootstrap(
    fit: Any,
    nsim: int,
    seed: Any = None,
    threads: int | None = None,
    progress: bool = True,
    re_form: Any = "~0",
) -> BootResult:
    """Parametric bootstrap: simulate from the fit, refit, collect the parameters."""
    nsim = int(nsim)
    if nsim < 1:
        raise ValueError(f"nsim must be a positive integer; got {nsim!r}")
    cond = _conditional(re_form)
    streams = _streams(seed, nsim)
    names = parameter_names(fit)

    def one(i: int) -> np.ndarray:
        res = refit_response(fit, _simulate_one(fit, streams[i], cond))
        return parameters(fit, np.asarray(res.theta), float(res.sigma), np.asarray(res.beta))

    rows = _replicates(one, nsim, threads, progress)
    t0 = pd.Series(parameters(fit, fit.theta, fit.sigma, fit.beta), index=names)
    return BootResult(t0, pd.DataFrame(np.array(rows), columns=names), seed)


def _cores() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _replicates(one: Any, n: int, threads: int | None, progress: bool) -> list:
    """one(0), ..., one(n - 1) in that order, side by side on a thread pool (the refits release
    the GIL), with a progress bar when asked."""
    bar = _progress(n) if progress else None
    out = []
    with ThreadPoolExecutor(max_workers=threads or _cores()) as pool:
        for v in pool.map(one, range(n)):
            out.append(v)
            if bar is not None:
                bar.update(1)
    if bar is not None:
        bar.close()
    return out


def _progress(total: int) -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError:  # the bar is optional
        return None
    return tqdm(total=total, desc="bootstrap", unit="fit")


def lrt_pvalue(
    fit0: Any,
    fit1: Any,
    nsim: int,
    seed: Any = None,
    threads: int | None = None,
    progress: bool = True,
) -> tuple[float, np.ndarray]:
    """Parametric-bootstrap p-value of the LR test of fit0 (null) within fit1 (pbkrtest's
    ``PBmodcomp``): responses simulated from fit0, both models refitted by ML to each,
    p = (1 + #{LR* >= LR}) / (1 + nsim). Returns the p-value and the LR* replicates."""
    fit0 = fit0.refit_ml() if fit0.reml else fit0
    fit1 = fit1.refit_ml() if fit1.reml else fit1
    observed = fit0.objective - fit1.objective
    streams = _streams(seed, int(nsim))

    def one(i: int) -> float:
        y = _simulate_one(fit0, streams[i], False)
        return float(refit_response(fit0, y).objective - refit_response(fit1, y).objective)

    lr = np.array(_replicates(one, int(nsim), threads, progress))
    return float((1 + np.sum(lr >= observed - 1e-10)) / (1 + lr.size)), lr


# ------------------------------------------------------------------------------ glmer
def glmer_simulate_one(fit: Any, rng: np.random.Generator) -> np.ndarray:
    """A response simulated from a glmer fit with new random effects (lme4's ``simulate``
    with ``re.form = NA``), as the family sees it: binomial proportions of the prior weights
    (the trials), Poisson and negative binomial counts, Gamma values with shape 1 / sigma^2."""
    d = fit.design
    eta = np.asarray(d.X, float) @ np.asarray(fit.fixef, float) + np.asarray(fit.offset, float)
    for t, lam in zip(d.terms, fit._lambdas(), strict=True):
        b = rng.standard_normal((t.n_levels, t.q)) @ lam.T
        eta = eta + np.einsum("ij,ij->i", np.asarray(t.Z, float), b[np.asarray(t.codes)])
    fam = fit.family
    mu = fam.linkinv(eta)
    w = np.asarray(fit.prior_weights, float)
    if fam.name == "binomial":
        trials = np.rint(w).astype(np.int64)
        if np.any(np.abs(w - trials) > 1e-8):
            raise ValueError("simulating a binomial response needs whole-number prior weights")
        s = rng.binomial(trials, np.clip(mu, 0.0, 1.0))
        return np.where(trials > 0, s / np.maximum(trials, 1), 0.0)
    if fam.name == "poisson":
        return rng.poisson(mu).astype(float)
    if fam.name == "negative.binomial":
        th = float(fam.theta)
        return rng.negative_binomial(th, th / (th + mu)).astype(float)
    if fam.name == "Gamma":
        shape = 1.0 / float(fit.sigma) ** 2 * w
        return rng.gamma(shape, mu / shape)
    raise ValueError(f"simulation from a {fam.name} glmer fit is not available")


def glmer_parameters(fit: Any, theta: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """The random effects' sd/cor values (sigma = 1) and the fixed effects."""
    return np.concatenate([varcomp.sdcor(fit, np.append(theta, 1.0), "sd")[:-1], beta])


def glmer_bootstrap(
    fit: Any,
    nsim: int,
    seed: Any = None,
    threads: int | None = None,
    progress: bool = True,
) -> BootResult:
    """Parametric bootstrap of a glmer fit (lme4's ``bootMer``): responses simulated from the
    fit, each refitted in the core from the fit's theta and beta (family, nagq, weights and
    offset as the fit's); a replicate whose refit fails is a row of NaN."""
    from multilevel.exceptions import FitError
    from multilevel.models.glmm import make_problem

    nsim = int(nsim)
    if nsim < 1:
        raise ValueError(f"nsim must be a positive integer; got {nsim!r}")
    if fit.family.has_dispersion and fit.family.name != "Gamma":
        raise ValueError(f"the bootstrap of a {fit.family.name} glmer fit is not available")
    streams = _streams(seed, nsim)
    names = [p.name for p in varcomp.params(fit)[:-1]] + list(fit.fixef.index)
    theta0 = [float(v) for v in fit.theta]
    beta0 = [float(v) for v in fit.fixef]

    def one(i: int) -> np.ndarray:
        y = glmer_simulate_one(fit, streams[i])
        prob = make_problem(fit.design, fit.family, y, fit.prior_weights, fit.offset, 1)
        try:
            res = prob.fit(fit.nagq, beta0, theta0)
        except FitError:
            return np.full(len(names), np.nan)
        return glmer_parameters(fit, np.asarray(res.theta), np.asarray(res.beta))

    rows = _replicates(one, nsim, threads, progress)
    t0 = pd.Series(glmer_parameters(fit, fit.theta, np.asarray(fit.fixef, float)), index=names)
    return BootResult(t0, pd.DataFrame(np.array(rows), columns=names), seed)
