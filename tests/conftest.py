"""Shared fixtures: the golden references of tests/reference/ and the numerical core.

The lmm tests run against the compiled core ``multilevel._core``. Before it is built they are
skipped, unless ``MULTILEVEL_TEST_DENSE=1`` is set: then ``tests/_dense_reference.py``'s
``DenseLmmProblem`` stands in for ``_core.LmmProblem`` (development only).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
REFERENCE_DIR = ROOT / "tests" / "reference"
LMM_REFERENCE_DIR = REFERENCE_DIR / "lmm"


def _core_available() -> bool:
    try:
        import multilevel._core  # noqa: F401
    except ImportError:
        return False
    return True


HAVE_CORE = _core_available()
USE_DENSE = os.environ.get("MULTILEVEL_TEST_DENSE") == "1"


def lmm_case_names() -> list[str]:
    """The single-fit lmm reference cases (every tests/reference/lmm/*.json but anova/predict)."""
    return sorted(
        p.stem
        for p in LMM_REFERENCE_DIR.glob("*.json")
        if not p.stem.startswith(("anova_", "predict_"))
    )


def load_reference(name: str, subdir: str = "lmm") -> dict:
    """One reference JSON (tests/reference/<subdir>/<name>.json) as a dict."""
    return json.loads((REFERENCE_DIR / subdir / f"{name}.json").read_text(encoding="utf-8"))


def load_reference_data(ref: dict):
    """The data a reference was fitted on: a bundled dataset or a data file with its sidecar."""
    from multilevel import datasets

    if ref.get("data_file"):
        return datasets._read_with_sidecar(ROOT / ref["data_file"])
    return datasets.load(ref["dataset"])


@pytest.fixture
def reference():
    """Loader: ``reference(name)`` -> dict."""
    return load_reference


@pytest.fixture
def lmm_core(monkeypatch):
    """Make sure lmer() has a numerical core: the Rust one, or the dense stand-in if asked."""
    if USE_DENSE:
        from _dense_reference import DenseLmmProblem
        from multilevel.models import lmm

        monkeypatch.setattr(lmm, "_problem_class", lambda: DenseLmmProblem)
        return DenseLmmProblem
    if not HAVE_CORE:
        pytest.skip(
            "multilevel._core is not built (set MULTILEVEL_TEST_DENSE=1 to use the dense stand-in)"
        )
    from multilevel import _core

    return _core.LmmProblem


@pytest.fixture(scope="session")
def sleepstudy():
    from multilevel import datasets

    return datasets.load("sleepstudy")
