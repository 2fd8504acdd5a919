"""Likelihood-ratio tests between nested fits: lme4's ``anova(fit0, fit1, ...)`` (type III F
tests of one fit are in :mod:`multilevel.inference.anova3`)."""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from multilevel.exceptions import DataError
from multilevel.results.lmer import LmerFit

__all__ = ["REFIT_MESSAGE", "anova"]

REFIT_MESSAGE = "refitting model(s) with ML (instead of REML)"


def anova(
    *fits: Any,
    names: Sequence[str] | None = None,
    refit: bool = True,
    type: int | None = None,
    ddf: str | None = "satterthwaite",
    boot: int | None = None,
    seed: Any = None,
    threads: int | None = None,
    progress: bool = False,
) -> pd.DataFrame:
    """Likelihood-ratio tests between nested fits, as lme4's ``anova(fit0, fit1, ...)``.

    REML fits are refitted by maximum likelihood first (with the note "refitting model(s)
    with ML (instead of REML)", issued as a warning). Rows are ordered by number of
    parameters; ``Chisq`` compares each model with the row above it.

    Parameters
    ----------
    *fits : LmerFit or GlmerFit
        Two or more fits to the same rows (glmer fits are compared as they are).
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
    for i, f in enumerate(fits):  # a formula or a data frame passed by mistake
        if not (hasattr(f, "loglik") and hasattr(f, "npar")):
            raise TypeError(f"anova() compares fits; argument {i + 1} is a {builtins_type(f)}")
    if boot is not None and (
        isinstance(boot, bool) or not isinstance(boot, (int, np.integer)) or boot < 1
    ):
        raise ValueError(f"boot must be a positive number of bootstrap samples, not {boot!r}")
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
        raise DataError(
            f"models were not all fitted to the same size of dataset: nobs {sorted(nobs)}"
        )
    # glmer fits (GlmerFit) are ML fits: no refit step, as lme4's anova for glmerMod.
    if refit and any(getattr(f, "reml", False) for f in fits):
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
        {
            "npar": npar,
            "AIC": [f.aic for f in fs],
            "BIC": [f.bic for f in fs],
            "logLik": ll,
            "deviance": dev,
            "Chisq": chisq,
            "Df": dfc,
            "Pr(>Chisq)": pv,
        },
        index=[names[i] for i in order],
    )
    if boot is not None:
        if len(fs) != 2 or not all(isinstance(f, LmerFit) for f in fs):
            raise ValueError("boot= compares two linear mixed model fits")
        from multilevel.inference.bootstrap import lrt_pvalue

        p, _ = lrt_pvalue(fs[0], fs[1], boot, seed=seed, threads=threads, progress=progress)
        table["Pr(>Chisq) boot"] = [np.nan, p]
    return table


def builtins_type(obj: Any) -> str:
    """The class name of ``obj`` (``anova``'s ``type`` argument shadows the builtin)."""
    return obj.__class__.__name__
