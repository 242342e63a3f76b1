from __future__ import annotations

import pytest
import torch

from normscope import Subject
from normscope.curvature import OutputJacobian

from tests.helpers import bn_mlp, classification_data


def _subject(bn_mode, batch_size=None):
    x, y = classification_data(n=12, dtype=torch.float64)
    return Subject(bn_mlp(torch.float64), (x, y), bn_mode=bn_mode, batch_size=batch_size)


def _finite_difference_jacobian(s: Subject, eps: float = 1e-6) -> torch.Tensor:
    """Central differences of the whole-batch outputs, one parameter at a time."""
    theta = s.theta
    cols = []
    with torch.no_grad():
        for i in range(len(theta)):
            e = torch.zeros_like(theta)
            e[i] = eps
            plus = torch.cat([s.output(theta + e, b.inputs) for b in s.batches()])
            minus = torch.cat([s.output(theta - e, b.inputs) for b in s.batches()])
            cols.append(((plus - minus) / (2 * eps)).reshape(-1))
    return torch.stack(cols, dim=1)


@pytest.mark.parametrize(("bn_mode", "batch_size"), [("train", None), ("eval", None), ("train", 4)])
def test_dense_jacobian_matches_finite_differences(bn_mode, batch_size):
    s = _subject(bn_mode, batch_size)
    jac = OutputJacobian(s).dense()
    assert jac.shape == (12 * 3, s.num_params)
    assert torch.allclose(jac, _finite_difference_jacobian(s), atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_products_match_the_dense_jacobian(bn_mode):
    s = _subject(bn_mode, batch_size=6)
    op = OutputJacobian(s)
    jac = op.dense()
    gen = torch.Generator().manual_seed(0)
    v = torch.randn(3, s.num_params, generator=gen, dtype=torch.float64)
    u = torch.randn(3, 12 * 3, generator=gen, dtype=torch.float64)
    assert torch.allclose(op.jvp(v[0]), jac @ v[0], atol=1e-12)
    assert torch.allclose(op.vjp(u[0]), jac.T @ u[0], atol=1e-12)
    assert torch.allclose(op.jvp_batched(v), v @ jac.T, atol=1e-12)
    assert torch.allclose(op.vjp_batched(u), u @ jac, atol=1e-12)
    parts = op.jvp_parts(v)
    assert [tuple(p.shape) for p in parts] == [(3, 6, 3), (3, 6, 3)]
    assert torch.allclose(op.vjp_parts([u[:, :18].reshape(3, 6, 3), u[:, 18:]]), u @ jac)


def test_batch_norm_train_mode_couples_samples():
    """Changing one sample changes every output of its batch, so J is not block diagonal."""
    s = _subject("train")
    outputs = OutputJacobian(s).parts[0].outputs
    x = s.first_batch().inputs.clone()
    x[0] += 1.0
    moved = s.output(s.theta, x)
    assert not torch.allclose(moved[1:], outputs[1:])
    assert s.samples_coupled


def test_counts_products():
    s = _subject("train")
    op = OutputJacobian(s)
    op.jvp(torch.ones(s.num_params, dtype=torch.float64))
    op.vjp_batched(torch.ones(2, 12 * 3, dtype=torch.float64))
    assert op.meter.counts["jvp"] == 1 and op.meter.counts["vjp"] == 2
