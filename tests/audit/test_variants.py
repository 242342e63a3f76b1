import pytest
import torch
from torch import nn

from normscope import nets
from normscope.auditing.variants import (
    VARIANTS,
    build_variants,
    check_bn_modes,
    runs_of,
)
from normscope.errors import ConfigError, UnknownNameError
from normscope.measures.registry import fresh_running_stats
from normscope.testing import changes, model_state

from tests.audit.models import TinyResNet, TinyTransformer, bn_mlp, plain_mlp, seeded

IMAGES = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(0))
VECTORS = torch.randn(4, 8, generator=torch.Generator().manual_seed(0))


def _by_name(variants):
    return {v.name: v for v in variants}


def test_resnet_variants_swap_batch_norm_and_skip_group_norm_with_the_surgery_reason():
    model = seeded(TinyResNet)
    before = model_state(model)
    found = _by_name(build_variants(model, VARIANTS, IMAGES))
    assert changes(before, model) == []
    assert found["as_given"].model is not model
    assert nets.count_norm_layers(found["no_norm"].model) == 0
    kinds = {layer.kind for layer in nets.find_norm_layers(found["bn_to_layer"].model)}
    assert kinds == {"layer"}
    kinds = {layer.kind for layer in nets.find_norm_layers(found["bn_to_rms"].model)}
    assert kinds == {"rms"}
    # 4 channels cannot split into 8 groups: skipped with swap_norm's own message
    assert found["bn_to_group"].model is None
    with pytest.raises(ConfigError) as err:
        nets.swap_norm(model, "group", example_input=IMAGES)
    assert found["bn_to_group"].reason == str(err.value)


def test_as_given_variant_is_an_equal_deep_copy():
    model = seeded(bn_mlp)
    copy = _by_name(build_variants(model, ["as_given"], VECTORS))["as_given"].model
    assert copy is not model
    for (name, a), (_, b) in zip(
        model.state_dict().items(), copy.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name
        assert a.data_ptr() != b.data_ptr()


def test_layer_norm_model_gets_no_norm_variant_and_skips_batch_norm_swaps():
    found = _by_name(build_variants(seeded(TinyTransformer), VARIANTS, VECTORS))
    assert found["no_norm"].model is not None
    assert nets.count_norm_layers(found["no_norm"].model) == 0
    for name in ("bn_to_layer", "bn_to_rms", "bn_to_group"):
        assert found[name].model is None
        assert "no batch norm" in found[name].reason


def test_model_without_normalization_skips_every_surgery_variant():
    found = _by_name(build_variants(seeded(plain_mlp), VARIANTS, VECTORS))
    assert [n for n, v in found.items() if v.model is not None] == ["as_given"]
    assert "no normalization layer" in found["no_norm"].reason


def test_runs_measure_batch_norm_variants_in_each_mode_and_others_once():
    variants = build_variants(seeded(bn_mlp), VARIANTS, VECTORS)
    labels = [r.label for r in runs_of(variants, ["eval", "train"])]
    assert labels == ["as_given/train", "as_given/eval", "no_norm", "bn_to_layer", "bn_to_rms"]
    runs = runs_of(variants, ["eval"])
    assert [(r.label, r.subject_mode) for r in runs][:2] == [
        ("as_given/eval", "eval"),
        ("no_norm", "train"),
    ]


def test_unknown_variant_or_mode_names_are_errors_that_list_the_valid_ones():
    with pytest.raises(UnknownNameError, match="bn_to_layer"):
        build_variants(seeded(bn_mlp), ["bn_to_lyer"], VECTORS)
    with pytest.raises(UnknownNameError, match="eval"):
        check_bn_modes(["evl"])
    with pytest.raises(ConfigError):
        check_bn_modes([])


def test_fresh_running_stats_names_untrained_batch_norm_layers_only():
    fresh = nn.Sequential(nn.Linear(8, 4), nn.BatchNorm1d(4))
    assert fresh_running_stats(fresh) == ["1"]
    assert fresh_running_stats(seeded(bn_mlp)) == []
