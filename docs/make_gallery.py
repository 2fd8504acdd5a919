"""Write the plot gallery: docs/plots.md and its images in docs/img/.

Each entry below is the code shown on the page; this script runs exactly that code (after
the setup block) and saves the figure it made, so every picture comes from the code beside
it. Run from the repository root:

    python docs/make_gallery.py

Images are PNG at 80 dpi; the script fails if one exceeds 100 KB.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

DOCS = Path(__file__).resolve().parent
IMG = DOCS / "img"
MAX_BYTES = 100_000
DPI = 80

SETUP = """\
import matplotlib
matplotlib.use("Agg")  # draw without a display
import multilevel as ml
import multilevel.plot as mlp

sleep = ml.datasets.load("sleepstudy")
hsb = ml.datasets.load("hsb")
fit_sleep = ml.lmer("Reaction ~ Days + (Days | Subject)", data=sleep)
fit_hsb = ml.lmer("mathach ~ ses + sector + (ses | school)", data=hsb)
"""

# (file name, heading, what it shows, code that binds `ax` or `fig`)
ENTRIES = [
    (
        "caterpillar",
        "Caterpillar plot",
        (
            "Conditional modes of each subject's slope on Days with 95% intervals from their "
            "conditional variances, sorted (lme4's `dotplot(ranef(fit, condVar = TRUE))`)."
        ),
        'ax = mlp.caterpillar(fit_sleep, term="Days")',
    ),
    (
        "resid_fitted",
        "Residuals against fitted values",
        (
            "Residuals of the High School and Beyond model against its fitted values; the red"
            " line joins the mean residual within runs of 5% of the pupils."
        ),
        "ax = mlp.resid_fitted(fit_hsb)",
    ),
    (
        "resid_by_group",
        "Residuals by group",
        "One box of residuals per subject of the sleep study, sorted by median.",
        'ax = mlp.resid_by_group(fit_sleep, group="Subject", sort=True)',
    ),
    (
        "qq_resid",
        "Normal QQ plot of the residuals",
        (
            "Scaled residuals of the High School and Beyond model against normal quantiles, "
            "with the line through the quartiles: the short upper tail shows the ceiling of "
            "the test."
        ),
        "ax = mlp.qq_resid(fit_hsb)",
    ),
    (
        "qq_ranef",
        "Normal QQ plot of the random effects",
        "Conditional modes of the 160 school intercepts against normal quantiles.",
        'ax = mlp.qq_ranef(fit_hsb, group="school", term="(Intercept)")',
    ),
    (
        "shrinkage",
        "Shrinkage",
        (
            "Each subject's own least-squares line (open circles, area by number of days) and"
            " the mixed model's line for it (filled), with an arrow from one to the other; "
            "the cross is the population estimate."
        ),
        "ax = mlp.shrinkage(fit_sleep)",
    ),
    (
        "shrinkage_hsb",
        "Shrinkage of one coefficient",
        (
            "One coefficient at a time: the schools' own slopes on SES, sorted, pulled "
            "towards the population slope (red line); small schools (small circles) move "
            "furthest."
        ),
        'ax = mlp.shrinkage(fit_hsb, term="ses")',
    ),
    (
        "ranef_scatter",
        "Random coefficients and their covariance",
        (
            "Conditional modes of intercept and slope per subject with the 95% ellipse of the"
            " estimated covariance of the random effects."
        ),
        "ax = mlp.ranef_scatter(fit_sleep, terms=(0, 1))",
    ),
    (
        "effect",
        "Effect of a predictor",
        (
            "Population-level lines of mathach on SES in public and Catholic schools with 95%"
            " Wald bands from the covariance of the fixed effects."
        ),
        (
            'fit_int = ml.lmer("mathach ~ ses * sector + (1 | school)", data=hsb)\n'
            'ax = mlp.effect(fit_int, "ses", data=hsb, by="sector")'
        ),
    ),
    (
        "profile",
        "Profile zeta plots",
        (
            "zeta against each parameter of the sleep-study model fitted by maximum "
            "likelihood; the vertical lines are the ends of the 95% profile intervals (lme4's"
            " `xyplot(profile(fit))`)."
        ),
        (
            'fit_ml = ml.lmer("Reaction ~ Days + (Days | Subject)", data=sleep, reml=False)\n'
            "fig = mlp.profile(fit_ml.profile())"
        ),
    ),
]


def page() -> str:
    """The Markdown of the gallery."""
    parts = [
        "# Plots",
        "",
        (
            "`multilevel.plot` draws the usual pictures of a mixed model with matplotlib. "
            "Install it with `pip install multilevel[plot]`. Each function draws on the `ax=` "
            "it is given (or a new figure), passes styling keywords to its main artist and "
            "returns the Axes (the Figure for `profile`)."
        ),
        "",
        "Every picture below was made by the code beside it, after this setup:",
        "",
        "```python",
        SETUP.rstrip(),
        "```",
        "",
        "The page and its images are written by `python docs/make_gallery.py`.",
    ]
    for name, title, text, code in ENTRIES:
        parts += [
            "",
            f"## {title}",
            "",
            text,
            "",
            "```python",
            code,
            "```",
            "",
            f"![{title}](img/{name}.png)",
        ]
    return "\n".join(parts) + "\n"


def main() -> int:
    IMG.mkdir(exist_ok=True)
    env: dict = {}
    exec(SETUP, env)
    too_big = []
    for name, _, _, code in ENTRIES:
        local = dict(env)
        exec(textwrap.dedent(code), local)
        fig = local["fig"] if "fig" in local else local["ax"].figure
        path = IMG / f"{name}.png"
        fig.savefig(path, dpi=DPI, bbox_inches="tight")
        plt.close(fig)
        size = path.stat().st_size
        print(f"{path.relative_to(DOCS.parent)}: {size / 1000:.0f} KB")
        if size > MAX_BYTES:
            too_big.append(name)
    (DOCS / "plots.md").write_text(page())
    if too_big:
        print(f"over {MAX_BYTES // 1000} KB: {too_big}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
