"""Fitted models as lme4 presents them.

:mod:`~multilevel.results.lmer` (:class:`LmerFit`: estimates, random effects, predictions),
:mod:`~multilevel.results.summary` (lme4's printed reports),
:mod:`~multilevel.results.rformat` (R's number formatting) and
:mod:`~multilevel.results.anova` (likelihood-ratio tests).
"""

from __future__ import annotations

from multilevel.results.anova import anova
from multilevel.results.lmer import LmerFit
from multilevel.results.summary import LmerSummary

__all__ = ["LmerFit", "LmerSummary", "anova"]
