"""Linear mixed models: multilevel.lmer against lme4 (R) and statsmodels MixedLM, one run.

Cases (all fitted by every engine that can fit them, side by side):

* ``insteval``  ``y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)``, REML,
  lme4's InstEval (73,421 rows; three crossed grouping factors).
* ``sleepstudy`` ``Reaction ~ Days + (Days | Subject)``, REML, timed per fit.
* ``panel1m``   simulated panel, 1,000,000 rows in 10,000 groups,
  ``y ~ x1 + x2 + x3 + (1 + x1 | g)``, ML. Simulated once with a fixed seed and written
  to ``benches/out/`` as CSV, which both Python and R read (R has no Arrow package here).

What is timed:

* multilevel: the whole ``ml.lmer(formula, data, reml=...)`` call from a pandas DataFrame,
  formula parsing and design construction included. Runs in a fresh worker subprocess that
  first loads the data and makes one untimed fit of sleepstudy (module imports, lazy
  initialisation; the memory workers do the same before their baseline), then times its
  share of the fits of the case.
* lme4: ``lmer(...)`` only, with ``proc.time()`` around it, in ``Rscript
  benches/lme4_fit.R`` (lme4 loaded, data loaded and factors set before timing).
* statsmodels: ``MixedLM.from_formula(...).fit(...)`` (model construction included, as for
  multilevel), in a worker subprocess killed after ``--sm-timeout`` seconds.

The engines alternate: each case runs in rounds (``--rounds``), each round a multilevel
process and then an lme4 process sharing the timed fits, so that a shared machine whose
speed drifts over minutes slows both engines alike. Every time reported is the median over
all timed fits of all rounds; each round's ratio is reported too. Peak memory is measured in
separate subprocesses that load the data and fit once: on Linux, the resident set size (VmRSS) after
loading the data, then the peak RSS high-water mark (VmHWM, reset through
``/proc/self/clear_refs`` after loading, so that the peak belongs to the fit) after the fit,
the same way in Python and in R. ``ru_maxrss`` before and after the fit is recorded too.

Usage::

    python benches/bench_lmm.py                      # everything, writes BENCHMARKS.md
    python benches/bench_lmm.py --quick              # smoke test (small panel, few reps)
    python benches/bench_lmm.py --case sleepstudy --small-reps 50
    python benches/bench_lmm.py --case insteval --rounds 9
"""

from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
OUT = HERE / "out"
R_SCRIPT = HERE / "lme4_fit.R"


def _load_cases():
    """tests/cases.py, the table of models shared with the tests, loaded by its path."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("cases", ROOT / "tests" / "cases.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("cases", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


CASES = _load_cases().BENCH

PANEL_SEED = 20240601

# Rounds of the full run: each round is one multilevel process, then one lme4 process.
DEFAULT_ROUNDS = {"insteval": 5, "sleepstudy": 5, "panel1m": 3}


# --------------------------------------------------------------------------------------
# data


def simulate_panel(rows: int, groups: int, seed: int = PANEL_SEED):
    """An unbalanced panel with a correlated random intercept and slope on x1."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    # group sizes vary (Dirichlet shares), every group has at least 2 rows
    shares = rng.dirichlet(np.full(groups, 5.0))
    sizes = 2 + rng.multinomial(rows - 2 * groups, shares)
    g = np.repeat(np.arange(groups), sizes)
    # group-level part of x1 (x1 is partly between-group), and within-group noise
    x1 = 0.5 * rng.normal(size=groups)[g] + rng.normal(size=rows)
    x2 = rng.normal(size=rows)
    x3 = rng.binomial(1, 0.4, size=rows).astype(float)
    # random effects: sd 1.0 (intercept), 0.5 (slope), correlation 0.3; residual sd 2.0
    sd = np.array([1.0, 0.5])
    corr = np.array([[1.0, 0.3], [0.3, 1.0]])
    cov = corr * np.outer(sd, sd)
    b = rng.multivariate_normal(np.zeros(2), cov, size=groups)
    y = 2.0 + 0.5 * x1 - 0.3 * x2 + 0.8 * x3 + b[g, 0] + b[g, 1] * x1 + 2.0 * rng.normal(size=rows)
    return pd.DataFrame({"g": g, "y": y, "x1": x1, "x2": x2, "x3": x3})


