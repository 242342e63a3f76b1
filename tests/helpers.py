"""Small hand-built models and data shared by tests (no normscope builders involved)."""

from __future__ import annotations

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
