"""lme4's printed reports of a fit: ``print(fit)`` (:func:`fit_text`) and
``print(summary(fit))`` (:class:`LmerSummary`), laid out character for character."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from multilevel.results.html import HtmlTextMixin
from multilevel.results.rformat import abbreviate, make_unique, r_format, r_matrix, r_named_vector

__all__ = ["SINGULAR_MESSAGE", "LmerSummary", "convergence_message", "fit_text", "formula_text"]

SINGULAR_MESSAGE = "boundary (singular) fit: see help('isSingular')"


def convergence_message(fit: Any) -> str:
    """lme4's note on a fit whose scaled gradient is above the tolerance."""
    g = np.max(np.abs(np.asarray(fit.check.get("scaled_gradient", [np.nan]))))
    return f"Model failed to converge with max|grad| = {g:.6g} (tol = 0.002)"


def formula_text(design: Any) -> str:
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


def title(fit: Any) -> list[str]:
    how = "REML" if fit.reml else "maximum likelihood "
    lines = [f"Linear mixed model fit by {how} ['lmerMod']", f"Formula: {formula_text(fit.design)}"]
    if fit.data_name:
        lines.append(f"   Data: {fit.data_name}")
    if fit.design.weights is not None:
        lines.append(f"Weights: {fit.weights_name or 'weights'}")
    if fit.design.offset is not None:
        lines.append(f" Offset: {fit.offset_name or 'offset'}")
    return lines


def aic_block(fit: Any, ndigits: int) -> list[str]:
    if fit.reml:
        v = round(fit.objective, ndigits)
        return [f"REML criterion at convergence: {r_format([v], 7)[0].strip()}"]
    names = ["AIC", "BIC", "logLik", "deviance", "df.resid"]
    vals = [round(v, ndigits) for v in (fit.aic, fit.bic, fit.loglik, fit.deviance)]
    cells = r_format(vals + [float(fit.df_resid)], 7)[:4] + [str(fit.df_resid)]
    return r_named_vector(names, cells).split("\n")


def re_table(fit: Any, variance: bool, digits: int = 4) -> list[str]:
    vc = fit.varcorr
    gnames = make_unique([t.group for t in fit.design.terms])
    rows: list[tuple[str, str, float, float, list[float]]] = []
    s2 = fit.sigma**2
    maxq = 1
    for gname, t, lam in zip(gnames, fit.design.terms, fit.lambda_):
        S = s2 * lam @ lam.T
        sd = np.sqrt(np.diag(S))
        q = S.shape[0]
        maxq = max(maxq, q)
        for i in range(q):
            cors = [S[i, j] / (sd[i] * sd[j]) if sd[i] * sd[j] > 0 else np.nan for j in range(i)]
            rows.append((gname if i == 0 else "", t.names[i], S[i, i], sd[i], cors))
    rows.append(("Residual", "", s2, fit.sigma, []))
    del vc
    var_s = [s.rstrip() for s in r_format([r[2] for r in rows], digits)]
    sd_s = r_format([r[3] for r in rows], digits)
    cols = ["Groups", "Name"] + (["Variance"] if variance else []) + ["Std.Dev."]
    cells = []
    for r, v, s in zip(rows, r_format([r[2] for r in rows], digits), sd_s):
        cells.append([r[0], r[1]] + ([v] if variance else []) + [s])
    del var_s
    if maxq > 1:
        ncor = maxq - 1
        sub = [
            [
                ("" if j >= len(r[4]) else ("NaN" if math.isnan(r[4][j]) else f"{r[4][j]:.2f}"))
                for j in range(ncor)
            ]
            for r in rows
        ]
        widths = [max(len(row[j]) for row in sub) for j in range(ncor)]
        for row, c in zip(sub, cells):
            c.append(" ".join(s.rjust(w) if s else " " * w for s, w in zip(row, widths)))
        cols.append("Corr")
    widths = [max([len(cols[j])] + [len(c[j]) for c in cells]) for j in range(len(cols))]
    lines = [" " + " ".join(h.ljust(w) for h, w in zip(cols, widths))]
    for c in cells:
        lines.append(" " + " ".join(s.ljust(w) for s, w in zip(c, widths)))
    return lines


def obs_line(fit: Any) -> str:
    groups = "; ".join(f"{g}, {n}" for g, n in fit.ngroups.items())
    return f"Number of obs: {fit.nobs}, groups:  {groups}"


def messages(fit: Any) -> list[str]:
    out = []
    if not fit.converged:
        out.append(convergence_message(fit))
    if fit.singular:
        out.append(SINGULAR_MESSAGE)
    return out