def panel_csv(rows: int, groups: int) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"panel_{rows}_{groups}_seed{PANEL_SEED}.csv"
    if not path.exists():
        df = simulate_panel(rows, groups)
        tmp = path.with_suffix(".tmp")
        df.to_csv(tmp, index=False, float_format="%.17g")
        tmp.replace(path)
    return path


def load_case(case: str, csv: str | None):
    import pandas as pd

    import multilevel as ml

    data = CASES[case].data
    if data == "simulated":
        return pd.read_csv(csv, float_precision="round_trip")
    return ml.datasets.load(data)


# --------------------------------------------------------------------------------------
# workers (run in subprocesses; print one JSON line)


def _status_kb() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, val = line.split(":")
                out[key] = int(val.split()[0])
    return out


def _maxrss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux


def worker_ml(case: str, reps: int, mode: str, csv: str | None) -> dict:
    import gc

    import multilevel as ml

    spec = CASES[case]
    # untimed warm-up fit on another (tiny) data set: module imports and lazy initialisation,
    # so that neither the timings nor the memory baseline include them (R likewise has lme4
    # loaded before anything is measured)
    ml.lmer("Reaction ~ Days + (Days | Subject)", ml.datasets.load("sleepstudy"))
    data = load_case(case, csv)
    out: dict = {"engine": "multilevel", "case": case, "mode": mode}
    if mode == "mem":
        gc.collect()
        before = _status_kb()
        maxrss_before = _maxrss_kb()
        try:
            with open("/proc/self/clear_refs", "w") as fh:
                fh.write("5")
            reset = True
        except OSError:
            reset = False
        t0 = time.perf_counter()
        fit = ml.lmer(spec.formula, data, reml=spec.reml)
        times = [time.perf_counter() - t0]
        after = _status_kb()
        out["mem"] = {
            "rss_loaded_kb": before["VmRSS"],
            "peak_before_fit_kb": before["VmHWM"],
            "peak_fit_kb": after["VmHWM"],
            "hwm_reset": reset,
            "ru_maxrss_before_kb": maxrss_before,
            "ru_maxrss_after_kb": _maxrss_kb(),
        }
    else:
        times = []
        for _ in range(reps):
            gc.collect()
            t0 = time.perf_counter()
            fit = ml.lmer(spec.formula, data, reml=spec.reml)
            times.append(time.perf_counter() - t0)
    vc = fit.varcorr
    out.update(
        times=times,
        median=statistics.median(times),
        fixef={k: float(v) for k, v in fit.fixef.items()},
        se={k: float(v) for k, v in fit.se.items()},
        theta=[float(t) for t in fit.theta],
        objective=float(fit.objective),
        n_eval=int(fit.optimizer.get("n_eval", -1)),
        status=str(fit.optimizer.get("status", "")),
        varcorr={
            "grp": [None if v is None else str(v) for v in vc["grp"]],
            "var1": [None if v is None else str(v) for v in vc["var1"]],
            "var2": [None if v is None else str(v) for v in vc["var2"]],
            "sdcor": [float(v) for v in vc["sdcor"]],
        },
    )
    return out


