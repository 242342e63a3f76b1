"""Spherical sharpness and effective learning rate of scale-invariant parameters (lyu2022).

A parameter group ``w`` is scale invariant when ``L(c w) = L(w)`` for every ``c > 0``
(weights feeding a normalization layer). Then ``H(c w) = H(w) / c^2``, so the raw
sharpness of such a net can be made anything by rescaling ``w``; the quantity that
governs gradient descent on it is the sharpness on the unit sphere

    S(w) = lambda_max(H_ww(w)) ||w||^2      (= lambda_max of the Hessian at w / ||w||),

with ``H_ww`` the Hessian restricted to ``w`` (all other parameters fixed), together with
the effective learning rate ``lr / ||w||^2``. Gradient descent is at the edge of
stability when ``(lr / ||w||^2) S(w) = 2``; lyu2022 show that GD with weight decay reaches
it and then keeps lowering ``S``.
"""

from __future__ import annotations

import numpy as np
import torch

from normscope.curvature import Hessian, group_index
from normscope.linalg import lanczos
from normscope.measurement import CostMeter, Measurement
from normscope.measures.constraints import POSITIVE, SEED, TOL, Optional
from normscope.measures.registry import register
from normscope.subject import Subject


@register(
    "spherical_sharpness",
    family="sharpness",
    paper="lyu2022",
    takes_lr=True,
    quick={"lr": 0.1, "tol": 1e-3},
    options={"lr": Optional(POSITIVE), "tol": TOL, "seed": SEED},
)
def spherical_sharpness(
    subject: Subject, *, lr: float | None = None, tol: float = 1e-4, seed: int = 0
) -> Measurement:
    """``lambda_max(H_ww) ||w||^2`` over the scale-invariant parameters ``w`` (lyu2022).

    The groups are found by :meth:`Subject.scale_invariant_groups` (numerically, with the
    normalization epsilon set to ~0) and named in ``details["groups"]``. The headline
    value treats their union as ``w`` (a union of scale-invariant groups is itself scale
    invariant); ``details["group_values"]`` holds ``lambda_max(H_gg) ||w_g||^2`` for each
    group ``g`` on its own, with ``group_effective_lr`` when ``lr`` is given, and the same
    per group as scalars ``group_value.<group>``, ``weight_norm_sq.<group>`` and (with
    ``lr``) ``stability.<group>`` = ``lr * lambda_max(H_gg)``. Also in
    details: ``raw_sharpness`` = ``lambda_max(H_ww)``, ``weight_norm_sq`` = ``||w||^2``,
    and with ``lr``: ``effective_lr`` = ``lr / ||w||^2`` and ``stability`` =
    ``effective_lr * S`` (2 at the edge of stability). When no group is scale invariant
    the value is nan with a note, so sweeps over architectures keep going.
    """
    meter = CostMeter()
    groups = subject.scale_invariant_groups()
    if not groups:
        note = (
            "no scale-invariant parameter group found (no weights feed a normalization "
            "layer among the selected parameters): spherical sharpness is undefined"
        )
        return Measurement(
            "spherical_sharpness", float("nan"), {"groups": []}, meter.cost(), {}, [note]
        )
    op = Hessian(subject, meter)
    theta = op.theta

    def on_sphere(index: torch.Tensor) -> tuple[float, float]:
        block = op.restrict(index.to(op.device))
        top = lanczos(
            block.matvec, block.dim, k=1, tol=tol, seed=seed, dtype=op.dtype, device=op.device
        )
        return float(top.eigenvalues[-1]), float(theta[index].pow(2).sum())

    indices = [group_index(subject, g.params) for g in groups]
    raw, norm_sq = on_sphere(torch.cat(indices))
    per_group = [on_sphere(i) for i in indices] if len(groups) > 1 else [(raw, norm_sq)]
    details: dict[str, object] = {
        "groups": [g.name for g in groups],
        "group_params": [list(g.params) for g in groups],
        "raw_sharpness": raw,
        "weight_norm_sq": norm_sq,
        "group_values": np.array([lam * n for lam, n in per_group]),
    }
    value = raw * norm_sq
    if lr is not None:
        details["effective_lr"] = lr / norm_sq
        details["stability"] = lr / norm_sq * value
        details["group_effective_lr"] = np.array([lr / n for _, n in per_group])
    details |= _per_group_scalars([g.name for g in groups], per_group, lr)
    notes = [f"scale-invariant groups: {', '.join(g.name for g in groups)}"]
    return Measurement("spherical_sharpness", value, details, meter.cost(), {}, notes)


def _per_group_scalars(
    names: list[str], per_group: list[tuple[float, float]], lr: float | None
) -> dict[str, float]:
    """One scalar per group and quantity, keyed ``<quantity>.<group>`` (stored results
    keep scalar details as columns, so each group's curve can be drawn and checked)."""
    out: dict[str, float] = {}
    for name, (lam, norm_sq) in zip(names, per_group, strict=True):
        out[f"group_value.{name}"] = lam * norm_sq
        out[f"weight_norm_sq.{name}"] = norm_sq
        if lr is not None:
            out[f"stability.{name}"] = lr * lam
    return out
