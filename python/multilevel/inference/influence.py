"""Leave-one-group-out influence diagnostics of a linear mixed model (HLMdiag's definitions).

For a grouping factor with levels ``i = 1..G``, each level is deleted in turn and the model
refitted to the remaining rows (a real refit, as HLMdiag's ``case_delete`` and lme4's
``update(fit, data = subset)``: same REML/ML criterion, theta optimised again). With ``b`` and
``V`` the fixed effects and their model-based covariance of the full fit and ``b_(i)``,
``V_(i)`` those of the refit without level ``i``, and ``p`` the number of fixed effects:

``cooksd``
    Cook's distance ``(b - b_(i))' V^-1 (b - b_(i)) / p`` (HLMdiag's ``cooks.distance``).
``mdffits``
    The same with the deleted fit's covariance: ``(b - b_(i))' V_(i)^-1 (b - b_(i)) / p``.
``covtrace``
    ``| tr(V^-1 V_(i)) - p |``.
``covratio``
    ``det(V_(i)) / det(V)``.
``dfbeta.<name>``
    The change in each fixed effect, ``b - b_(i)`` (HLMdiag's ``beta_cdd``).
``rvc.<component>``
    The relative variance change ``varcomp_(i) / varcomp - 1`` of each variance component,
    named as HLMdiag's ``varcomp.mer``: ``sigma2``, then ``D<row><col>`` for the lower
    triangle (column by column) of the block-diagonal covariance matrix of the random effects
    (only its diagonal when that matrix is diagonal; entries between two terms, zero by
    construction, are left out).

How the refits are made fast. The data enter a fit only through the cross-product
``A = [Z X y]' W [Z X y]``, a sum over rows; A of "all rows but group i" is assembled from
partial sums (``multilevel._core.Accumulator``), never from the rows again: the rows are sorted
by group once, and a divide-and-conquer pass hands each half of the groups the accumulator of
everything outside it (the other half's rows added to a copy of the parent's), so that every
row is added ``log2(G)`` times in all instead of ``G - 1`` times. A deleted level keeps its
(now empty) place: its block of ``Lambda' A Lambda + I`` is the identity, which changes neither
the objective nor any estimate, exactly as if the level were dropped. Each refit starts at the
full fit's theta.

Polishing. The differences ``b - b_(i)`` are small, and an optimiser stopped by lme4's
tolerances (``xtol_rel = 1e-4``) leaves theta, and so ``b_(i)``, uncertain in the digits that
those differences need. So every optimum here (the full fit's and each refit's) is polished
by Newton steps on the profiled objective with central-difference derivatives
(:func:`polish`; coordinates at their bound stay there), which takes theta to the stationary
point within the objective's rounding; the reference values in the tests were polished by the
same rule in R from lme4's own refits.

Examples
--------
>>> import multilevel as ml
>>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", ml.datasets.load("sleepstudy"))
>>> infl = fit.influence("Subject")
>>> infl["cooksd"].idxmax(), round(float(infl["cooksd"].max()), 3)
('309', 0.149)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from multilevel.exceptions import DataError, MultilevelError, MultilevelWarning

__all__ = ["DeletedFits", "cooks_cutoff", "deleted_fits", "diagnostics", "influence", "polish"]


def _varcomp(lambdas: list[np.ndarray], sigma: float) -> pd.Series:
    """HLMdiag's ``varcomp.mer`` from each term's relative factor and sigma."""
    s2 = sigma**2
    blocks = [s2 * lam @ lam.T for lam in lambdas]
    sizes = [b.shape[0] for b in blocks]
    owner = np.repeat(np.arange(len(blocks)), sizes)
    offset = np.concatenate([[0], np.cumsum(sizes)])
    full = np.zeros((offset[-1], offset[-1]))
    for k, blk in enumerate(blocks):
        full[offset[k] : offset[k + 1], offset[k] : offset[k + 1]] = blk
    diagonal = all(q == 1 for q in sizes)  # bdiag(VarCorr) is diagonal: scalar terms only
    names, values = ["sigma2"], [s2]
    n = full.shape[0]
    for j in range(n):
        for i in range(j, n):
            if (diagonal and i != j) or owner[i] != owner[j]:
                continue
            names.append(f"D{i + 1}{j + 1}")
            values.append(full[i, j])
    return pd.Series(values, index=names, name="varcomp")


OBSERVATION = "observation"  # DeletedFits.level when each row is deleted in turn (level=1)

_H = 1e-3  # central-difference step on theta (absolute: theta is a relative scale)


def polish(objective: Any, theta: np.ndarray, lower: np.ndarray, steps: int = 6) -> np.ndarray:
    """Newton steps on ``objective(theta)`` from an optimiser's result.

    Central differences with step 1e-3: the gradient by the five-point rule (error of order
    h^4, rounding of the objective divided by 1e-3), the Hessian by the three-point rule.
    Coordinates within 10 steps of their lower bound are held fixed; a step is taken only while it
    does not raise the objective beyond its rounding (1e-11 relative), at most ``steps`` of
    them; the iteration stops when the largest step is below 1e-9.
    """
    theta = np.array(theta, dtype=float)
    free = np.flatnonzero(~(theta - np.asarray(lower, float) < 10 * _H))
    if len(free) == 0:
        return theta
    f0 = objective(theta)
    for _ in range(steps):
        g, H = _derivatives(objective, theta, free, f0)
        try:
            step = np.linalg.solve(H, g)
        except np.linalg.LinAlgError:
            break
        if not np.all(np.isfinite(step)) or np.any(np.linalg.eigvalsh(H) <= 0):
            break
        new = theta.copy()
        new[free] -= step
        f1 = objective(new)
        if not f1 <= f0 + 1e-11 * (1.0 + abs(f0)):  # rounding of the objective allowed
            break
        theta, f0 = new, f1
        if np.max(np.abs(step)) < 1e-9:
            break
    return theta


def _derivatives(
    objective: Any, theta: np.ndarray, free: np.ndarray, f0: float
) -> tuple[np.ndarray, np.ndarray]:
    """Central-difference gradient and Hessian of ``objective`` over the ``free`` coordinates."""
    m = len(free)

    def at(shifts: dict[int, float]) -> float:
        t = theta.copy()
        for j, h in shifts.items():
            t[free[j]] += h
        return objective(t)

    h = _H
    g = np.array(
        [
            (at({j: -2 * h}) - 8 * at({j: -h}) + 8 * at({j: h}) - at({j: 2 * h})) / (12 * h)
            for j in range(m)
        ]
    )
    H = np.empty((m, m))
    for j in range(m):
        H[j, j] = (at({j: h}) - 2 * f0 + at({j: -h})) / h**2
        for k in range(j):
            H[j, k] = H[k, j] = (
                at({j: h, k: h}) - at({j: h, k: -h}) - at({j: -h, k: h}) + at({j: -h, k: -h})
            ) / (4 * h * h)
    return g, H


def _level_codes(fit: Any, level: str | int | None) -> tuple[str, np.ndarray, pd.Index]:
    if isinstance(level, (int, np.integer)) and not isinstance(level, bool):
        if level != 1:
            raise ValueError(
                f"level={level!r}: give 1 (each observation, HLMdiag's level = 1) or the name "
                "of a grouping factor"
            )
        rows = np.asarray(fit.design.rows)
        index = fit.input_index
        labels = index[rows] if index is not None else pd.Index(rows)
        return OBSERVATION, np.arange(len(rows)), pd.Index(labels)
    groups = list(dict.fromkeys(t.group for t in fit.design.terms))
    if level is None:
        if len(groups) != 1:
            raise ValueError(
                f"the model has several grouping factors ({', '.join(groups)}): choose one "
                "with level="
            )
        level = groups[0]
    if level not in groups:
        raise ValueError(
            f"level={level!r} is not a grouping factor of the model; use one of "
            + ", ".join(repr(g) for g in groups)
        )
    term = next(t for t in fit.design.terms if t.group == level)
    return level, np.asarray(term.codes), pd.Index(term.levels, name=level)


class _Rows:
    """The fit's rows sorted by the deleted factor's level, with each level's range."""

    def __init__(self, fit: Any, codes: np.ndarray, n_levels: int) -> None:
        d = fit.design
        order = np.argsort(codes, kind="stable")
        counts = np.bincount(codes, minlength=n_levels)
        self.start = np.concatenate([[0], np.cumsum(counts)])
        self.y = np.ascontiguousarray(np.asarray(d.y, float)[order])
        self.X = np.asfortranarray(np.asarray(d.X, float)[order])
        self.terms = [
            (
                np.ascontiguousarray(np.asarray(t.codes, np.int32)[order]),
                np.asfortranarray(np.asarray(t.Z, float)[order]),
            )
            for t in d.terms
        ]
        self.weights = None if d.weights is None else np.asarray(d.weights, float)[order]
        self.offset = None if d.offset is None else np.asarray(d.offset, float)[order]

    def add(self, acc: Any, lo: int, hi: int) -> None:
        """Add the rows of levels lo..hi-1 (sorted order) to ``acc``."""
        a, b = int(self.start[lo]), int(self.start[hi])
        if a == b:
            return
        acc.add(
            self.y[a:b],
            np.asfortranarray(self.X[a:b]),
            [(c[a:b], np.asfortranarray(Z[a:b])) for c, Z in self.terms],
            None if self.weights is None else self.weights[a:b],
            None if self.offset is None else self.offset[a:b],
        )


