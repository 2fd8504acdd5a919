"""The Rust fit alone: ``LmmProblem.fit`` on a built problem, with its evaluation count.

``bench_lmm.py`` times the whole ``lmer`` call against lme4; this times only the optimiser and
the post-fit check (``prob.fit(reml)``), which is what the Rust core owns, and prints the
optimiser's summary so that evaluation counts can be compared with lme4's (43 for sleepstudy,
68 for InstEval, 54 for the panel with lme4 1.1-31).

Usage::

    python benches/bench_fit.py                         # sleepstudy, 2000 fits
    python benches/bench_fit.py --case insteval --reps 3
    python benches/bench_fit.py --case panel1m --reps 3   # simulates the 1M-row panel
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_lmm  # noqa: E402 (benches/ put on the path just above)

import multilevel as ml  # noqa: E402
from multilevel import design as _design  # noqa: E402
from multilevel.models.lmm import make_problem  # noqa: E402


def data(case: str):
    if case == "panel1m":
        return bench_lmm.simulate_panel(1_000_000, 10_000)
    return ml.datasets.load(case)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--case", choices=sorted(bench_lmm.CASES), default="sleepstudy")
    ap.add_argument("--reps", type=int, default=2000)
    args = ap.parse_args()
    spec = bench_lmm.CASES[args.case]
    design = _design.build(spec["formula"], data(args.case))
    prob = make_problem(design)
    times = []
    for _ in range(args.reps):
        t = time.perf_counter()
        r = prob.fit(spec["reml"])
        times.append(time.perf_counter() - t)
    o = r["optimizer"]
    print(f"{args.case}: {spec['formula']} ({'REML' if spec['reml'] else 'ML'})")
    print(
        f"  evaluations {o['n_eval']}, objective {o['f']:.10f}, "
        f"theta {np.array2string(o['theta'], precision=8)}"
    )
    print(f"  {o['status']}: {o['message']}; check converged {r['check']['converged']}")
    print(
        f"  prob.fit: median {statistics.median(times) * 1e3:.3f} ms, "
        f"min {min(times) * 1e3:.3f} ms over {args.reps} fits"
    )


if __name__ == "__main__":
    main()
