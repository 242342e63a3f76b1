"""Signal propagation: isometry gap, effective rank and channel statistics per layer (meterez2024).

Representations are captured with forward hooks on the model's *layers* (the modules that
compute: leaf modules, plus linear/conv layers and shaped activations taken whole) during
one functional forward in the Subject's batch-norm mode; hooks are removed afterwards and
nothing of the model changes. :func:`trace_layers` is shared with the Lipschitz and
gradient measures, which need the same forward order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.modules.conv import _ConvNd

from normscope.data.batches import Inputs
from normscope.measurement import CostMeter, Measurement
from normscope.measures.constraints import SEED, Choice, Real
from normscope.measures.registry import register
from normscope.nets.activations import ShapedActivation
from normscope.subject import Subject
from normscope.theory.meterez import isometry_gap as gram_isometry_gap

CENTERINGS = ("auto", "project", "none")
# modules that compute as one unit although they hold children (parametrizations, wrapped act)
_ATOMIC = (nn.Linear, _ConvNd, ShapedActivation)


@dataclass(frozen=True)
class LayerCall:
    """One call of a layer during a forward: its name, module, input and output."""

    name: str
    module: nn.Module
    input: torch.Tensor
    output: torch.Tensor


@dataclass(frozen=True)
class Trace:
    """The layers called during one forward, in call order, and the model's output."""

    calls: list[LayerCall]
    x: torch.Tensor | None
    output: torch.Tensor

    @property
    def is_chain(self) -> bool:
        """True when the net is a plain chain: each layer feeds exactly the next one.

        Checked on tensor identity: the first layer takes the model's input, every layer
        takes the previous layer's output, the last layer's output is the model's output,
        and no layer is called twice. Residual connections, functional ops between layers
        or reused modules all break it.
        """
        if self.x is None or not self.calls:
            return False
        if len({id(c.module) for c in self.calls}) != len(self.calls):
            return False
        feeds = [self.x] + [c.output for c in self.calls[:-1]]
        linked = all(c.input is f for c, f in zip(self.calls, feeds, strict=True))
        return linked and self.calls[-1].output is self.output


def layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """The model's layers in registration order: leaves, and atomic modules taken whole."""
    out: list[tuple[str, nn.Module]] = []

    def walk(prefix: str, module: nn.Module) -> None:
        children = list(module.named_children())
        if isinstance(module, _ATOMIC) or not children:
            out.append((prefix, module))
            return
        for name, child in children:
            walk(f"{prefix}.{name}" if prefix else name, child)

    walk("", model)
    return out


def trace_layers(
    subject: Subject,
    theta: torch.Tensor,
    inputs: Inputs,
    *,
    chain_input: torch.Tensor | None = None,
) -> Trace:
    """Run ``f(theta; inputs)`` in the Subject's mode and record every layer call (no grad).

    ``chain_input`` is the tensor a chain of layers must start from (default: the inputs
    when they are one tensor). Hooks are removed before returning, also when the forward
    fails.
    """
    calls: list[LayerCall] = []

    def hook(name: str):
        def record(module: nn.Module, args: tuple, output: torch.Tensor) -> None:
            first = args[0] if args else None
            if isinstance(first, torch.Tensor) and isinstance(output, torch.Tensor):
                calls.append(LayerCall(name, module, first, output))

        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in layers(subject.model)]
    try:
        with torch.no_grad():
            out = subject.output(theta, inputs)
    finally:
        for h in handles:
            h.remove()
    if chain_input is None and isinstance(inputs, torch.Tensor):
        chain_input = inputs
    return Trace(calls, chain_input, out)


def _flat64(rep: torch.Tensor) -> torch.Tensor:
    return rep.detach().reshape(rep.shape[0], -1).to(torch.float64)


def _is_centered(x: torch.Tensor, dtype: torch.dtype) -> bool:
    """Whether the batch mean of the representations vanishes (mean-subtracting norm)."""
    scale = float(x.norm()) / math.sqrt(x.shape[0])
    tol = 1e-4 if dtype == torch.float32 else 1e-9
    return scale > 0 and float(x.mean(dim=0).norm()) <= tol * scale


