"""The README's Python example runs as written and prints what its comments say."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).parents[1] / "README.md"


def test_readme_python_example_runs_and_prints_what_its_comments_say(capsys):
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    for block in blocks:
        exec(compile(block, str(README), "exec"), {})
    lines = capsys.readouterr().out.splitlines()
    measurement, eigenvalues, fisher, groups, lipschitz, lm_sharpness, lm_wrt = lines
    assert measurement.startswith("Measurement(sharpness=4.83")
    assert re.fullmatch(r"\[4\.83\d* +3\.59\d* +2\.93\d*\]", eigenvalues)
    assert float(fisher) > 0
    assert groups == "['fc1', 'norm1', 'fc2', 'norm2', 'fc3']"
    bound, status = lipschitz.split()
    assert float(bound) > 0 and status == "local"
    assert float(lm_sharpness) > 0
    assert lm_wrt == "output of module 'transformer.wte'"