def worker_sm(case: str, reps: int, csv: str | None) -> dict:
    import gc
    import warnings

    import statsmodels
    import statsmodels.formula.api as smf

    data = load_case(case, csv)
    if case == "sleepstudy":
        args = {"formula": "Reaction ~ Days", "groups": "Subject", "re_formula": "~Days"}
        reml = True
    elif case == "panel1m":
        args = {"formula": "y ~ x1 + x2 + x3", "groups": "g", "re_formula": "~x1"}
        reml = False
    else:
        raise ValueError(f"statsmodels is not run on {case}")
    times = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for _ in range(reps):
            gc.collect()
            t0 = time.perf_counter()
            res = smf.mixedlm(data=data, **args).fit(reml=reml)
            times.append(time.perf_counter() - t0)
    fe = res.fe_params
    return {
        "engine": "statsmodels",
        "case": case,
        "times": times,
        "median": statistics.median(times),
        # statsmodels names the intercept "Intercept"; lme4 and multilevel "(Intercept)"
        "fixef": {("(Intercept)" if k == "Intercept" else k): float(v) for k, v in fe.items()},
        "objective": float(-2 * res.llf),
        "converged": bool(res.converged),
        "version": statsmodels.__version__,
    }


# --------------------------------------------------------------------------------------
# orchestration


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError("no JSON in output:\n" + text[-2000:])


def run_sub(cmd: list[str], timeout: float | None) -> dict:
    t0 = time.perf_counter()
    try:
        p = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, check=False
        )
    except subprocess.TimeoutExpired:
        return {"error": "timeout", "timeout_s": timeout, "wall_s": time.perf_counter() - t0}
    if p.returncode != 0:
        return {"error": f"exit {p.returncode}", "stderr": p.stderr[-3000:]}
    try:
        res = _last_json(p.stdout)
    except ValueError as exc:
        return {"error": str(exc), "stderr": p.stderr[-3000:]}
    if "times" in res and not isinstance(res["times"], list):
        res["times"] = [res["times"]]
    return res


def py_worker(
    kind: str,
    case: str,
    reps: int,
    csv: str | None,
    mode: str = "time",
    timeout: float | None = None,
) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        kind,
        "--case",
        case,
        "--reps",
        str(reps),
        "--mode",
        mode,
    ]
    if csv:
        cmd += ["--csv", csv]
    return run_sub(cmd, timeout)


def r_worker(
    case: str, reps: int, csv: str | None, mode: str = "time", timeout: float | None = None
) -> dict:
    cmd = ["Rscript", str(R_SCRIPT), case, str(reps), mode]
    if csv:
        cmd.append(csv)
    return run_sub(cmd, timeout)


def _share(total: int, parts: int, k: int) -> int:
    """The k-th of `parts` nearly equal shares of `total`."""
    return total // parts + (1 if k < total % parts else 0)


def pool_rounds(runs: list[dict]) -> dict:
    """One engine's rounds as one result: all timed fits pooled, their median, and the
    estimates of the last round (every round fits the same model). A failed round fails it."""
    for x in runs:
        if "error" in x:
            return x
    out = dict(runs[-1])
    out["times"] = [t for x in runs for t in x["times"]]
    out["median"] = statistics.median(out["times"])
    out["round_medians"] = [x["median"] for x in runs]
    return out


def agreement(a: dict, b: dict) -> dict:
    """a: multilevel (or statsmodels), b: lme4 (reference; its SEs scale the differences)."""
    if "error" in a or "error" in b:
        return {}
    out = {}
    names = [k for k in b["fixef"] if k in a["fixef"]]
    if len(names) == len(b["fixef"]):
        out["fixef_max_abs_diff_over_se"] = max(
            abs(a["fixef"][k] - b["fixef"][k]) / b["se"][k] for k in names
        )
    else:
        out["fixef_names_mismatch"] = [sorted(a["fixef"]), sorted(b["fixef"])]
    if "objective" in a and "objective" in b and "varcorr" in a:
        out["objective_diff"] = a["objective"] - b["objective"]
        out["objective_rel_diff"] = out["objective_diff"] / abs(b["objective"])
    if "varcorr" in a and "varcorr" in b:

        def key(vc, i):
            return (vc["grp"][i], vc["var1"][i], vc["var2"][i])

        ref = {key(b["varcorr"], i): v for i, v in enumerate(b["varcorr"]["sdcor"])}
        rel = []
        for i, v in enumerate(a["varcorr"]["sdcor"]):
            k = key(a["varcorr"], i)
            if k in ref:
                r = ref[k]
                # correlations: absolute difference; standard deviations: relative
                rel.append(abs(v - r) if k[2] is not None else abs(v - r) / max(abs(r), 1e-12))
        if len(rel) == len(ref):
            out["varcorr_max_diff"] = max(rel)
    return out


