"""Dumps a benchmark case's design as raw little-endian arrays for ``benches/eval_cost.rs``.

Usage: ``python benches/dump_design.py insteval /tmp/insteval``
Writes meta.txt (``n p n_terms`` then ``n_levels q`` per term), y.bin, x.bin (column-major),
codes{k}.bin (int32) and, for q > 1, z{k}.bin (column-major).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

import multilevel as ml
import multilevel.design

CASES = {
    "insteval": ("insteval", "y ~ 1 + service + (1 | s) + (1 | d) + (1 | dept:service)"),
    "sleepstudy": ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
}


def main() -> None:
    case, out = sys.argv[1], Path(sys.argv[2])
    name, formula = CASES[case]
    des = multilevel.design.build(formula, ml.datasets.load(name))
    out.mkdir(parents=True, exist_ok=True)
    des.y.astype("<f8").tofile(out / "y.bin")
    np.asarray(des.X, dtype="<f8").flatten(order="F").tofile(out / "x.bin")
    lines = [f"{len(des.y)} {des.X.shape[1]} {len(des.terms)}"]
    for k, t in enumerate(des.terms):
        t.codes.astype("<i4").tofile(out / f"codes{k}.bin")
        q = t.Z.shape[1]
        if q > 1:
            np.asarray(t.Z, dtype="<f8").flatten(order="F").tofile(out / f"z{k}.bin")
        lines.append(f"{len(t.levels)} {q}")
    (out / "meta.txt").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
