"""One streamed fit of ``y ~ x1 + x2 + x3 + (1 + x1 | g)`` (ML) from a Parquet file or
folder: wall time, rows per second of the passes, peak RSS (issue 13's 100M-row check).

Usage::

    python benches/make_panel.py --rows 100_000_000 --groups 1_000_000 --out /tmp/p100m.parquet
    python benches/bench_stream.py /tmp/p100m.parquet [--batch-rows 1048576]

Prints one line per step (pass 1: levels; pass 2: cross-products; the fit) with its seconds
and, for the passes, rows per second; then the objective (hex), the row counts and the
process's peak resident set size (VmHWM) against its size before the fit.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import multilevel as ml
from multilevel.design import stream
from multilevel.results.lmer import LmerFit  # noqa: F401  (imported before timing)

FORMULA = "y ~ x1 + x2 + x3 + (1 + x1 | g)"


def status_mb() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("path", type=Path)
    ap.add_argument("--batch-rows", type=int, default=stream.DEFAULT_BATCH_ROWS)
    ap.add_argument("--formula", default=FORMULA)
    a = ap.parse_args()
    before = status_mb()["VmRSS"]
    steps: dict[str, float] = {}
    real_plan, real_acc = stream.plan, stream.accumulate

    def timed(name, fn):
        def run(*args, **kwargs):
            t = time.perf_counter()
            out = fn(*args, **kwargs)
            steps[name] = time.perf_counter() - t
            return out

        return run

    stream.plan = timed("pass 1 (levels)", real_plan)
    stream.accumulate = timed("pass 2 (cross-products)", real_acc)
    t0 = time.perf_counter()
    fit = ml.lmer(a.formula, a.path, reml=False, batch_rows=a.batch_rows, progress=False)
    total = time.perf_counter() - t0
    rows = fit.rows["read"]
    for name, sec in steps.items():
        print(f"{name:<26}{sec:8.2f} s  {rows / sec / 1e6:6.2f} M rows/s")
    rest = total - sum(steps.values())
    print(f"{'fit and the rest':<26}{rest:8.2f} s")
    print(f"{'whole ml.lmer call':<26}{total:8.2f} s  {rows / total / 1e6:6.2f} M rows/s")
    mem = status_mb()
    print(
        f"objective {fit.objective!r} ({fit.objective.hex()}), rows {fit.rows}, "
        f"groups {fit.ngroups}"
    )
    print(
        f"peak RSS {mem['VmHWM']:.0f} MB (before the call {before:.0f} MB; "
        f"file {a.path.stat().st_size / 1e6:.0f} MB on disk, "
        f"{rows * 5 * 8 / 1e6:.0f} MB as float64/int64 in memory)"
    )


if __name__ == "__main__":
    main()
