"""Writes a simulated panel to Parquet for the large-panel benchmarks (issue 13).

The model is ``y ~ x1 + x2 + x3 + (1 + x1 | g)``: an unbalanced panel (group sizes from
Dirichlet shares, every group at least 2 rows) with a random intercept and a random slope on
x1 (standard deviations 1.0 and 0.5, correlation 0.3), residual standard deviation 2.0, x1
partly between groups, x3 binary. The rows are generated and written a block of groups at a
time (one Parquet row group per block), so memory stays bounded whatever the number of rows;
each block draws from its own random stream spawned from the seed, so a file is the same on
every machine.

Usage::

    python benches/make_panel.py --rows 10_000_000 --groups 100_000 --out benches/out/p10m.parquet
    python benches/make_panel.py --rows 100_000_000 --groups 1_000_000 --out /tmp/p100m.parquet
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

SEED = 20261203
GROUPS_PER_BLOCK = 10_000


def group_sizes(rows: int, groups: int, seed: int = SEED) -> np.ndarray:
    """Rows per group: 2 each, the rest spread by Dirichlet(5) shares."""
    if rows < 2 * groups:
        raise ValueError(f"{rows} rows cannot give {groups} groups at least 2 rows each")
    rng = np.random.default_rng(np.random.SeedSequence(seed).spawn(1)[0])
    shares = rng.dirichlet(np.full(groups, 5.0))
    return 2 + rng.multinomial(rows - 2 * groups, shares)


def block(first_group: int, sizes: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The rows of groups first_group .. first_group + len(sizes) - 1."""
    n, k = int(sizes.sum()), len(sizes)
    local = np.repeat(np.arange(k), sizes)
    x1 = 0.5 * rng.normal(size=k)[local] + rng.normal(size=n)
    x2 = rng.normal(size=n)
    x3 = rng.binomial(1, 0.4, size=n).astype(float)
    cov = np.array([[1.0, 0.3 * 0.5], [0.3 * 0.5, 0.25]])
    b = rng.multivariate_normal(np.zeros(2), cov, size=k)
    y = 2.0 + 0.5 * x1 - 0.3 * x2 + 0.8 * x3 + b[local, 0] + b[local, 1] * x1
    y += 2.0 * rng.normal(size=n)
    g = (first_group + local).astype(np.int64)
    return {"g": g, "y": y, "x1": x1, "x2": x2, "x3": x3}


def write(path: Path, rows: int, groups: int, seed: int = SEED) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    sizes = group_sizes(rows, groups, seed)
    starts = range(0, groups, GROUPS_PER_BLOCK)
    streams = np.random.SeedSequence(seed).spawn(1 + len(starts))[1:]
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    writer = None
    try:
        for s, ss in zip(starts, streams):
            table = pa.table(block(s, sizes[s : s + GROUPS_PER_BLOCK], np.random.default_rng(ss)))
            if writer is None:
                writer = pq.ParquetWriter(tmp, table.schema)
            writer.write_table(table)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rows", type=lambda s: int(s.replace("_", "")), default=10_000_000)
    ap.add_argument("--groups", type=lambda s: int(s.replace("_", "")), default=100_000)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    t0 = time.perf_counter()
    write(a.out, a.rows, a.groups, a.seed)
    print(
        f"wrote {a.rows:,} rows in {a.groups:,} groups to {a.out} "
        f"({a.out.stat().st_size / 1e6:.0f} MB) in {time.perf_counter() - t0:.1f} s"
    )


if __name__ == "__main__":
    main()