def _leave_one_out(rows: _Rows, make: Any, n_levels: int) -> Iterator[tuple[int, Any]]:
    """(level, accumulator of every row but that level's), by divide and conquer."""
    from multilevel import _core

    def clone(acc: Any) -> Any:
        return _core.Accumulator.from_bytes(acc.to_bytes(), 1)

    stack: list[tuple[int, int, Any]] = [(0, n_levels, make())]
    while stack:
        lo, hi, outside = stack.pop()
        if hi - lo == 1:
            yield lo, outside
            continue
        mid = (lo + hi) // 2
        right = clone(outside)
        rows.add(right, lo, mid)  # outside of [mid, hi)
        rows.add(outside, mid, hi)  # outside of [lo, mid)
        stack.append((mid, hi, right))
        stack.append((lo, mid, outside))


@dataclass
class DeletedFits:
    """The refits of :func:`deleted_fits`: one row per deleted level (in level order).

    ``level`` the grouping factor; ``beta`` (levels x fixed effects) and ``vcov`` (array
    levels x p x p) the fixed effects and their model-based covariance of each refit;
    ``theta`` (levels x theta) its covariance parameters, ``sigma`` its residual standard
    deviation, ``varcomp`` (levels x components) its variance components as HLMdiag's
    ``varcomp.mer``; ``nobs`` the rows left and ``converged`` its optimiser's convergence
    check. ``full_beta``, ``full_vcov`` and ``full_varcomp`` are those of the full fit at its
    polished optimum.
    """

    level: str
    beta: pd.DataFrame
    vcov: np.ndarray
    theta: np.ndarray
    sigma: pd.Series
    varcomp: pd.DataFrame
    nobs: pd.Series
    converged: pd.Series
    full_beta: pd.Series
    full_vcov: np.ndarray
    full_varcomp: pd.Series


