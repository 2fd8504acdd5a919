"""Leave-one-group-out influence diagnostics: multilevel against lme4 refits, in one run.

Cases (the full model is fitted before the timer on both sides; only the deletions are
timed):

* ``hsb``         ``mathach ~ ses + (ses | school)`` (REML), 160 schools: multilevel's
                  ``fit.influence("school")`` (every refit assembled from accumulators,
                  polished, and the diagnostics) against 160 ``update(fit, data = subset)``
                  refits in lme4 (what HLMdiag's ``case_delete`` runs).
* ``sleepstudy``  ``Reaction ~ Days + (Days | Subject)``, 18 subjects.

The engines alternate round by round (a fresh multilevel process, then a fresh R process), so a
machine whose speed drifts slows both alike; the medians of all timed runs are compared. The
Markdown table is printed and written to ``benches/out/influence.md``.

Usage::

    python benches/bench_influence.py                  # both cases, 5 rounds
    python benches/bench_influence.py --case hsb --rounds 3 --reps 2
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {"hsb": "school", "sleepstudy": "Subject"}

WORKER = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
import multilevel as ml
case, reps = sys.argv[1], int(sys.argv[2])
if case == "hsb":
    data, formula, level = ml.datasets.load("hsb"), "mathach ~ ses + (ses | school)", "school"
else:
    data, formula = ml.datasets.load("sleepstudy"), "Reaction ~ Days + (Days | Subject)"
    level = "Subject"
fit = ml.lmer(formula, data)
fit.influence(level)  # imports and first-call costs outside the timer, as R's library()
times = []
for _ in range(reps):
    t0 = time.perf_counter()
    fit.influence(level)
    times.append(time.perf_counter() - t0)
print(json.dumps({"case": case, "times": times}))
"""


def run(cmd: list[str]) -> list[float]:
    env = dict(os.environ, PYTHONPATH=str(ROOT / "python"))
    out = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=True, env=env)
    times = json.loads(out.stdout.strip().splitlines()[-1])["times"]
    return times if isinstance(times, list) else [times]  # R unboxes a single value


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--case", choices=list(CASES), action="append")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--reps", type=int, default=1, help="timed runs per process")
    a = ap.parse_args()
    rows = []
    load = [os.getloadavg()[0]]
    for case in a.case or list(CASES):
        ml_t, r_t, ratios = [], [], []
        for _ in range(a.rounds):
            m = run([sys.executable, "-c", WORKER, case, str(a.reps)])
            r = run(["Rscript", str(ROOT / "benches" / "influence_r.R"), case, str(a.reps)])
            ml_t += m
            r_t += r
            ratios.append(statistics.median(r) / statistics.median(m))
            load.append(os.getloadavg()[0])
        mm, rm = statistics.median(ml_t), statistics.median(r_t)
        rows.append((case, mm, rm, rm / mm, ratios))
        print(f"{case}: multilevel {mm:.3f} s, lme4 {rm:.3f} s, ratio {rm / mm:.1f}x", flush=True)
    lines = [
        f"Command: `python benches/bench_influence.py --rounds {a.rounds} --reps {a.reps}`. "
        f"CPU: `{cpu_model()}`, {os.cpu_count()} cores; load average (1 min) during the run "
        f"{min(load):.1f}-{max(load):.1f}.",
        "",
        "| case | groups | multilevel (s) | lme4 refits (s) | lme4 / multilevel | rounds |",
        "|---|---|---|---|---|---|",
    ]
    groups = {"hsb": 160, "sleepstudy": 18}
    for case, mm, rm, ratio, ratios in rows:
        lines.append(
            f"| {case} | {groups[case]} | {mm:.3f} | {rm:.3f} | {ratio:.1f}x | "
            f"{', '.join(f'{x:.1f}' for x in ratios)} |"
        )
    text = "\n".join(lines)
    print("\n" + text)
    out = ROOT / "benches" / "out"
    out.mkdir(exist_ok=True)
    (out / "influence.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
