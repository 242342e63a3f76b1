"""Gaussian inputs with random targets: data with no structure to learn."""

from __future__ import annotations

import torch

from normscope.data.checks import TASKS, choice, positive_float, positive_int
from normscope.data.dataset import Dataset
from normscope.data.seeding import SPLIT_STREAMS, generator


def gaussian(
    split: str,
    *,
    seed: int,
    n: int = 1000,
    dim: int = 100,
    task: str = "classification",
    num_classes: int = 10,
    output_dim: int = 1,
    input_scale: float = 1.0,
) -> Dataset:
    """``n`` inputs x_i ~ N(0, input_scale² I_dim), independent of their targets.

    Classification labels are uniform on ``[0, num_classes)``; regression targets are
    N(0, I_output_dim). Train and test draw from independent streams of ``seed``. The
    default width 100 and scale 1 give unit-variance features, the setting of the
    mean-field analyses (karakida2019).
    """
    positive_int("n", n)
    positive_int("dim", dim)
    choice("task", task, TASKS)
    input_scale = positive_float("input_scale", input_scale)
    gen = generator(seed, SPLIT_STREAMS[split])
    x = input_scale * torch.randn(n, dim, generator=gen)
    if task == "classification":
        positive_int("num_classes", num_classes)
        y = torch.randint(num_classes, (n,), generator=gen)
        return Dataset(x, y, task="classification", num_classes=num_classes, name="gaussian")
    positive_int("output_dim", output_dim)
    y = torch.randn(n, output_dim, generator=gen)
    return Dataset(x, y, task="regression", name="gaussian")
