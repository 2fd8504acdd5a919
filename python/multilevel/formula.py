"""lme4 formula syntax: split a mixed-model formula into its fixed part and its random terms.

``parse("Reaction ~ Days + (Days | Subject)")`` finds the bar terms ``(expr | group)`` with a
small tokenizer that tracks parentheses, quotes and character positions, expands them as lme4
does, and leaves everything else (the response, the fixed part, each bar's left side) to
formulaic, which builds the matrices in :mod:`multilevel.design`. A sum of plain names and 0
or 1 (``x1 + x2``, ``1 + x``) is read here, as formulaic reads it, without importing formulaic
(with what it imports, about 26 MB of the process: the large in-memory path counts them).

Expansions (lme4's ``findbars`` / ``expandDoubleVerts``):

- ``(1 + x || g)`` -> ``(1 | g) + (0 + x | g)``: one uncorrelated term per term of the left
  side, the intercept first when present; ``(x * z || g)`` gives ``1``, ``x``, ``z``, ``x:z``.
- ``(1 | a/b)`` -> ``(1 | b:a) + (1 | a)`` and ``(1 | a/b/c)`` -> ``(1 | c:(b:a)) + (1 | b:a)
  + (1 | a)``: the group names and the term order are those lme4 prints (``"cask:batch"`` for
  ``(1 | batch/cask)``), so results line up with lme4's output.

Errors are :class:`~multilevel.exceptions.FormulaError` with a caret under the offending
character.

>>> p = parse("Reaction ~ Days + (Days | Subject)")
>>> p.response, p.fixed, [t.text for t in p.random]
('Reaction', 'Days', ['(Days | Subject)'])
>>> [t.group for t in parse("y ~ 1 + (1 | batch/cask)").random]
['cask:batch', 'batch']
"""

from __future__ import annotations

import ast
import functools
import keyword
import re
import warnings
from dataclasses import dataclass, field

from multilevel.exceptions import FormulaError, FormulaWarning

__all__ = ["ParsedFormula", "RandomTermSpec", "expr_variables", "parse"]

_IDENT = re.compile(r"[A-Za-z_.][A-Za-z0-9_.]*|`[^`]+`")
# Modules a formula may call into (``np.log(x)``): never data columns.
NAMESPACES = frozenset({"np", "numpy", "math", "pd", "pandas", "scipy"})
_OFFSET_TERM = re.compile(r"offset\s*\((?P<expr>.*)\)", re.S)
# A sum of plain names and 0 or 1 (``x1 + x2``, ``1 + x``), which formulaic reads as one column
# per name: read here, without importing formulaic (26 MB of the process with what it imports).
_PLAIN_ITEM = r"(?:[A-Za-z_][A-Za-z0-9_]*|[01])"
_PLAIN_SUM = re.compile(rf"\s*{_PLAIN_ITEM}(?:\s*\+\s*{_PLAIN_ITEM})*\s*")


@functools.cache
def formula_functions() -> frozenset[str]:
    """Names formulas may call: formulaic's transforms, ours (multilevel.contextual) and R's
    offset(); also ``FORMULA_FUNCTIONS`` (formulaic is imported on first use)."""
    from formulaic.transforms import TRANSFORMS

    return frozenset({*TRANSFORMS, "cvar", "dvar", "offset"})


def __getattr__(name: str):
    if name == "FORMULA_FUNCTIONS":
        return formula_functions()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _plain_names(expr: str) -> list[str] | None:
    """The names of an expression that :data:`_PLAIN_SUM` matches, in order (0 and 1 left
    out); None for any other expression (formulaic reads it)."""
    if not _PLAIN_SUM.fullmatch(expr):
        return None
    names = [t.strip() for t in expr.split("+")]
    if any(keyword.iskeyword(n) for n in names):
        return None
    return [n for n in names if n not in ("0", "1")]


_R_NAME = re.compile(r"`[^`]*`|'[^']*'|\"[^\"]*\"|(?<![\w.])[A-Za-z_][\w]*(?:\.\w*)+")


