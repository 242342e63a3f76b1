"""Derivatives of the per-sample loss with respect to the network outputs.

For one sample with outputs ``f`` (C,) the loss ``l(f, y)`` has

- cross-entropy: gradient ``p - e_y`` and Hessian ``diag(p) - p p^T`` with ``p = softmax(f)``;
- mse (``1/2 ||f - y||^2``): gradient ``f - y`` and Hessian ``I``.

Both Hessians are the Fisher information of the output distribution (categorical, unit
Gaussian), which is why the GGN is the true Fisher for these losses. They do not depend
on the label, and they act sample by sample (block diagonal over samples) even when
batch norm couples the samples: the coupling lives in the Jacobian, not in the loss.
"""

from __future__ import annotations

import torch

from normscope.subject import Subject


def output_gradient(subject: Subject, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """``d l(f_i, y_i) / d f_i`` for every sample: ``(n, C)``."""
    if subject.loss_name == "cross_entropy":
        return torch.softmax(out, dim=1) - torch.nn.functional.one_hot(y, out.shape[1]).to(out)
    return out - subject.targets(y)


def output_hessian_apply(subject: Subject, out: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    """``Lambda_i u_i`` per sample, ``Lambda_i = d^2 l / d f_i^2``; ``u`` is ``(..., n, C)``."""
    if subject.loss_name == "cross_entropy":
        p = torch.softmax(out, dim=1)
        return p * u - p * (p * u).sum(dim=-1, keepdim=True)
    return u
