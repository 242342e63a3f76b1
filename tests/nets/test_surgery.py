"""Norm surgery on models normscope did not build: find, count, swap, remove."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from normscope import nets
from normscope.errors import ConfigError, ModelError, UnknownNameError
from normscope.nets.norms import ChannelRMSNorm, TokenBatchNorm


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(h + x)


class TinyResNet(nn.Module):
    def __init__(self, channels: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, channels, 3, padding=1), nn.BatchNorm2d(channels))
        self.blocks = nn.Sequential(Block(channels), Block(channels))
        self.head = nn.Linear(channels, 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(torch.relu(self.stem(x))).mean(dim=(2, 3)))


def _resnet() -> TinyResNet:
    torch.manual_seed(0)
    return TinyResNet().double()


def _mlp() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(5, 6),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.Linear(6, 6),
        nn.BatchNorm1d(6),
        nn.ReLU(),
        nn.Linear(6, 2),
    ).double()


def _input(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3))


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_find_norm_layers_names_kinds_in_registration_order():
    found = nets.find_norm_layers(_resnet())
    assert [layer.name for layer in found] == [
        "stem.1",
        "blocks.0.bn1",
        "blocks.0.bn2",
        "blocks.1.bn1",
        "blocks.1.bn2",
    ]
    assert {layer.kind for layer in found} == {"batch"}
    assert nets.count_norm_layers(_resnet(), kinds=("layer",)) == 0


def test_find_norm_layers_knows_every_kind():
    model = nn.Sequential(
        nn.BatchNorm1d(4),
        nn.LayerNorm(4),
        nn.RMSNorm(4),
        nn.GroupNorm(2, 4),
        nn.GroupNorm(1, 4),
        nn.InstanceNorm1d(4),
        weight_norm(nn.Linear(4, 4)),
        nets.DyT(4),
        nets.BatchRMSNorm(4),
        ChannelRMSNorm(4),
        TokenBatchNorm(4),
    )
    kinds = [layer.kind for layer in nets.find_norm_layers(model)]
    assert kinds == [
        "batch",
        "layer",
        "rms",
        "group",
        "layer",
        "instance",
        "weight",
        "dyt",
        "batch_rms",
        "rms",
        "batch",
    ]


@pytest.mark.parametrize(
    ("to", "module_type"),
    [
        ("layer", nn.GroupNorm),
        ("rms", ChannelRMSNorm),
        ("none", nn.Identity),
        ("group", nn.GroupNorm),
        ("instance", nn.InstanceNorm2d),
        ("dyt", nets.DyT),
        ("batch_rms", nets.BatchRMSNorm),
    ],
)
def test_swap_batch_norm_in_resnet_like_module(to, module_type):
    model = _resnet()
    before = _snapshot(model)
    x = _input(4, 3, 6, 6)
    reference = model.eval()(x)
    swapped = nets.swap_norm(model, to, groups=2)
    assert nets.count_norm_layers(swapped, kinds=("batch",)) == 0
    assert nets.count_norm_layers(swapped) == (0 if to == "none" else 5)
    assert all(
        isinstance(swapped.get_submodule(n), module_type)
        for n in ("stem.1", "blocks.0.bn1", "blocks.1.bn2")
    )
    assert swapped(x).shape == (4, 2)
    assert swapped(x).dtype == torch.float64
    # original untouched: same modules, same buffers, same outputs
    assert nets.count_norm_layers(model, kinds=("batch",)) == 5
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert torch.equal(model(x), reference)


def test_swap_batch_norm_2d_to_layer_is_group_norm_with_one_group():
    swapped = nets.swap_norm(_resnet(), "layer")
    norm = swapped.blocks[0].bn1
    assert isinstance(norm, nn.GroupNorm) and norm.num_groups == 1 and norm.num_channels == 4


@pytest.mark.parametrize(
    ("to", "module_type"),
    [("layer", nn.LayerNorm), ("rms", nn.RMSNorm), ("none", nn.Identity)],
)
def test_swap_batch_norm_in_hand_built_mlp(to, module_type):
    model = _mlp()
    before = _snapshot(model)
    swapped = nets.swap_norm(model, to)
    assert isinstance(swapped[1], module_type) and isinstance(swapped[4], module_type)
    if to != "none":
        assert swapped[1].normalized_shape == (6,)
    assert swapped(_input(3, 5)).shape == (3, 2)
    assert isinstance(model[1], nn.BatchNorm1d)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_swapped_layer_norm_normalizes_each_sample():
    swapped = nets.swap_norm(_mlp(), "layer")
    h = _input(3, 6)
    out = swapped[1](h)
    assert torch.allclose(out.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_swap_keeps_training_mode_and_shares_no_parameters():
    model = _mlp().eval()
    swapped = nets.swap_norm(model, "layer")
    assert not swapped.training and not swapped[1].training
    with torch.no_grad():
        swapped[0].weight.add_(1.0)
    assert not torch.equal(swapped[0].weight, model[0].weight)


def test_swap_to_instance_norm_on_vectors_names_the_layer():
    with pytest.raises(ConfigError) as error:
        nets.swap_norm(_mlp(), "instance")
    assert "'1'" in str(error.value)
    assert "rank 2" in str(error.value)


def test_swap_to_group_norm_with_indivisible_groups_names_the_layer():
    with pytest.raises(ConfigError, match=r"blocks\.0\.bn1|stem\.1"):
        nets.swap_norm(_resnet(), "group", groups=3)


def test_swap_to_weight_norm_is_refused():
    with pytest.raises(ConfigError, match="weight_norm"):
        nets.swap_norm(_mlp(), "weight")


def test_swap_rejects_unknown_kinds():
    with pytest.raises(UnknownNameError, match="batch"):
        nets.swap_norm(_mlp(), "lyer")
    with pytest.raises(UnknownNameError):
        nets.swap_norm(_mlp(), "layer", kinds=("btach",))


def test_example_input_reveals_batch_norm_1d_on_sequences():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv1d(2, 4, 3, padding=1), nn.BatchNorm1d(4), nn.Flatten()).double()
    x = _input(3, 2, 7)
    before = _snapshot(model)
    swapped = nets.swap_norm(model, "layer", example_input=x)
    assert isinstance(swapped[1], nn.GroupNorm)
    assert swapped(x).shape == (3, 28)
    assert model.training and swapped.training
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    instance = nets.swap_norm(model, "instance", example_input=x)
    assert isinstance(instance[1], nn.InstanceNorm1d)


def test_swap_layer_norm_to_batch_norm_in_a_transformer():
    model = nets.transformer(input_shape=(2, 6), output_dim=3, width=4, depth=2, norm="layer")
    x = torch.ones(5, 2, 6)
    swapped = nets.swap_norm(model, "batch", kinds=("layer",), example_input=x)
    assert nets.count_norm_layers(swapped, kinds=("batch",)) == 4
    assert all(isinstance(layer.module, TokenBatchNorm) for layer in nets.find_norm_layers(swapped))
    assert swapped(x).shape == (5, 3)


def test_remove_norm_drops_every_norm_and_keeps_effective_weights():
    model = nets.mlp(
        input_shape=(5,), output_dim=2, width=4, depth=3, norm="weight", dtype="float64"
    )
    x = _input(4, 5)
    reference = model(x)
    removed = nets.remove_norm(model)
    assert nets.count_norm_layers(removed) == 0
    assert type(removed.fc1) is nn.Linear
    assert torch.allclose(removed(x), reference, atol=1e-14)
    assert nets.count_norm_layers(model) == 3
    assert torch.equal(model(x), reference)


def test_remove_norm_on_hand_built_resnet():
    removed = nets.remove_norm(_resnet())
    assert nets.count_norm_layers(removed) == 0
    assert removed(_input(2, 3, 5, 5)).shape == (2, 2)


def test_uncopyable_model_is_a_model_error():
    with pytest.warns(FutureWarning):
        legacy = nn.Sequential(nn.utils.weight_norm(nn.Linear(3, 3)))
    assert nets.count_norm_layers(legacy) == 1
    with pytest.raises(ModelError, match=r"parametrizations\.weight_norm"):
        nets.remove_norm(legacy)


def test_linear_layers_lists_linear_and_conv_in_registration_order():
    names = [name for name, _ in nets.linear_layers(_resnet())]
    assert names == [
        "stem.0",
        "blocks.0.conv1",
        "blocks.0.conv2",
        "blocks.1.conv1",
        "blocks.1.conv2",
        "head",
    ]


def test_group_norm_that_would_normalize_single_features_is_refused():
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    with pytest.raises(ConfigError, match="single values"):
        nets.swap_norm(model, "group", groups=8)
    swapped = nets.swap_norm(model, "group", groups=4)
    assert isinstance(swapped[1], nn.GroupNorm) and swapped[1].num_groups == 4
