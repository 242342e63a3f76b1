"""Cross-check against curvlinops-for-pytorch (an independent implementation) in eval mode.

curvlinops evaluates the model as a plain module call, so batch norm is compared with
running statistics only (eval mode), where both libraries define the same function.
"""

from __future__ import annotations

import torch
from curvlinops import GGNLinearOperator, HessianLinearOperator
from torch import nn

from normscope.curvature import GGN, Hessian

from tests.curvature.models import build, data, subject


def _curvlinops_dense(operator_class, name):
    model = build(name).eval()
    x, y = data()
    op = operator_class(model, nn.CrossEntropyLoss(), list(model.parameters()), [(x, y)])
    return op @ torch.eye(op.shape[1], dtype=torch.float64)


def test_hessian_matches_curvlinops_in_eval_mode():
    ours = Hessian(subject("cnn_batchnorm", "eval")).dense()
    assert torch.allclose(
        ours, _curvlinops_dense(HessianLinearOperator, "cnn_batchnorm"), atol=1e-10
    )


def test_ggn_matches_curvlinops_in_eval_mode():
    ours = GGN(subject("mlp_batchnorm", "eval")).dense()
    assert torch.allclose(ours, _curvlinops_dense(GGNLinearOperator, "mlp_batchnorm"), atol=1e-10)
