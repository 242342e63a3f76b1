"""The generalized Gauss-Newton matrix ``G = J^T Lambda J`` (the true Fisher here).

``J`` is the Jacobian of the whole-batch outputs (with batch norm in train mode, of the
coupled batch function), and ``Lambda`` is block diagonal over batches with blocks
``w_b d^2 L_b / d f^2``, the output Hessian of each batch's mean loss weighted by its
share of the counted terms (:mod:`normscope.losses`). For cross-entropy and mse ``G``
equals the Fisher information of the model's predictive distribution (karakida2019's
``F``). ``G`` is the Hessian with the term ``sum (dl/df) d^2 f`` dropped, so it is
positive semi-definite.

Products go through the factor ``A = M J`` with ``M^T M = Lambda``
(:class:`~normscope.curvature.gram.FisherFactor`): ``G v = A^T (A v)``, one ``J v``
(forward mode) and one ``J^T u`` per product.
"""

from __future__ import annotations

import torch

from normscope.curvature.gram import FisherFactor
from normscope.curvature.operator import Operator
from normscope.measurement import CostMeter
from normscope.subject import Subject


class FisherOperator(Operator):
    """``v -> A^T A v`` for the Fisher-type matrix of ``fisher_kind`` (see gram.py)."""

    kind = "fvp"
    fisher_kind = "ggn"

    def __init__(self, subject: Subject, meter: CostMeter | None = None) -> None:
        super().__init__(subject.num_params, subject.work_dtype, subject.device, meter)
        self.subject = subject
        self.factor = FisherFactor(subject, self.fisher_kind, self.meter)

    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        return self._matmat(v.unsqueeze(0))[0]

    def _matmat(self, vs: torch.Tensor) -> torch.Tensor:
        return self.factor.fisher_apply(vs)


class GGN(FisherOperator):
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
    fisher_kind = "ggn"