def machine_info() -> dict:
    cpu = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    return {
        "cores": os.cpu_count(),
        "cpu": cpu,
        "mem_gb": round(mem_gb, 1),
        "os": platform.platform(),
    }


def versions() -> dict:
    import pandas as pd

    import multilevel as ml

    v = {
        "python": platform.python_version(),
        "multilevel": ml.__version__,
        "numpy": np.__version__,
        "pandas": pd.__version__,
    }
    try:
        import statsmodels

        v["statsmodels"] = statsmodels.__version__
    except ImportError:
        v["statsmodels"] = None
    try:
        r = subprocess.run(
            [
                "Rscript",
                "-e",
                (
                    'si <- sessionInfo(); cat(paste(R.version$major, R.version$minor, sep="."), '
                    'as.character(packageVersion("lme4")), basename(si$BLAS), "\\n")'
                ),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        rv, lme4v, blas = r.stdout.split()
        v.update(R=rv, lme4=lme4v, R_BLAS=blas)
    except Exception:
        v.update(R=None, lme4=None)
    return v


def git_rev() -> str:
    try:
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "rust", "python"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        return rev + (" (with uncommitted changes under rust/ or python/)" if dirty else "")
    except OSError:
        return "unknown"


# --------------------------------------------------------------------------------------
# formatting


def _s(x: float | None) -> str:
    if x is None:
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 1:
        return f"{x:.2f}"
    if x >= 0.01:
        return f"{x:.3f}"
    return f"{x * 1e3:.2f} ms"


def _mb(kb: float | None) -> str:
    return "-" if kb is None else f"{kb / 1024:.0f} MB"


def _ratio(a: dict, b: dict) -> str:
    if "median" in a and "median" in b and b["median"] > 0:
        return f"{a['median'] / b['median']:.1f}x"
    return "-"


def _timeof(r: dict) -> str:
    if "error" in r:
        if r["error"] == "timeout":
            return f"stopped at {r['timeout_s']:.0f} s"
        if r["error"] == "not attempted":
            return "not attempted"
        return "failed"
    return _s(r["median"])


def render(results: dict, meta: dict) -> tuple[str, str]:
    """Returns (results table as markdown, detail markdown)."""
    rows = [
        (
            "| case | multilevel | lme4 | lme4 / multilevel | statsmodels "
            "| statsmodels / multilevel "
            "| peak RSS during fit: multilevel | peak RSS during fit: lme4 |"
        ),
        "|---|---|---|---|---|---|---|---|",
    ]
    detail = []
    for case, r in results.items():
        mlr, lr, smr = r["ml"], r["lme4"], r["sm"]
        mm, lm = r.get("ml_mem", {}).get("mem"), r.get("lme4_mem", {}).get("mem")
        rows.append(
            f"| {case} | {_timeof(mlr)} | {_timeof(lr)} | {_ratio(lr, mlr)} | {_timeof(smr)} "
            f"| {_ratio(smr, mlr)} | {_mb(mm and mm['peak_fit_kb'])} "
            f"| {_mb(lm and lm['peak_fit_kb'])} |"
        )
        d = [f"### {case}", "", f"{r['what']}; formula `{r['formula']}`.", ""]
        for label, x in (("multilevel", mlr), ("lme4", lr), ("statsmodels", smr)):
            if "error" in x:
                why = x.get("why") or x.get("stderr", "")[-400:].strip().replace("\n", " ")
                if x["error"] == "timeout":
                    why = f"killed after {x['timeout_s']:.0f} s without finishing one fit " + (
                        x.get("why") or ""
                    )
                d.append(f"- {label}: {x['error']}. {why}")
            else:
                ts = ", ".join(_s(t) for t in x["times"][:8])
                more = f", ... ({len(x['times'])} fits)" if len(x["times"]) > 8 else ""
                extra = ""
                if "n_eval" in x:
                    extra = f"; objective {x['objective']:.10g}; {x['n_eval']} evaluations"
                if "converged" in x:
                    extra = f"; -2 log-likelihood {x['objective']:.10g}; converged {x['converged']}"
                d.append(
                    f"- {label}: median {_s(x['median'])} over {len(x['times'])} fits "
                    f"[{ts}{more}]{extra}"
                )
        for label, key in (("multilevel", "ml_mem"), ("lme4", "lme4_mem")):
            m = r.get(key, {}).get("mem")
            if m:
                inc = m["peak_fit_kb"] - m["rss_loaded_kb"]
                line = (
                    f"- memory, {label}: RSS with data loaded {_mb(m['rss_loaded_kb'])} "
                    f"(peak while loading {_mb(m['peak_before_fit_kb'])}); peak RSS during "
                    f"the fit {_mb(m['peak_fit_kb'])}, i.e. +{_mb(inc)} over the loaded "
                    f"state"
                )
                if "ru_maxrss_after_kb" in m:
                    line += (
                        f"; ru_maxrss before/after the fit {_mb(m['ru_maxrss_before_kb'])}"
                        f" / {_mb(m['ru_maxrss_after_kb'])}"
                    )
                if "r_heap_max_used_mb" in m:
                    line += f"; R heap max used (gc) {m['r_heap_max_used_mb']:.0f} MB"
                if not m.get("hwm_reset", True):
                    line += " (high-water mark could not be reset: peak includes loading)"
                d.append(line)
            elif key in r and "error" in r[key]:
                d.append(f"- memory, {label}: {r[key]['error']}")
        if r.get("round_ratios"):
            rr = r["round_ratios"]
            d.append(
                f"- lme4 / multilevel round by round (the engines alternate, a fresh process "
                f"each): {', '.join(f'{x:.1f}x' for x in rr)} (min {min(rr):.1f}x, median "
                f"{statistics.median(rr):.1f}x, max {max(rr):.1f}x)"
            )
        if "loadavg_before" in r:
            d.append(
                f"- 1-minute load average before / after this case: "
                f"{r['loadavg_before']:.1f} / {r.get('loadavg_after', float('nan')):.1f} "
                f"(on {meta['machine']['cores']} cores)"
            )
        ag = r.get("agree", {})
        if ag:
            parts = []
            if "fixef_max_abs_diff_over_se" in ag:
                parts.append(f"max |fixef diff| / SE {ag['fixef_max_abs_diff_over_se']:.2e}")
            if "objective_diff" in ag:
                parts.append(
                    f"objective diff (multilevel - lme4) {ag['objective_diff']:+.3e} "
                    f"(relative {ag['objective_rel_diff']:+.1e})"
                )
            if "varcorr_max_diff" in ag:
                parts.append(
                    f"max variance-component diff (relative for SDs, absolute for "
                    f"correlations) {ag['varcorr_max_diff']:.1e}"
                )
            d.append("- agreement multilevel vs lme4: " + "; ".join(parts))
        sag = r.get("agree_sm", {})
        if sag.get("fixef_max_abs_diff_over_se") is not None:
            d.append(
                f"- agreement statsmodels vs lme4: max |fixef diff| / SE "
                f"{sag['fixef_max_abs_diff_over_se']:.2e}"
            )
        detail.append("\n".join(d))
    return "\n".join(rows), "\n\n".join(detail)


PANEL_SECTION = """## Panel within estimator (`benches/bench_panel.py`)

Measured by another engineer with `python benches/bench_panel.py` (simulated unbalanced
panel, 10,000,000 rows, 100,000 entities, within (fixed-effects) estimator, fit call only):

| engine | seconds | ratio to multilevel |
|---|---|---|
| multilevel (`ml.panel`) | 31.31 | 1.00 |
| linearmodels (`PanelOLS`) | 41.61 | 1.33 |
| plm (R, `model = "within"`) | 67.21 | 2.15 |
"""


def write_markdown(path: Path, results: dict, meta: dict) -> str:
    table, detail = render(results, meta)
    v = meta["versions"]
    m = meta["machine"]
    loads = [
        x
        for r in results.values()
        for x in (r.get("loadavg_before"), r.get("loadavg_after"))
        if x is not None
    ]
    load_note = ""
    if loads and max(loads) > 0.75 * m["cores"]:
        load_note = (
            f"Note: the machine was not idle during this run (1-minute load average up "
            f"to {max(loads):.1f} on {m['cores']} cores, other work running), so both "
            f"sides' times are inflated and noisy; ratios are indicative.\n\n"
        )
    if meta.get("note"):
        load_note += meta["note"] + "\n\n"
    md = f"""# Benchmarks

## Linear mixed models (`benches/bench_lmm.py`)

Command: `{meta["command"]}`

Measured on {meta["date"]} at commit {meta["commit"]}, while the Rust core was still being
optimised: these are a snapshot, and the script is meant to be re-run (same command).
Machine: {m["cores"]} cores ({m["cpu"]}), {m["mem_gb"]} GB RAM, {m["os"]}.
Versions: multilevel {v["multilevel"]}, Python {v["python"]}, NumPy {v["numpy"]},
pandas {v["pandas"]}, statsmodels {v["statsmodels"]}, R {v.get("R")}, lme4 {v.get("lme4")}
(R BLAS: {v.get("R_BLAS")}).

Times are medians over repeated fits of the fit call only, data already loaded on every side
(counts below). multilevel and lme4 alternate, round by round, each round a fresh process of
each engine, so that a shared machine's drift slows both alike; each round's ratio is listed
below the table. multilevel: the whole `ml.lmer(formula, data, reml=...)` call from a pandas
DataFrame, formula parsing and design construction included. lme4: `lmer(...)` only, with
`proc.time()` around it, in an `Rscript benches/lme4_fit.R` subprocess. statsmodels:
`smf.mixedlm(...).fit(...)`, model construction included. Ratios are time of the other
engine / time of multilevel (higher = multilevel faster).

Peak memory is measured in separate subprocesses that load the data and fit once: the peak
resident set size of the whole process (Linux `VmHWM`, reset after the data are loaded, so it
is the peak during the fit, data included), identically for Python and R. RSS with the data
loaded (the baseline) is given with each case below.

{table}

{load_note}{detail}

statsmodels and InstEval: MixedLM has no crossed random effects. They can be expressed only as
variance components within a single all-encompassing group, where MixedLM works with dense
per-group matrices: a 73,421-row group with 4,128 random-effect columns (2,972 + 1,128 + 28)
means dense 73,421 x 4,128 design blocks (about 2.4 GB each in float64) and dense solves in
every likelihood evaluation. It is not attempted.

Raw results: `benches/out/lmm_results.json` (not committed).

{PANEL_SECTION}"""
    path.write_text(md)
    return table + "\n\n" + detail


# --------------------------------------------------------------------------------------


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--case", action="append", choices=list(CASES), help="case to run (repeatable); default all"
    )
    ap.add_argument(
        "--reps",
        type=int,
        default=None,
        help="timed fits per engine for insteval and panel1m (default: one per round; quick 1)",
    )
    ap.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="alternating rounds per case, each a multilevel process then an lme4 "
        "process sharing the fits (default 5 for insteval and sleepstudy, 3 "
        "for panel1m; quick 1)",
    )
    ap.add_argument(
        "--small-reps",
        type=int,
        default=None,
        help="timed fits per engine for sleepstudy (default 200 multilevel, 50 "
        "lme4, 20 statsmodels; quick 20/10/5)",
    )
    ap.add_argument(
        "--quick",
        action="store_true",
        help="smoke test: 100,000-row panel with 1,000 groups, few reps",
    )
    ap.add_argument("--rows", type=int, default=None, help="panel rows (default 1,000,000)")
    ap.add_argument("--groups", type=int, default=None, help="panel groups (default 10,000)")
    ap.add_argument(
        "--sm-timeout",
        type=float,
        default=None,
        help="seconds before statsmodels is stopped on the panel (default 600; quick 60)",
    )
    ap.add_argument("--skip-lme4", action="store_true")
    ap.add_argument("--skip-statsmodels", action="store_true")
    ap.add_argument("--skip-mem", action="store_true")
    ap.add_argument(
        "--output",
        type=Path,
        default=None,
        help="markdown output (default BENCHMARKS.md for a full run of every case, "
        "benches/out/BENCHMARKS.partial.md otherwise)",
    )
    # internal
    ap.add_argument("--worker", choices=["ml", "sm"], help=argparse.SUPPRESS)
    ap.add_argument("--mode", default="time", help=argparse.SUPPRESS)
    ap.add_argument("--csv", default=None, help=argparse.SUPPRESS)
    return ap


