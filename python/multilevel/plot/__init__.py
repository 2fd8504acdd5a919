"""Plots of fitted mixed models, drawn with matplotlib (the optional extra ``[plot]``).

matplotlib is imported when a plot is drawn, not when this package is imported; without it
a plot raises ``ImportError`` saying ``pip install multilevel[plot]``. Every function draws
on the ``ax=`` it is given (or a new figure), takes styling keywords for its main artist and
returns the Axes (the Figure for the multi-panel :func:`profile`).

* random effects: :func:`caterpillar`, :func:`qq_ranef`, :func:`ranef_scatter`,
  :func:`shrinkage`;
* residuals: :func:`resid_fitted`, :func:`resid_by_group`, :func:`qq_resid`;
* fixed effects: :func:`effect`; likelihood profiles: :func:`profile`;
* influence of each group (HLMdiag's dot plot): :func:`influence`.

Examples
--------
>>> import matplotlib
>>> matplotlib.use("Agg")
>>> import multilevel as ml
>>> import multilevel.plot as mlp
>>> fit = ml.lmer("Reaction ~ Days + (Days | Subject)", data=ml.datasets.load("sleepstudy"))
>>> ax = mlp.caterpillar(fit)
>>> ax.get_title()
'Subject: (Intercept) (95% intervals)'
"""

from __future__ import annotations

from multilevel.plot._effect import effect
from multilevel.plot._profile import profile
from multilevel.plot._ranef import caterpillar, qq_ranef, ranef_scatter
from multilevel.plot._residuals import qq_resid, resid_by_group, resid_fitted
from multilevel.plot._shrinkage import shrinkage
from multilevel.plot.influence import influence

__all__ = [
    "caterpillar",
    "effect",
    "influence",
    "profile",
    "qq_ranef",
    "qq_resid",
    "ranef_scatter",
    "resid_by_group",
    "resid_fitted",
    "shrinkage",
]
