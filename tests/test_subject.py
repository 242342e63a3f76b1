from __future__ import annotations

import pytest
import torch
from torch import nn

from normscope import Subject
from normscope.data import Dataset
from normscope.errors import (
    ConfigError,
    DataError,
    ModelError,
    NormscopeError,
    ShapeError,
    UnknownNameError,
)
from normscope.testing import changes, model_state

from tests.helpers import bn_mlp, classification_data


def _subject(dtype=torch.float64, **kw):
    x, y = classification_data(dtype=dtype)
    return Subject(bn_mlp(dtype), (x, y), **kw)


def test_loss_matches_a_plain_forward_in_train_mode():
    s = _subject(bn_mode="train")
    model = bn_mlp(torch.float64).train()
    x, y = classification_data(dtype=torch.float64)
    expected = nn.functional.cross_entropy(model(x), y)
    assert torch.allclose(s.loss(), expected, rtol=1e-12)


def test_loss_matches_a_plain_forward_in_eval_mode():
    s = _subject(bn_mode="eval")
    model = bn_mlp(torch.float64).eval()
    x, y = classification_data(dtype=torch.float64)
    assert torch.allclose(s.loss(), nn.functional.cross_entropy(model(x), y), rtol=1e-12)


def test_mse_is_half_squared_error_summed_over_outputs_averaged_over_samples():
    s = _subject(loss="mse", bn_mode="eval")
    model = bn_mlp(torch.float64).eval()
    x, y = classification_data(dtype=torch.float64)
    onehot = nn.functional.one_hot(y, 3).double()
    expected = 0.5 * ((model(x) - onehot) ** 2).sum() / len(x)
    assert torch.allclose(s.loss(), expected, rtol=1e-12)


def test_minibatches_each_use_their_own_batch_statistics():
    s = _subject(bn_mode="train", batch_size=8)
    model = bn_mlp(torch.float64).train()
    x, y = classification_data(dtype=torch.float64)
    parts = [nn.functional.cross_entropy(model(x[i : i + 8]), y[i : i + 8]) for i in (0, 8, 16)]
    assert torch.allclose(s.loss(), sum(parts) / 3, rtol=1e-12)
    assert not torch.allclose(s.loss(), _subject(bn_mode="train").loss())


@pytest.mark.parametrize("bn_mode", ["train", "eval"])
def test_subject_restores_the_model_bit_for_bit(bn_mode):
    s = _subject(bn_mode=bn_mode)
    s.model.train()
    s.model[3].weight.grad = torch.full_like(s.model[3].weight, 3.0)
    before = model_state(s.model)
    theta = s.theta.requires_grad_(True)
    torch.autograd.grad(s.loss(theta), theta)
    s.scale_invariant_groups()
    assert changes(before, s.model) == []


def test_running_statistics_are_never_updated_in_train_mode():
    s = _subject(bn_mode="train")
    before = s.model[1].running_mean.clone()
    s.loss()
    assert torch.equal(s.model[1].running_mean, before)
    assert int(s.model[1].num_batches_tracked) == 0


def test_modes_restore_after_an_exception():
    s = _subject()
    s.model.train()
    with pytest.raises(RuntimeError), s.modes():
        raise RuntimeError("boom")
    assert all(m.training for m in s.model.modules())
    assert s.model[1].track_running_stats


def test_layout_flattens_and_unflattens_round_trip():
    s = _subject()
    named = s.layout.unflatten(s.theta)
    assert list(named) == [n for n, _ in s.model.named_parameters()]
    assert torch.equal(s.layout.flatten(named), s.theta)
    assert s.num_params == sum(p.numel() for p in s.model.parameters())
    batch = torch.stack([s.theta, 2 * s.theta])
    assert s.layout.unflatten(batch)["0.weight"].shape == (2, 8, 6)


def test_param_selection_by_pattern_and_unknown_pattern():
    s = _subject(params="*.weight")
    assert all(n.endswith("weight") for n in s.layout.names)
    with pytest.raises(UnknownNameError, match="Valid parameter"):
        _subject(params=["nope.*"])