def _run_case(case: str, args, sreps: dict, rows: int, groups: int, sm_timeout: float) -> dict:
    """One case: alternating rounds of multilevel and lme4, statsmodels, peak memory."""
    quick, reps, r_timeout = args.quick, args.reps, 3600.0
    spec = CASES[case]
    csv = None
    what = spec.what
    if case == "panel1m":
        t0 = time.perf_counter()
        csv = str(panel_csv(rows, groups))
        what = what.format(rows=rows, groups=groups)
        print(f"[{case}] data: {csv} ({time.perf_counter() - t0:.1f} s)")
    r = {"what": what, "formula": spec.formula, "loadavg_before": os.getloadavg()[0]}
    # one timed fit per round unless --reps says otherwise
    big_reps = reps or args.rounds or (1 if quick else DEFAULT_ROUNDS[case])
    n_ml = sreps["ml"] if case == "sleepstudy" else big_reps
    n_r = sreps["lme4"] if case == "sleepstudy" else big_reps
    n_sm = sreps["sm"] if case == "sleepstudy" else 1

    # The engines alternate, round by round (a fresh process each), so that a machine whose
    # speed drifts over minutes slows both alike; each round's ratio is kept too.
    rounds = max(1, min(args.rounds or (1 if quick else DEFAULT_ROUNDS[case]), n_ml))
    ml_runs: list[dict] = []
    r_runs: list[dict] = []
    for k in range(rounds):
        n_ml_k = _share(n_ml, rounds, k)
        print(f"[{case}] round {k + 1}/{rounds}: multilevel, {n_ml_k} timed fits ...", flush=True)
        ml_runs.append(py_worker("ml", case, n_ml_k, csv))
        print(f"[{case}]   {_timeof(ml_runs[-1])}  {ml_runs[-1].get('error', '')}", flush=True)
        if not args.skip_lme4:
            n_r_k = max(1, _share(n_r, rounds, k))
            print(f"[{case}] round {k + 1}/{rounds}: lme4, {n_r_k} timed fits ...", flush=True)
            r_runs.append(r_worker(case, n_r_k, csv, timeout=r_timeout))
            print(f"[{case}]   {_timeof(r_runs[-1])}  {r_runs[-1].get('error', '')}", flush=True)
    r["ml"] = pool_rounds(ml_runs)
    if args.skip_lme4:
        r["lme4"] = {"error": "not attempted", "why": "--skip-lme4"}
    else:
        r["lme4"] = pool_rounds(r_runs)
        r["round_ratios"] = [
            lr["median"] / mr["median"]
            for mr, lr in zip(ml_runs, r_runs)
            if "median" in mr and "median" in lr and mr["median"] > 0
        ]

    if case == "insteval":
        r["sm"] = {
            "error": "not attempted",
            "why": "crossed random effects (see the note below the table)",
        }
    elif args.skip_statsmodels:
        r["sm"] = {"error": "not attempted", "why": "--skip-statsmodels"}
    else:
        to = sm_timeout if case == "panel1m" else 600.0
        print(f"[{case}] statsmodels: {n_sm} timed fits (limit {to:.0f} s) ...", flush=True)
        r["sm"] = py_worker("sm", case, n_sm, csv, timeout=to)
        if r["sm"].get("error") == "timeout":
            r["sm"]["why"] = "(time limit of the benchmark; --sm-timeout to change it)"
        print(f"[{case}]   {_timeof(r['sm'])}", flush=True)

    if not args.skip_mem:
        print(f"[{case}] peak memory (one fit per engine, separate processes) ...", flush=True)
        r["ml_mem"] = py_worker("ml", case, 1, csv, mode="mem")
        if not args.skip_lme4:
            r["lme4_mem"] = r_worker(case, 1, csv, mode="mem", timeout=r_timeout)

    r["loadavg_after"] = os.getloadavg()[0]
    r["agree"] = agreement(r["ml"], r["lme4"])
    r["agree_sm"] = agreement(r["sm"], r["lme4"]) if "error" not in r["sm"] else {}
    return r