def _effective_rank(eigenvalues: np.ndarray) -> float:
    """exp of the Shannon entropy of the normalized eigenvalues (Roy and Vetterli 2007)."""
    lam = np.clip(eigenvalues, 0.0, None)
    total = lam.sum()
    if not total > 0:
        return 0.0
    p = lam[lam > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def _mean_cosine(x: torch.Tensor) -> float:
    """Mean over pairs i != j of cos(x_i, x_j)."""
    n = x.shape[0]
    if n < 2:
        return float("nan")
    unit = x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    cos = unit @ unit.T
    return float((cos.sum() - cos.diagonal().sum()) / (n * (n - 1)))


def _channel_stats(rep: torch.Tensor) -> tuple[float, float]:
    """Mean over channels of (batch mean)^2 and of the batch variance (dim 1 = channels)."""
    r = rep.detach().to(torch.float64)
    if r.ndim == 1:
        r = r.unsqueeze(1)
    per_channel = r.transpose(0, 1).reshape(r.shape[1], -1)
    return float(per_channel.mean(dim=1).pow(2).mean()), float(
        per_channel.var(dim=1, unbiased=False).mean()
    )


def layer_statistics(rep: torch.Tensor, *, centering: str, eps: float, dtype: torch.dtype):
    """Isometry gap, effective rank, mean cosine and channel statistics of one layer's output.

    Returns ``(gap, effective_rank, mean_cosine, channel_sq_mean, channel_var, projected)``.
    """
    x = _flat64(rep)
    n = x.shape[0]
    finite = bool(torch.isfinite(x).all())
    if not finite:
        nan = float("nan")
        return math.inf, nan, nan, nan, nan, False
    gram = (x @ x.T).numpy()
    project = centering == "project" or (centering == "auto" and _is_centered(x, dtype))
    project = project and n >= 2
    if eps > 0:
        gram = gram + eps * np.trace(gram) / n * np.eye(n)
    gap = gram_isometry_gap(gram, mean_subtracted=project) if np.trace(gram) > 0 else math.inf
    eigenvalues = np.linalg.eigvalsh((gram + gram.T) / 2)
    sq_mean, var = _channel_stats(rep)
    return gap, _effective_rank(eigenvalues), _mean_cosine(x), sq_mean, var, project


def _last_hidden(trace: Trace) -> torch.Tensor | None:
    """The input of the last linear or conv layer: the last hidden representation."""
    weighted = [c for c in trace.calls if isinstance(c.module, nn.Linear | _ConvNd)]
    return weighted[-1].input if weighted else None


@register(
    "isometry_gap",
    family="signal",
    paper="meterez2024",
    needs_labels=False,
    options={"centering": Choice(CENTERINGS), "eps": Real(low=0), "seed": SEED},
)
def isometry_gap(
    subject: Subject, *, centering: str = "auto", eps: float = 0.0, seed: int = 0
) -> Measurement:
    """Isometry gap of the last hidden representation, and signal statistics per layer.

    For the n representations X (n x d, flattened per sample) at a layer, G = X X^T and
    (meterez2024)

        phi(X) = log(tr G / n) - (1/n) log det G >= 0,

    0 iff the representations are orthogonal with equal norms, +inf once G is singular
    (rank collapse; also whenever d < n). Computed in float64 from the eigenvalues of G.
    Headline: phi of the input of the last linear or conv layer (the output layer), i.e.
    the last hidden representation. Per layer (every layer's output, forward order) the
    details also hold the effective rank exp(H(lambda / sum lambda)) of G, the mean
    pairwise cosine of the representations, and the mean over channels of the squared
    batch mean and of the batch variance.

    Args:
        centering: a mean-subtracting batch norm makes G 1 = 0 (rank <= n - 1).
            ``"project"`` takes phi on the complement of the all-ones direction,
            ``"none"`` never does, ``"auto"`` (default) does so at layers whose batch mean
            vanishes (to 1e-4 relative in float32, 1e-9 in float64); the layers
            projected are listed in details.
        eps: ridge ``eps * tr(G)/n`` added to G before the log det (0: none, and a
            singular G gives inf).
        seed: unused (the measure is deterministic); kept for the common signature.

    Computed on the Subject's first evaluation batch (all samples unless ``batch_size``).
    """
    meter = CostMeter()
    batch = subject.first_batch()
    trace = trace_layers(subject, subject.theta, batch.inputs)
    meter.add("forward")
    stats = [
        layer_statistics(c.output, centering=centering, eps=eps, dtype=subject.dtype)
        for c in trace.calls
    ]
    names = [c.name for c in trace.calls]
    hidden = _last_hidden(trace)
    notes = []
    if hidden is None:
        value = math.inf
        notes.append("no linear or conv layer found: no last hidden representation")
    else:
        value = layer_statistics(hidden, centering=centering, eps=eps, dtype=subject.dtype)[0]
    n = batch.size
    if math.isinf(value):
        notes.append(
            f"isometry gap is inf: the Gram matrix of the {n} representations is singular "
            "(rank collapse, or fewer features than samples); pass eps > 0 for a finite "
            "regularized value"
        )
    details = {
        "layer_names": names,
        "isometry_gap": np.array([s[0] for s in stats]),
        "effective_rank": np.array([s[1] for s in stats]),
        "mean_cosine": np.array([s[2] for s in stats]),
        "channel_sq_mean": np.array([s[3] for s in stats]),
        "channel_var": np.array([s[4] for s in stats]),
        "projected_layers": [nm for nm, s in zip(names, stats, strict=True) if s[5]],
        "headline_layer": "input of the last linear or conv layer",
        "num_representations": n,
    }
    return Measurement("isometry_gap", value, details, meter.cost(), {}, notes)