def quote_r_names(text: str) -> str:
    """``text`` with R names that are not Python (a dotted name with a part starting with a
    digit, ``x.2.b``, or ending in a dot, ``x.``) in backticks, so formulaic reads them as
    names. Quoted strings and backticked names are left alone."""

    def fix(m: re.Match) -> str:
        tok = m.group(0)
        if tok[0] in "`'\"":
            return tok
        parts = tok.split(".")
        if any(not q or q[0].isdigit() for q in parts[1:]):
            return f"`{tok}`"
        return tok

    return _R_NAME.sub(fix, text)


@dataclass(frozen=True)
class RandomTermSpec:
    """One random-effects term ``(expr | group)`` after expansion.

    Attributes
    ----------
    expr : str
        Left side of the bar as formulaic reads it (``"1 + Days"``, ``"0 + x"``).
    group : str
        Grouping name as lme4 prints it (``"Subject"``, ``"cask:batch"``, ``"c:(b:a)"``).
    group_factors : tuple of str
        Columns forming the grouping factor, in the order of ``group`` (the first varies
        slowest in the level order, as R's ``a:b``).
    correlated : bool
        False for terms produced by ``||``.
    text : str
        The term as lme4 would print it, ``"(Days | Subject)"``.
    """

    expr: str
    group: str
    group_factors: tuple[str, ...]
    correlated: bool
    text: str


@dataclass
class ParsedFormula:
    """A parsed lme4 formula; see :func:`parse`."""

    formula: str
    response: str
    fixed: str
    random: list[RandomTermSpec] = field(default_factory=list)
    offsets: tuple[str, ...] = ()  # the expressions of ``offset(expr)`` terms, in order
    response_dropped: bool = False  # the response was also a term of the right side (R drops it)

    @property
    def has_random(self) -> bool:
        return bool(self.random)

    def response_variables(self) -> list[str]:
        """Data columns used by the response (``np.log(y)`` -> ``["y"]``)."""
        if not self.response:
            return []
        return expr_variables(self.response, response=True)

    def fixed_variables(self) -> list[str]:
        """Data columns used by the fixed part."""
        return expr_variables(self.fixed)

    def offset_variables(self) -> list[str]:
        """Data columns used by the ``offset(expr)`` terms."""
        out: list[str] = []
        for e in self.offsets:
            _extend(out, expr_variables(e, response=True))
        return out

    def random_variables(self) -> list[str]:
        """Data columns used by the left sides of the random terms (not the groups)."""
        out: list[str] = []
        for t in self.random:
            _extend(out, expr_variables(t.expr))
        return out

    def group_variables(self) -> list[str]:
        """Data columns forming the grouping factors."""
        out: list[str] = []
        for t in self.random:
            _extend(out, t.group_factors)
        return out

    def variables(self) -> list[str]:
        """Every data column the formula uses: response, fixed, random and grouping.

        >>> parse("np.log(y) ~ I(x**2) + C(f) + (0 + z | g:h)").variables()
        ['y', 'x', 'f', 'z', 'g', 'h']
        """
        out: list[str] = []
        for part in (
            self.response_variables(),
            self.fixed_variables(),
            self.offset_variables(),
            self.random_variables(),
            self.group_variables(),
        ):
            _extend(out, part)
        return out


def _extend(out: list[str], items) -> None:
    for item in items:
        if item not in out:
            out.append(item)


def expr_variables(expr: str, response: bool = False) -> list[str]:
    """Data columns used by a formulaic expression, ordered by first appearance in the text."""
    return list(_expr_variables_cached(expr, response))


@functools.lru_cache(maxsize=512)
def _expr_variables_cached(expr: str, response: bool) -> tuple[str, ...]:
    # formulaic's parser costs about a millisecond a call; formulas repeat, so keep the answer.
    return tuple(_expr_variables_uncached(expr, response))


