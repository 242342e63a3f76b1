"""Helpers to check that a measurement leaves a model exactly as it found it."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class ModelState:
    """A bit-exact copy of everything a measurement must not change."""

    tensors: dict[str, torch.Tensor]
    grads: dict[str, torch.Tensor | None]
    flags: dict[str, tuple[bool, object]]


def model_state(model: nn.Module) -> ModelState:
    """Snapshot parameters, buffers, grads, and per-module training/tracking flags."""
    tensors = {k: v.detach().clone() for k, v in model.state_dict(keep_vars=True).items()}
    grads = {
        n: None if p.grad is None else p.grad.detach().clone() for n, p in model.named_parameters()
    }
    flags = {
        n: (m.training, getattr(m, "track_running_stats", None)) for n, m in model.named_modules()
    }
    return ModelState(tensors, grads, flags)


def changes(before: ModelState, model: nn.Module) -> list[str]:
    """What differs between ``before`` and the model now (empty: untouched, bit for bit)."""
    after = model_state(model)
    out = []
    for k, v in before.tensors.items():
        w = after.tensors.get(k)
        if w is None or w.dtype != v.dtype or w.shape != v.shape or not torch.equal(w, v):
            out.append(f"tensor {k}")
    for k, g in before.grads.items():
        h = after.grads.get(k)
        if (g is None) != (h is None) or (g is not None and not torch.equal(g, h)):
            out.append(f"grad {k}")
    out += [f"flags {k}" for k, f in before.flags.items() if after.flags.get(k) != f]
    return out