def test_scale_invariant_groups_found_in_train_mode_only():
    train = {g.name for g in _subject(bn_mode="train").scale_invariant_groups()}
    # layer 0 feeds batch norm, layer 3 feeds layer norm; the output layer is not invariant
    assert train == {"0", "3"}
    evald = {g.name for g in _subject(bn_mode="eval").scale_invariant_groups()}
    assert evald == {"3"}


def test_scale_invariance_holds_for_found_groups():
    s = _subject(bn_mode="train")
    theta = s.theta
    for g in s.scale_invariant_groups():
        mask = s.layout.mask(g.params, theta)
        assert torch.allclose(s.loss(theta * (1 + 2 * mask)), s.loss(theta), rtol=1e-6)


def test_unknown_loss_and_mode_list_valid_names():
    with pytest.raises(UnknownNameError, match="cross_entropy"):
        _subject(loss="hinge")
    with pytest.raises(UnknownNameError, match="Did you mean 'train'"):
        _subject(bn_mode="trian")


def test_shape_mismatch_between_model_and_data():
    x, y = classification_data(d_in=5)
    with pytest.raises(ShapeError, match=r"inputs of shape \(5,\)"):
        Subject(bn_mlp(), (x, y))
    x, y = classification_data(classes=4)
    y[0] = 3
    with pytest.raises(DataError, match="the model outputs 3 classes"):
        Subject(bn_mlp(), (x, y))
    with pytest.raises(ShapeError, match="needs \\(N, 4\\)"):
        Subject(bn_mlp(), Dataset(x, y, num_classes=4))


def test_empty_and_non_finite_data_and_bad_models():
    with pytest.raises(DataError, match="empty"):
        Subject(bn_mlp(), (torch.zeros(0, 6), torch.zeros(0, dtype=torch.long)))
    x, y = classification_data()
    x[2, 1] = float("nan")
    with pytest.raises(DataError, match="NaN"):
        Subject(bn_mlp(), (x, y))
    frozen = bn_mlp().requires_grad_(False)
    with pytest.raises(ModelError, match="no trainable parameters"):
        Subject(frozen, classification_data())
    broken = bn_mlp()
    with torch.no_grad():
        broken[0].weight[0, 0] = float("inf")
    with pytest.raises(ModelError, match="non-finite"):
        Subject(broken, classification_data())
    with pytest.raises(ModelError):
        Subject("not a model", classification_data())


def test_cross_entropy_needs_labels_and_batch_size_in_range():
    x = torch.randn(10, 6)
    with pytest.raises(DataError, match="use loss='mse'"):
        Subject(bn_mlp(classes=2), (x, torch.randn(10, 2)))
    unlabelled = Subject(bn_mlp(), Dataset(x, None, task="regression"))
    with pytest.raises(DataError, match="needs targets"):
        unlabelled.loss()
    with pytest.raises(ConfigError, match="batch_size"):
        _subject(batch_size=0)


def test_regression_targets_with_mse():
    x = torch.randn(10, 6, dtype=torch.float64)
    s = Subject(
        bn_mlp(torch.float64, classes=2), (x, torch.randn(10, 2, dtype=torch.float64)), loss="mse"
    )
    assert s.num_outputs == 2 and s.loss() > 0


def test_every_user_error_is_a_normscope_error():
    for cls in (ConfigError, DataError, ModelError, ShapeError, UnknownNameError):
        assert issubclass(cls, NormscopeError)


def test_data_is_cast_to_the_model_dtype():
    x, y = classification_data(dtype=torch.float32)
    s = Subject(bn_mlp(torch.float64), (x, y))
    assert s.first_batch().inputs.dtype == torch.float64
    assert s.describe()["dtype"] == "float64"


def test_labels_that_are_all_ignored_count_nothing_and_are_refused():
    x, y = classification_data()
    with pytest.raises(DataError, match="no target is counted: every label equals ignore_index"):
        Subject(bn_mlp(), (x, torch.full_like(y, -100)), batch_size=6)