def fit_text(fit: Any) -> str:
    lines = title(fit)
    lines += aic_block(fit, 4)
    lines.append("Random effects:")
    lines += re_table(fit, variance=False)
    lines.append(obs_line(fit))
    lines.append("Fixed Effects:")
    names = list(fit.fixef.index)
    vals = [s.strip() for s in r_format(fit.beta, 4)]
    w = max([len(n) for n in names] + [len(v) for v in vals])
    per_line = max(1, 80 // (w + 2))
    for i in range(0, len(names), per_line):
        lines.append("  ".join(n.rjust(w) for n in names[i : i + per_line]) + "  ")
        lines.append("  ".join(v.rjust(w) for v in vals[i : i + per_line]) + "  ")
    msgs = messages(fit)
    if msgs:
        lines += msgs
    return "\n".join(lines)


class LmerSummary(HtmlTextMixin):
    """The summary of an :class:`LmerFit`; ``str()`` is laid out like lme4's.

    Attributes
    ----------
    coefficients : DataFrame with Estimate, Std. Error, t value
    varcorr : DataFrame, as ``fit.varcorr``
    residuals : Series of quantiles (Min, 1Q, Median, 3Q, Max) of the scaled residuals
    correlation : DataFrame, correlation of the fixed effects
    """

    def __init__(self, fit: Any):
        self.fit = fit
        est = fit.beta
        se = fit.se.to_numpy()
        self.coefficients = pd.DataFrame(
            {"Estimate": est, "Std. Error": se, "t value": est / se}, index=fit.fixef.index
        )
        if fit.robust is not None:  # robust SEs with Satterthwaite df and p-values
            self.coefficients = fit.robust.coef_table(est)
        self.varcorr = fit.varcorr
        streamed = getattr(fit, "streamed", False)  # no rows kept: no residuals to report
        res = np.full(5, np.nan) if streamed else fit.scaled_residuals()
        q = np.quantile(res, [0, 0.25, 0.5, 0.75, 1.0])
        mx = np.max(np.abs(q))
        if mx > 0:  # R's zapsmall(q, digits + 1) as lme4 prints them (digits = 4)
            q = np.round(q, max(0, math.floor(5 - math.log10(mx) + 0.5)))
        self.residuals = pd.Series(q, index=["Min", "1Q", "Median", "3Q", "Max"])
        v = fit.vcov.to_numpy()
        d = np.sqrt(np.diag(v))
        self.correlation = pd.DataFrame(
            v / np.outer(d, d), index=fit.vcov.index, columns=fit.vcov.columns
        )

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
        fmt = r_format(flat, digits)
        n = cs.shape[0]
        est_s, se_s = fmt[:n], fmt[n:]
        tv = [round(float(x), 3) for x in cf["t value"]]
        t_s = r_format(tv, digits)
        cells = [[e, s, t] for e, s, t in zip(est_s, se_s, t_s)]
        cols = ["Estimate", "Std. Error", "t value"]
        if "df" in cf.columns:  # robust: Satterthwaite df and p-values, laid out as lmerTest
            df_s = r_format([round(float(x), 2) for x in cf["df"]], digits)
            pv = cf["Pr(>|t|)"].to_numpy()
            tiny = pv < np.finfo(float).eps
            p_s = r_format([float(x) for x in pv[~tiny]], 3) if (~tiny).any() else []
            p_it = iter(p_s)
            p_s = ["< 2e-16" if t else next(p_it).strip() for t in tiny]
            w = max(len(x) for x in p_s)
            cells = [[e, s, d, t, p.rjust(w)] for (e, s, t), d, p in zip(cells, df_s, p_s)]
            cols = ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]
        return r_matrix(list(cf.index), cols, cells).split("\n")

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
        cells = [
            [(f"{c[i, j]:.3f}".rjust(w) if j < i else "") for j in range(p - 1)]
            for i in range(1, p)
        ]
        rown = [abbreviate(nm, 11) for nm in names[1:]]
        coln = [abbreviate(nm, 6) for nm in names[:-1]]
        return ["", "Correlation of Fixed Effects:"] + r_matrix(
            rown, coln, cells, right=False
        ).split("\n")

    def __str__(self) -> str:
        fit = self.fit
        lines = title(fit) + [""]
        lines += aic_block(fit, 1)
        lines += ["", "Scaled residuals: "]
        if getattr(fit, "streamed", False):
            lines.append("(not available: the data were streamed)")
        else:
            lines += r_named_vector(
                list(self.residuals.index),
                [s.strip() for s in r_format(self.residuals.to_numpy(), 4)],
            ).split("\n")
        lines += ["", "Random effects:"]
        lines += re_table(fit, variance=True)
        lines.append(obs_line(fit))
        lines += ["", "Fixed effects:"]
        if fit.robust is not None:
            lines[-1] = f"Fixed effects ({fit.robust.describe()}):"
        lines += self._coef_table()
        lines += self._corr_table()
        msgs = messages(fit)
        if msgs:
            lines += [""] + msgs
        return "\n".join(lines)

    __repr__ = __str__
