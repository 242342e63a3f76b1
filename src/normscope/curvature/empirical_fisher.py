"""The empirical Fisher ``F_emp = (1/c) sum_m g_m g_m^T`` of per-term loss gradients.

``g_m = grad_theta l(f_m(theta; X_b), y_m)`` where ``f_m(theta; X_b)`` is term ``m``'s
output of the whole-batch function (a sample's, or a token's for a language model): with
batch norm in train mode ``g_m`` depends on every sample of the batch through the batch
statistics, so per-sample gradients of a model applied to one sample at a time would be a
different (wrong) matrix. Stacking the ``g_m / sqrt(c)`` as rows gives ``A = D J`` with
``J`` the whole-batch output Jacobian and ``D`` block diagonal with rows
``r_m / sqrt(c)``, ``r_m = dl/df_m`` (:meth:`normscope.losses.Loss.fisher_factor`), so

    F_emp v = A^T (A v),

one ``J v`` and one ``J^T u`` per product; samples are never vmapped over.
"""

from __future__ import annotations

import math

import torch

from normscope.curvature.ggn import FisherOperator


class EmpiricalFisher(FisherOperator):
    """``v -> (1/c) sum_m g_m <g_m, v>`` (module docstring).

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
    fisher_kind = "empirical"

    def sample_gradients(self) -> torch.Tensor:
        """The term gradients ``g_m`` as rows ``(c, P)`` (``c`` backward replays)."""
        c = self.factor.num_rows
        eye = torch.eye(c, dtype=self.dtype, device=self.device)
        return self.factor.transpose_apply(eye) * math.sqrt(self.subject.num_terms)
