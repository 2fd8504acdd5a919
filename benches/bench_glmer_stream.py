"""glmer on streamed data (issue 13, scope 5): the binary panel of benches/make_glmm_panel.py
from Parquet, against the in-memory fit of the same rows and lme4.

    PYTHONPATH=python python benches/bench_glmer_stream.py [--rows 1000000] [--groups 10000]
        [--engines stream0,memory0,lme4_0,stream1,memory1] [--rounds 1]

``y ~ x1 + x2 + (1 + x1 | g)``, binomial; the suffix of an engine is nAGQ (0: lme4's first
stage only; 1: Laplace). Each engine runs in a process of its own under ``/usr/bin/time -v``,
engines alternating round by round. Ours from Parquet is the whole ``ml.glmer`` call on the
file (both reading passes, the design pass, the GLM start and every PIRLS pass); in memory and
lme4 the time is the fit's, with the data already loaded. The peak RSS is the process's.
"""

from __future__ import annotations

import argparse
import re
import resource
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
FORMULA = "y ~ x1 + x2 + (1 + x1 | g)"


def paths(rows: int, groups: int) -> tuple[Path, Path]:
    stem = HERE / "out" / f"glmm_panel_{rows}_{groups}"
    return stem.with_suffix(".parquet"), stem.with_suffix(".csv")


def make(rows: int, groups: int) -> None:
    import pandas as pd

    sys.path.insert(0, str(HERE))
    from make_glmm_panel import simulate

    pq, csv = paths(rows, groups)
    if pq.exists() and csv.exists():
        return
    pq.parent.mkdir(exist_ok=True)
    d = pd.DataFrame(simulate(rows, groups))
    d.to_parquet(pq, row_group_size=1 << 18)
    d.to_csv(csv, index=False)


def fit_here(engine: str, rows: int, groups: int) -> None:
    import warnings

    import pandas as pd

    import multilevel as ml

    warnings.simplefilter("ignore")
    pq, _ = paths(rows, groups)
    nagq = int(engine[-1])
    if engine.startswith("stream"):
        t0 = time.perf_counter()
        f = ml.glmer(FORMULA, str(pq), family="binomial", nagq=nagq, progress=False)
        extra = f"passes {f.passes}"
    else:
        d = pd.read_parquet(pq)
        d["g"] = d["g"].astype("category")
        t0 = time.perf_counter()
        f = ml.glmer(FORMULA, d, family="binomial", nagq=nagq)
        extra = ""
    t = time.perf_counter() - t0
    s1, s2 = f._res.stage1, f._res.stage2
    evals = f"{s1[4]}" + (f"+{s2[4]}" if s2 else "")
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"{engine} {t:.2f} s evals {evals} {extra} objective {f.objective:.6f} "
        f"in-process peak {rss:.0f} MB"
    )


def run(cmd: list[str]) -> tuple[str, float, float]:
    out = subprocess.run(["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, check=True)
    peak = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", out.stderr)[1]) / 1024
    user = float(re.search(r"User time \(seconds\): ([\d.]+)", out.stderr)[1])
    return out.stdout.strip(), peak, user


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--groups", type=int, default=10_000)
    ap.add_argument("--engines", default="stream0,memory0,lme4_0,stream1,memory1")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--here", default=None)
    a = ap.parse_args()
    if a.here:
        fit_here(a.here, a.rows, a.groups)
        return
    make(a.rows, a.groups)
    info = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((ln.split(":", 1)[1].strip() for ln in info if ln.startswith("model name")), "?")
    print(f"CPU {cpu}; rows {a.rows}, groups {a.groups}", flush=True)
    _, csv = paths(a.rows, a.groups)
    for _ in range(a.rounds):
        for engine in a.engines.split(","):
            if engine.startswith("lme4"):
                cmd = ["Rscript", str(HERE / "glmm_panel_r.R"), str(csv), "1", engine[-1]]
            else:
                cmd = [sys.executable, __file__, "--rows", str(a.rows), "--groups",
                       str(a.groups), "--here", engine]  # fmt: skip
            out, peak, user = run(cmd)
            load = Path("/proc/loadavg").read_text().split()[0]
            print(f"{engine}: {out} | peak RSS {peak:.0f} MB, user CPU {user:.1f} s, load {load}",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
