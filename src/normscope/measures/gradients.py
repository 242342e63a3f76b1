"""Gradient norms per layer and their rate of explosion with layer index (meterez2024)."""

from __future__ import annotations

import math

import numpy as np
import torch

from normscope.curvature import loss_gradient
from normscope.data import batches as batch_io
from normscope.measurement import CostMeter, Measurement
from normscope.measures.constraints import SEED
from normscope.measures.registry import register
from normscope.measures.signal import trace_layers
from normscope.subject import Subject


def log_slope(index: np.ndarray, log_values: np.ndarray) -> tuple[float, float, float]:
    """Least-squares line ``log_values ~ intercept + slope * index`` over the finite entries.

    Returns ``(slope, intercept, r2)``, with r2 = 1 - SS_res / SS_tot (1 when the points are
    exactly on the line, including when they are all equal); nan when fewer than two
    finite points remain.
    """
    x, y = np.asarray(index, dtype=float), np.asarray(log_values, dtype=float)
    keep = np.isfinite(y)
    x, y = x[keep], y[keep]
    if len(x) < 2 or np.ptp(x) == 0:
        return math.nan, math.nan, math.nan
    slope, intercept = np.polyfit(x, y, 1)
    residual = float(((y - (intercept + slope * x)) ** 2).sum())
    total = float(((y - y.mean()) ** 2).sum())
    r2 = 1.0 - residual / total if total > 0 else 1.0
    return float(slope), float(intercept), r2


def _weight_params(subject: Subject, layer: str) -> list[str]:
    """Selected parameters that make up the weight of ``layer`` (plain or parametrized)."""
    prefix = f"{layer}." if layer else ""
    return [
        n
        for n in subject.layout.names
        if n == f"{prefix}weight" or n.startswith(f"{prefix}parametrizations.weight.")
    ]


def _weighted_layers(subject: Subject) -> list[tuple[str, list[str]]]:
    """Every layer with a selected weight, in the order the forward pass calls them."""
    batch = subject.first_batch()
    few = batch_io.slice_inputs(batch.inputs, 0, min(batch.size, 8))
    trace = trace_layers(subject, subject.theta, few)
    seen, out = set(), []
    for call in trace.calls:
        params = _weight_params(subject, call.name)
        if params and call.name not in seen:
            seen.add(call.name)
            out.append((call.name, params))
    return out


@register(
    "gradient_norms",
    family="gradients",
    paper="meterez2024",
    options={"seed": SEED},
    sharded=True,
)
def gradient_norms(subject: Subject, *, seed: int = 0) -> Measurement:
    """log ||dL/dW_1||, with ||dL/dW_l|| of every layer and their rate of explosion (meterez2024).

    L is the Subject's loss (batch statistics in train mode, as meterez2024 measure at
    initialization). Layers are the modules with a (selected) weight, in forward order;
    ||.|| is the Frobenius norm. The rate of explosion is the least-squares slope of
    log ||dL/dW_l|| against the layer index l = 1..L, reported with its R^2; a negative
    slope means gradients grow towards the input (explosion), zero means bounded. (The
    slope of log ||dL/dW_1|| across nets of different depth is a sweep-level quantity,
    not this measure.)

    Value: log ||dL/dW_1|| (natural log; inf with a note when the gradient overflows).
    Details: layer_names, norms, log_norms, slope, intercept, r2.

    Args:
        seed: unused (the measure is deterministic); kept for the common signature.
    """
    meter = CostMeter()
    theta = subject.theta
    found = _weighted_layers(subject)
    meter.add("forward")
    gradient = loss_gradient(subject, theta).to(torch.float64)
    meter.add("backward")
    notes: list[str] = []
    norms = np.array(
        [
            float(torch.cat([gradient[subject.layout.slice(p)] for p in params]).norm())
            for _, params in found
        ]
    )
    norms = np.where(np.isfinite(norms), norms, math.inf)
    with np.errstate(divide="ignore"):
        logs = np.log(norms)
    if np.isinf(norms).any():
        notes.append("some gradient norms overflowed and are reported as inf")
    if (norms == 0).any():
        notes.append(
            "some gradient norms are exactly 0 (the gradient vanished or underflowed): "
            "their log is -inf"
        )
    if not found:
        notes.append("no layer with a selected weight: nothing to measure")
    slope, intercept, r2 = log_slope(np.arange(1, len(found) + 1), logs)
    value = float(logs[0]) if found else math.inf
    details = {
        "layer_names": [name for name, _ in found],
        "norms": norms,
        "log_norms": logs,
        "slope": slope,
        "intercept": intercept,
        "r2": r2,
    }
    return Measurement("gradient_norms", value, details, meter.cost(), {}, notes)