def _expr_variables_uncached(expr: str, response: bool) -> list[str]:
    plain = _plain_names(expr)
    if plain is not None and not (response and (len(plain) != 1 or plain[0] in NAMESPACES)):
        names = plain  # formulaic's reading of a plain sum (a response: one name, not a module)
    else:
        names = _formulaic_variables(expr, response)

    def first(name: str) -> int:
        m = re.search(r"(?<![\w.])" + re.escape(name) + r"(?![\w.])", expr)
        return m.start() if m else len(expr)

    return sorted(dict.fromkeys(names), key=lambda n: (first(n), n))


def _formulaic_variables(expr: str, response: bool) -> list[str]:
    import formulaic

    text = "{" + expr + "}" if response else expr
    try:
        terms = list(formulaic.Formula(quote_r_names(text)))
    except Exception:
        terms = None
    names: list[str] = []
    if terms is None:  # not formula syntax: any identifier not called
        for m in _IDENT.finditer(expr):
            tok = m.group(0).strip("`")
            if not expr[m.end() :].lstrip().startswith("(") and tok.split(".")[0] not in NAMESPACES:
                _extend(names, [tok])
    else:
        for term in terms:
            for f in term.factors:
                kind = f.eval_method.name
                name = str(f.expr)
                if kind == "LOOKUP" and not ("." in name and name.split(".")[0] in NAMESPACES):
                    _extend(names, [name])  # np.pi is numpy's; a column np is a column
                elif kind == "PYTHON":
                    _extend(names, _python_variables(str(f.expr)))
        # a backticked name is a column, even `1` (which formulaic reads as the literal)
        _extend(names, [m.group(1) for m in re.finditer(r"`([^`]+)`", expr)])
    return names


def _python_variables(code: str) -> list[str]:
    """Data columns a Python expression of a formula reads: names and R-style dotted names
    (``my.x``) that are not called, not modules (``np``) and not formula constants given as
    arguments (``C(f, Treatment)``, ``contr.treatment``). formulaic's own list misses the
    argument of its stateful transforms (``scale(x)``, ``center(x)``) and splits ``my.x``."""
    from formulaic.utils.code import sanitize_variable_names

    functions = formula_functions()
    aliases: dict[str, str] = {}
    try:
        tree = ast.parse(sanitize_variable_names(code, {}, aliases), mode="eval")
    except SyntaxError:
        return []
    out: list[str] = []

    def visit(node: ast.AST, in_call: bool) -> None:
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):  # a method of a column: x.clip(0)
                root = ast.unparse(node.func).split(".")[0]
                if root not in NAMESPACES and root not in functions:
                    _extend(out, [aliases.get(root, root)])
            for a in node.args:
                visit(a, True)
            for k in node.keywords:
                visit(k.value, True)
            return
        if isinstance(node, (ast.Name, ast.Attribute)):
            name = ast.unparse(node)
            root = name.split(".")[0]
            if root in NAMESPACES or (in_call and root in functions):
                return
            _extend(out, [aliases.get(name, name)])
            return
        for child in ast.iter_child_nodes(node):
            visit(child, in_call)

    visit(tree, False)
    return out


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------


def _scan(formula: str):
    """Yield (position, char, depth) for characters outside quotes; check parentheses."""
    depth = 0
    opens: list[int] = []
    quote: str | None = None
    quote_start = -1
    out = []
    for i, ch in enumerate(formula):
        if quote is not None:
            if ch == quote:
                quote = None
            continue
        if ch in "'\"`":
            quote, quote_start = ch, i
            continue
        if ch == "(":
            out.append((i, ch, depth))
            opens.append(i)
            depth += 1
            continue
        if ch == ")":
            if not opens:
                raise FormulaError("unbalanced parentheses: ')' without '('", formula, i)
            opens.pop()
            depth -= 1
            out.append((i, ch, depth))
            continue
        out.append((i, ch, depth))
    if quote is not None:
        raise FormulaError("unterminated quote", formula, quote_start)
    if opens:
        raise FormulaError("unbalanced parentheses: '(' is never closed", formula, opens[-1])
    return out


