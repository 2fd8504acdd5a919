"""Inference: multilevel against lme4 / pbkrtest (R), side by side in one run.

Tasks (the model is fitted before the timer on both sides; only the task is timed):

* ``kr_hsb``            Kenward-Roger adjusted covariance and df of the 4 coefficients of
                        ``mathach ~ ses * sector + (1 + ses | school)`` (pbkrtest's
                        ``vcovAdj`` + ``Lb_ddf``; ``fit.coef_table("kenward-roger")``).
* ``profile_sleepstudy`` 95% profile intervals of every parameter of
                        ``Reaction ~ Days + (Days | Subject)`` (lme4's
                        ``confint(profile(fit))``; ``fit.confint(method="profile")``).
* ``profile_hsb``       the same on the HSB model.
* ``boot_sleepstudy``   1,000 parametric-bootstrap refits of sleepstudy (lme4's ``bootMer``;
                        ``ml.bootstrap(fit, 1000)`` on all cores).

The engines alternate round by round (a multilevel process, then an R process), so a machine
whose speed drifts slows both alike; the medians of all timed runs are compared.

Usage::

    python benches/bench_inference.py                 # every task, 3 rounds
    python benches/bench_inference.py --task kr_hsb --rounds 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TASKS = ["kr_hsb", "profile_sleepstudy", "profile_hsb", "boot_sleepstudy"]

WORKER = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import multilevel as ml
task, reps = sys.argv[1], int(sys.argv[2])
if "sleepstudy" in task:
    data, formula = ml.datasets.load("sleepstudy"), "Reaction ~ Days + (Days | Subject)"
else:
    data, formula = ml.datasets.load("hsb"), "mathach ~ ses * sector + (1 + ses | school)"
times = []
for _ in range(reps):
    fit = ml.lmer(formula, data)
    t0 = time.perf_counter()
    if task == "kr_hsb":
        fit.coef_table("kenward-roger")
    elif task.startswith("profile"):
        fit.confint(method="profile")
    else:
        ml.bootstrap(fit, 1000, seed=1, progress=False)
    times.append(time.perf_counter() - t0)
print(json.dumps({"task": task, "times": times}))
"""


def run(cmd: list[str]) -> list[float]:
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True).stdout
    times = json.loads(out.strip().splitlines()[-1])["times"]
    return times if isinstance(times, list) else [times]  # R unboxes a single value


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--task", choices=TASKS, action="append")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reps", type=int, default=1, help="timed runs per process")
    a = ap.parse_args()
    rows = []
    for task in a.task or TASKS:
        ml_t, r_t, ratios = [], [], []
        for _ in range(a.rounds):
            m = run([sys.executable, "-c", WORKER, task, str(a.reps)])
            r = run(["Rscript", str(ROOT / "benches" / "inference_r.R"), task, str(a.reps)])
            ml_t += m
            r_t += r
            ratios.append(statistics.median(r) / statistics.median(m))
        mm, rm = statistics.median(ml_t), statistics.median(r_t)
        rows.append((task, mm, rm, rm / mm, ratios))
        print(
            f"{task}: multilevel {mm:.3f} s, R {rm:.3f} s, ratio {rm / mm:.1f}x "
            f"(rounds: {', '.join(f'{x:.1f}' for x in ratios)})",
            flush=True,
        )
    print(f"\nCPU: {cpu_model()}\n")
    print("| task | multilevel (s) | R (s) | R / multilevel | rounds |")
    print("|---|---|---|---|---|")
    for task, mm, rm, ratio, ratios in rows:
        print(
            f"| {task} | {mm:.3f} | {rm:.3f} | {ratio:.1f}x | "
            f"{', '.join(f'{x:.1f}' for x in ratios)} |"
        )


if __name__ == "__main__":
    main()
