"""glmer per fit, multilevel against lme4, alternating engines round by round in one run.

    PYTHONPATH=python python benches/bench_glmer.py [rounds]

cbpp: ``cbind(incidence, size - incidence) ~ period + (1 | herd)``, binomial, Laplace (mean of
20 fits per round); VerbAgg: ``r2 ~ (Anger + Gender + btype + situ) + (1 | id) + (1 | item)``
(one fit per round). R's times are measured inside R (no start-up). Also prints the
evaluation counts (ours: stage 1 + stage 2, without the 2n^2 + 1 of the Hessian; lme4's
``optinfo$feval``, its stage 2).
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import load_reference, load_reference_data
from multilevel.models.glmm import glmer

HERE = Path(__file__).resolve().parent


EVALS: dict[str, str] = {}


def ours(case: str, reps: int) -> float:
    ref = load_reference(case, "glmm")
    data = load_reference_data(ref)
    t0 = time.perf_counter()
    for _ in range(reps):
        f = glmer(ref["formula"], data, family="binomial", nagq=ref["nagq"])
    t = (time.perf_counter() - t0) / reps
    EVALS[case.split("_")[0]] = f"{f._res.stage1[4]}+{f._res.stage2[4]}"
    return t


def lme4() -> dict[str, float]:
    out = subprocess.run(
        ["Rscript", str(HERE / "glmer_r.R"), "20"], capture_output=True, text=True, check=True
    ).stdout
    rows = [line.split() for line in out.strip().splitlines()]
    for r in rows:
        EVALS["lme4 " + r[0]] = r[2]
    return {r[0]: float(r[1]) for r in rows}


def main(rounds: int = 3) -> None:
    times: dict[str, dict[str, list[float]]] = {
        "cbpp": {"ml": [], "lme4": []},
        "verbagg": {"ml": [], "lme4": []},
    }
    ours("cbpp_laplace", 2)  # warm-up
    for _ in range(rounds):
        r = lme4()
        for case in times:
            times[case]["lme4"].append(r[case])
        times["cbpp"]["ml"].append(ours("cbpp_laplace", 20))
        times["verbagg"]["ml"].append(ours("verbagg", 1))
    for case, t in times.items():
        ml, r = np.median(t["ml"]), np.median(t["lme4"])
        print(
            f"{case:8s} multilevel {ml * 1e3:9.1f} ms  lme4 {r * 1e3:9.1f} ms  ratio {r / ml:6.1f}x"
            f"  evaluations ours {EVALS[case]} (stage 1 + stage 2), lme4 stage 2 "
            f"{EVALS['lme4 ' + case]}"
        )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 3)
