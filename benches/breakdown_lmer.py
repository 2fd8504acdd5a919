"""Where the time of one small ``ml.lmer`` call goes: Python stages against the Rust fit.

The whole call ``ml.lmer("Reaction ~ Days + (Days | Subject)", data=sleepstudy)`` and its
stages, timed in the same loop so that each repetition sees the same machine load:

* ``parse``         formula.parse (cached after the first call)
* ``build``         design.build: columns, missing values, X, Z, codes, rank check
* ``make_problem``  lmm.make_problem: the core's LmmProblem (Rust constructor)
* ``fit``           prob.fit: the Rust optimisation (on a fresh problem, as in lmer)
* ``LmerFit``       LmerFit(...) and its warning checks
* ``lmer``          the whole call; ``python = lmer - fit`` (medians of the differences)

then, outside that loop, the steps of design.build one by one (same data, isolated loops,
so they read lower than inside ``build``). Prints medians in ms and the load average.

``--gc`` runs ``gc.collect()`` before the stages and before the whole call, as bench_lmm.py
does before each timed fit: caches are then cold, and every distinct code path costs more.

Usage::

    PYTHONPATH=python python benches/breakdown_lmer.py [--reps 500] [--gc]
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time

import multilevel as ml
from multilevel import data as Data
from multilevel import design as D
from multilevel import factors
from multilevel import formula as F
from multilevel.design import matrix, rank
from multilevel.models import lmm
from multilevel.results import LmerFit

FORMULA = "Reaction ~ Days + (Days | Subject)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--reps", type=int, default=500)
    ap.add_argument("--gc", action="store_true", help="gc.collect() before each timed call")
    args = ap.parse_args()
    df = ml.datasets.load("sleepstudy")
    for _ in range(30):
        ml.lmer(FORMULA, data=df)
    load0 = os.getloadavg()[0]
    pc = time.perf_counter
    t: dict[str, list[float]] = {
        k: [] for k in ("parse", "build", "make_problem", "fit", "LmerFit", "lmer")
    }
    py = []
    collect = gc.collect if args.gc else (lambda: None)
    for _ in range(args.reps):
        collect()
        t0 = pc()
        F.parse(FORMULA)
        t1 = pc()
        d = D.build(FORMULA, df)
        t2 = pc()
        prob = lmm.make_problem(d)
        t3 = pc()
        res = prob.fit(True, theta0=None, max_fun=None)
        t4 = pc()
        LmerFit(d, prob, res, True, data=df)._warn()
        t5 = pc()
        collect()
        t6 = pc()
        ml.lmer(FORMULA, data=df)
        t7 = pc()
        for k, v in zip(t, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4, t7 - t6)):
            t[k].append(v)
        py.append((t7 - t6) - (t4 - t3))
    print(
        f"ml.lmer on sleepstudy, {args.reps} repetitions{' after gc' if args.gc else ''}, "
        "medians in ms "
        f"(load average {load0:.2f} -> {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores)"
    )
    for k, v in t.items():
        print(f"  {k:14s} {statistics.median(v) * 1e3:8.3f}")
    print(f"  {'python':14s} {statistics.median(py) * 1e3:8.3f}   (lmer - fit)")

    parsed = F.parse(FORMULA)
    used = parsed.variables()
    vectors = {"weights": None, "offset": None}
    frame = Data.drop_missing(df, used, vectors)[0]
    X, _, _ = matrix.fixed_columns(parsed, frame, FORMULA)
    term = parsed.random[0]
    steps = {
        "drop_missing": lambda: Data.drop_missing(df, used, vectors),
        "response": lambda: matrix.response_vector(parsed, frame, df.columns, FORMULA),
        "fixed (X)": lambda: matrix.fixed_columns(parsed, frame, FORMULA),
        "Z": lambda: matrix.model_matrix(term.expr, frame, FORMULA, "Z"),
        "rank_keep": lambda: rank.rank_keep(X),
        "interaction": lambda: factors.interaction(
            [Data.column_values(frame, f) for f in term.group_factors]
        ),
    }
    print("  design.build steps, isolated:")
    for k, fn in steps.items():
        ts = []
        for _ in range(args.reps):
            collect()
            s = pc()
            fn()
            ts.append(pc() - s)
        print(f"    {k:14s} {statistics.median(ts) * 1e3:8.3f}")


if __name__ == "__main__":
    main()
