"""glmer on the simulated binary panel (1,000,000 rows, 10,000 groups), multilevel against lme4.

    python benches/make_glmm_panel.py            # writes benches/out/glmm_panel.csv once
    PYTHONPATH=python python benches/bench_glmm_panel.py [ours|lme4|both] [rounds]

The model is ``y ~ x1 + x2 + (1 + x1 | g)``, binomial (Laplace). Each engine runs in a process
of its own, engines alternating round by round; the time is the fit's (data already loaded:
R's ``system.time`` around ``glmer``, ours around ``ml.glmer``), the peak RSS is the whole
process's (``/usr/bin/time -v``, data loading included), and for R also its heap's "max used"
(``gc()``) during the fit alone.
"""

from __future__ import annotations

import re
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = HERE / "out" / "glmm_panel.csv"
FORMULA = "y ~ x1 + x2 + (1 + x1 | g)"


def fit_here() -> None:
    """One fit in this process; prints seconds, evaluations, objective and peak RSS (MB)."""
    import pandas as pd

    import multilevel as ml

    d = pd.read_csv(DATA)
    d["g"] = d["g"].astype("category")
    t0 = time.perf_counter()
    f = ml.glmer(FORMULA, d, family="binomial")
    t = time.perf_counter() - t0
    s1, s2 = f._res.stage1, f._res.stage2
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"ours {t:.3f} s  evals {s1[4]}+{s2[4]}  objective {f.objective:.6f}  peak {rss:.0f} MB")
    print("theta", list(f.theta), "beta", list(f._res.beta))


def run(cmd: list[str]) -> tuple[str, float]:
    """Runs cmd under /usr/bin/time -v; its stdout and peak RSS (MB)."""
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=True)
    peak = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)[1]) / 1024
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", out.stderr)[1])
    return out.stdout + f"| process user CPU {user:.1f} s", peak


def main(which: str = "both", rounds: int = 1) -> None:
    if not DATA.exists():
        subprocess.run([sys.executable, str(HERE / "make_glmm_panel.py")], check=True)
    for _ in range(rounds):
        if which in ("ours", "both"):
            out, peak = run([sys.executable, __file__, "--here"])
            print(out.strip(), f"| process peak RSS {peak:.0f} MB", flush=True)
        if which in ("lme4", "both"):
            out, peak = run(["Rscript", str(HERE / "glmm_panel_r.R"), str(DATA)])
            print("lme4", out.strip(), f"| process peak RSS {peak:.0f} MB", flush=True)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--here"]:
        fit_here()
    else:
        main(
            sys.argv[1] if len(sys.argv) > 1 else "both",
            int(sys.argv[2]) if len(sys.argv) > 2 else 1,
        )
