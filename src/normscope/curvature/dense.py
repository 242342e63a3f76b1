"""Dense curvature matrices for small models: the ground truth the products are tested on.

Every function here forms a ``P x P`` (or ``D x P``) matrix, so use them for models with
at most a few thousand parameters, in float64. They use only the Subject's loss value and
output map, never the product code they check.

The Hessian is built from the autograd gradient, either by central finite differences
(``(g(theta + eps e_j) - g(theta - eps e_j)) / (2 eps)``, error ``O(eps^2)``) or by
forward-mode differentiation of the gradient (``jacfwd(grad)``). ``torch.func.hessian``
(``jacfwd(jacrev)``) is not used: on this stack it returns a wrong, non-symmetric matrix
for nets with layer or batch norm (DESIGN.md, numerical pitfalls).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch.func import grad, jacfwd

from normscope.curvature.hessian import batch_loss
from normscope.errors import unknown_name
from normscope.losses import CrossEntropy
from normscope.subject import Batch, Subject

HessianMethod = Literal["finite_differences", "jacfwd"]


def loss_gradient(subject: Subject, theta: torch.Tensor | None = None) -> torch.Tensor:
    """``grad L(theta)`` by reverse-mode autograd (``theta`` defaults to the model's)."""
    theta = (subject.theta if theta is None else theta).detach().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(subject.loss(theta), theta)[0].detach()


def hessian_vector_fd(subject: Subject, v: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """``H v`` by central differences of the autograd gradient along ``v`` (``||v|| = 1``)."""
    theta = subject.theta
    return (loss_gradient(subject, theta + eps * v) - loss_gradient(subject, theta - eps * v)) / (
        2 * eps
    )


def dense_hessian(
    subject: Subject, method: HessianMethod = "finite_differences", eps: float = 1e-5
) -> torch.Tensor:
    """The full Hessian of ``L`` (``P x P``), not symmetrized, so asymmetry shows errors.

    ``eps`` is the finite-difference step; 1e-5 balances truncation (``eps^2``) against
    rounding (``1e-16 / eps``) in float64, giving about 1e-10 absolute accuracy.
    """
    if method == "finite_differences":
        eye = torch.eye(subject.num_params, dtype=subject.dtype, device=subject.device)
        with subject.modes():
            return torch.stack([hessian_vector_fd(subject, e, eps) for e in eye], dim=1)
    if method == "jacfwd":
        theta = subject.theta
        with subject.modes():
            return sum(
                b.weight * jacfwd(grad(batch_loss(subject, b)))(theta)
                for b in subject.loss_batches()
            )
    raise unknown_name("Hessian method", method, ("finite_differences", "jacfwd"))


def dense_jacobian(subject: Subject) -> torch.Tensor:
    """The whole-batch output Jacobian ``J`` (``D x P``; batches, then row-major outputs)."""
    theta = subject.theta
    with subject.modes():
        return torch.cat(
            [
                jacfwd(lambda t, b=b: subject.output(t, b.inputs).reshape(-1))(theta)
                for b in subject.batches()
            ]
        )


def dense_output_hessian(subject: Subject) -> torch.Tensor:
    """``Lambda`` (``D x D``): block diagonal over batches, ``w_b d^2 L_b / d f^2`` by autograd."""
    blocks = []
    with subject.modes(), torch.no_grad():
        for b in subject.batches():
            out = subject.output(subject.theta, b.inputs)
            if b.targets is None or b.weight == 0:
                blocks.append(torch.zeros(out.numel(), out.numel(), dtype=out.dtype))
                continue

            def batch_mean(flat, shape=out.shape, y=b.targets):
                return subject.loss_of(flat.reshape(shape), y)

            with torch.enable_grad():
                blocks.append(b.weight * jacfwd(grad(batch_mean))(out.reshape(-1)))
    return torch.block_diag(*blocks)


def dense_ggn(subject: Subject) -> torch.Tensor:
    """``J^T Lambda J`` from the dense Jacobian and the dense output Hessian."""
    jac = dense_jacobian(subject)
    return jac.T @ dense_output_hessian(subject) @ jac


def _term_losses(subject: Subject, out: torch.Tensor, batch: Batch) -> list[torch.Tensor]:
    """``l_m`` for every counted term of one batch, each from the whole-batch outputs."""
    loss, y = subject.loss_fn, batch.targets
    if isinstance(loss, CrossEntropy):
        flat = y.reshape(-1)
        terms = []
        for m in torch.nonzero(flat != loss.ignore_index).reshape(-1):
            only = torch.full_like(flat, loss.ignore_index)
            only[m] = flat[m]
            terms.append(loss.value(out, only.reshape(y.shape)))
        return terms
    return [loss.value(out[i : i + 1], y[i : i + 1]) for i in range(len(out))]


def sample_gradients(subject: Subject) -> torch.Tensor:
    """``g_m = grad l(f_m(theta; X_b), y_m)`` as rows ``(c, P)``, one autograd call per term.

    Each call runs the whole batch ``X_b`` forward (batch norm in train mode couples the
    samples) and differentiates only term ``m``'s loss. Slow by design: ground truth.
    """
    rows = []
    with subject.modes(), torch.enable_grad():
        for b in subject.loss_batches():
            theta = subject.theta.requires_grad_(True)
            out = subject.output(theta, b.inputs)
            for term in _term_losses(subject, out, b):
                rows.append(torch.autograd.grad(term, theta, retain_graph=True)[0])
    return torch.stack(rows)


def dense_empirical_fisher(subject: Subject) -> torch.Tensor:
    """``(1/c) sum_m g_m g_m^T`` from :func:`sample_gradients`."""
    g = sample_gradients(subject)
    return g.T @ g / subject.num_terms