_ALLOWED = set("+-*/:^~|(),.[]{}=<>!%&@ \t\n\r'\"`_")


def _check_tokens(formula: str, chars) -> None:
    for i, ch, _ in chars:
        if not (ch.isalnum() or ch in _ALLOWED):
            raise FormulaError(f"unexpected character {ch!r} in formula", formula, i)


def _split_top(text: str, start: int, chars, sep: str, depth: int):
    """Split ``text`` (starting at absolute ``start``) at ``sep`` characters at ``depth``.

    Returns a list of (absolute_start, piece)."""
    pieces = []
    cur = start
    end = start + len(text)
    for i, ch, d in chars:
        if i < start or i >= end:
            continue
        if ch == sep and d == depth:
            pieces.append((cur, text[cur - start : i - start]))
            cur = i + 1
    pieces.append((cur, text[cur - start :]))
    return pieces


def _strip_span(abs_start: int, piece: str) -> tuple[int, str]:
    lead = len(piece) - len(piece.lstrip())
    return abs_start + lead, piece.strip()


def _compact(text: str) -> str:
    return re.sub(r"\s+", "", text)


def _normalise_expr(expr: str) -> str:
    return re.sub(r"\s+", " ", expr.strip())


def parse(formula: str) -> ParsedFormula:
    """Parse an lme4 formula into its response, fixed part and random-effects terms.

    Parameters
    ----------
    formula : str
        For example ``"Reaction ~ Days + (Days | Subject)"``.

    Returns
    -------
    ParsedFormula
        ``response`` (left-hand text), ``fixed`` (right-hand text without the bars, ``"1"``
        when only bars remain) and ``random``, a list of :class:`RandomTermSpec` after the
        expansion of ``||`` and of ``a/b``.

    Raises
    ------
    FormulaError
        With a caret under the offending character.

    Examples
    --------
    >>> p = parse("y ~ x + (1 + x || g)")
    >>> [(t.expr, t.group, t.correlated) for t in p.random]
    [('1', 'g', False), ('0 + x', 'g', False)]
    """
    if not isinstance(formula, str):
        raise FormulaError(f"formula must be a string, not {type(formula).__name__}")
    p = _parse_cached(formula)
    if p.response_dropped:
        warnings.warn(
            f"the response {p.response!r} appeared on the right-hand side and was dropped "
            "(as R's model.matrix)",
            FormulaWarning,
            stacklevel=4,
        )
    return ParsedFormula(
        p.formula, p.response, p.fixed, list(p.random), p.offsets, p.response_dropped
    )


