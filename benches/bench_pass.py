"""The cross-product pass: how fast one build makes ``_core.LmmProblem`` from a large panel.

Times building ``multilevel._core.LmmProblem`` (the pass over the rows that forms
A = [Z X y]'W[Z X y], then the problem's set-up; not the fit) for the model
``y ~ x1 + x2 + x3 + (1 + x1 | g)`` on simulated panels written by ``benches/make_panel.py``
(1,000,000 rows / 10,000 groups and 10,000,000 rows / 100,000 groups by default). The panel is
read with pyarrow and turned into the core's arrays in NumPy (X = [1, x1, x2, x3] and
Z = [1, x1] in Fortran order, the codes of g as int32) before the timer starts: no formula, no
design layer.

Each build is a ``_core.abi3.so`` file, loaded on its own in a fresh process; the builds
alternate round by round (A, B, B, A, ...) so that a shared machine's drift hits both alike.
Reported per build and panel: the median wall time of the build, rows per second of the pass,
the CPU time of the process during the build (all its threads: on a loaded machine, where wall
times inflate, the steadier figure), and the peak resident memory during the build above the
memory before it (Linux: VmHWM after writing 5 to ``/proc/self/clear_refs``).

Usage::

    cp python/multilevel/_core.abi3.so /tmp/core_before.so      # before a change
    ...rebuild...
    python benches/bench_pass.py /tmp/core_before.so python/multilevel/_core.abi3.so
    python benches/bench_pass.py A.so B.so --sizes 1m --rounds 5 --threads 1
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SIZES = {"1m": (1_000_000, 10_000), "10m": (10_000_000, 100_000)}

WORKER = r"""
import gc, importlib.machinery, importlib.util, json, re, sys, time
import numpy as np
import pyarrow.parquet as pq

def status(field):
    with open("/proc/self/status") as f:
        return int(re.search(field + r":\s+(\d+) kB", f.read()).group(1)) * 1024

def load_core(path):
    loader = importlib.machinery.ExtensionFileLoader("_core", path)
    spec = importlib.util.spec_from_file_location("_core", path, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module

core = load_core({so!r})
table = pq.read_table({parquet!r}, columns=["g", "y", "x1", "x2", "x3"])
n = table.num_rows
col = lambda name: table.column(name).to_numpy()
y = np.ascontiguousarray(col("y"), dtype=np.float64)
x1 = col("x1")
X = np.empty((n, 4), dtype=np.float64, order="F")
X[:, 0] = 1.0
X[:, 1] = x1
X[:, 2] = col("x2")
X[:, 3] = col("x3")
Z = np.empty((n, 2), dtype=np.float64, order="F")
Z[:, 0] = 1.0
Z[:, 1] = x1
g = col("g")
codes = np.ascontiguousarray(g, dtype=np.int32)
groups = int(codes.max()) + 1
del table, g, x1
gc.collect()
times, cpus, peaks = [], [], []
for _ in range({repeats}):
    base = status("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    t, c = time.perf_counter(), time.process_time()
    problem = core.LmmProblem(y, X, [(codes, groups, Z, False)], threads={threads})
    times.append(time.perf_counter() - t)
    cpus.append(time.process_time() - c)
    peaks.append(status("VmHWM") - base if reset else float("nan"))
    nobs = problem.nobs
    del problem
    gc.collect()
print(json.dumps({{"times": times, "cpus": cpus, "peaks": peaks, "rows": n, "groups": groups,
                  "nobs": nobs}}))
"""


def panel(size: str, data_dir: Path) -> Path:
    rows, groups = SIZES[size]
    path = data_dir / f"panel_{size}.parquet"
    if not path.exists():
        sys.path.insert(0, str(HERE))
        import make_panel

        make_panel.write(path, rows, groups)
    return path


def run(so: Path, parquet: Path, threads: int, repeats: int) -> dict:
    code = WORKER.format(so=str(so), parquet=str(parquet), threads=threads, repeats=repeats)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"{so} on {parquet.name} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builds", nargs="+", type=Path, help="_core.abi3.so files to compare")
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=2, help="builds per process (median)")
    ap.add_argument("--threads", type=int, default=0, help="0: all cores")
    ap.add_argument("--data-dir", type=Path, default=HERE / "out")
    ap.add_argument("--json", type=Path, help="also write the raw results here")
    a = ap.parse_args()
    builds = [b.resolve() for b in a.builds]
    raw: dict[str, dict[str, list[dict]]] = {}
    for size in a.sizes:
        parquet = panel(size, a.data_dir)
        raw[size] = {str(b): [] for b in builds}
        for r in range(a.rounds):
            order = builds if r % 2 == 0 else builds[::-1]
            for b in order:
                res = run(b, parquet, a.threads, a.repeats)
                raw[size][str(b)].append(res)
                print(
                    f"{size} round {r + 1} {b.name:24s} "
                    + " ".join(f"{t:.3f}s" for t in res["times"])
                    + f"  peak +{max(res['peaks']) / 1e6:.0f} MB",
                    flush=True,
                )
    print()
    print(
        f"{'panel':6s} {'build':40s} {'median s':>9s} {'Mrows/s':>8s} {'CPU s':>7s} {'peak MB':>8s}"
    )
    for size, per_build in raw.items():
        for b, results in per_build.items():
            times = [statistics.median(r["times"]) for r in results]
            cpus = [statistics.median(r["cpus"]) for r in results]
            peaks = [max(r["peaks"]) for r in results]
            rows = results[0]["rows"]
            med = statistics.median(times)
            print(
                f"{size:6s} {b[-40:]:40s} {med:9.3f} {rows / med / 1e6:8.1f} "
                f"{statistics.median(cpus):7.3f} {statistics.median(peaks) / 1e6:8.0f}"
            )
    if a.json:
        a.json.write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    main()
