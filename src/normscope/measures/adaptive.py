"""Adaptive sharpness: the loss increase under perturbations scaled by ``|theta|`` (kwon2021).

Scaling the perturbation by the parameters' magnitude makes the measure invariant to the
rescalings that leave a network's function unchanged (e.g. ``w -> c w`` before a
normalization layer), unlike the plain sharpness ``lambda_max``. Entries with
``theta_i = 0`` are never perturbed.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from normscope.curvature.operator import batched
from normscope.measurement import CostMeter, Measurement
from normscope.measures.constraints import COUNT, POSITIVE, SEED, Choice, Integer
from normscope.measures.registry import register
from normscope.subject import Subject

KINDS = ("worst", "average")
CHUNK = 16


def _value_and_grad(subject: Subject, theta: torch.Tensor, meter: CostMeter):
    theta = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = subject.loss(theta)
        (g,) = torch.autograd.grad(loss, theta)
    meter.add("forward")
    meter.add("backward")
    return float(loss.detach()), g


def losses_at(subject: Subject, thetas: torch.Tensor, meter: CostMeter) -> torch.Tensor:
    """``L(theta_k)`` for each row of ``thetas`` (k, P), vmapped over rows in chunks.

    Rows are parameter vectors, not samples, so vmapping is valid with batch norm in train
    mode too: each row sees the whole batch.
    """
    meter.add("forward", thetas.shape[0])
    with torch.no_grad(), subject.modes():
        return torch.cat([batched(subject.loss)(c) for c in torch.split(thetas, CHUNK)])


@register(
    "adaptive_sharpness",
    family="sharpness",
    paper="kwon2021 (ASAM)",
    quick={"steps": 3, "num_probes": 4},
    renamed={"num_samples": "num_probes"},
    options={
        "rho": POSITIVE,
        "kind": Choice(KINDS),
        "steps": Integer(low=0),
        "num_probes": COUNT,
        "seed": SEED,
    },
)
def adaptive_sharpness(
    subject: Subject,
    *,
    rho: float = 0.05,
    kind: str = "worst",
    steps: int = 10,
    num_probes: int = 32,
    seed: int = 0,
) -> Measurement:
    """Worst-case or average loss increase in the ``|theta|``-scaled ball of radius ``rho``.

    ``kind="worst"``: ``max_{||delta / |theta| ||_2 <= rho} L(theta + delta) - L(theta)``.
    Writing ``delta = |theta| * u``, projected gradient ascent on ``u`` over the ball
    ``||u|| <= rho``: start at the first-order maximizer ``u_0 = rho s / ||s||``,
    ``s = |theta| * grad L(theta)``; then ``steps`` times
    ``u <- proj(u + (rho/2) g / ||g||)`` with ``g = |theta| * grad L(theta + |theta| * u)``.
    The value is the largest increase seen at any iterate (a lower bound on the maximum);
    ``details["first_order"] = rho ||s||`` is its linearization.

    ``kind="average"``: ``E_z [L(theta + delta) - L(theta)]`` with
    ``delta = rho |theta| * z / sqrt(P)``, ``z ~ N(0, I_P)``, so that
    ``E ||delta / |theta| ||^2 = rho^2`` (for ``theta`` without zeros): the same radius as
    the worst case, in mean square. Estimated with ``num_probes`` seeded draws, all
    evaluated in vmapped batches; ``details["standard_error"]`` is its standard error. For
    small ``rho`` it is ``rho^2 / (2P) sum_i theta_i^2 H_ii`` (second order).
    """
    meter = CostMeter()
    theta = subject.theta
    if kind == "worst":
        value, details = _worst_case(subject, theta, rho, steps, seed, meter)
    else:
        value, details = _average_case(subject, theta, rho, num_probes, seed, meter)
    notes = resolution_notes(subject, details["loss"], value)
    return Measurement("adaptive_sharpness", value, details, meter.cost(), {}, notes)


def resolution_notes(subject: Subject, loss: float, difference: float) -> list[str]:
    """A note when a loss difference is within ten roundings of the loss itself.

    Losses are evaluated in the model's dtype, whose rounding of ``L`` is about
    ``eps |L|``; a difference of that size is rounding, not curvature (it is what a
    ``bfloat16`` model gives for small radii).
    """
    resolution = torch.finfo(subject.dtype).eps * abs(loss)
    if not abs(difference) <= 10 * resolution:
        return []
    return [
        f"the value is within 10x the rounding of the loss in "
        f"{str(subject.dtype).removeprefix('torch.')} ({resolution:.1e}): it is rounding, "
        "not curvature; measure a float32 or float64 copy of the model, or a larger radius"
    ]


def _unit(v: torch.Tensor, seed: int) -> torch.Tensor:
    norm = v.norm()
    if norm > 0:
        return v / norm
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(v.shape, generator=gen, dtype=torch.float64).to(v)
    return z / z.norm()


def _worst_case(subject, theta, rho, steps, seed, meter) -> tuple[float, dict]:
    scale = theta.abs()
    base, g = _value_and_grad(subject, theta, meter)
    first = scale * g
    u = rho * _unit(first, seed)
    increases = []
    for _ in range(steps + 1):
        loss, g = _value_and_grad(subject, theta + scale * u, meter)
        increases.append(loss - base)
        u = u + 0.5 * rho * _unit(scale * g, seed)
        u = u * min(1.0, rho / float(u.norm()))
    details = {
        "increases": np.array(increases),
        "first_order": rho * float(first.norm()),
        "loss": base,
    }
    return max(increases), details


def _average_case(subject, theta, rho, num_probes, seed, meter) -> tuple[float, dict]:
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn((num_probes, theta.numel()), generator=gen, dtype=torch.float64).to(theta)
    delta = rho * theta.abs() * z / math.sqrt(theta.numel())
    base = float(losses_at(subject, theta[None], meter)[0])
    increases = losses_at(subject, theta + delta, meter).double() - base
    error = float(increases.std() / math.sqrt(num_probes)) if num_probes > 1 else math.nan
    details = {"increases": increases.cpu().numpy(), "standard_error": error, "loss": base}
    return float(increases.mean()), details
