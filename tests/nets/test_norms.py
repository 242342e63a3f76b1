"""normscope's own norm modules: formulas and nn.BatchNorm's running-statistics protocol."""

from __future__ import annotations

import pytest
import torch
from torch.nn import functional as F
from torch.nn.modules.batchnorm import _BatchNorm

from normscope.errors import ConfigError
from normscope.nets.norms import BatchRMSNorm, ChannelRMSNorm, DyT, TokenBatchNorm, make_norm

EPS = 1e-5


def _x(*shape: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return 2.0 + 3.0 * torch.randn(*shape, generator=g, dtype=torch.float64)


@pytest.mark.parametrize("shape", [(8, 5), (6, 3, 4), (4, 3, 2, 5)])
def test_batch_rms_divides_each_feature_by_its_batch_root_mean_square(shape):
    x = _x(*shape)
    norm = BatchRMSNorm(shape[1], eps=EPS).double()
    dims = [d for d in range(x.dim()) if d != 1]
    expected = x / torch.sqrt(x.pow(2).mean(dim=dims, keepdim=True) + EPS)
    assert torch.allclose(norm(x), expected, atol=1e-12)


@pytest.mark.parametrize("shape", [(8, 5), (4, 3, 2, 5)])
def test_batch_rms_with_mean_subtraction_equals_batch_norm_without_affine(shape):
    x = _x(*shape)
    norm = BatchRMSNorm(shape[1], mean_subtraction=True, eps=EPS).double()
    expected = F.batch_norm(x, None, None, training=True, eps=EPS)
    assert torch.allclose(norm(x), expected, atol=1e-12)


def test_batch_rms_follows_the_batch_norm_protocol():
    norm = BatchRMSNorm(4)
    assert isinstance(norm, _BatchNorm)
    assert norm.norm_kind == "batch_rms"
    assert norm.training and norm.track_running_stats
    assert {name for name, _ in norm.named_buffers()} == {
        "running_mean",
        "running_var",
        "num_batches_tracked",
    }
    assert not list(norm.parameters())


@pytest.mark.parametrize("mean_subtraction", [False, True])
def test_batch_rms_updates_nothing_in_train_mode_without_tracking(mean_subtraction):
    norm = BatchRMSNorm(5, mean_subtraction=mean_subtraction).double()
    norm.running_var.fill_(2.0)
    norm.running_mean.fill_(0.5 if mean_subtraction else 0.0)
    before = {k: v.clone() for k, v in norm.state_dict().items()}
    norm.track_running_stats = False
    x = _x(8, 5)
    out = norm(x)
    for key, value in norm.state_dict().items():
        assert torch.equal(value, before[key]), key
    mean = x.mean(0) if mean_subtraction else torch.zeros(5, dtype=torch.float64)
    expected = (x - mean) / torch.sqrt((x - mean).pow(2).mean(0) + EPS)
    assert torch.allclose(out, expected, atol=1e-12)


def test_batch_rms_tracks_running_stats_and_uses_them_in_eval():
    momentum = 0.25
    norm = BatchRMSNorm(5, mean_subtraction=True, momentum=momentum).double()
    x = _x(8, 5)
    norm(x)
    assert int(norm.num_batches_tracked) == 1
    var = x.var(0, unbiased=False)
    assert torch.allclose(norm.running_var, (1 - momentum) + momentum * var)
    assert torch.allclose(norm.running_mean, momentum * x.mean(0))
    norm.eval()
    y = _x(3, 5, seed=1)
    expected = (y - norm.running_mean) / torch.sqrt(norm.running_var + EPS)
    assert torch.allclose(norm(y), expected, atol=1e-12)
    assert int(norm.num_batches_tracked) == 1


def test_batch_rms_without_mean_subtraction_keeps_running_mean_zero():
    norm = BatchRMSNorm(5).double()
    x = _x(8, 5)
    norm(x)
    assert torch.equal(norm.running_mean, torch.zeros(5, dtype=torch.float64))
    assert torch.allclose(norm.running_var, 0.9 + 0.1 * x.pow(2).mean(0))


def test_batch_rms_without_running_buffers_uses_batch_stats_in_eval():
    norm = BatchRMSNorm(5, track_running_stats=False).double().eval()
    assert norm.running_var is None
    x = _x(8, 5)
    assert torch.allclose(norm(x), x / torch.sqrt(x.pow(2).mean(0) + EPS), atol=1e-12)


@pytest.mark.parametrize(("shape", "dim"), [((4, 3), 1), ((2, 3, 4, 4), 1), ((2, 5, 3), -1)])
def test_dyt_is_gamma_tanh_alpha_x_plus_beta(shape, dim):
    features = shape[dim]
    norm = DyT(features, dim=dim).double()
    assert norm.alpha.item() == 0.5
    with torch.no_grad():
        norm.weight.copy_(torch.arange(1.0, features + 1))
        norm.bias.copy_(-torch.arange(features))
    x = _x(*shape)
    view = [1] * len(shape)
    view[dim] = features
    expected = norm.weight.view(view) * torch.tanh(0.5 * x) + norm.bias.view(view)
    assert torch.allclose(norm(x), expected, atol=1e-12)


def test_channel_rms_norm_divides_each_sample_by_its_root_mean_square():
    x = _x(3, 4, 5, 5)
    norm = ChannelRMSNorm(4, eps=EPS).double()
    rms = torch.sqrt(x.pow(2).flatten(1).mean(1) + EPS).view(3, 1, 1, 1)
    assert torch.allclose(norm(x), x / rms, atol=1e-12)


def test_token_batch_norm_normalizes_each_feature_over_batch_and_tokens():
    x = _x(4, 6, 3)
    norm = TokenBatchNorm(3, eps=EPS).double()
    flat = x.reshape(-1, 3)
    expected = (x - flat.mean(0)) / torch.sqrt(flat.var(0, unbiased=False) + EPS)
    assert torch.allclose(norm(x), expected, atol=1e-12)
    assert norm.norm_kind == "batch"


def test_make_norm_asks_for_the_rank_when_batch_norm_depends_on_it():
    with pytest.raises(ConfigError, match="example_input"):
        make_norm("batch", 4, ndim=None)


def test_make_norm_rejects_instance_norm_on_vectors():
    with pytest.raises(ConfigError, match="rank 2"):
        make_norm("instance", 4, ndim=2, where="layer 'x'")
