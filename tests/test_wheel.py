"""The wheel users without Rust install: abi3, manylinux, and it runs the README's command.

`make wheel` builds the release wheel into dist/ (maturin with zig, glibc 2.17). These tests
take the newest wheel of this version from dist/ when there is one; otherwise (as in CI, where
dist/ is empty) they build one with the `fast` profile, the same route with less optimisation
(about 5 minutes on 2 cores). The wheel is installed into a fresh virtual environment that
sees the system's packages (numpy, pandas, ... without downloads) but not cargo, and the
README's main command is run from it.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.wheel

ROOT = Path(__file__).resolve().parents[1]
VERSION = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
PATTERN = f"multilevel-{VERSION}-cp311-abi3-manylinux*_x86_64.whl"
# lme4: lmer(Reaction ~ Days + (Days | Subject), sleepstudy) has REML criterion 1743.628.
REML_LINE = "REML criterion at convergence: 1743.6"


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    """Run a command; on failure, fail the test with its output."""
    proc = subprocess.run(args, capture_output=True, text=True, **kwargs)
    if proc.returncode != 0:
        pytest.fail(f"{shlex.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    built = sorted((ROOT / "dist").glob(PATTERN), key=lambda p: p.stat().st_mtime)
    if built:
        return built[-1]
    out = tmp_path_factory.mktemp("wheel")
    build = [sys.executable, "-m", "maturin", "build", "--profile", "fast", "--zig"]
    _run([*build, "--compatibility", "manylinux2014", "--out", str(out)], cwd=ROOT, timeout=3600)
    (found,) = out.glob(PATTERN)
    return found


def test_wheel_is_abi3_manylinux_with_core_and_data(wheel):
    assert re.fullmatch(
        rf"multilevel-{re.escape(VERSION)}-cp311-abi3-manylinux.*_x86_64\.whl", wheel.name
    )
    names = zipfile.ZipFile(wheel).namelist()
    assert "multilevel/_core.abi3.so" in names
    assert "multilevel/py.typed" in names
    for data in ("sleepstudy.csv", "hsb.csv", "exam.csv", "insteval.csv.gz", "exam.json"):
        assert f"multilevel/datasets/{data}" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    report = _run([sys.executable, "-m", "auditwheel", "show", str(wheel)]).stdout
    tag = re.search(r'consistent with the following platform tag:\s*"([^"]+)"', report)
    assert tag, report
    assert tag.group(1) == "manylinux_2_17_x86_64", report


def _readme_command() -> str:
    """The README's main command: `multilevel fit ... --data sleepstudy`."""
    readme = (ROOT / "README.md").read_text()
    commands = re.findall(r'multilevel fit "[^"]+" --data \w+', readme)
    assert commands, "README.md shows no `multilevel fit` command"
    return commands[0]


def test_readme_command_from_the_wheel_without_cargo(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)])
    python = venv / "bin" / "python"
    # --no-index: the dependencies must come from the system's packages, nothing is downloaded.
    _run([str(python), "-m", "pip", "install", "--no-index", "--quiet", str(wheel)])

    keep = [p for p in os.environ.get("PATH", "").split(os.pathsep) if p]
    path = os.pathsep.join(
        [str(venv / "bin")] + [p for p in keep if not (Path(p) / "cargo").exists()]
    )
    assert shutil.which("cargo", path=path) is None
    assert shutil.which("rustc", path=path) is None
    env = {k: v for k, v in os.environ.items() if k not in {"PYTHONPATH", "VIRTUAL_ENV"}}
    env["PATH"] = path

    where = _run(
        [str(python), "-c", "import multilevel; print(multilevel.__file__)"],
        cwd=tmp_path,
        env=env,
    ).stdout.strip()
    assert Path(where).resolve().is_relative_to(venv.resolve()), where

    args = shlex.split(_readme_command())
    assert shutil.which(args[0], path=path) == str(venv / "bin" / "multilevel")
    out = _run(args, cwd=tmp_path, env=env, timeout=300).stdout
    assert REML_LINE in out, out
    assert re.search(r"\(Intercept\)\s+251\.405", out), out
    assert re.search(r"Days\s+10\.467", out), out
