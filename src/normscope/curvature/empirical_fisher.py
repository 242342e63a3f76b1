"""The empirical Fisher ``F_emp = (1/N) sum_i g_i g_i^T`` of per-sample loss gradients.

``g_i = grad_theta l(f_i(theta; X_b), y_i)`` where ``f_i(theta; X_b)`` is sample ``i``'s
output of the whole-batch function: with batch norm in train mode ``g_i`` depends on every
sample of the batch through the batch statistics, so per-sample gradients of a model
applied to one sample at a time would be a different (wrong) matrix. Stacking the
``g_i`` as rows gives the Jacobian of the per-sample-loss vector ``G = D J`` with ``J`` the
whole-batch output Jacobian and ``D`` block diagonal with rows ``r_i = dl/df_i``
(:func:`~normscope.curvature.output_loss.output_gradient`), so

    F_emp v = (1/N) G^T (G v) = (1/N) J^T ( r * <r, J v>_row ),

one ``J v`` and one ``J^T u`` per product; samples are never vmapped over.
"""

from __future__ import annotations

from functools import cached_property

import torch

from normscope.curvature.jacobian import OutputJacobian
from normscope.curvature.operator import Operator
from normscope.curvature.output_loss import output_gradient
from normscope.measurement import CostMeter
from normscope.subject import Subject


class EmpiricalFisher(Operator):
    """``v -> (1/N) sum_i g_i <g_i, v>`` (module docstring).

    Example:
        >>> import torch
        >>> from normscope import Subject
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                             torch.nn.Linear(4, 2)).double()
        >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
        >>> fisher = EmpiricalFisher(Subject(model, (x, y)))
        >>> g = fisher.sample_gradients()
        >>> bool(torch.allclose(fisher.dense(), g.T @ g / 8))
        True
    """

    kind = "efvp"

    def __init__(self, subject: Subject, meter: CostMeter | None = None) -> None:
        super().__init__(subject.num_params, subject.dtype, subject.device, meter)
        self.subject = subject
        self.jacobian = OutputJacobian(subject, self.meter)

    @cached_property
    def residuals(self) -> torch.Tensor:
        """``r_i = d l(f_i, y_i) / d f_i`` for every sample, ``(N, C)``."""
        y = self.subject.data.y.to(self.subject.device)
        return output_gradient(self.subject, self.jacobian.outputs, y)

    def sample_gradients(self) -> torch.Tensor:
        """The rows ``g_i`` as an ``(N, P)`` matrix (``N`` backward replays)."""
        n = self.subject.num_samples
        r = self.residuals
        eye = torch.eye(n, dtype=r.dtype, device=r.device)
        return self.jacobian.vjp_batched(eye[:, :, None] * r[None])

    def _scaled(self, jv: torch.Tensor) -> torch.Tensor:
        r = self.residuals
        return r * (r * jv).sum(dim=-1, keepdim=True) / self.subject.num_samples

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.jacobian.vjp(self._scaled(self.jacobian.jvp(v)))

    def _matmat(self, vs: torch.Tensor) -> torch.Tensor:
        return self.jacobian.vjp_batched(self._scaled(self.jacobian.jvp_batched(vs)))
