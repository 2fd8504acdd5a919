"""Fitted linear mixed models: estimates, tables, predictions and likelihood-ratio tests.

:class:`LmerFit` wraps the design (``multilevel.design.Design``) and the numerical problem
(``multilevel._core.LmmProblem``) of one fit together with the optimum the core returned. Every
number comes from the core; this module only arranges them as lme4 presents them:

* ``fixef``, ``vcov``, ``se`` -- lme4's ``fixef()``, ``vcov()`` and the standard errors;
* ``ranef`` and ``ranef_condvar`` -- ``ranef(fit, condVar = TRUE)``, one table per grouping
  factor (terms on the same factor, e.g. after ``||``, are merged as lme4 merges them);
* ``coef`` -- ``coef()``: fixed plus random effects per level;
* ``varcorr`` -- ``as.data.frame(VarCorr(fit))`` with lme4's row order and group names;
* ``loglik``, ``aic``, ``bic``, ``deviance``, ``df`` -- ``logLik()`` and friends, where a REML
  fit reports its REML log-likelihood, as lme4 does;
* :meth:`LmerFit.summary` and ``repr`` -- laid out like ``print(summary(fit))`` and
  ``print(fit)``;
* :func:`anova` -- ``anova(fit0, fit1, ...)``, the likelihood-ratio table.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd

from multilevel.exceptions import ConvergenceWarning, DataError, SingularFitWarning
from multilevel.inference.methods import InferenceMixin

__all__ = ["LmerFit", "LmerSummary", "anova"]

SINGULAR_MESSAGE = "boundary (singular) fit: see help('isSingular')"
REFIT_MESSAGE = "refitting model(s) with ML (instead of REML)"


# ---------------------------------------------------------------------------------------
# R-style number formatting (what print() and format() of R do with `digits`)
# ---------------------------------------------------------------------------------------
def _sig_parts(x: float, digits: int) -> tuple[int, int]:
    """(number of significant digits needed, decimal exponent) of x shown to `digits`."""
    if x == 0 or not math.isfinite(x):
        return 1, 0
    mant, exp = f"{abs(x):.{digits - 1}e}".split("e")
    sig = mant.replace(".", "").rstrip("0")
    return max(len(sig), 1), int(exp)


def _r_format(values: Sequence[float], digits: int = 7) -> list[str]:
    """Format numbers jointly as R's ``format(x, digits=)``: common decimals and width."""
    vals = [float(v) for v in values]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        out = ["NA" if math.isnan(v) else ("Inf" if v > 0 else "-Inf") for v in vals]
    else:
        parts = [_sig_parts(v, digits) for v in finite]
        rgt = max(max(0, ns - 1 - e) for ns, e in parts)
        left = max((e + 1 if e >= 0 else 1) for _, e in parts)
        neg = any(v < 0 for v in finite)
        width_fixed = neg + left + (1 + rgt if rgt > 0 else 0)
        mxns = max(ns for ns, _ in parts)
        big_exp = any(abs(e) >= 100 for _, e in parts)
        width_sci = neg + (mxns + 1 if mxns > 1 else mxns) + (5 if big_exp else 4)
        out = []
        for v in vals:
            if math.isnan(v):
                out.append("NA")
            elif math.isinf(v):
                out.append("Inf" if v > 0 else "-Inf")
            elif width_fixed <= width_sci:
                out.append(f"{v:.{rgt}f}")
            else:
                out.append(f"{v:.{mxns - 1}e}")
    width = max(len(s) for s in out)
    return [s.rjust(width) for s in out]


