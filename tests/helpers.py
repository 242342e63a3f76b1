"""Small hand-built models and data shared by tests (no normscope builders involved),
and the installed console script run as a user runs it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch
from torch import nn


def bn_mlp(dtype: torch.dtype = torch.float32, seed: int = 0, d_in: int = 6, classes: int = 3):
    """Linear-BatchNorm-ReLU-Linear-LayerNorm-Tanh-Linear: both norm families, tiny."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Linear(d_in, 8),
        nn.BatchNorm1d(8),
        nn.ReLU(),
        nn.Linear(8, 7),
        nn.LayerNorm(7),
        nn.Tanh(),
        nn.Linear(7, classes),
    ).to(dtype)
    # Non-trivial running statistics, so eval mode differs from train mode.
    with torch.no_grad():
        model[1].running_mean.uniform_(-0.5, 0.5)
        model[1].running_var.uniform_(0.5, 2.0)
    return model


def classification_data(n: int = 24, d_in: int = 6, classes: int = 3, seed: int = 1, dtype=None):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=gen, dtype=dtype or torch.float32)
    y = torch.randint(0, classes, (n,), generator=gen)
    return x, y


NORMSCOPE = Path(sys.executable).with_name("normscope")
"""The console script the package installs beside this interpreter."""


def run_script(*args: str, cwd: Path | None = None, timeout: float = 900):
    """``normscope ARGS`` as a user runs it: the installed console script, in a fresh
    process, stdout and stderr redirected to pipes (not a terminal), 80 columns wide.
    Returns the ``subprocess.CompletedProcess``."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TERM")}
    env["COLUMNS"] = "80"
    return subprocess.run(
        [str(NORMSCOPE), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def wider_than(text: str, columns: int = 80) -> list[str]:
    """The lines of ``text`` longer than ``columns`` characters."""
    return [line for line in text.splitlines() if len(line) > columns]
