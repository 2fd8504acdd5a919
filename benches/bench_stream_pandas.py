"""The acceptance fit of issue 13 from pandas: ``y ~ x1 + x2 + x3 + (1 + x1 | g)`` (ML) on
10,000,000 rows and 100,000 groups, the whole ``ml.lmer`` call timed, its peak RSS measured,
against one lme4 run.

The panel is ``benches/make_panel.py``'s (the same rows as its Parquet file), built in this
process as a pandas DataFrame of five columns (float64 y, x1, x2, x3; int64 g: 400 MB): the
process holds what a user's does, the interpreter, pandas, multilevel and the data. Peak RSS:
the kernel's high-water mark of the whole process (VmHWM) reset just before each call
(/proc/self/clear_refs) and read after it, so it is the peak during the call. Reported
against the data's size (``memory_usage(deep=True)``): the absolute peak (issue 13's
acceptance: under 1.5 times the data) and the growth over the RSS before the call, with the
RSS of the interpreter and the libraries before the data were made. Making the panel frees
about 60 MB of temporaries that glibc keeps in its heap (resident, but no object's); they are
handed back with ``malloc_trim(0)`` before the calls (``--keep-heap`` keeps them), so that
the RSS before the call is the interpreter, the libraries and the data, and the fit cannot
hide its growth in the generator's free memory. ``ml.lmer`` is imported before the data are
made (``--import-late``: by the first call, after the data; the peak then also holds the
heap's fragments around the modules imported during the call).

lme4: ``--lme4 JSON`` reads the output of ``Rscript benches/lme4_fit.R panel1m 1 mem CSV``
(the same rows written as CSV); ``--run-lme4`` writes the CSV and runs it (about 10 minutes).

Usage::

    python benches/bench_stream_pandas.py [--rows 10_000_000 --groups 100_000]
        [--repeat 3] [--lme4 lme4.json | --run-lme4]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "python"))
sys.path.insert(0, str(ROOT / "benches"))

import make_panel  # noqa: E402

import multilevel as ml  # noqa: E402

FORMULA = "y ~ x1 + x2 + x3 + (1 + x1 | g)"


def panel(rows: int, groups: int) -> pd.DataFrame:
    """make_panel's rows as one DataFrame (each column built once, no intermediate frame)."""
    sizes = make_panel.group_sizes(rows, groups)
    starts = range(0, groups, make_panel.GROUPS_PER_BLOCK)
    streams = np.random.SeedSequence(make_panel.SEED).spawn(1 + len(starts))[1:]
    cols = {
        c: np.empty(rows, dtype=np.int64 if c == "g" else np.float64)
        for c in ["g", "y", "x1", "x2", "x3"]
    }
    at = 0
    for s, ss in zip(starts, streams):
        b = make_panel.block(
            s, sizes[s : s + make_panel.GROUPS_PER_BLOCK], np.random.default_rng(ss)
        )
        n = len(b["g"])
        for c, v in b.items():
            cols[c][at : at + n] = v
        at += n
    return pd.DataFrame(cols, copy=False)


def status_mb() -> dict[str, float]:
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS", "VmHWM")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024
    return out


def trim_heap() -> bool:
    """glibc's ``malloc_trim(0)``: free memory of the heap back to the system (False where
    there is no glibc)."""
    try:
        return bool(ctypes.CDLL("libc.so.6").malloc_trim(0))
    except (OSError, AttributeError):
        return False


def run_lme4(df: pd.DataFrame) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        csv = Path(tmp) / "panel.csv"
        df.to_csv(csv, index=False)
        out = subprocess.run(
            ["Rscript", str(ROOT / "benches/lme4_fit.R"), "panel1m", "1", "mem", str(csv)],
            capture_output=True,
            text=True,
            check=True,
        )
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    ap.add_argument("--groups", type=lambda s: int(s.replace("_", "")), default=100_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--lme4", type=Path, help="lme4_fit.R's JSON output for these rows")
    ap.add_argument("--run-lme4", action="store_true")
    ap.add_argument("--keep-heap", action="store_true", help="no malloc_trim after the data")
    ap.add_argument("--import-late", action="store_true", help="ml.lmer imported by the call")
    a = ap.parse_args()
    if not a.import_late:
        _ = ml.lmer  # its modules imported now, before the data and the timing
    libs_mb = status_mb()["VmRSS"]
    df = panel(a.rows, a.groups)
    data_mb = df.memory_usage(deep=True).sum() / 2**20
    gc.collect()
    made_mb = status_mb()["VmRSS"]
    trimmed_mb = status_mb()["VmRSS"] if not a.keep_heap and trim_heap() else None
    times, peaks, cpus = [], [], []
    for _ in range(a.repeat):
        gc.collect()
        before = status_mb()["VmRSS"]
        Path("/proc/self/clear_refs").write_text("5")
        r0 = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.perf_counter()
        fit = ml.lmer(FORMULA, df, reml=False)
        times.append(time.perf_counter() - t0)
        r1 = resource.getrusage(resource.RUSAGE_SELF)
        cpus.append(r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime)
        peaks.append((status_mb()["VmHWM"], before))
        obj = fit.objective
        del fit
    best = min(times)
    print(f"data: {a.rows:,} rows, {a.groups:,} groups, {data_mb:.0f} MiB in the DataFrame")
    print(f"RSS of the interpreter and the libraries before the data: {libs_mb:.0f} MiB")
    print(
        f"RSS with the data: {made_mb:.0f} MiB"
        + (f", {trimmed_mb:.0f} MiB after malloc_trim" if trimmed_mb is not None else "")
    )
    print(f"ml.lmer whole call: {', '.join(f'{t:.2f}' for t in times)} s (best {best:.2f})")
    print(f"  CPU time (user + system, all threads): {', '.join(f'{c:.2f}' for c in cpus)} s")
    for peak, before in peaks:
        print(
            f"  peak RSS of the process during the call {peak:.0f} MiB = {peak / data_mb:.3f} "
            f"x the data; before the call {before:.0f} MiB, growth {peak - before:.0f} MiB = "
            f"{(peak - before) / data_mb:.3f} x the data"
        )
    worst = max(peak for peak, _ in peaks) / data_mb
    print(f"highest peak / the data: {worst:.3f} ({'under' if worst < 1.5 else 'NOT under'} 1.5)")
    print(f"objective {obj!r} ({obj.hex()})")
    ref = run_lme4(df) if a.run_lme4 else json.loads(a.lme4.read_text()) if a.lme4 else None
    if ref is not None:
        t = ref["times"][0]
        print(
            f"lme4 {ref['versions']['lme4']}: {t:.1f} s, objective {ref['objective']!r} "
            f"(ours - lme4: {obj - ref['objective']:.3g}), peak RSS during its fit "
            f"{ref['mem']['peak_fit_kb'] / 1024:.0f} MiB"
        )
        print(f"ratio lme4 / ml.lmer: {t / best:.0f}x (best), {t / max(times):.0f}x (slowest)")


if __name__ == "__main__":
    main()