def _r_named_vector(names: Sequence[str], cells: Sequence[str], width: int = 80) -> str:
    """Print a named vector as R does: names over values, right aligned, wrapped at `width`."""
    w = max([len(n) for n in names] + [len(c) for c in cells])
    per_line = max(1, (width + 1) // (w + 1))
    lines = []
    for i in range(0, len(names), per_line):
        lines.append(" ".join(n.rjust(w) for n in names[i : i + per_line]) + " ")
        lines.append(" ".join(c.rjust(w) for c in cells[i : i + per_line]) + " ")
    return "\n".join(lines)


def _r_matrix(rownames: Sequence[str], colnames: Sequence[str], cells: list[list[str]],
              right: bool = True) -> str:
    """Print a character matrix as R does with quote = FALSE (row names left aligned)."""
    rw = max([len(r) for r in rownames] + [0])
    widths = [max([len(colnames[j])] + [len(row[j]) for row in cells])
              for j in range(len(colnames))]

    def just(s: str, w: int) -> str:
        return s.rjust(w) if right else s.ljust(w)

    lines = [" " * rw + "".join(" " + just(c, w) for c, w in zip(colnames, widths))]
    for r, row in zip(rownames, cells):
        lines.append(r.ljust(rw) + "".join(" " + just(s, w) for s, w in zip(row, widths)))
    if not right:  # R pads left-aligned cells, so lines keep their full width
        return "\n".join(lines)
    return "\n".join(lines)


def _abbreviate(name: str, minlength: int = 6) -> str:
    """R's ``abbreviate()``: drop lower-case vowels, then lower-case letters, from the right."""
    if len(name) <= minlength:
        return name
    chars = list(name)
    for pred in (lambda c: c in "aeiou", lambda c: c.islower()):
        i = len(chars) - 1
        while len(chars) > minlength and i > 0:
            if pred(chars[i]) and chars[i - 1] != " ":
                del chars[i]
            i -= 1
    s = "".join(chars)
    return s[:minlength] if len(s) > minlength else s


def _make_unique(names: Sequence[str]) -> list[str]:
    """R's ``make.unique``: the second "a" becomes "a.1", the third "a.2", ..."""
    seen: dict[str, int] = {}
    out = []
    taken = set(names)
    for n in names:
        if n not in seen:
            seen[n] = 0
            out.append(n)
            continue
        k = seen[n]
        while True:
            k += 1
            cand = f"{n}.{k}"
            if cand not in taken:
                break
        seen[n] = k
        taken.add(cand)
        out.append(cand)
    return out


def _lme4_formula_text(design: Any) -> str:
    """The formula as lme4 prints it: ``(x || g)`` shown expanded, ``((1 | g) + (0 + x | g))``."""
    text = str(design.formula)
    if "||" not in text:
        return text
    parsed = getattr(design, "parsed", None)
    if parsed is None:
        return text
    runs: list[list[Any]] = []  # one run of expanded terms per `||` bar, in formula order
    for t in parsed.random:
        if t.correlated:
            continue
        if runs and runs[-1][0].group == t.group and " ".join(t.expr.split()) != "1":
            runs[-1].append(t)
        else:
            runs.append([t])
    out, pos = [], 0
    for run in runs:
        k = text.find("||", pos)
        if k < 0:
            return text
        depth, end = 0, k
        while end < len(text) and not (text[end] == ")" and depth == 0):
            depth += {"(": 1, ")": -1}.get(text[end], 0)
            end += 1
        depth, start = 0, k
        while start >= 0 and not (text[start] == "(" and depth == 0):
            depth += {")": 1, "(": -1}.get(text[start], 0)
            start -= 1
        if start < 0 or end >= len(text):
            return text
        out.append(text[pos:start])
        out.append("(" + " + ".join(t.text for t in run) + ")")
        pos = end + 1
    out.append(text[pos:])
    return "".join(out)


def _n_rows(data: Any) -> int:
    if isinstance(data, dict):
        return len(next(iter(data.values()))) if data else 0
    return int(data.shape[0])


# ---------------------------------------------------------------------------------------
# The fit
# ---------------------------------------------------------------------------------------
class LmerFit(InferenceMixin):
    """A fitted linear mixed model (lme4's ``merMod``), returned by :func:`multilevel.lmer`.

    Holds the design and the core's problem, so that other quantities (a refit with ML, the
    objective at another theta, conditional variances) are computed on demand.

    Examples
    --------
    >>> import multilevel as ml
    >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
    >>> fit.fixef.round(3).to_dict()
    {'(Intercept)': 251.405, 'Days': 10.467}
    >>> round(fit.sigma, 3), fit.nobs, fit.ngroups
    (25.592, 180, {'Subject': 18})
    >>> fit.varcorr.round(1)
            grp         var1  var2   vcov  sdcor
    0   Subject  (Intercept)  None  612.1   24.7
    1   Subject         Days  None   35.1    5.9
    2   Subject  (Intercept)  Days    9.6    0.1
    3  Residual         None  None  654.9   25.6
    """

    def __init__(self, design: Any, problem: Any, result: Any, reml: bool,
                 data_name: str | None = None, data: Any = None,
                 weights_name: str | None = None, offset_name: str | None = None):
        self.design = design
        self.problem = problem
        self._result = result
        self.reml = bool(reml)
        self.data_name = data_name if data_name is not None else getattr(design, "data_name", None)
        self._data = data  # a reference (no copy) for predict(re_form=...) on the fit's rows
        self.weights_name = weights_name
        self.offset_name = offset_name

    @classmethod
    def _fit(cls, design: Any, problem: Any, reml: bool, start=None, max_fun=None,
             warn: bool = True, **kwargs: Any) -> LmerFit:
        theta0 = None if start is None else np.asarray(start, dtype=float)
        result = problem.fit(bool(reml), theta0=theta0, max_fun=max_fun)
        fit = cls(design, problem, result, reml, **kwargs)
        if warn:
            fit._warn()
        return fit

    def _warn(self, stacklevel: int = 4) -> None:
        if self.singular:
            warnings.warn(SINGULAR_MESSAGE, SingularFitWarning, stacklevel=stacklevel)
        if not self.converged:
            g = np.max(np.abs(np.asarray(self.check.get("scaled_gradient", [np.nan]))))
            warnings.warn(
                f"Model failed to converge with max|grad| = {g:.6g} (tol = 0.002)",
                ConvergenceWarning, stacklevel=stacklevel)

    # -- raw estimates ---------------------------------------------------------------------
    @property
    def theta(self) -> np.ndarray:
        """Relative covariance parameters (lme4's ``getME(fit, "theta")``)."""
        return np.asarray(self._result.theta, dtype=float)

    @property
    def beta(self) -> np.ndarray:
        """Fixed-effect estimates as an array."""
        return np.asarray(self._result.beta, dtype=float)

    @property
    def sigma(self) -> float:
        """Residual standard deviation."""
        return float(self._result.sigma)

    @property
    def objective(self) -> float:
        """What was minimised: the REML criterion or -2 log-likelihood (ML)."""
        return float(self._result.objective)

    @property
    def optimizer(self) -> dict:
        """The optimiser's summary: theta0, theta, f0, f, n_eval, status, message."""
        o = getattr(self._result, "optimizer", None)
        keys = ("theta0", "theta", "f0", "f", "n_eval", "status", "message")
        return {} if o is None else {k: getattr(o, k) for k in keys}

    @property
    def check(self) -> dict:
        """The post-fit check: gradient, hessian, scaled_gradient, converged, singular."""
        c = getattr(self._result, "check", None)
        keys = ("gradient", "hessian", "scaled_gradient", "converged", "singular", "message")
        return {} if c is None else {k: getattr(c, k) for k in keys}

    @property
    def singular(self) -> bool:
        """True when the fit is on the boundary (lme4's ``isSingular``)."""
        return bool(self.check.get("singular", False))

    @property
    def converged(self) -> bool:
        """False when the gradient check after the fit failed."""
        return bool(self.check.get("converged", True))

    @property
    def b(self) -> list[np.ndarray]:
        """Conditional modes per term (arrays levels x q), in the order of ``design.terms``."""
        return [np.asarray(x, dtype=float).reshape(len(t.levels), -1)
                for x, t in zip(self._result.b, self.design.terms)]

    @property
    def u(self) -> list[np.ndarray]:
        """Spherical conditional modes per term."""
        return [np.asarray(x, dtype=float).reshape(len(t.levels), -1)
                for x, t in zip(self._result.u, self.design.terms)]

    @property
    def lambda_(self) -> list[np.ndarray]:
        """Per term the q x q lower-triangular relative covariance factor."""
        return [np.asarray(x, dtype=float) for x in self._result.lambda_]

    # -- sizes -----------------------------------------------------------------------------
    @property
    def nobs(self) -> int:
        """Number of observations used."""
        return int(self.design.nobs)

    @property
    def n_dropped(self) -> int:
        """Rows dropped for missing values."""
        return int(self.design.n_dropped)

    @cached_property
    def ngroups(self) -> dict[str, int]:
        """Number of levels per grouping factor (lme4's ``ngrps``)."""
        out: dict[str, int] = {}
        for t in self.design.terms:
            out.setdefault(t.group, len(t.levels))
        return out

    @property
    def df(self) -> int:
        """Number of parameters: fixed effects + theta + sigma."""
        return len(self.beta) + len(self.theta) + 1

    @property
    def npar(self) -> int:
        """Number of parameters (lme4's ``npar`` in ``anova``): the same as :attr:`df`."""
        return self.df

    @property
    def df_resid(self) -> int:
        """Residual degrees of freedom as lme4's ``df.residual``: nobs - df."""
        return self.nobs - self.df

    # -- likelihood --------------------------------------------------------------------------
    @property
    def loglik(self) -> float:
        """Log-likelihood; the REML log-likelihood for a REML fit (as lme4's ``logLik``)."""
        return -0.5 * self.objective

    @property
    def aic(self) -> float:
        """Akaike's criterion from :attr:`loglik` and :attr:`df` (as lme4's ``AIC``)."""
        return -2.0 * self.loglik + 2.0 * self.df

    @property
    def bic(self) -> float:
        """Schwarz's criterion from :attr:`loglik` and :attr:`df` (as lme4's ``BIC``)."""
        return -2.0 * self.loglik + math.log(self.nobs) * self.df

    @property
    def deviance(self) -> float:
        """lme4's ``deviance()``: -2 log-likelihood for ML; for REML the REML criterion.

        lme4 returns the REML criterion for REML fits (with a deprecation note); use
        ``fit.refit_ml().deviance`` for the ML deviance.
        """
        return self.objective

    # -- fixed effects --------------------------------------------------------------------
    @cached_property
    def fixef(self) -> pd.Series:
        """Fixed-effect estimates, indexed by the columns of X."""
        return pd.Series(self.beta, index=list(self.design.fixed_names), name="fixef")

    @cached_property
    def vcov(self) -> pd.DataFrame:
        """Covariance matrix of the fixed effects: :attr:`vcov_model`, or the cluster-robust
        one when the fit was made with ``lmer(..., vcov=...)`` (then :attr:`robust` is set)."""
        if self.robust is not None:
            return self.robust.frame()
        return self.vcov_model

    @cached_property
    def vcov_model(self) -> pd.DataFrame:
        """Model-based covariance matrix of the fixed effects, sigma^2 (R_X' R_X)^-1."""
        names = list(self.design.fixed_names)
        v = self.sigma**2 * np.asarray(self._result.vcov_unscaled, dtype=float)
        return pd.DataFrame(v, index=names, columns=names)

    @cached_property
    def se(self) -> pd.Series:
        """Standard errors of the fixed effects."""
        return pd.Series(np.sqrt(np.diag(self.vcov.to_numpy())), index=self.vcov.index, name="se")

    # -- cluster-robust covariance (multilevel.inference.lmer_robust) ---------------------------------
    robust: Any = None  # a lmer_robust.RobustVcov when made with lmer(..., vcov=...)

    def vcov_robust(self, type: str = "CR2", cluster: Any = None) -> pd.DataFrame:
        """Cluster-robust covariance of the fixed effects, as clubSandwich's ``vcovCR``.

        Parameters
        ----------
        type : {"CR0", "CR1", "CR1p", "CR1S", "CR2", "CR3", "CR4"}
        cluster : str, array or None
            A grouping factor, a column of the data or an array; None: the grouping factor
            with fewest levels. See :mod:`multilevel.inference.lmer_robust`.

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
        >>> fit.vcov_robust("CR2", cluster="Subject").round(2)
                     (Intercept)  Days
        (Intercept)        46.57 -1.45
        Days               -1.45  2.39
        """
        from multilevel.inference import lmer_robust

        return lmer_robust.vcov_robust(self, type, cluster).frame()

    def coef_test(self, type: str | None = None, cluster: Any = None) -> pd.DataFrame:
        """Cluster-robust t-tests with Satterthwaite df (clubSandwich's ``coef_test``).

        Without arguments, the covariance chosen by ``lmer(..., vcov=...)``, else CR2 on the
        grouping factor with fewest levels. Columns: Estimate, Std. Error, df, t value,
        Pr(>|t|).
        """
        from multilevel.inference import lmer_robust

        if type is None and cluster is None and self.robust is not None:
            r = self.robust
        else:
            r = lmer_robust.vcov_robust(self, "CR2" if type is None else type, cluster)
        return r.coef_table(self.beta)

    # -- random effects -----------------------------------------------------------------
    def _groups(self) -> dict[str, list[int]]:
        """Grouping factor -> indices of its terms, in order of first appearance."""
        out: dict[str, list[int]] = {}
        for k, t in enumerate(self.design.terms):
            out.setdefault(t.group, []).append(k)
        return out

    @cached_property
    def ranef(self) -> dict[str, pd.DataFrame]:
        """Conditional modes per grouping factor: DataFrame levels x term columns."""
        out = {}
        bs = self.b
        for g, ks in self._groups().items():
            t0 = self.design.terms[ks[0]]
            vals = np.hstack([bs[k] for k in ks])
            cols = [n for k in ks for n in self.design.terms[k].names]
            out[g] = pd.DataFrame(vals, index=pd.Index(t0.levels, name=g).astype(str)
                                  if not isinstance(t0.levels, pd.Index)
                                  else pd.Index(t0.levels, name=g), columns=cols)
        return out

    @cached_property
    def ranef_condvar(self) -> dict[str, np.ndarray]:
        """Conditional variances of the random effects per grouping factor, (levels, q, q).

        ``sigma^2 Lambda (L L')^-1 Lambda'``, its diagonal blocks per level, as lme4's
        ``attr(ranef(fit, condVar = TRUE)[[g]], "postVar")``. For a factor with several terms
        the blocks of the terms are placed on the diagonal (lme4 reports them separately and
        does not compute the covariances between the terms).
        """
        cv = [np.asarray(c, dtype=float) for c in self.problem.condvar(self.theta)]
        s2 = self.sigma**2
        out = {}
        for g, ks in self._groups().items():
            nl = cv[ks[0]].shape[0]
            qs = [cv[k].shape[1] for k in ks]
            arr = np.zeros((nl, sum(qs), sum(qs)))
            o = 0
            for k, q in zip(ks, qs):
                arr[:, o : o + q, o : o + q] = s2 * cv[k]
                o += q
            out[g] = arr
        return out

    @cached_property
    def coef(self) -> dict[str, pd.DataFrame]:
        """Per grouping factor, fixed effects plus the level's random effects (lme4's ``coef``)."""
        fe = self.fixef
        out = {}
        for g, re in self.ranef.items():
            missing = [c for c in re.columns if c not in fe.index]
            cols = missing + list(fe.index)
            base = pd.Series(0.0, index=cols)
            base[list(fe.index)] = fe.to_numpy()
            df = pd.DataFrame(np.tile(base.to_numpy(), (len(re), 1)), index=re.index, columns=cols)
            for c in re.columns:
                df[c] = df[c] + re[c].to_numpy()
            out[g] = df
        return out

    @cached_property
    def varcorr(self) -> pd.DataFrame:
        """Variance components as lme4's ``as.data.frame(VarCorr(fit))``.

        One block per term (group names made unique as lme4 does: "Subject", "Subject.1"):
        variances, then covariances in the order (1,2), (1,3), ..., (2,3), ...; then the
        residual. Column ``sdcor`` holds standard deviations and correlations.
        """
        rows = []
        s2 = self.sigma**2
        gnames = _make_unique([t.group for t in self.design.terms])
        for gname, t, lam in zip(gnames, self.design.terms, self.lambda_):
            S = s2 * lam @ lam.T
            sd = np.sqrt(np.diag(S))
            q = S.shape[0]
            for i in range(q):
                rows.append((gname, t.names[i], None, S[i, i], sd[i]))
            for i in range(q):
                for j in range(i + 1, q):
                    den = sd[i] * sd[j]
                    cor = S[i, j] / den if den > 0 else np.nan
                    rows.append((gname, t.names[i], t.names[j], S[i, j], cor))
        rows.append(("Residual", None, None, s2, self.sigma))
        return pd.DataFrame({
            "grp": pd.Series([r[0] for r in rows], dtype=object),
            "var1": pd.Series([r[1] for r in rows], dtype=object),
            "var2": pd.Series([r[2] for r in rows], dtype=object),
            "vcov": np.array([r[3] for r in rows], dtype=float),
            "sdcor": np.array([r[4] for r in rows], dtype=float),
        })

    # -- fitted values --------------------------------------------------------------------
    def _re_part(self, terms: Sequence[tuple[np.ndarray, np.ndarray]] | None,
                 which: Sequence[int]) -> np.ndarray:
        bs = self.b
        total = None
        for k in which:
            codes, Z = terms[k] if terms is not None else (self.design.terms[k].codes,
                                                          self.design.terms[k].Z)
            codes = np.asarray(codes)
            Z = np.asarray(Z, dtype=float).reshape(codes.shape[0], -1)
            known = codes >= 0
            contrib = np.zeros(codes.shape[0])
            contrib[known] = np.einsum("ij,ij->i", Z[known], bs[k][codes[known]])
            total = contrib if total is None else total + contrib
        return total

    @cached_property
    def fitted(self) -> np.ndarray:
        """Fitted values X beta + Z b (+ offset), aligned with the rows used."""
        f = np.asarray(self.design.X, dtype=float) @ self.beta
        re = self._re_part(None, range(len(self.design.terms)))
        if re is not None:
            f = f + re
        if self.design.offset is not None:
            f = f + np.asarray(self.design.offset, dtype=float)
        f.setflags(write=False)
        return f

    @cached_property
    def resid(self) -> np.ndarray:
        """Response residuals y - fitted."""
        r = np.asarray(self.design.y, dtype=float) - self.fitted
        r.setflags(write=False)
        return r

    def scaled_residuals(self) -> np.ndarray:
        """Pearson residuals divided by sigma: sqrt(w) (y - fitted) / sigma."""
        r = self.resid
        if self.design.weights is not None:
            r = r * np.sqrt(np.asarray(self.design.weights, dtype=float))
        return r / self.sigma

    def predict(self, newdata: Any = None, re_form: Any = None,
                allow_new_levels: bool = False, offset: Any = None) -> np.ndarray:
        """Predictions, as lme4's ``predict(fit, newdata, re.form, allow.new.levels)``.

        Parameters
        ----------
        newdata : DataFrame or dict, optional
            New rows; ``None`` predicts for the rows of the fit.
        re_form : None, NA-like, "~0" or a formula
            ``None`` conditions on all random effects; ``"~0"`` (or ``np.nan``/``pd.NA``) on
            none (population level); a formula such as ``"~(1 | Subject)"`` on those terms.
        allow_new_levels : bool
            Allow levels absent from the fit; their random effects are 0.
        offset : array-like, optional
            Offset for ``newdata`` (the fit's own offset is used when ``newdata`` is None).

        Returns
        -------
        numpy.ndarray
            One prediction per row of ``newdata`` (NaN where a used variable is missing).

        Examples
        --------
        >>> import multilevel as ml
        >>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
        >>> new = {"Days": [0.0, 1.0], "Subject": ["308", "999"]}
        >>> fit.predict(new, allow_new_levels=True).round(2).tolist()
        [253.66, 261.87]
        """
        from multilevel import design as _design

        if newdata is None:
            if re_form is None:
                return np.array(self.fitted)
            if self._data is None:
                raise ValueError("predict(re_form=...) needs newdata for a fit without its data")
            full = self.predict(self._data, re_form=re_form, allow_new_levels=allow_new_levels,
                                offset=np.zeros(_n_rows(self._data)))
            out = full[np.asarray(self.design.rows)]
            if self.design.offset is not None:
                out = out + np.asarray(self.design.offset, dtype=float)
            return out
        nm = _design.new_matrices(self.design, newdata, re_form=re_form,
                                  allow_new_levels=allow_new_levels)
        rows = np.asarray(nm.rows)
        pred = np.asarray(nm.X, dtype=float) @ self.beta
        terms = list(nm.terms)
        re = self._re_part(terms, [k for k, tm in enumerate(terms) if tm is not None])
        if re is not None:
            pred = pred + re
        if offset is None and isinstance(self.offset_name, str):
            cols = newdata.keys() if isinstance(newdata, dict) else newdata.columns
            if self.offset_name in cols:
                offset = np.asarray(newdata[self.offset_name], dtype=float)
        if offset is not None:
            pred = pred + np.asarray(offset, dtype=float).reshape(-1)[rows]
        n_new = _n_rows(newdata)
        if len(rows) == n_new:
            return pred
        out = np.full(n_new, np.nan)
        out[rows] = pred
        return out

    # -- refits ---------------------------------------------------------------------------
    def refit_ml(self) -> LmerFit:
        """The same model fitted by maximum likelihood (lme4's ``refitML``); self if ML."""
        if not self.reml:
            return self
        return LmerFit._fit(self.design, self.problem, False, start=self.theta, warn=False,
                            data_name=self.data_name, data=self._data,
                            weights_name=self.weights_name, offset_name=self.offset_name)

    def objective_at(self, theta: Sequence[float], reml: bool | None = None) -> float:
        """The profiled objective at another theta (REML unless this is an ML fit)."""
        return float(self.problem.objective(np.asarray(theta, dtype=float),
                                            self.reml if reml is None else bool(reml)))

    # -- printing -------------------------------------------------------------------------
    def summary(self, style: str = "lme4", **kwargs: Any) -> Any:
        """A report of the fit; ``print(fit.summary())`` shows it.

        ``style="lme4"``: as ``print(summary(fit))`` of lme4; ``"stata"``: as Stata's
        ``mixed`` (z tests, variance components with standard errors and intervals, the LR
        test against the linear model; ``variance=False`` for standard deviations);
        ``"nlme"``: as nlme's ``summary(lme)`` (nested grouping factors only). Each report's
        tables are DataFrames too.
        """
        if style == "lme4":
            return LmerSummary(self)
        if style == "stata":
            from multilevel.reports import stata

            return stata.report(self, **kwargs)
        if style == "nlme":
            from multilevel.reports import nlme

            return nlme.summary(self)
        raise ValueError(f"style must be 'lme4', 'stata' or 'nlme'; got {style!r}")

    def intervals(self, level: float = 0.95) -> dict[str, pd.DataFrame]:
        """nlme's ``intervals(lme)``: fixed effects (t with nlme's DF), random-effect SDs and
        correlations, and sigma, each as a DataFrame with lower, est. and upper."""
        from multilevel.reports import nlme

        return nlme.intervals(self, level)

    def _title(self) -> list[str]:
        how = "REML" if self.reml else "maximum likelihood "
        lines = [f"Linear mixed model fit by {how} ['lmerMod']",
                 f"Formula: {_lme4_formula_text(self.design)}"]
        if self.data_name:
            lines.append(f"   Data: {self.data_name}")
        if self.design.weights is not None:
            lines.append(f"Weights: {self.weights_name or 'weights'}")
        if self.design.offset is not None:
            lines.append(f" Offset: {self.offset_name or 'offset'}")
        return lines

    def _aic_block(self, ndigits: int) -> list[str]:
        if self.reml:
            v = round(self.objective, ndigits)
            return [f"REML criterion at convergence: {_r_format([v], 7)[0].strip()}"]
        names = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
        vals = [round(v, ndigits) for v in (self.aic, self.bic, self.loglik, self.deviance)]
        cells = _r_format(vals + [float(self.df_resid)], 7)[:4] + [str(self.df_resid)]
        return _r_named_vector(names, cells).split("\n")

    def _re_table(self, variance: bool, digits: int = 4) -> list[str]:
        vc = self.varcorr
        gnames = _make_unique([t.group for t in self.design.terms])
        rows: list[tuple[str, str, float, float, list[float]]] = []
        s2 = self.sigma**2
        maxq = 1
        for gname, t, lam in zip(gnames, self.design.terms, self.lambda_):
            S = s2 * lam @ lam.T
            sd = np.sqrt(np.diag(S))
            q = S.shape[0]
            maxq = max(maxq, q)
            for i in range(q):
                cors = [S[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else np.nan
                        for j in range(i)]
                rows.append((gname if i == 0 else "", t.names[i], S[i, i], sd[i], cors))
        rows.append(("Residual", "", s2, self.sigma, []))
        del vc
        var_s = [s.rstrip() for s in _r_format([r[2] for r in rows], digits)]
        sd_s = _r_format([r[3] for r in rows], digits)
        cols = ["Groups", "Name"] + (["Variance"] if variance else []) + ["Std.Dev."]
        cells = []
        for r, v, s in zip(rows, _r_format([r[2] for r in rows], digits), sd_s):
            cells.append([r[0], r[1]] + ([v] if variance else []) + [s])
        del var_s
        if maxq > 1:
            ncor = maxq - 1
            sub = [[("" if j >= len(r[4]) else
                     ("NaN" if math.isnan(r[4][j]) else f"{r[4][j]:.2f}")) for j in range(ncor)]
                   for r in rows]
            widths = [max(len(row[j]) for row in sub) for j in range(ncor)]
            for row, c in zip(sub, cells):
                c.append(" ".join(s.rjust(w) if s else " " * w for s, w in zip(row, widths)))
            cols.append("Corr")
        widths = [max([len(cols[j])] + [len(c[j]) for c in cells]) for j in range(len(cols))]
        lines = [" " + " ".join(h.ljust(w) for h, w in zip(cols, widths))]
        for c in cells:
            lines.append(" " + " ".join(s.ljust(w) for s, w in zip(c, widths)))
        return lines

    def _obs_line(self) -> str:
        groups = "; ".join(f"{g}, {n}" for g, n in self.ngroups.items())
        return f"Number of obs: {self.nobs}, groups:  {groups}"

    def _messages(self) -> list[str]:
        out = []
        if not self.converged:
            g = np.max(np.abs(np.asarray(self.check.get("scaled_gradient", [np.nan]))))
            out.append(f"Model failed to converge with max|grad| = {g:.6g} (tol = 0.002)")
        if self.singular:
            out.append(SINGULAR_MESSAGE)
        return out

    def __repr__(self) -> str:
        lines = self._title()
        lines += self._aic_block(4)
        lines.append("Random effects:")
        lines += self._re_table(variance=False)
        lines.append(self._obs_line())
        lines.append("Fixed Effects:")
        names = list(self.fixef.index)
        vals = [s.strip() for s in _r_format(self.beta, 4)]
        w = max([len(n) for n in names] + [len(v) for v in vals])
        per_line = max(1, 80 // (w + 2))
        for i in range(0, len(names), per_line):
            lines.append("  ".join(n.rjust(w) for n in names[i : i + per_line]) + "  ")
            lines.append("  ".join(v.rjust(w) for v in vals[i : i + per_line]) + "  ")
        msgs = self._messages()
        if msgs:
            lines += msgs
        return "\n".join(lines)


class LmerSummary:
    """The summary of an :class:`LmerFit`; ``str()`` is laid out like lme4's.

    Attributes
    ----------
    coefficients : DataFrame with Estimate, Std. Error, t value
    varcorr : DataFrame, as ``fit.varcorr``
    residuals : Series of quantiles (Min, 1Q, Median, 3Q, Max) of the scaled residuals
    correlation : DataFrame, correlation of the fixed effects
    """

    def __init__(self, fit: LmerFit):
        self.fit = fit
        est = fit.beta
        se = fit.se.to_numpy()
        self.coefficients = pd.DataFrame(
            {"Estimate": est, "Std. Error": se, "t value": est / se}, index=fit.fixef.index)
        if fit.robust is not None:  # robust SEs with Satterthwaite df and p-values
            self.coefficients = fit.robust.coef_table(est)
        self.varcorr = fit.varcorr
        q = np.quantile(fit.scaled_residuals(), [0, 0.25, 0.5, 0.75, 1.0])
        mx = np.max(np.abs(q))
        if mx > 0:  # R's zapsmall(q, digits + 1) as lme4 prints them (digits = 4)
            q = np.round(q, max(0, math.floor(5 - math.log10(mx) + 0.5)))
        self.residuals = pd.Series(q, index=["Min", "1Q", "Median", "3Q", "Max"])
        v = fit.vcov.to_numpy()
        d = np.sqrt(np.diag(v))
        self.correlation = pd.DataFrame(v / np.outer(d, d), index=fit.vcov.index,
                                        columns=fit.vcov.columns)

    def _coef_table(self, digits: int = 4) -> list[str]:
        cf = self.coefficients
        cs = cf[["Estimate", "Std. Error"]].to_numpy()
        acs = np.abs(cs[np.isfinite(cs) & (cs != 0)])
        if acs.size:
            digmin = 1 + math.floor(math.log10(acs.min()))
            nd = max(1, digits - digmin)
        else:
            nd = 1
        flat = [round(float(x), nd) for x in cs.ravel(order="F")]
        fmt = _r_format(flat, digits)
        n = cs.shape[0]
        est_s, se_s = fmt[:n], fmt[n:]
        tv = [round(float(x), 3) for x in cf["t value"]]
        t_s = _r_format(tv, digits)
        cells = [[e, s, t] for e, s, t in zip(est_s, se_s, t_s)]
        cols = ["Estimate", "Std. Error", "t value"]
        if "df" in cf.columns:  # robust: Satterthwaite df and p-values, laid out as lmerTest
            df_s = _r_format([round(float(x), 2) for x in cf["df"]], digits)
            pv = cf["Pr(>|t|)"].to_numpy()
            tiny = pv < np.finfo(float).eps
            p_s = _r_format([float(x) for x in pv[~tiny]], 3) if (~tiny).any() else []
            p_it = iter(p_s)
            p_s = ["< 2e-16" if t else next(p_it).strip() for t in tiny]
            w = max(len(x) for x in p_s)
            cells = [[e, s, d, t, p.rjust(w)]
                     for (e, s, t), d, p in zip(cells, df_s, p_s)]
            cols = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
        return _r_matrix(list(cf.index), cols, cells).split("\n")

    def _corr_table(self) -> list[str]:
        names = list(self.correlation.index)
        p = len(names)
        if p <= 1:
            return []
        if p > 12:
            return ["", f"Correlation matrix not shown by default, as p = {p} > 12."]
        c = self.correlation.to_numpy()
        low = [f"{c[i, j]:.3f}" for i in range(1, p) for j in range(i)]
        w = max(len(x) for x in low)
        cells = [[(f"{c[i, j]:.3f}".rjust(w) if j < i else "") for j in range(p - 1)]
                 for i in range(1, p)]
        rown = [_abbreviate(nm, 11) for nm in names[1:]]
        coln = [_abbreviate(nm, 6) for nm in names[:-1]]
        return ["", "Correlation of Fixed Effects:"] + _r_matrix(
            rown, coln, cells, right=False).split("\n")

    def __str__(self) -> str:
        fit = self.fit
        lines = fit._title() + [""]
        lines += fit._aic_block(1)
        lines += ["", "Scaled residuals: "]
        lines += _r_named_vector(list(self.residuals.index),
                                 [s.strip() for s in _r_format(self.residuals.to_numpy(), 4)]
                                 ).split("\n")
        lines += ["", "Random effects:"]
        lines += fit._re_table(variance=True)
        lines.append(fit._obs_line())
        lines += ["", "Fixed effects:"]
        if fit.robust is not None:
            lines[-1] = f"Fixed effects ({fit.robust.describe()}):"
        lines += self._coef_table()
        lines += self._corr_table()
        msgs = fit._messages()
        if msgs:
            lines += [""] + msgs
        return "\n".join(lines)

    __repr__ = __str__


# ---------------------------------------------------------------------------------------
# Likelihood-ratio tests
# ---------------------------------------------------------------------------------------
def anova(*fits: Any, names: Sequence[str] | None = None, refit: bool = True,
          type: int | None = None, ddf: str | None = "satterthwaite", boot: int | None = None,
          seed: Any = None, threads: int | None = None, progress: bool = False) -> pd.DataFrame:
    """Likelihood-ratio tests between nested fits, as lme4's ``anova(fit0, fit1, ...)``.

    REML fits are refitted by maximum likelihood first (with the note "refitting model(s)
    with ML (instead of REML)", issued as a warning). Rows are ordered by number of
    parameters; ``Chisq`` compares each model with the row above it.

    Parameters
    ----------
    *fits : LmerFit
        Two or more fits to the same rows.
    names : list of str, optional
        Row labels; default "fit0", "fit1", ... in argument order.
    refit : bool
        Refit REML fits with ML (default, as lme4); if False the REML criteria are compared.
    type : 3, optional
        With one fit: lmerTest's type III F tests of its fixed-effect terms, with ``ddf``
        ("satterthwaite", "kenward-roger", "residual", "nlme" or None for chi-square tests).
    boot : int, optional
        With two fits: adds a parametric-bootstrap p-value of the LR test ("Pr(>Chisq) boot",
        pbkrtest's PBmodcomp) from ``boot`` responses simulated from the smaller model
        (``seed``, ``threads`` and ``progress`` as in :func:`multilevel.bootstrap`).

    Returns
    -------
    pandas.DataFrame
        Columns npar, AIC, BIC, logLik, deviance, Chisq, Df, Pr(>Chisq).

    Examples
    --------
    >>> import warnings
    >>> import multilevel as ml
    >>> df = ml.datasets.load("sleepstudy")
    >>> f0 = ml.lmer("Reaction ~ Days + (1 | Subject)", data=df, reml=False)
    >>> f1 = ml.lmer("Reaction ~ Days + (Days | Subject)", data=df, reml=False)
    >>> tab = ml.anova(f0, f1)
    >>> tab["npar"].tolist(), round(float(tab["Chisq"].iloc[1]), 2)
    ([4, 6], 42.14)
    """
    if type is not None or len(fits) == 1:
        if len(fits) != 1 or type not in (None, 3):
            raise ValueError("anova(fit, type=3) tests the terms of one fit (type III only)")
        from multilevel.inference import anova3

        return anova3.anova(fits[0], ddf)
    if len(fits) < 2:
        raise ValueError("anova() needs at least two fits")
    if names is None:
        names = [f"fit{i}" for i in range(len(fits))]
    if len(names) != len(fits):
        raise ValueError("names must have one entry per fit")
    nobs = {f.nobs for f in fits}
    if len(nobs) > 1:
        raise DataError(f"models were not all fitted to the same size of dataset: nobs {sorted(nobs)}")
    if refit and any(f.reml for f in fits):
        warnings.warn(REFIT_MESSAGE, UserWarning, stacklevel=2)
        fits = tuple(f.refit_ml() for f in fits)
    order = sorted(range(len(fits)), key=lambda i: fits[i].npar)  # stable: ties keep order
    fs = [fits[i] for i in order]
    npar = np.array([f.npar for f in fs])
    ll = np.array([f.loglik for f in fs])
    dev = -2.0 * ll
    chisq = np.full(len(fs), np.nan)
    dfc = np.full(len(fs), np.nan)
    pv = np.full(len(fs), np.nan)
    from scipy import stats

    for i in range(1, len(fs)):
        chisq[i] = 2.0 * max(0.0, ll[i] - ll[i - 1])
        dfc[i] = npar[i] - npar[i - 1]
        pv[i] = stats.chi2.sf(chisq[i], dfc[i]) if dfc[i] > 0 else np.nan
    table = pd.DataFrame(
        {"npar": npar, "AIC": [f.aic for f in fs], "BIC": [f.bic for f in fs], "logLik": ll,
         "deviance": dev, "Chisq": chisq, "Df": dfc, "Pr(>Chisq)": pv},
        index=[names[i] for i in order])
    if boot is not None:
        if len(fs) != 2 or not all(isinstance(f, LmerFit) for f in fs):
            raise ValueError("boot= compares two linear mixed model fits")
        from multilevel.inference.bootstrap import lrt_pvalue

        p, _ = lrt_pvalue(fs[0], fs[1], boot, seed=seed, threads=threads, progress=progress)
        table["Pr(>Chisq) boot"] = [np.nan, p]
    return table
