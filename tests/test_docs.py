"""The guide builds with `mkdocs build --strict`, and every python block of every page runs.

The blocks are run by the site's own hook (docs/hooks.py) while it builds: in page order, one
namespace per page, a failing block failing the build. The hook records what it ran; this test
reads the pages itself and checks that every python block was run and every figure made and
linked, so a page whose code stopped running, or a block the hook skipped, fails here.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def _hooks():
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


hooks = _hooks()


def _pages() -> list[str]:
    return sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md"))


def _nav_pages(nav) -> list[str]:
    out = []
    for item in nav:
        value = next(iter(item.values())) if isinstance(item, dict) else item
        out += _nav_pages(value) if isinstance(value, list) else [value]
    return out


def _python_blocks(page: str) -> int:
    blocks = hooks.code_blocks((DOCS / page).read_text(encoding="utf-8"))
    return sum(1 for _, _, lang, _ in blocks if lang == "python")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    record = out / "record.json"
    env = dict(os.environ, MULTILEVEL_DOCS_RECORD=str(record), NO_MKDOCS_2_WARNING="1")
    args = [sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(out / "site")]
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{proc.stdout}\n{proc.stderr}"
    return out / "site", json.loads(record.read_text())


def test_every_page_is_in_the_nav():
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    missing = set(_pages()) - set(_nav_pages(config["nav"]))
    assert not missing, f"pages not in mkdocs.yml's nav: {sorted(missing)}"


def test_every_python_block_ran(site):
    _, record = site
    assert sorted(record) == _pages()
    for page in _pages():
        assert record[page]["blocks"] == _python_blocks(page), page
    # The analyses run code; the reference pages only describe it.
    for page in ("index.md", "hsb.md", "exam.md", "insteval.md", "plots.md"):
        assert record[page]["blocks"] >= 5, page


def test_every_figure_is_in_the_site_and_on_its_page(site):
    root, record = site
    for page, entry in record.items():
        folder = root if page == "index.md" else root / Path(page).with_suffix("")
        html = (folder / "index.html").read_text(encoding="utf-8")
        for figure in entry["figures"]:
            png = root / figure
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", figure
            assert f'src="../{figure}"' in html or f'src="{figure}"' in html, (page, figure)
    # One figure per gallery entry (the first block only sets up), and the analyses' plots.
    assert len(record["plots.md"]["figures"]) == _python_blocks("plots.md") - 1
    assert len(record["hsb.md"]["figures"]) >= 7
    assert len(record["exam.md"]["figures"]) >= 1
    assert len(record["insteval.md"]["figures"]) >= 2


def test_pages_show_what_their_code_printed(site):
    root, _ = site
    hsb = (root / "hsb" / "index.html").read_text(encoding="utf-8")
    # Raudenbush and Bryk's Table 4.5, as printed by rb.summary() on the page.
    for number in ("12.0960", "2.9388", "5.3329", "1.2265", "-1.6426"):
        assert number in hsb, number
    exam = (root / "exam" / "index.html").read_text(encoding="utf-8")
    assert "Mixed-effects ML regression" in exam  # summary(style="stata")
    assert ".5567304" in exam and "-.1150489" in exam
    api = (root / "api" / "index.html").read_text(encoding="utf-8")
    assert 'id="multilevel.models.lmm.lmer"' in api
    assert 'id="multilevel.results.lmer.LmerFit.coef_table"' in api


def test_a_failing_block_names_its_page_and_line():
    page = "# t\n\n```python\nx = 1\n```\n\ntext\n\n```python\nx / 0\n```\n"
    with pytest.raises(hooks.DocsCodeError, match=r"t\.md: the python block at line 9"):
        hooks.execute_page(page, "t.md")


def test_output_values_and_warnings_are_inserted():
    page = "```python\nimport warnings\nprint('a')\nwarnings.warn('careful')\n1 + 1\n```\n"
    text, figures, ran = hooks.execute_page(page, "t.md")
    assert ran == 1 and figures == []
    assert "``` { .text .output }\na\n2\nUserWarning: careful\n```" in text
    assert [b[2] for b in hooks.code_blocks(text)] == ["python", "text"]