@functools.lru_cache(maxsize=256)
def _parse_cached(formula: str) -> ParsedFormula:
    # Parsing (formulaic checks each summand) costs about half a millisecond; the result is a
    # pure function of the string and formulas repeat, so keep it. Errors are not cached.
    chars = _scan(formula)
    _check_tokens(formula, chars)

    tildes = [i for i, ch, d in chars if ch == "~"]
    if not tildes:
        raise FormulaError(
            "formula has no '~' (expected 'response ~ terms')", formula, len(formula)
        )
    top_tildes = [i for i, ch, d in chars if ch == "~" and d == 0]
    if not top_tildes:
        raise FormulaError("'~' must not be inside parentheses", formula, tildes[0])
    if len(tildes) > 1:
        raise FormulaError("formula has more than one '~'", formula, tildes[1])
    t = tildes[0]
    response = formula[:t].strip()
    if not response:
        raise FormulaError("empty left-hand side: a response is needed before '~'", formula, t)
    rhs_start = t + 1
    rhs = formula[rhs_start:]
    if not rhs.strip():
        raise FormulaError("empty right-hand side after '~'", formula, len(formula))
    for i, ch, _ in chars:
        if ch == "|" and i < t:
            raise FormulaError("'|' is not allowed in the response", formula, i)

    fixed_parts: list[str] = []
    offsets: list[str] = []
    response_dropped = False
    random: list[RandomTermSpec] = []
    rhs_chars = [c for c in chars if c[0] >= rhs_start]
    for piece_start, piece in _split_top(rhs, rhs_start, rhs_chars, "+", 0):
        pstart, ptext = _strip_span(piece_start, piece)
        if not ptext:
            pos = min(len(formula), pstart)
            raise FormulaError("empty term: '+' with nothing on one side", formula, pos)
        pend = pstart + len(ptext)
        inner = [c for c in chars if pstart <= c[0] < pend]
        bars = [c for c in inner if c[1] == "|"]
        if not bars:
            off = _OFFSET_TERM.fullmatch(ptext)
            if off and _matching_close(inner, pstart + ptext.index("(")) == pend - 1:
                if not off.group("expr").strip():
                    raise FormulaError("offset() needs an expression", formula, pstart)
                e = off.group("expr")
                _check_expr(formula, "{" + e + "}", pstart + off.start("expr"), "offset()")
                offsets.append(_normalise_expr(off.group("expr")))
                continue
            _check_fixed_piece(formula, ptext, pstart)
            if _compact(ptext) == _compact(response):
                response_dropped = True
                continue
            fixed_parts.append(ptext)
            continue
        # A bar term must be exactly '( lhs | rhs )' at the top level of the sum.
        close = _matching_close(inner, pstart)
        if ptext[0] != "(" or close != pend - 1:
            first_bar = bars[0]
            if first_bar[2] == 0:
                raise FormulaError(
                    "random-effects term must be enclosed in parentheses: '(expr | group)'",
                    formula,
                    first_bar[0],
                )
            raise FormulaError(
                "random-effects term '(expr | group)' must be a term of the sum, not nested "
                "inside a function call or an expression",
                formula,
                first_bar[0],
            )
        random.extend(_parse_bar(formula, inner, pstart, pend))

    fixed = " + ".join(_normalise_expr(p) for p in fixed_parts) if fixed_parts else "1"
    return ParsedFormula(
        formula=formula,
        response=_normalise_expr(response),
        fixed=fixed,
        random=random,
        offsets=tuple(offsets),
        response_dropped=response_dropped,
    )


def _check_fixed_piece(formula: str, text: str, start: int) -> None:
    """Let formulaic parse one summand of the fixed part; point at its complaint."""
    if _plain_names(text) is not None:
        return
    import formulaic

    try:
        formulaic.Formula(quote_r_names(text))
    except Exception as exc:
        msg = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
        lines = msg.splitlines()
        offset = 0
        for line in lines[1:]:
            if "\u29db" in line:
                offset = line.index("\u29db")
                break
        raise FormulaError(
            f"cannot read the fixed part: {lines[0] if lines else exc}", formula, start + offset
        ) from None


def _matching_close(inner, pstart: int) -> int:
    for i, ch, d in inner:
        if i > pstart and ch == ")" and d == 0:
            return i
    return -1


def _parse_bar(formula: str, inner, pstart: int, pend: int) -> list[RandomTermSpec]:
    """Parse the bar term spanning formula[pstart:pend] (with its parentheses)."""
    body_start = pstart + 1
    body_end = pend - 1
    bars = [c for c in inner if c[1] == "|" and c[2] == 1]
    nested_bars = [c for c in inner if c[1] == "|" and c[2] > 1]
    if not bars:
        raise FormulaError(
            "random-effects term '(expr | group)' must not be nested inside parentheses or "
            "a function call",
            formula,
            nested_bars[0][0],
        )
    b = bars[0][0]
    double = len(bars) >= 2 and bars[1][0] == b + 1
    if (double and len(bars) > 2) or (not double and len(bars) > 1):
        extra = bars[2] if double else bars[1]
        raise FormulaError("more than one '|' in a random-effects term", formula, extra[0])
    if nested_bars:
        raise FormulaError(
            "'|' inside the sides of a random-effects term", formula, nested_bars[0][0]
        )
    bar_end = b + (2 if double else 1)
    lhs = formula[body_start:b]
    rhs = formula[bar_end:body_end]
    if not lhs.strip():
        raise FormulaError(
            "nothing on the left of '|' (use '1 | g' for a random intercept)", formula, b
        )
    if not rhs.strip():
        raise FormulaError(
            "nothing on the right of '|': a grouping factor is needed", formula, body_end
        )
    groups = _parse_groups(formula, inner, bar_end, body_end)
    expr = _normalise_expr(lhs)
    _check_expr(formula, expr, body_start + (len(lhs) - len(lhs.lstrip())))

    out: list[RandomTermSpec] = []
    for group, factors in groups:
        if not double:
            out.append(RandomTermSpec(expr, group, factors, True, f"({expr} | {group})"))
            continue
        import formulaic

        terms = [_term_text(x) for x in formulaic.Formula(quote_r_names(expr))]
        if "1" in terms:
            out.append(RandomTermSpec("1", group, factors, False, f"(1 | {group})"))
        for term in terms:
            if term in ("1", "0"):
                continue
            e = f"0 + {term}"
            out.append(RandomTermSpec(e, group, factors, False, f"({e} | {group})"))
    return out


