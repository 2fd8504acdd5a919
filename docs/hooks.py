"""mkdocs hook: run the Python code of every page and show what it printed and drew.

Every fenced block whose language is ``python`` is executed when the site is built, in page
order, in one namespace per page (so a page reads as one script). After each block the hook
inserts what the block printed (and the value of its last line when that is an expression, as
a notebook shows it; pandas tables up to 120 characters wide), any warnings it raised, and
every matplotlib figure it left open, saved as a PNG next to the page
(``figures/<page>-<n>.png``) and closed. A block that raises stops
the build with the page, the block's first line and the traceback: the guide cannot show code
that does not run. Code that is only illustrative goes in a ``text`` block.

When the environment variable ``MULTILEVEL_DOCS_RECORD`` names a file, the hook writes there
(JSON) how many blocks each page ran and which figures it made; ``tests/test_docs.py`` checks
that against its own reading of the pages.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import os
import re
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # draw without a display, before pyplot is imported anywhere
import matplotlib.pyplot as plt
import pandas as pd
from mkdocs.structure.files import File

FENCE = re.compile(r"^(?P<indent>[ \t]*)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
DPI = 80
# Tables as wide as the page's code boxes, with every column (pandas elides them at 80).
PANDAS_DISPLAY = ("display.width", 120, "display.max_columns", 30)
_record: dict[str, Any] = {}


class DocsCodeError(RuntimeError):
    """A code block of a page failed when the site was built."""


def code_blocks(markdown: str) -> list[tuple[int, int, str, str]]:
    """Fenced blocks of a page: (first line, line after the block, language, code).

    Line numbers are 0-based indices into ``markdown.splitlines()``; the code has the
    block's indentation removed. Used by the hook and by ``tests/test_docs.py``.
    """
    lines = markdown.splitlines()
    blocks = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        indent, fence = m["indent"], m["fence"]
        info = m["info"].strip()
        words = info.strip("{} ").split()
        lang = words[0].lstrip(".") if words else ""
        j = i + 1
        while j < len(lines) and not (
            lines[j].strip().startswith(fence) and set(lines[j].strip()) == {fence[0]}
        ):
            j += 1
        body = [ln[len(indent) :] if ln.startswith(indent) else ln for ln in lines[i + 1 : j]]
        blocks.append((i, j + 1, lang, "\n".join(body)))
        i = j + 1
    return blocks


def _is_drawing(value: Any) -> bool:
    """Whether a value is a matplotlib object (shown as its figure, not as its repr)."""
    return type(value).__module__.startswith("matplotlib")


def run_block(code: str, namespace: dict) -> str:
    """Execute one block in ``namespace``; return what it printed and warned."""
    tree = ast.parse(code)
    last = tree.body.pop() if tree.body and isinstance(tree.body[-1], ast.Expr) else None
    out = io.StringIO()
    with (
        pd.option_context(*PANDAS_DISPLAY),
        contextlib.redirect_stdout(out),
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        exec(compile(tree, "<docs>", "exec"), namespace)
        if last is not None:
            value = eval(compile(ast.Expression(last.value), "<docs>", "eval"), namespace)
            if value is not None and not _is_drawing(value):
                print(repr(value))
    text = out.getvalue()
    for w in caught:
        if issubclass(w.category, DeprecationWarning | PendingDeprecationWarning):
            continue
        text += f"{w.category.__name__}: {w.message}\n"
    return text.rstrip("\n")


def _save_figures(stem: str, first: int) -> list[tuple[str, bytes]]:
    """Every open figure as PNG bytes, named ``<stem>-<n>.png`` from ``first``; closes them."""
    saved = []
    for k, num in enumerate(plt.get_fignums()):
        fig = plt.figure(num)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=DPI, bbox_inches="tight")
        saved.append((f"{stem}-{first + k}.png", buf.getvalue()))
    plt.close("all")
    return saved


def _fence_for(text: str) -> str:
    """A backtick fence longer than any run of backticks in ``text``."""
    longest = max((len(r) for r in re.findall(r"`+", text)), default=0)
    return "`" * max(3, longest + 1)


def execute_page(markdown: str, src_uri: str) -> tuple[str, list[tuple[str, bytes]], int]:
    """Run a page's python blocks; return the new Markdown, its figures and the block count."""
    lines = markdown.splitlines()
    stem = Path(src_uri).with_suffix("").as_posix().replace("/", "-")
    folder = Path(src_uri).parent
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    figures: list[tuple[str, bytes]] = []
    pieces: list[str] = []
    done = 0
    ran = 0
    plt.close("all")
    for start, stop, lang, code in code_blocks(markdown):
        pieces += lines[done:stop]
        done = stop
        if lang != "python":
            continue
        indent = FENCE.match(lines[start])["indent"]
        try:
            text = run_block(code, namespace)
        except Exception as exc:
            detail = traceback.format_exc()
            raise DocsCodeError(
                f"{src_uri}: the python block at line {start + 1} failed:\n{detail}"
            ) from exc
        ran += 1
        if text:
            fence = _fence_for(text)
            pieces += ["", f"{indent}{fence} {{ .text .output }}"]
            pieces += [f"{indent}{ln}" if ln else "" for ln in text.splitlines()]
            pieces += [f"{indent}{fence}"]
        for name, png in _save_figures(stem, len(figures) + 1):
            figures.append((name, png))
            pieces += ["", f"{indent}![Figure {len(figures)}](figures/{name})"]
    pieces += lines[done:]
    return "\n".join(pieces) + "\n", [(str(folder / "figures" / n), b) for n, b in figures], ran


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """mkdocs event: execute the page and register its figures as files of the site."""
    t0 = time.perf_counter()
    src_uri = page.file.src_uri
    new, figures, ran = execute_page(markdown, src_uri)
    for path, png in figures:
        uri = Path(path).as_posix().removeprefix("./")
        files.append(File.generated(config, uri, content=png))
    _record[src_uri] = {
        "blocks": ran,
        "figures": [Path(p).as_posix().removeprefix("./") for p, _ in figures],
        "seconds": round(time.perf_counter() - t0, 2),
    }
    return new


def on_post_build(config: Any) -> None:
    """mkdocs event: write the record of what ran, when asked to."""
    target = os.environ.get("MULTILEVEL_DOCS_RECORD")
    if target:
        Path(target).write_text(json.dumps(_record, indent=1, sort_keys=True))
