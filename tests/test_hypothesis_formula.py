"""Property: every formula built from lme4's grammar parses, into the terms it was built from
(the response, the fixed summands, each bar expanded as lme4 expands it, the offsets) and the
columns it uses."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

import _hypothesis_profiles  # noqa: F401  (settings profile)
from multilevel.formula import parse

NAMES = st.sampled_from(["x", "z", "my.x", "x_1", "Days", "x.2.b", "`a b`", "w"])
GROUPS = st.sampled_from(["g", "h", "my.g", "Subject", "g_2"])


@st.composite
def fixed_summand(draw):
    """(text, columns) of one fixed-effect summand."""
    a, b = draw(NAMES), draw(NAMES)
    kind = draw(st.integers(0, 7))
    text = [
        a,
        f"{a}:{b}",
        f"I({a} ** 2)",
        f"scale({a})",
        f"center({a})",
        f"np.log({a} + 1)",
        f"C({a})",
        f"poly({a}, 2)",
    ][kind]
    cols = [a, b] if kind == 1 else [a]
    return text, [c.strip("`") for c in cols]


@st.composite
def bar(draw):
    """(text, expanded lme4 terms as printed, columns of the left side, grouping columns)."""
    a = draw(NAMES)
    g, h = draw(GROUPS), draw(GROUPS)
    lhs_kind = draw(st.integers(0, 3))
    lhs = ["1", f"1 + {a}", f"0 + {a}", a][lhs_kind]
    cols = [] if lhs_kind == 0 else [a.strip("`")]
    double = draw(st.booleans()) and lhs_kind in (1, 3)
    group_kind = draw(st.integers(0, 2)) if g != h else 0
    if group_kind == 0:
        groups, gcols = [g], [g]
    elif group_kind == 1:
        groups, gcols = [f"{g}:{h}"], [g, h]
    else:  # g/h -> h:g, g
        groups, gcols = [f"{h}:{g}", g], [g, h]
    gtext = [g, f"{g}:{h}", f"{g}/{h}"][group_kind]
    expanded = []
    for grp in groups:
        if not double:
            expanded.append(f"({lhs} | {grp})")
        else:  # (1 + a || g) -> (1 | g) + (0 + a | g); (a || g) likewise (implicit 1)
            expanded += [f"(1 | {grp})", f"(0 + {a} | {grp})"]
    return f"({lhs} {'||' if double else '|'} {gtext})", expanded, cols, gcols


@given(
    response=st.sampled_from(["y", "my.y", "np.log(y)", "Reaction"]),
    fixed=st.lists(fixed_summand(), min_size=0, max_size=4),
    bars=st.lists(bar(), min_size=0, max_size=3),
    offset=st.sampled_from([None, "t", "np.log(t)"]),
    spaces=st.sampled_from([" ", "", "  ", "\n"]),
)
def test_formula_parses_into_its_terms(response, fixed, bars, offset, spaces):
    parts = [t for t, _ in fixed] + [b[0] for b in bars] + ([f"offset({offset})"] if offset else [])
    if not parts:
        parts = ["1"]
    formula = f"{response}{spaces}~{spaces}" + f"{spaces}+{spaces}".join(parts)
    p = parse(formula)
    assert p.response == response
    assert p.fixed == (" + ".join(t for t, _ in fixed) if fixed else "1")
    assert [t.text for t in p.random] == [e for b in bars for e in b[1]]
    assert p.offsets == ((offset,) if offset else ())
    want = ["y" if "y" in response and response != "my.y" else response]
    if response == "np.log(y)":
        want = ["y"]
    for _, cols in fixed:
        want += cols
    if offset:
        want.append("t")
    for b in bars:
        want += b[2]
    for b in bars:
        want += b[3]
    assert set(p.variables()) == set(want)
    assert len(p.variables()) == len(set(p.variables()))