def deleted_fits(fit: Any, level: str | int | None = None) -> DeletedFits:
    """Refit ``fit`` without each level of the grouping factor ``level`` in turn (see the
    module documentation for how A is reused and the optima polished)."""
    if getattr(fit, "streamed", False):
        from multilevel.design.stream import STREAMED_REASON, StreamedDataError

        raise StreamedDataError(f"influence() refits without each group: {STREAMED_REASON}")
    from multilevel import _core

    level, codes, labels = _level_codes(fit, level)
    G = len(labels)
    if G < 2:
        raise DataError(f"{level!r} has {G} level; deleting it would leave no data")
    if level == OBSERVATION:
        labels = labels.rename(None)
    design = fit.design
    names = list(design.fixed_names)
    p = len(names)
    rows = _Rows(fit, codes, G)
    n_levels = [len(t.levels) for t in design.terms]
    qs = [t.Z.shape[1] for t in design.terms]

    def make() -> Any:
        return _core.Accumulator(n_levels, qs, p, threads=1)

    reml = bool(fit.reml)
    lower = np.asarray(fit.problem.lower, float)
    full = _solve(fit.problem, fit.theta, reml, lower)
    vc = _varcomp([np.asarray(x, float) for x in full.lambda_], float(full.sigma))
    beta = np.full((G, p), np.nan)
    vcov = np.full((G, p, p), np.nan)
    theta = np.full((G, len(fit.theta)), np.nan)
    varcomp = np.full((G, len(vc)), np.nan)
    sigma = np.full(G, np.nan)
    nobs = np.zeros(G, dtype=int)
    converged = np.zeros(G, dtype=bool)
    for i, acc in _leave_one_out(rows, make, G):
        nobs[i] = acc.nobs
        if acc.nobs <= p:
            continue
        problem = acc.problem()
        try:
            result = problem.fit(reml, theta0=full.theta)
            sol = _solve(problem, result.theta, reml, lower)
        except MultilevelError as exc:  # e.g. X of the rows left is rank deficient
            warnings.warn(
                f"the refit without {level} {labels[i]!r} failed ({exc}); its row is NaN",
                MultilevelWarning,
                stacklevel=2,
            )
            continue
        converged[i] = bool(getattr(result.check, "converged", True))
        sigma[i] = float(sol.sigma)
        beta[i] = np.asarray(sol.beta, float)
        vcov[i] = sigma[i] ** 2 * np.asarray(sol.vcov_unscaled, float)
        theta[i] = np.asarray(sol.theta, float)
        lams = [np.asarray(x, float) for x in sol.lambda_]
        varcomp[i] = _varcomp(lams, sigma[i]).to_numpy()
    index = pd.Index(labels, name=None if level == OBSERVATION else level)
    return DeletedFits(
        level=level,
        beta=pd.DataFrame(beta, index=index, columns=names),
        vcov=vcov,
        theta=theta,
        sigma=pd.Series(sigma, index=index, name="sigma"),
        varcomp=pd.DataFrame(varcomp, index=index, columns=list(vc.index)),
        nobs=pd.Series(nobs, index=index, name="nobs"),
        converged=pd.Series(converged, index=index, name="converged"),
        full_beta=pd.Series(np.asarray(full.beta, float), index=names, name="beta"),
        full_vcov=float(full.sigma) ** 2 * np.asarray(full.vcov_unscaled, float),
        full_varcomp=vc,
    )


