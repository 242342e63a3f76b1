"""Dense curvature matrices for small models: the ground truth the products are tested on.

Every function here forms a ``P x P`` (or ``N C x P``) matrix, so use them for models with
at most a few thousand parameters, in float64.

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
from normscope.curvature.jacobian import OutputJacobian
from normscope.errors import unknown_name
from normscope.subject import Subject

HessianMethod = Literal["finite_differences", "jacfwd"]


def loss_gradient(subject: Subject, theta: torch.Tensor | None = None) -> torch.Tensor:
    """``grad L(theta)`` by reverse-mode autograd (``theta`` defaults to the model's)."""
    theta = (subject.theta if theta is None else theta).detach().requires_grad_(True)
    with torch.enable_grad():
        return torch.autograd.grad(subject.loss(theta), theta)[0].detach()


def dense_hessian(
    subject: Subject, method: HessianMethod = "finite_differences", eps: float = 1e-5
) -> torch.Tensor:
    """The full Hessian of ``L`` (``P x P``), not symmetrized, so asymmetry shows errors.

    ``eps`` is the finite-difference step; 1e-5 balances truncation (``eps^2``) against
    rounding (``1e-16 / eps``) in float64, giving about 1e-10 absolute accuracy.
    """
    if method == "finite_differences":
        return _hessian_finite_differences(subject, eps)
    if method == "jacfwd":
        theta = subject.theta
        with subject.modes():
            return sum(
                b.weight * jacfwd(grad(batch_loss(subject, b)))(theta) for b in subject.batches()
            )
    raise unknown_name("Hessian method", method, ("finite_differences", "jacfwd"))


def _hessian_finite_differences(subject: Subject, eps: float) -> torch.Tensor:
    theta = subject.theta
    columns = []
    with subject.modes():
        for j in range(len(theta)):
            step = torch.zeros_like(theta)
            step[j] = eps
            plus = loss_gradient(subject, theta + step)
            minus = loss_gradient(subject, theta - step)
            columns.append((plus - minus) / (2 * eps))
    return torch.stack(columns, dim=1)


def dense_jacobian(subject: Subject) -> torch.Tensor:
    """The whole-batch output Jacobian ``J`` (``N C x P``, rows sample-major)."""
    return OutputJacobian(subject).dense()


def dense_output_hessian(subject: Subject) -> torch.Tensor:
    """``Lambda`` (``N C x N C``): block diagonal, blocks ``d^2 l / d f_i^2 / N`` by autograd."""
    out = OutputJacobian(subject).outputs
    y = subject.data.y.to(subject.device)
    blocks = [
        jacfwd(grad(lambda f, i=i: subject.loss_of(f[None], y[i : i + 1])))(out[i])
        for i in range(len(out))
    ]
    return torch.block_diag(*blocks) / subject.num_samples


def dense_ggn(subject: Subject) -> torch.Tensor:
    """``J^T Lambda J`` from the dense Jacobian and the dense output Hessian."""
    jac = dense_jacobian(subject)
    return jac.T @ dense_output_hessian(subject) @ jac


def sample_gradients(subject: Subject) -> torch.Tensor:
    """``g_i = grad l(f_i(theta; X_b), y_i)`` as rows ``(N, P)``, one autograd call per sample.

    Each call runs the whole batch ``X_b`` forward (batch norm in train mode couples the
    samples) and differentiates only sample ``i``'s loss. Slow by design: ground truth.
    """
    rows = []
    with subject.modes(), torch.enable_grad():
        for b in subject.batches():
            for i in range(len(b.x)):
                theta = subject.theta.requires_grad_(True)
                out = subject.output(theta, b.x)
                rows.append(
                    torch.autograd.grad(subject.loss_of(out[i : i + 1], b.y[i : i + 1]), theta)[0]
                )
    return torch.stack(rows)


def dense_empirical_fisher(subject: Subject) -> torch.Tensor:
    """``(1/N) sum_i g_i g_i^T`` from :func:`sample_gradients`."""
    g = sample_gradients(subject)
    return g.T @ g / subject.num_samples
