"""Parsing lme4 formulas: outputs for each syntax, expansions, variables, caret positions."""

from __future__ import annotations

import pytest

from multilevel.exceptions import FormulaError
from multilevel.formula import parse


def terms(formula):
    return [(t.expr, t.group, t.group_factors, t.correlated) for t in parse(formula).random]


def test_simple_intercept():
    p = parse("Reaction ~ Days + (1 | Subject)")
    assert p.response == "Reaction"
    assert p.fixed == "Days"
    assert terms("Reaction ~ Days + (1 | Subject)") == [("1", "Subject", ("Subject",), True)]
    assert p.random[0].text == "(1 | Subject)"


@pytest.mark.parametrize(
    "lhs",
    ["x", "1 + x", "0 + x", "x - 1"],
)
def test_bar_left_sides_kept_verbatim(lhs):
    p = parse(f"y ~ x + ({lhs} | g)")
    assert [t.expr for t in p.random] == [lhs]
    assert p.random[0].correlated


def test_whitespace_normalised():
    p = parse("y~x+(  1+x|g )")
    assert p.fixed == "x"
    assert terms("y~x+(  1+x|g )") == [("1+x", "g", ("g",), True)]


def test_double_bar_expands_like_lme4():
    assert terms("y ~ x + (1 + x || g)") == [
        ("1", "g", ("g",), False),
        ("0 + x", "g", ("g",), False),
    ]
    # implicit intercept, as lme4's expandDoubleVerts
    assert terms("y ~ (x || g)") == [("1", "g", ("g",), False), ("0 + x", "g", ("g",), False)]
    # no intercept -> no (1 | g)
    assert terms("y ~ (0 + x || g)") == [("0 + x", "g", ("g",), False)]
    # interactions give one term per formula term
    assert [t[0] for t in terms("y ~ (x * z || g)")] == ["1", "0 + x", "0 + z", "0 + x:z"]


def test_nesting_slash_like_lme4():
    assert terms("strength ~ 1 + (1 | batch/cask)") == [
        ("1", "cask:batch", ("cask", "batch"), True),
        ("1", "batch", ("batch",), True),
    ]
    assert [t[1:3] for t in terms("y ~ (1 | a/b/c)")] == [
        ("c:(b:a)", ("c", "b", "a")),
        ("b:a", ("b", "a")),
        ("a", ("a",)),
    ]
    assert [t[1] for t in terms("y ~ (1 | a/(b:c))")] == ["(b:c):a", "a"]


def test_interaction_group():
    assert terms("y ~ (1 | a:b)") == [("1", "a:b", ("a", "b"), True)]
    assert terms("y ~ (1 | a : b)") == [("1", "a:b", ("a", "b"), True)]


def test_many_crossed_terms():
    p = parse("y ~ x + (1 | a) + (1 | b) + (x | c) + (1 | d)")
    assert [t.group for t in p.random] == ["a", "b", "c", "d"]
    assert p.fixed == "x"


@pytest.mark.parametrize(
    "formula, fixed",
    [
        ("y ~ a*b + (1|g)", "a*b"),
        ("y ~ a:b + (1|g)", "a:b"),
        ("y ~ C(x) + np.log(z) + (1|g)", "C(x) + np.log(z)"),
        ("y ~ 0 + x + (1|g)", "0 + x"),
        ("y ~ x - 1 + (1|g)", "x - 1"),
        ("y ~ I(x**2) + (1|g)", "I(x**2)"),
        ("y ~ (1|g)", "1"),
        ("y ~ 0 + (1|g)", "0"),
        ("y ~ (1|g) + x", "x"),
        ("y ~ (a + b):c + (1|g)", "(a + b):c"),
    ],
)
def test_fixed_part(formula, fixed):
    assert parse(formula).fixed == fixed


def test_no_bars():
    p = parse("np.log(y) ~ x + C(f)")
    assert p.random == [] and p.response == "np.log(y)" and p.fixed == "x + C(f)"


def test_variables_use_formulaic_names():
    p = parse("np.log(y) ~ I(x**2) + C(f) + (0 + z | g:h) + (1 | k/m)")
    assert p.variables() == ["y", "x", "f", "z", "g", "h", "m", "k"]
    assert p.response_variables() == ["y"]
    assert p.fixed_variables() == ["x", "f"]
    assert p.random_variables() == ["z"]
    assert p.group_variables() == ["g", "h", "m", "k"]


def test_variables_skip_function_names():
    assert parse("cbind(s, n - s) ~ p + (1 | herd)").variables() == ["s", "n", "p", "herd"]


def caret(exc: pytest.ExceptionInfo) -> int:
    last = str(exc.value).splitlines()[-1]
    return len(last) - len(last.lstrip()) - 2  # two spaces of indentation


@pytest.mark.parametrize(
    "formula, position, words",
    [
        ("y ~ x + (1 | g", 8, "unbalanced"),
        ("y ~ x + (1 | g))", 15, "unbalanced"),
        ("y x + z", 7, "~"),
        ("~ x", 0, "left-hand"),
        ("y ~   ", 6, "right-hand"),
        ("y ~ x + ( | g)", 10, "left of '|'"),
        ("y ~ x + (1 | )", 13, "right of '|'"),
        ("y ~ log(1 | g)", 10, "function call"),
        ("y ~ x + 1 | g", 10, "parentheses"),
        ("y ~ x $ z", 6, "unexpected character"),
        ("y ~ x + + z", 8, "empty term"),
        ("y ~ x ~ z", 6, "more than one"),
        ("y ~ (1 | a/)", 11, "grouping"),
        ("y ~ (1 | a | b)", 11, "more than one '|'"),
        ("y ~ (1 | log(g))", 9, "column name"),
        ("y ~ x +* z", 7, "fixed part"),
        ("y ~ x + z** + (1 | g)", 9, "fixed part"),
    ],
)
def test_error_caret(formula, position, words):
    with pytest.raises(FormulaError) as exc:
        parse(formula)
    assert exc.value.position == position
    assert caret(exc) == position
    assert words in exc.value.message
    assert formula in str(exc.value)


def test_error_is_valueerror():
    with pytest.raises(ValueError):
        parse("y ~ (1 | g")


def test_not_a_string():
    with pytest.raises(FormulaError):
        parse(None)  # type: ignore[arg-type]


PLAIN = ["x1 + x2", "1 + x", "0 + x + x", " x ", "np", "C + I", "x1+1+x2", "_a + b_2", "y"]


@pytest.mark.parametrize("expr", PLAIN)
def test_plain_sums_read_without_formulaic_as_formulaic_reads_them(expr, monkeypatch):
    from multilevel import formula

    assert formula._plain_names(expr) is not None
    ours = [formula._expr_variables_uncached(expr, r) for r in (False, True)]
    monkeypatch.setattr(formula, "_plain_names", lambda e: None)
    assert ours == [formula._expr_variables_uncached(expr, r) for r in (False, True)]


def test_plain_formulas_parse_as_through_formulaic(monkeypatch):
    from multilevel import formula

    texts = ["y ~ x1 + x2 + x3 + (1 + x1 | g)", "y ~ 0 + x + (0 + x | g) + (1 | h)", "y ~ 1"]
    ours = [parse(t) for t in texts]
    monkeypatch.setattr(formula, "_plain_names", lambda e: None)
    formula._parse_cached.cache_clear()
    try:
        assert [parse(t) for t in texts] == ours
    finally:
        formula._parse_cached.cache_clear()
