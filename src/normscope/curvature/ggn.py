"""The generalized Gauss-Newton matrix ``G = J^T Lambda J`` (the true Fisher here).

``J`` is the Jacobian of the whole-batch outputs (``N C x P``; with batch norm in train
mode, of the coupled batch function), and ``Lambda`` is block diagonal with the blocks
``(1/N) d^2 l / d f_i^2``: ``(diag(p_i) - p_i p_i^T) / N`` for cross-entropy and ``I / N``
for mse (:mod:`normscope.curvature.output_loss`). For these losses ``G`` equals the
Fisher information of the model's predictive distribution (karakida2019's ``F``, up to
the ``1/N`` they also use). ``G`` is the Hessian with the term ``sum (dl/df) d^2 f``
dropped, so it is positive semi-definite.

Every product is one ``J v`` (forward mode) and one ``J^T u`` (a reused backward graph).
"""

from __future__ import annotations

import torch

from normscope.curvature.jacobian import OutputJacobian
from normscope.curvature.operator import Operator
from normscope.curvature.output_loss import output_hessian_apply
from normscope.measurement import CostMeter
from normscope.subject import Subject


class GGN(Operator):
    """``v -> J^T Lambda J v`` without forming any matrix (module docstring).

    Example:
        >>> import torch
        >>> from normscope import Subject
        >>> model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Tanh(),
        ...                             torch.nn.Linear(4, 2)).double()
        >>> x, y = torch.randn(8, 3, dtype=torch.float64), torch.randint(0, 2, (8,))
        >>> bool(torch.linalg.eigvalsh(GGN(Subject(model, (x, y))).dense()).min() > -1e-12)
        True
    """

    kind = "ggnvp"

    def __init__(self, subject: Subject, meter: CostMeter | None = None) -> None:
        super().__init__(subject.num_params, subject.dtype, subject.device, meter)
        self.subject = subject
        self.jacobian = OutputJacobian(subject, self.meter)

    def _lambda(self, u: torch.Tensor) -> torch.Tensor:
        out = self.jacobian.outputs
        return output_hessian_apply(self.subject, out, u) / self.subject.num_samples

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self.jacobian.vjp(self._lambda(self.jacobian.jvp(v)))

    def _matmat(self, vs: torch.Tensor) -> torch.Tensor:
        return self.jacobian.vjp_batched(self._lambda(self.jacobian.jvp_batched(vs)))
