import textwrap
from pathlib import Path

import pytest

# A real, tiny experiment: MLP with batch norm on Gaussian data, the loss measure.
TINY = """
name = "tiny"
description = "tiny sweep"
[subject]
net = {arch = "mlp", width = 6, depth = 2, norm = "batch"}
data = {name = "gaussian", n = 24, dim = 5, num_classes = 3}
loss = "mse"
[[measure]]
name = "loss"
[sweep]
"subject.net.width" = [4, 8]
seeds = [0, 1]
"""


@pytest.fixture
def write_spec(tmp_path: Path):
    def write(text: str = TINY, name: str = "spec.toml") -> Path:
        path = tmp_path / name
        path.write_text(textwrap.dedent(text))
        return path

    return write
