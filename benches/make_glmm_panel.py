"""Writes the simulated binary panel of the glmer benchmark (issue 12) to CSV.

The model is ``y ~ x1 + x2 + (1 + x1 | g)``, binomial with the logit link: 10,000 groups of
100 rows each (1,000,000 rows), x1 and x2 standard normal, a random intercept and a random
slope on x1 (standard deviations 1.0 and 0.5, correlation 0.3), fixed effects
(-0.5, 0.8, -0.4). Seeded, so the file is the same on every machine; both engines of
``benches/bench_glmm_panel.py`` read the same file.

    python benches/make_glmm_panel.py [--rows 1000000] [--groups 10000] [--out FILE]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

SEED = 20261203
OUT = Path(__file__).resolve().parent / "out" / "glmm_panel.csv"


def simulate(rows: int = 1_000_000, groups: int = 10_000, seed: int = SEED) -> dict:
    """The panel's columns: g (1-based group), x1, x2, y (0/1)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), rows // groups)
    g = np.concatenate([g, rng.integers(0, groups, rows - len(g))])
    x1 = rng.standard_normal(rows)
    x2 = rng.standard_normal(rows)
    sd, corr = np.array([1.0, 0.5]), 0.3
    cov = np.outer(sd, sd) * np.array([[1.0, corr], [corr, 1.0]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=groups)
    eta = -0.5 + 0.8 * x1 - 0.4 * x2 + b[g, 0] + b[g, 1] * x1
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-eta))).astype(np.int8)
    return {"g": g + 1, "x1": x1, "x2": x2, "y": y}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--out", type=Path, default=OUT)
    a = ap.parse_args()
    cols = simulate(a.rows, a.groups)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    with open(a.out, "w") as f:
        f.write("g,x1,x2,y\n")
        np.savetxt(
            f,
            np.column_stack([cols["g"], cols["x1"], cols["x2"], cols["y"]]),
            fmt=["%d", "%.17g", "%.17g", "%d"],
            delimiter=",",
        )
    print(a.out)


if __name__ == "__main__":
    main()
