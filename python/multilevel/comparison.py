"""Several fits side by side in one table (as Stata's ``esttab`` or pyfixest's ``etable``).

Rows: each coefficient's estimate with its standard error (or interval) below it, the
variance parameters of mixed models (standard deviations and correlations, as lme4 reports
them), then the number of observations, of groups per grouping factor, the log-likelihood,
AIC and BIC. Columns: one per fit. The table is data (``.frame``) and prints as text, HTML
(Jupyter) and LaTeX.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from scipy import stats


def _coefficients(fit: Any) -> tuple[pd.Series, pd.Series]:
    if hasattr(fit, "fixef"):
        return fit.fixef, fit.se
    if hasattr(fit, "params"):
        return fit.params, fit.se
    raise TypeError(f"compare() takes fitted models; got {type(fit).__name__}")


def _variance_rows(fit: Any) -> dict[str, float]:
    out: dict[str, float] = {}
    vc = getattr(fit, "varcorr", None)
    if isinstance(vc, pd.DataFrame):
        for _, r in vc.iterrows():
            if r["grp"] == "Residual":
                continue
            if r["var2"] is None or (isinstance(r["var2"], float) and math.isnan(r["var2"])):
                out[f"SD {r['var1']} | {r['grp']}"] = float(r["sdcor"])
            else:
                out[f"Cor {r['var1']}, {r['var2']} | {r['grp']}"] = float(r["sdcor"])
    sigma = getattr(fit, "sigma", None)
    if sigma is not None:
        out["SD residual"] = float(sigma)
    return out


def _stat(fit: Any, name: str) -> float:
    v = getattr(fit, name, None)
    try:
        return float(v) if v is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


@dataclass
class Comparison:
    """The table of :func:`compare`: ``frame`` holds numbers, the rest formats them."""

    estimates: pd.DataFrame  # coefficient x fit
    errors: pd.DataFrame  # standard errors (or half-widths) x fit
    intervals: tuple[pd.DataFrame, pd.DataFrame] | None
    variance: pd.DataFrame  # variance parameter x fit
    stats: pd.DataFrame  # N, groups, logLik, AIC, BIC x fit
    digits: int = 3

    @property
    def frame(self) -> pd.DataFrame:
        """All the numbers in one frame, with a ``(part, row)`` index."""
        parts = [
            ("coef", self.estimates),
            ("se", self.errors),
            ("variance", self.variance),
            ("stats", self.stats),
        ]
        frames = [
            df.set_axis(pd.MultiIndex.from_product([[k], df.index]), axis=0)
            for k, df in parts
            if len(df)
        ]
        return pd.concat(frames)

    def _cells(self) -> tuple[list[str], list[list[str]]]:
        f = f"{{:.{self.digits}f}}"
        rows, names = [], []
        for name in self.estimates.index:
            names.append(name)
            rows.append(["" if pd.isna(v) else f.format(v) for v in self.estimates.loc[name]])
            names.append("")
            if self.intervals is not None:
                lo, hi = self.intervals[0].loc[name], self.intervals[1].loc[name]
                rows.append(
                    [
                        "" if pd.isna(a) else f"[{f.format(a)}, {f.format(b)}]"
                        for a, b in zip(lo, hi)
                    ]
                )
            else:
                rows.append(
                    ["" if pd.isna(v) else f"({f.format(v)})" for v in self.errors.loc[name]]
                )
        for name in self.variance.index:
            names.append(name)
            rows.append(["" if pd.isna(v) else f.format(v) for v in self.variance.loc[name]])
        for name in self.stats.index:
            names.append(name)
            integer = name == "N" or name.startswith("Groups")
            rows.append(
                [
                    "" if pd.isna(v) else (f"{int(v):,}" if integer else f"{v:.2f}")
                    for v in self.stats.loc[name]
                ]
            )
        return names, rows

    def __str__(self) -> str:
        names, rows = self._cells()
        header = [""] + list(self.estimates.columns)
        width0 = max(len(n) for n in names + [""])
        widths = [max(len(h), *(len(r[j]) for r in rows)) for j, h in enumerate(header[1:])]
        sep = "-" * (width0 + sum(w + 2 for w in widths))
        lines = [
            sep,
            header[0].ljust(width0)
            + "".join("  " + h.rjust(w) for h, w in zip(header[1:], widths)),
            sep,
        ]
        n_coef = 2 * len(self.estimates)
        for i, (n, r) in enumerate(zip(names, rows)):
            if i in (n_coef, n_coef + len(self.variance)) and i:
                lines.append(sep)
            lines.append(n.ljust(width0) + "".join("  " + c.rjust(w) for c, w in zip(r, widths)))
        lines.append(sep)
        return "\n".join(lines)

    def to_html(self) -> str:
        names, rows = self._cells()
        head = "".join(f"<th>{c}</th>" for c in ["", *self.estimates.columns])
        body = "".join(
            "<tr><th style='text-align:left'>"
            + n
            + "</th>"
            + "".join(f"<td>{c}</td>" for c in r)
            + "</tr>"
            for n, r in zip(names, rows)
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"

    _repr_html_ = to_html

    def to_latex(self) -> str:
        names, rows = self._cells()

        def esc(s: str) -> str:
            return s.replace("_", r"\_").replace("%", r"\%").replace("&", r"\&")

        cols = "l" + "r" * len(self.estimates.columns)
        lines = [
            rf"\begin{{tabular}}{{{cols}}}",
            r"\hline",
            " & ".join(["", *map(esc, self.estimates.columns)]) + r" \\",
            r"\hline",
        ]
        lines += [" & ".join([esc(n), *map(esc, r)]) + r" \\" for n, r in zip(names, rows)]
        lines += [r"\hline", r"\end{tabular}"]
        return "\n".join(lines)


def compare(
    *fits: Any, names: Sequence[str] | None = None, ci: float | None = None, digits: int = 3
) -> Comparison:
    """One table of several fits: coefficients (with SEs, or intervals at level ``ci``),
    variance parameters, N, groups, log-likelihood, AIC and BIC.

    Examples
    --------
    >>> import multilevel as ml
    >>> d = ml.datasets.load("sleepstudy")
    >>> t = ml.compare(ml.ols("Reaction ~ Days", d),
    ...                ml.lmer("Reaction ~ Days + (Days | Subject)", d, reml=False),
    ...                names=["OLS", "LMM"])
    >>> t.frame.loc[("coef", "Days")].round(3).tolist()
    [10.467, 10.467]
    """
    if not fits:
        raise ValueError("compare() needs at least one fit")
    names = list(names) if names is not None else [f"({i + 1})" for i in range(len(fits))]
    if len(names) != len(fits):
        raise ValueError(f"{len(names)} names for {len(fits)} fits")
    est, err, lo, hi, var, st = {}, {}, {}, {}, {}, {}
    for name, fit in zip(names, fits):
        b, se = _coefficients(fit)
        est[name], err[name] = b, se
        if ci is not None:
            z = stats.norm.ppf(0.5 + ci / 2.0)
            lo[name], hi[name] = b - z * se, b + z * se
        var[name] = pd.Series(_variance_rows(fit), dtype=float)
        s = {"N": _stat(fit, "nobs")}
        for g, n in (getattr(fit, "ngroups", None) or {}).items():
            s[f"Groups {g}"] = float(n)
        s.update(
            {"logLik": _stat(fit, "loglik"), "AIC": _stat(fit, "aic"), "BIC": _stat(fit, "bic")}
        )
        st[name] = pd.Series(s)
    order = list(dict.fromkeys(k for b in est.values() for k in b.index))
    estimates = pd.DataFrame(est).reindex(order)
    errors = pd.DataFrame(err).reindex(order)
    intervals = (
        (pd.DataFrame(lo).reindex(order), pd.DataFrame(hi).reindex(order))
        if ci is not None
        else None
    )
    vkeys = list(dict.fromkeys(k for v in var.values() for k in v.index))
    vkeys = [k for k in vkeys if k != "SD residual"] + ["SD residual"] * ("SD residual" in vkeys)
    variance = pd.DataFrame(var).reindex(vkeys)
    groups = list(dict.fromkeys(k for v in st.values() for k in v.index if k.startswith("Groups")))
    stats_ = pd.DataFrame(st).reindex(["N", *groups, "logLik", "AIC", "BIC"])
    stats_ = stats_.loc[[i for i in stats_.index if not stats_.loc[i].isna().all()]]
    return Comparison(estimates, errors, intervals, variance, stats_.astype(float), digits)
