from __future__ import annotations

import pytest
import torch

from normscope.curvature import (
    EmpiricalFisher,
    dense_empirical_fisher,
    loss_gradient,
    sample_gradients,
)

from tests.curvature.models import subject


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize(
    ("name", "bn_mode", "batch_size"),
    [
        ("mlp_batchnorm", "train", None),
        ("mlp_batchnorm", "eval", None),
        ("cnn_batchnorm", "train", 5),
        ("residual", "train", None),
        ("mlp_layernorm", "eval", None),
    ],
)
def test_empirical_fisher_matches_per_sample_gradients_of_the_batch_function(
    name, bn_mode, batch_size, loss
):
    s = subject(name, bn_mode, loss=loss, batch_size=batch_size)
    want = dense_empirical_fisher(s)
    op = EmpiricalFisher(s)
    vs = torch.randn(3, s.num_params, generator=torch.Generator().manual_seed(0), dtype=want.dtype)
    assert torch.allclose(op.matvec(vs[0]), want @ vs[0], atol=1e-12)
    assert torch.allclose(op.matmat(vs), vs @ want.T, atol=1e-12)


def test_sample_gradients_match_one_autograd_call_per_sample():
    s = subject("mlp_batchnorm", "train")
    assert torch.allclose(EmpiricalFisher(s).sample_gradients(), sample_gradients(s), atol=1e-12)


def test_batch_norm_train_mode_gradients_are_not_single_sample_gradients():
    """With batch statistics a sample's gradient depends on the rest of its batch."""
    whole = sample_gradients(subject("mlp_batchnorm", "train"))
    halves = sample_gradients(subject("mlp_batchnorm", "train", batch_size=5))
    assert not torch.allclose(whole, halves, atol=1e-3)
    eval_whole = sample_gradients(subject("mlp_batchnorm", "eval"))
    eval_halves = sample_gradients(subject("mlp_batchnorm", "eval", batch_size=5))
    assert torch.allclose(eval_whole, eval_halves, atol=1e-12)


def test_mean_of_sample_gradients_is_the_loss_gradient():
    s = subject("residual", "train")
    assert torch.allclose(sample_gradients(s).mean(dim=0), loss_gradient(s), atol=1e-12)
