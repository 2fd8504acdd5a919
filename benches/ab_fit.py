"""Is build B faster than build A? Alternating processes, for a machine whose speed drifts.

On a shared host the same binary's timings drift by 15% or more over minutes, so two single
runs cannot tell a 5% change. This script alternates fresh processes of two builds of the
package (A, B, A, B, ...), each timing ``LmmProblem.fit`` on the same design (InstEval by
default) a few times, and reports the medians and the ratio B / A. Drift then hits both
builds alike.

Each build is a directory that ``import multilevel`` can be run from: the ``python/``
folder of a checkout whose ``_core.abi3.so`` is built (``make dev`` there). A second
checkout of an earlier commit: ``git worktree add /tmp/base <commit>``, then in it
``cargo build --profile fast --features python && cp target/fast/libmultilevel.so
python/multilevel/_core.abi3.so``.

Usage::

    python benches/ab_fit.py /tmp/base/python python [--pairs 10] [--fits 2]

The Rust fit is timed (design and problem built before the timer), as in
``benches/eval_cost.rs`` but with the whole optimisation; the problem's build before it (the
cross-product pass over the rows, where the centring of ``model/transform.rs`` works) is timed
separately and reported beside it.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

FORMULA = "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)"

WORKER = """
import json, sys, time
sys.path.insert(0, {path!r})
import multilevel as ml
from multilevel import design
try:
    from multilevel.models import lmm
except ImportError:  # builds before the models/ package
    from multilevel import lmm
data = ml.datasets.load({dataset!r})
d = design.build({formula!r}, data)
times, builds = [], []
for _ in range({fits}):
    t = time.perf_counter()
    problem = lmm.make_problem(d)
    builds.append(time.perf_counter() - t)
    t = time.perf_counter()
    result = problem.fit(True, theta0=None, max_fun=None)
    times.append(time.perf_counter() - t)
if isinstance(result, dict):  # builds before the typed results (a0c4653)
    objective, n_eval = result["objective"], result["optimizer"]["n_eval"]
else:
    objective, n_eval = result.objective, result.optimizer.n_eval
print(json.dumps({{"times": times, "builds": builds, "objective": objective, "n_eval": n_eval}}))
"""


def run(path: str, dataset: str, formula: str, fits: int) -> dict:
    code = WORKER.format(
        path=str(Path(path).resolve()), dataset=dataset, formula=formula, fits=fits
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("a", help="build A: a directory holding the multilevel package")
    ap.add_argument("b", help="build B")
    ap.add_argument("--pairs", type=int, default=10, help="A/B process pairs (default 10)")
    ap.add_argument("--fits", type=int, default=2, help="timed fits per process (default 2)")
    ap.add_argument("--dataset", default="insteval")
    ap.add_argument("--formula", default=FORMULA)
    args = ap.parse_args()

    times: dict[str, list[float]] = {"A": [], "B": []}
    builds: dict[str, list[float]] = {"A": [], "B": []}
    last: dict[str, dict] = {}
    for i in range(args.pairs):
        for name, path in (("A", args.a), ("B", args.b)):
            last[name] = run(path, args.dataset, args.formula, args.fits)
            times[name] += last[name]["times"]
            builds[name] += last[name]["builds"]
        print(
            f"pair {i + 1}: A {statistics.median(times['A']) * 1e3:.0f} ms, "
            f"B {statistics.median(times['B']) * 1e3:.0f} ms (medians so far)",
            flush=True,
        )
    for name in ("A", "B"):
        t = times[name]
        print(
            f"{name}: median {statistics.median(t) * 1e3:.0f} ms, min {min(t) * 1e3:.0f} ms "
            f"over {len(t)} fits; objective {last[name]['objective']:.10f}, "
            f"{last[name]['n_eval']} evaluations; problem build median "
            f"{statistics.median(builds[name]) * 1e3:.1f} ms, min {min(builds[name]) * 1e3:.1f} ms"
        )
    ratio = statistics.median(times["B"]) / statistics.median(times["A"])
    print(f"B / A (medians): {ratio:.3f}")
    ratio = statistics.median(builds["B"]) / statistics.median(builds["A"])
    print(f"B / A of the problem build (medians): {ratio:.3f}")


if __name__ == "__main__":
    main()
