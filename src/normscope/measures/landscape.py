"""Loss landscape slices: ``L(theta + a d1)`` and ``L(theta + a d1 + b d2)`` on a grid.

Directions are either filter-normalized random directions (li2018: Li, Xu, Taylor,
Studer, Goldstein, *Visualizing the Loss Landscape of Neural Nets*, NeurIPS 2018) or the
top Hessian eigenvectors. Filter normalization makes slices of differently scaled
networks comparable, which matters for normalized nets whose weights can be rescaled
without changing the function.
"""

from __future__ import annotations

import numpy as np
import torch

from normscope.curvature import Hessian
from normscope.linalg import lanczos
from normscope.measurement import CostMeter, Measurement
from normscope.measures.adaptive import losses_at, resolution_notes
from normscope.measures.constraints import POSITIVE, SEED, Choice, Integer
from normscope.measures.registry import register
from normscope.subject import Subject

DIRECTIONS = ("random", "hessian")


def filter_normalized_direction(subject: Subject, gen: torch.Generator) -> torch.Tensor:
    """A Gaussian direction rescaled filter by filter to the norms of the weights (li2018).

    For every parameter tensor with at least two dimensions, each filter (slice along the
    first, output dimension: a row of a linear layer, an output channel of a convolution)
    of the direction ``d`` is scaled to ``||d_f|| = ||theta_f||``. One-dimensional tensors
    (biases, normalization gains and shifts) get a zero direction, as li2018 do for
    biases and batch-norm parameters, so the slice moves only the weights.
    """
    parts = {}
    for name, w in subject.layout.unflatten(subject.theta).items():
        if w.ndim < 2:
            parts[name] = torch.zeros_like(w)
            continue
        d = torch.randn(w.shape, generator=gen, dtype=torch.float64).to(w)
        d_norm = d.flatten(1).norm(dim=1).clamp_min(torch.finfo(w.dtype).tiny)
        scale = w.flatten(1).norm(dim=1) / d_norm
        parts[name] = d * scale.reshape(-1, *([1] * (w.ndim - 1)))
    return subject.layout.flatten(parts)


def _directions(subject: Subject, kind: str, dims: int, seed: int, meter: CostMeter):
    if kind == "random":
        gen = torch.Generator().manual_seed(seed)
        return torch.stack([filter_normalized_direction(subject, gen) for _ in range(dims)]), {}
    op = Hessian(subject, meter)
    top = lanczos(op.matvec, op.dim, k=dims, tol=1e-4, seed=seed, dtype=op.dtype, device=op.device)
    order = torch.argsort(top.eigenvalues, descending=True)
    eigenvalues = top.eigenvalues[order].detach().cpu().double().numpy()
    return top.eigenvectors[order], {"eigenvalues": eigenvalues}


@register(
    "landscape",
    family="landscape",
    paper="li2018 (filter-normalized loss landscapes)",
    quick={"num_points": 5},
    options={
        "directions": Choice(DIRECTIONS),
        "dims": Integer(low=1, high=2),
        "span": POSITIVE,
        "num_points": Integer(low=2),
        "seed": SEED,
    },
)
def landscape(
    subject: Subject,
    *,
    directions: str = "random",
    dims: int = 1,
    span: float = 1.0,
    num_points: int = 21,
    seed: int = 0,
) -> Measurement:
    """Loss on a 1D or 2D slice through ``theta``; value ``max (L - L(theta))`` on the grid.

    The slice is ``L(theta + a d_1)`` (``dims=1``) or ``L(theta + a d_1 + b d_2)``
    (``dims=2``) for ``a, b`` on ``num_points`` evenly spaced values in ``[-span, span]``.
    ``directions="random"``: filter-normalized Gaussian directions (li2018), so ``a = 1``
    moves each weight filter by its own norm. ``directions="hessian"``: the top ``dims``
    unit Hessian eigenvectors (their eigenvalues in details), so ``a`` is a Euclidean
    distance in parameter space. All grid points are evaluated in vmapped batches of
    parameter vectors (valid with batch norm in train mode: every point sees the whole
    batch). Details: ``coords`` (``num_points``,), ``losses`` (``num_points``,) or
    ``(num_points, num_points)`` indexed ``[a, b]``, and ``loss`` at ``theta``.
    """
    meter = CostMeter()
    theta = subject.theta
    basis, extra = _directions(subject, directions, dims, seed, meter)
    coords = torch.linspace(-span, span, num_points, dtype=theta.dtype, device=theta.device)
    grid = torch.stack(torch.meshgrid(*([coords] * dims), indexing="ij"), dim=-1).reshape(-1, dims)
    losses = losses_at(subject, theta + grid @ basis, meter)
    base = float(losses_at(subject, theta[None], meter)[0])
    losses = losses.reshape(*([num_points] * dims)).detach().cpu().double().numpy()
    details = {"coords": coords.cpu().double().numpy(), "losses": losses, "loss": base} | extra
    value = float(np.max(losses) - base)
    # 0 exactly: theta is the highest point of the grid, a result rather than rounding
    notes = resolution_notes(subject, base, value) if value != 0 else []
    return Measurement("landscape", value, details, meter.cost(), {}, notes)