def main() -> None:
    args = _parser().parse_args()

    if args.worker:
        case = args.case[0]
        res = (
            worker_ml(case, args.reps, args.mode, args.csv)
            if args.worker == "ml"
            else worker_sm(case, args.reps, args.csv)
        )
        print(json.dumps(res))
        return

    quick = args.quick
    if args.small_reps:
        sreps = {"ml": args.small_reps, "lme4": args.small_reps, "sm": args.small_reps}
    else:
        sreps = {"ml": 20, "lme4": 10, "sm": 5} if quick else {"ml": 200, "lme4": 50, "sm": 20}
    rows = args.rows or (100_000 if quick else 1_000_000)
    groups = args.groups or max(rows // 100, 2)
    sm_timeout = args.sm_timeout or (60.0 if quick else 600.0)
    cases = args.case or list(CASES)

    meta = {
        "command": "python benches/bench_lmm.py"
        + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else ""),
        "date": _dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "commit": git_rev(),
        "machine": machine_info(),
        "versions": versions(),
    }
    print(f"multilevel LMM benchmark, {meta['date']}, commit {meta['commit']}")
    print(f"machine: {meta['machine']}")
    print(f"versions: {meta['versions']}")
    load = os.getloadavg()[0]
    print(
        f"load average: {load:.2f}"
        + (
            "  (WARNING: machine busy; timings will be inflated)"
            if load > 0.75 * (os.cpu_count() or 1)
            else ""
        )
        + "\n"
    )

    results: dict = {}
    for case in cases:
        results[case] = _run_case(case, args, sreps, rows, groups, sm_timeout)

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "lmm_results.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    if args.output:
        out_md = args.output
    elif not quick and set(cases) == set(CASES) and not args.rows and not args.groups:
        out_md = ROOT / "BENCHMARKS.md"
    else:
        out_md = OUT / "BENCHMARKS.partial.md"
    text = write_markdown(out_md, results, meta)
    print()
    print(text)
    print(f"\nwritten: {out_md}")


if __name__ == "__main__":
    main()
