from __future__ import annotations

import pytest
import torch
from torch import nn

from normscope import Subject
from normscope.curvature import GGN, dense_ggn, dense_hessian, dense_jacobian, dense_output_hessian

from tests.curvature.models import subject


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize(
    ("name", "bn_mode", "batch_size"),
    [
        ("mlp_batchnorm", "train", None),
        ("cnn_batchnorm", "eval", None),
        ("residual", "train", 5),
        ("mlp_rmsnorm", "train", None),
    ],
)
def test_ggn_products_equal_dense_jacobian_lambda_jacobian(name, bn_mode, batch_size, loss):
    s = subject(name, bn_mode, loss=loss, batch_size=batch_size)
    want = dense_ggn(s)
    op = GGN(s)
    vs = torch.randn(3, s.num_params, generator=torch.Generator().manual_seed(0), dtype=want.dtype)
    assert torch.allclose(op.matvec(vs[0]), want @ vs[0], atol=1e-12)
    assert torch.allclose(op.matmat(vs), vs @ want.T, atol=1e-12)
    assert torch.linalg.eigvalsh(want).min() > -1e-12


def test_output_hessian_is_softmax_covariance_over_n():
    s = subject("mlp_layernorm", "train")
    lam = dense_output_hessian(s)
    p = torch.softmax(s.output(s.theta, s.first_batch().inputs), dim=1)
    blocks = [torch.diag(q) - torch.outer(q, q) for q in p]
    assert torch.allclose(lam, torch.block_diag(*blocks) / 10, atol=1e-14)
    mse = subject("mlp_layernorm", "train", loss="mse")
    assert torch.allclose(dense_output_hessian(mse), torch.eye(30, dtype=torch.float64) / 10)


def test_ggn_equals_hessian_for_a_linear_model_under_mse():
    torch.manual_seed(0)
    model = nn.Linear(4, 3).double()
    x, y = torch.randn(8, 4, dtype=torch.float64), torch.randn(8, 3, dtype=torch.float64)
    s = Subject(model, (x, y), loss="mse")
    assert torch.allclose(GGN(s).dense(), dense_hessian(s), atol=1e-9)


def test_ggn_counts_one_jvp_and_one_vjp_per_product():
    s = subject("mlp_batchnorm", "train")
    op = GGN(s)
    op.matmat(torch.ones(4, s.num_params, dtype=torch.float64))
    assert op.meter.counts["ggnvp"] == 4
    assert op.meter.counts["jvp"] == 4 and op.meter.counts["vjp"] == 4
    assert dense_jacobian(s).shape == (30, s.num_params)