def influence(fit: Any, level: str | int | None = None) -> pd.DataFrame:
    """Leave-one-group-out (or leave-one-observation-out) influence diagnostics, as HLMdiag's
    ``hlm_influence`` with ``approx = FALSE`` (real refits).

    Parameters
    ----------
    fit : LmerFit
    level : str or 1, optional
        The grouping factor whose levels are deleted one at a time (default: the model's only
        grouping factor), or ``1`` to delete each observation in turn (HLMdiag's
        ``level = 1``; lme4's ``influence(fit)`` without ``groups``): one refit per row used,
        rows indexed by the input's index.

    Returns
    -------
    pandas.DataFrame
        One row per level (indexed by the level labels): ``cooksd``, ``mdffits``,
        ``covtrace``, ``covratio``, ``dfbeta.<fixed effect>``, ``rvc.<component>`` (see the
        module documentation), ``nobs`` (rows left) and ``converged`` (the refit passed its
        convergence check). ``attrs["level"]`` names the factor and ``attrs["cutoff"]`` is
        the internal cutoff of Cook's distance (:func:`cooks_cutoff`). The refits themselves
        are :func:`deleted_fits`.

    Examples
    --------
    >>> import multilevel as ml
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", ml.datasets.load("sleepstudy"))
    >>> ml.influence(fit, "Subject").columns.tolist()[:6]
    ['cooksd', 'mdffits', 'covtrace', 'covratio', 'dfbeta.(Intercept)', 'dfbeta.Days']
    """
    return diagnostics(deleted_fits(fit, level))


def diagnostics(d: DeletedFits) -> pd.DataFrame:
    """HLMdiag's diagnostics (module documentation) from the refits ``d``."""
    b = d.full_beta.to_numpy()
    V = d.full_vcov
    p = len(b)
    Vinv = np.linalg.inv(V)
    detV = np.linalg.det(V)
    delta = b - d.beta.to_numpy()
    G = len(delta)
    cooksd, mdffits, covtrace, covratio = (np.full(G, np.nan) for _ in range(4))
    for i in range(G):
        if not np.all(np.isfinite(delta[i])):
            continue
        Vi = d.vcov[i]
        cooksd[i] = delta[i] @ Vinv @ delta[i] / p
        mdffits[i] = delta[i] @ np.linalg.solve(Vi, delta[i]) / p
        covtrace[i] = abs(float(np.trace(Vinv @ Vi)) - p)
        covratio[i] = np.linalg.det(Vi) / detV
    frame = pd.DataFrame(
        {"cooksd": cooksd, "mdffits": mdffits, "covtrace": covtrace, "covratio": covratio},
        index=d.beta.index,
    )
    for j, nm in enumerate(d.beta.columns):
        frame[f"dfbeta.{nm}"] = delta[:, j]
    with np.errstate(divide="ignore", invalid="ignore"):
        rvc = d.varcomp.to_numpy() / d.full_varcomp.to_numpy() - 1.0
    for j, nm in enumerate(d.full_varcomp.index):
        frame[f"rvc.{nm}"] = rvc[:, j]
    frame["nobs"] = d.nobs.to_numpy()
    frame["converged"] = d.converged.to_numpy()
    frame.attrs = {"level": d.level, "cutoff": cooks_cutoff(frame["cooksd"])}
    return frame


def _solve(problem: Any, theta: Any, reml: bool, lower: np.ndarray) -> Any:
    """The core's solution at the polished optimum from ``theta``."""
    t = polish(lambda x: float(problem.objective(x, reml)), np.asarray(theta, float), lower)
    return problem.solution(t, reml)


def cooks_cutoff(cooksd: pd.Series) -> float:
    """HLMdiag's ``dotplot_diag`` internal cutoff for Cook's distance: ``Q3 + 3 IQR`` of the
    values (R's default quantiles), the rule that flags the points drawn beyond it."""
    v = np.asarray(cooksd, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        return math.nan
    q1, q3 = np.quantile(v, [0.25, 0.75])
    return float(q3 + 3.0 * (q3 - q1))
