"""docs/glmm.md: every python code block runs, in order, in one namespace."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "glmm.md"


def test_glmm_guide_code_blocks_run(capsys):
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
    assert len(blocks) >= 8
    ns: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for code in blocks:
            exec(compile(code, str(DOC), "exec"), ns)
    out = capsys.readouterr().out
    # the outputs shown in the guide's comments are the ones printed
    assert "[0.3082 0.0484]" in out
    assert "sd_(Intercept)|herd  0.346   1.100" in out
    assert "['x'] inf" in out
