from __future__ import annotations

import pytest
import torch

from normscope.curvature import Hessian, dense_hessian, loss_gradient, parameter_blocks
from normscope.measurement import CostMeter

from tests.curvature.models import MODELS, subject

CASES = [(m, mode) for m in MODELS for mode in ("train", "eval")]


@pytest.fixture(scope="module")
def ground_truth():
    """Finite-difference Hessians, computed once per (model, bn_mode, batch_size)."""
    cache = {}

    def get(name, bn_mode, batch_size=None):
        key = (name, bn_mode, batch_size)
        if key not in cache:
            cache[key] = dense_hessian(subject(name, bn_mode, batch_size=batch_size))
        return cache[key]

    return get


@pytest.mark.parametrize(("name", "bn_mode"), CASES)
def test_finite_difference_hessian_is_symmetric_and_matches_jacfwd_of_grad(
    name, bn_mode, ground_truth
):
    fd = ground_truth(name, bn_mode)
    assert torch.allclose(fd, fd.T, atol=1e-8)
    jf = dense_hessian(subject(name, bn_mode), method="jacfwd")
    assert torch.allclose(fd, jf, atol=1e-8)


@pytest.mark.parametrize(("name", "bn_mode"), CASES)
def test_hessian_vector_products_match_finite_differences(name, bn_mode, ground_truth):
    fd = ground_truth(name, bn_mode)
    s = subject(name, bn_mode)
    op = Hessian(s)
    vs = torch.randn(3, s.num_params, generator=torch.Generator().manual_seed(0), dtype=fd.dtype)
    assert torch.allclose(op.matvec(vs[0]), fd @ vs[0], atol=1e-8)
    assert torch.allclose(op.matmat(vs), vs @ fd.T, atol=1e-8)
    assert op.meter.counts["hvp"] == 4
    assert op.meter.counts["forward"] == 1, "the linearization is built once and reused"


@pytest.mark.parametrize("name", ["mlp_batchnorm", "cnn_batchnorm"])
@pytest.mark.parametrize("cache_graphs", [True, False])
def test_minibatch_hessian_sums_batches_with_their_own_statistics(name, cache_graphs, ground_truth):
    fd = ground_truth(name, "train", 4)
    s = subject(name, "train", batch_size=4)
    op = Hessian(s, cache_graphs=cache_graphs)
    assert op.subject.num_batches == 3
    assert torch.allclose(op.dense(), fd, atol=1e-8)
    full_batch = ground_truth(name, "train")
    assert not torch.allclose(fd, full_batch, atol=1e-4), "batch statistics must differ"


@pytest.mark.parametrize(("name", "bn_mode"), [("residual", "train"), ("mlp_rmsnorm", "eval")])
def test_restricted_hessian_is_the_dense_diagonal_block(name, bn_mode, ground_truth):
    fd = ground_truth(name, bn_mode)
    s = subject(name, bn_mode)
    op = Hessian(s)
    for index in parameter_blocks(s).values():
        block = op.restrict(index)
        v = torch.randn(len(index), generator=torch.Generator().manual_seed(1), dtype=fd.dtype)
        want = fd[index][:, index]
        assert torch.allclose(block.matvec(v), want @ v, atol=1e-8)
        assert torch.allclose(block.dense(), want, atol=1e-8)


def test_parameter_subset_hessian_is_the_block_of_the_full_hessian(ground_truth):
    fd = ground_truth("mlp_batchnorm", "train")
    s = subject("mlp_batchnorm", "train", params=["0.*", "3.weight"])
    full = subject("mlp_batchnorm", "train")
    index = torch.cat([torch.arange(0, 25), torch.arange(35, 50)])
    assert s.num_params == len(index)
    assert full.layout.slice("3.weight") == slice(35, 50)
    assert torch.allclose(Hessian(s).dense(), fd[index][:, index], atol=1e-8)


def test_gradient_of_the_linearization_matches_autograd():
    s = subject("mlp_layernorm", "train", batch_size=3)
    assert torch.allclose(Hessian(s).gradient, loss_gradient(s), atol=1e-12)


def test_shared_meter_counts_products():
    meter = CostMeter()
    s = subject("mlp_batchnorm", "eval")
    op = Hessian(s, meter)
    op.matmat(torch.ones(5, s.num_params, dtype=torch.float64))
    assert meter.cost()["hvp"] == 5
