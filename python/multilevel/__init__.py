"""multilevel: multilevel (hierarchical, mixed-effects) models on a Rust core.

>>> import multilevel as ml
>>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
>>> round(float(fit.fixef["Days"]), 4)
10.4673
"""

from __future__ import annotations

import importlib

from multilevel.exceptions import (
    ConvergenceWarning,
    DataError,
    FitError,
    FormulaError,
    MissingColumnError,
    MissingValuesWarning,
    MultilevelError,
    MultilevelWarning,
    RankDeficiencyWarning,
    SingularFitWarning,
)

__version__ = "0.1.0"

# Public functions live in their own modules and are imported on first use, so that
# `import multilevel` stays fast and each module can be worked on alone.
_LAZY = {
    "lmer": "multilevel.models.lmm",
    "anova": "multilevel.results.anova",
    "LmerFit": "multilevel.results.lmer",
    "ols": "multilevel.models.ols",
    "panel": "multilevel.models.panel",
    "hausman": "multilevel.models.panel",
    "lmlist": "multilevel.models.lmlist",
    "up": "multilevel.contextual",
    "cvar": "multilevel.contextual",
    "dvar": "multilevel.contextual",
    "glmer": "multilevel.models.glmm",
    "bootstrap": "multilevel.inference.bootstrap",
    "influence": "multilevel.inference.influence",
    "compare": "multilevel.comparison",
    "load": "multilevel.results.keep",
    "FitFileError": "multilevel.results.keep",
}
_SUBMODULES = {
    "contextual",
    "data",
    "datasets",
    "design",
    "factors",
    "families",
    "formula",
    "inference",
    "models",
    "plot",
    "reports",
    "results",
}


def __getattr__(name: str):
    if name in _LAZY:
        attr = getattr(importlib.import_module(_LAZY[name]), name)
        # Bind the function now, so that later look-ups skip this hook.
        globals()[name] = attr
        return attr
    if name in _SUBMODULES:
        return importlib.import_module(f"multilevel.{name}")
    raise AttributeError(f"module 'multilevel' has no attribute {name!r}")


__all__ = [
    "ConvergenceWarning",
    "DataError",
    "FitError",
    "FitFileError",
    "FormulaError",
    "MissingColumnError",
    "MissingValuesWarning",
    "MultilevelError",
    "MultilevelWarning",
    "RankDeficiencyWarning",
    "SingularFitWarning",
    "anova",
    "bootstrap",
    "compare",
    "cvar",
    "dvar",
    "glmer",
    "hausman",
    "influence",
    "lmer",
    "lmlist",
    "load",
    "ols",
    "panel",
    "up",
]
