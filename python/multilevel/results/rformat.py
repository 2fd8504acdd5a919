"""R's number formatting: what ``print()`` and ``format()`` of R do with ``digits``.

Shared by every report that must match R's output character for character (lme4's summary,
nlme's reports).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["abbreviate", "make_unique", "r_format", "r_matrix", "r_named_vector"]


def _sig_parts(x: float, digits: int) -> tuple[int, int]:
    """(number of significant digits needed, decimal exponent) of x shown to `digits`."""
    if x == 0 or not math.isfinite(x):
        return 1, 0
    mant, exp = f"{abs(x):.{digits - 1}e}".split("e")
    sig = mant.replace(".", "").rstrip("0")
    return max(len(sig), 1), int(exp)


def r_format(values: Sequence[float], digits: int = 7) -> list[str]:
    """Format numbers jointly as R's ``format(x, digits=)``: common decimals and width."""
    vals = [float(v) for v in values]
    finite = [v for v in vals if math.isfinite(v)]
    if not finite:
        out = ["NA" if math.isnan(v) else ("Inf" if v > 0 else "-Inf") for v in vals]
    else:
        parts = [_sig_parts(v, digits) for v in finite]
        rgt = max(max(0, ns - 1 - e) for ns, e in parts)
        left = max((e + 1 if e >= 0 else 1) for _, e in parts)
        neg = any(v < 0 for v in finite)
        width_fixed = neg + left + (1 + rgt if rgt > 0 else 0)
        mxns = max(ns for ns, _ in parts)
        big_exp = any(abs(e) >= 100 for _, e in parts)
        width_sci = neg + (mxns + 1 if mxns > 1 else mxns) + (5 if big_exp else 4)
        out = []
        for v in vals:
            if math.isnan(v):
                out.append("NA")
            elif math.isinf(v):
                out.append("Inf" if v > 0 else "-Inf")
            elif width_fixed <= width_sci:
                out.append(f"{v:.{rgt}f}")
            else:
                out.append(f"{v:.{mxns - 1}e}")
    width = max(len(s) for s in out)
    return [s.rjust(width) for s in out]


def r_named_vector(names: Sequence[str], cells: Sequence[str], width: int = 80) -> str:
    """Print a named vector as R does: names over values, right aligned, wrapped at `width`."""
    w = max([len(n) for n in names] + [len(c) for c in cells])
    per_line = max(1, (width + 1) // (w + 1))
    lines = []
    for i in range(0, len(names), per_line):
        lines.append(" ".join(n.rjust(w) for n in names[i : i + per_line]) + " ")
        lines.append(" ".join(c.rjust(w) for c in cells[i : i + per_line]) + " ")
    return "\n".join(lines)


def r_matrix(
    rownames: Sequence[str], colnames: Sequence[str], cells: list[list[str]], right: bool = True
) -> str:
    """Print a character matrix as R does with quote = FALSE (row names left aligned)."""
    rw = max([len(r) for r in rownames] + [0])
    widths = [
        max([len(colnames[j])] + [len(row[j]) for row in cells]) for j in range(len(colnames))
    ]

    def just(s: str, w: int) -> str:
        return s.rjust(w) if right else s.ljust(w)

    lines = [" " * rw + "".join(" " + just(c, w) for c, w in zip(colnames, widths))]
    for r, row in zip(rownames, cells):
        lines.append(r.ljust(rw) + "".join(" " + just(s, w) for s, w in zip(row, widths)))
    if not right:  # R pads left-aligned cells, so lines keep their full width
        return "\n".join(lines)
    return "\n".join(lines)


def abbreviate(name: str, minlength: int = 6) -> str:
    """R's ``abbreviate()``: drop lower-case vowels, then lower-case letters, from the right."""
    if len(name) <= minlength:
        return name
    chars = list(name)
    for pred in (lambda c: c in "aeiou", lambda c: c.islower()):
        i = len(chars) - 1
        while len(chars) > minlength and i > 0:
            if pred(chars[i]) and chars[i - 1] != " ":
                del chars[i]
            i -= 1
    s = "".join(chars)
    return s[:minlength] if len(s) > minlength else s


def make_unique(names: Sequence[str]) -> list[str]:
    """R's ``make.unique``: the second "a" becomes "a.1", the third "a.2", ..."""
    seen: dict[str, int] = {}
    out = []
    taken = set(names)
    for n in names:
        if n not in seen:
            seen[n] = 0
            out.append(n)
            continue
        k = seen[n]
        while True:
            k += 1
            cand = f"{n}.{k}"
            if cand not in taken:
                break
        seen[n] = k
        taken.add(cand)
        out.append(cand)
    return out
