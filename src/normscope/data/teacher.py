"""Teacher-student data: Gaussian inputs labelled by a random tanh network."""

from __future__ import annotations

import itertools
import math

import torch

from normscope.data.checks import TASKS, choice, positive_float, positive_int
from normscope.data.dataset import Dataset
from normscope.data.seeding import SPLIT_STREAMS, generator

_TEACHER_STREAM = 0


def teacher_weights(
    dims: list[int], gen: torch.Generator
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Layer weights W_l ~ N(0, 1/fan_in) (LeCun scaling: O(1) pre-activations at every
    layer) and zero biases."""
    return [
        (torch.randn(d_out, d_in, generator=gen) * math.sqrt(1.0 / d_in), torch.zeros(d_out))
        for d_in, d_out in itertools.pairwise(dims)
    ]


def teacher_forward(
    x: torch.Tensor, layers: list[tuple[torch.Tensor, torch.Tensor]]
) -> torch.Tensor:
    """f(x) = W_L tanh(... tanh(W_1 x + b_1) ...) + b_L, linear read-out.

    tanh rather than ReLU because its zero-mean hidden units give every class a similar
    share of argmax labels; a random ReLU teacher's shared positive mean lets a few
    classes take most samples (3 to 1461 of 5000 per class, measured at width 100).
    """
    for w, b in layers[:-1]:
        x = torch.tanh(x @ w.T + b)
    w, b = layers[-1]
    return x @ w.T + b


def teacher(
    split: str,
    *,
    seed: int,
    n: int = 1000,
    dim: int = 100,
    task: str = "classification",
    num_classes: int = 10,
    output_dim: int = 1,
    input_scale: float = 1.0,
    width: int = 100,
    depth: int = 2,
) -> Dataset:
    """Inputs x_i ~ N(0, input_scale² I_dim) and targets from a fixed random teacher f.

    ``f`` is a tanh network with ``depth`` hidden layers of ``width`` units, drawn once
    per ``seed`` and shared by the train and test splits (whose inputs are independent).
    Classification: y_i = argmax f(x_i) over ``num_classes`` outputs. Regression:
    y_i = f(x_i) with ``output_dim`` outputs.
    """
    for key, value in (("n", n), ("dim", dim), ("width", width), ("depth", depth)):
        positive_int(key, value)
    choice("task", task, TASKS)
    input_scale = positive_float("input_scale", input_scale)
    out = positive_int(
        "num_classes" if task == "classification" else "output_dim",
        num_classes if task == "classification" else output_dim,
    )
    layers = teacher_weights([dim, *[width] * depth, out], generator(seed, _TEACHER_STREAM))
    x = input_scale * torch.randn(n, dim, generator=generator(seed, SPLIT_STREAMS[split]))
    f = teacher_forward(x, layers)
    if task == "classification":
        return Dataset(x, f.argmax(dim=1), task="classification", num_classes=out, name="teacher")
    return Dataset(x, f, task="regression", name="teacher")
