"""Within (fixed-effects) estimator: multilevel.panel against linearmodels and R's plm.

One run, side by side, printing seconds and ratios to multilevel. The simulated panel has
``--rows`` rows and ``--entities`` entities (default rows / 100), two regressors correlated
with the entity effect, and an unbalanced layout (each entity has a random number of
periods). Timed:

* multilevel: ``ml.panel("y ~ x1 + x2", df, entity="id", time="t")`` from the DataFrame,
  formula parsing and design included.
* linearmodels: ``PanelOLS.from_formula("y ~ x1 + x2 + EntityEffects", df_indexed).fit()``
  in-process on the (entity, time)-indexed frame (indexing not timed).
* plm: ``plm(y ~ x1 + x2, pdata, model = "within")`` in an Rscript subprocess; the data are
  handed over as CSV (read with data.table::fread) and only the ``plm`` call is timed inside R
  (``pdata.frame`` construction is timed separately).

Usage::

    python benches/bench_panel.py                 # 10,000,000 rows, 100,000 entities
    python benches/bench_panel.py --rows 1000000  # smaller
    python benches/bench_panel.py --skip-plm
"""

from __future__ import annotations

import argparse
import gc
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import multilevel.design  # noqa: F401  (import formulaic before timing)
from multilevel.models.panel import panel


def simulate(rows: int, entities: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.integers(0, entities, size=rows)).astype(np.int64)
    # period within entity: 0, 1, 2, ... in order
    start = np.r_[0, np.flatnonzero(np.diff(ids)) + 1]
    t = np.arange(rows) - np.repeat(start, np.diff(np.r_[start, rows]))
    a = rng.normal(size=entities)[ids]
    x1 = rng.normal(size=rows) + 0.5 * a
    x2 = rng.normal(size=rows) - 0.3 * a
    y = 1.0 + 0.8 * x1 - 0.4 * x2 + a + rng.normal(size=rows)
    return pd.DataFrame({"id": ids, "t": t.astype(np.int64), "y": y, "x1": x1, "x2": x2})


R_SCRIPT = r"""
suppressPackageStartupMessages({library(data.table); library(plm)})
args <- commandArgs(trailingOnly = TRUE)
d <- fread(args[1])
t0 <- proc.time()[["elapsed"]]
pd <- pdata.frame(as.data.frame(d), index = c("id", "t"))
t1 <- proc.time()[["elapsed"]]
fit <- plm(y ~ x1 + x2, data = pd, model = "within")
t2 <- proc.time()[["elapsed"]]
cat(sprintf("PDATA %.3f\nFIT %.3f\n", t1 - t0, t2 - t1))
cat(sprintf("COEF %.17g %.17g\n", coef(fit)[["x1"]], coef(fit)[["x2"]]))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=10_000_000)
    ap.add_argument("--entities", type=int, default=None)
    ap.add_argument("--skip-plm", action="store_true")
    ap.add_argument("--skip-linearmodels", action="store_true")
    args = ap.parse_args()
    entities = args.entities or max(args.rows // 100, 2)
    print(f"simulated panel: {args.rows:,} rows, {entities:,} entities (unbalanced)")
    df = simulate(args.rows, entities)
    results: dict[str, float] = {}

    gc.collect()
    t0 = time.perf_counter()
    fit = panel("y ~ x1 + x2", df, entity="id", time="t", model="within")
    results["multilevel"] = time.perf_counter() - t0
    ours = fit.coef.to_numpy()
    print(f"multilevel   {results['multilevel']:9.2f} s  coef {ours}")
    del fit
    gc.collect()

    if not args.skip_linearmodels:
        from linearmodels import PanelOLS

        indexed = df.set_index(["id", "t"])
        t0 = time.perf_counter()
        lm_fit = PanelOLS.from_formula("y ~ x1 + x2 + EntityEffects", indexed).fit()
        results["linearmodels"] = time.perf_counter() - t0
        lm_coef = lm_fit.params[["x1", "x2"]].to_numpy()
        print(
            f"linearmodels {results['linearmodels']:9.2f} s  coef {lm_coef}"
            f"  max rel diff {np.max(np.abs(lm_coef / ours - 1)):.1e}"
        )
        del indexed, lm_fit
        gc.collect()

    if not args.skip_plm:
        with tempfile.TemporaryDirectory() as tmp:
            csv = os.path.join(tmp, "panel.csv")
            script = os.path.join(tmp, "fit.R")
            Path(script).write_text(R_SCRIPT)
            df.to_csv(csv, index=False)
            out = subprocess.run(
                ["Rscript", script, csv], capture_output=True, text=True, check=False
            )
        if out.returncode != 0:
            print("plm failed:", out.stderr[-2000:])
        else:
            vals = dict(line.split(" ", 1) for line in out.stdout.strip().splitlines())
            results["plm"] = float(vals["FIT"])
            plm_coef = np.array(vals["COEF"].split(), dtype=float)
            print(
                f"plm          {results['plm']:9.2f} s  coef {plm_coef}"
                f"  max rel diff {np.max(np.abs(plm_coef / ours - 1)):.1e}"
                f"  (pdata.frame {float(vals['PDATA']):.2f} s, not counted)"
            )

    print("\nratio (time / multilevel's):")
    for name, sec in results.items():
        print(f"  {name:<13}{sec / results['multilevel']:8.2f}")


if __name__ == "__main__":
    main()