def _term_text(term) -> str:
    """A formulaic term as formula text: names that are not identifiers in backticks."""
    out = []
    for f in term.factors:
        e = str(f.expr)
        if f.eval_method.name == "LOOKUP" and not re.fullmatch(r"[A-Za-z_.][\w.]*", e):
            e = f"`{e}`"
        out.append(e)
    return ":".join(out) if out else str(term)


def _check_expr(formula: str, expr: str, pos: int, what: str = "the left side of '|'") -> None:
    if _plain_names(expr) is not None:
        return
    import formulaic

    try:
        formulaic.Formula(quote_r_names(expr))
    except Exception as exc:
        raise FormulaError(f"cannot read {what}: {exc}", formula, pos) from None


def _parse_groups(formula: str, inner, start: int, end: int):
    """Grouping side: ``g``, ``a:b``, ``a/b/c``, ``a/(b:c)``.

    Returns (group name as lme4 prints it, factor columns) per expanded term, in lme4's order.
    """
    text = formula[start:end]
    depth0 = 1
    comps = []
    for cstart, ctext in _split_top(text, start, inner, "/", depth0):
        s, c = _strip_span(cstart, ctext)
        if not c:
            raise FormulaError("empty grouping factor around '/'", formula, s)
        factors = []
        for m in re.finditer(r"`[^`]+`|[^:()\s]+", c):
            tok = m.group(0)
            if tok.startswith("`"):
                factors.append(tok[1:-1])
                continue
            if not re.fullmatch(r"[A-Za-z_.][A-Za-z0-9_.]*", tok):
                raise FormulaError(
                    f"grouping factor {tok!r} must be a column name (or 'a:b', 'a/b')",
                    formula,
                    s + m.start(),
                )
            factors.append(tok)
        if not factors:
            raise FormulaError("empty grouping factor", formula, s)
        shape = re.sub(r"`[^`]+`|[^:()\s]+", "F", _compact(c))
        while True:
            reduced = re.sub(r"\(F(?::F)*\)", "F", shape)
            if reduced == shape:
                break
            shape = reduced
        if not re.fullmatch(r"F(?::F)*", shape):
            raise FormulaError("grouping factor must be a column name, 'a:b' or 'a/b'", formula, s)
        comps.append((_compact(c), tuple(factors)))

    if len(comps) == 1:
        return [comps[0]]
    # lme4's expandSlash: a/b/c -> c:(b:a), b:a, a
    out = []
    name, factors = comps[0]
    chain = [(name, factors)]
    for cname, cfactors in comps[1:]:
        prev_name, prev_factors = chain[-1]
        compound = ":" in prev_name and not (prev_name.startswith("(") and prev_name.endswith(")"))
        right = f"({prev_name})" if compound else prev_name
        chain.append((f"{cname}:{right}", cfactors + prev_factors))
    for name, factors in reversed(chain):
        out.append((name, factors))
    return out
