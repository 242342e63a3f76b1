"""Every builder x norm x placement: advertised norm-layer count and output shape."""

from __future__ import annotations

import pytest
import torch

from normscope import nets
from normscope.errors import ConfigError
from normscope.nets.activations import ShapedActivation

OUTPUT_DIM = 3
BATCH = 6
PLACEMENTS = ["all", "hidden", "last", "output", "none", [0, 2], {"every": 2}]
OUTPUT_OK = {"batch", "batch_rms", "layer", "rms", "dyt", "weight"}
ARCH_NORMS = {
    "mlp": [k for k in nets.NORM_KINDS if k != "instance"],
    "cnn": list(nets.NORM_KINDS),
    "resnet": list(nets.NORM_KINDS),
    "transformer": ["none", "layer", "rms", "dyt", "batch"],
}
BASE = {
    "mlp": {"input_shape": (5,), "width": 4, "depth": 4},
    "cnn": {"input_shape": (2, 4, 4), "width": 4, "depth": 4},
    "resnet": {"input_shape": (2, 8, 8), "width": 2, "depth": 1},
    "transformer": {"input_shape": (2, 5), "width": 4, "depth": 4},
}


def _units(arch: str) -> list[int]:
    """Norm layers a normalized hidden unit holds, one entry per hidden unit."""
    if arch in ("mlp", "cnn"):
        return [1] * BASE[arch]["depth"]
    if arch == "transformer":
        return [2] * BASE[arch]["depth"]
    # stem, then per stage `depth` blocks; the first block of stages 2 and 3 projects.
    depth = BASE[arch]["depth"]
    blocks = [3 if stage > 0 and i == 0 else 2 for stage in range(3) for i in range(depth)]
    return [1, *blocks]


def _selected(placement: object, units: int) -> list[int]:
    if placement == "all":
        return list(range(units))
    if placement == "hidden":
        return list(range(units - 1))
    if placement == "last":
        return [units - 1]
    if placement in ("output", "none"):
        return []
    if isinstance(placement, dict):
        return [i for i in range(units) if (i + 1) % placement["every"] == 0]
    return list(placement)


def _expected_count(arch: str, norm: str, placement: object) -> int:
    if norm == "none":
        return 0
    units = _units(arch)
    hidden = sum(units[i] for i in _selected(placement, len(units)))
    return hidden + (placement == "output")


CASES = [
    (arch, norm, placement)
    for arch, norms in ARCH_NORMS.items()
    for norm in norms
    for placement in PLACEMENTS
    if placement != "output" or norm in OUTPUT_OK | {"none"}
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(("arch", "norm", "placement"), CASES, ids=str)
def test_builder_has_advertised_norm_count_and_output_shape(arch, norm, placement, dtype):
    spec = {**BASE[arch], "arch": arch, "output_dim": OUTPUT_DIM, "norm": norm}
    model = nets.build({**spec, "placement": placement, "groups": 2, "dtype": dtype})
    assert nets.count_norm_layers(model) == _expected_count(arch, norm, placement)
    if norm != "none":
        assert {layer.kind for layer in nets.find_norm_layers(model)} <= {norm}
    x = torch.randn(BATCH, *spec["input_shape"], generator=torch.Generator().manual_seed(0))
    out = model(x.to(getattr(torch, dtype)))
    assert out.shape == (BATCH, OUTPUT_DIM)
    assert out.dtype == getattr(torch, dtype)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("order", ["pre", "post"])
@pytest.mark.parametrize("arch", ARCH_NORMS)
def test_both_orders_build_and_run(arch, order):
    model = nets.build(
        {**BASE[arch], "arch": arch, "output_dim": 2, "norm": "layer", "order": order}
    )
    assert model(torch.ones(3, *BASE[arch]["input_shape"])).shape == (3, 2)


@pytest.mark.parametrize(
    ("order", "expected"), [("pre", ["fc1", "norm1", "act1"]), ("post", ["fc1", "act1", "norm1"])]
)
def test_mlp_order_puts_norm_before_or_after_activation(order, expected):
    model = nets.mlp(input_shape=(3,), output_dim=2, width=4, depth=1, norm="batch", order=order)
    names = [name for name, _ in model.named_children()]
    assert names[1:4] == expected


@pytest.mark.parametrize("arch", ["mlp", "cnn", "resnet", "transformer"])
@pytest.mark.parametrize("num_norm", [0, 1, 2, 3])
def test_num_norm_normalizes_k_evenly_spread_units(arch, num_norm):
    spec = {**BASE[arch], "arch": arch, "output_dim": 2, "norm": "layer", "num_norm": num_norm}
    units = _units(arch)
    # Documented rule: unit floor((i + 1) n / K) - 1 closes the i-th of K equal runs.
    chosen = [(i + 1) * len(units) // num_norm - 1 for i in range(num_norm)]
    assert nets.count_norm_layers(nets.build(spec)) == sum(units[i] for i in chosen)


def test_num_norm_spreads_evenly_and_keeps_the_last_layer():
    model = nets.mlp(input_shape=(3,), output_dim=2, width=4, depth=6, norm="batch", num_norm=2)
    normalized = sorted(layer.name for layer in nets.find_norm_layers(model))
    assert normalized == ["norm3", "norm6"]


def test_output_placement_subtracts_the_batch_mean_of_outputs():
    # karakida2019: batch norm in the last layer centres each output over the batch.
    model = nets.mlp(
        input_shape=(5,),
        output_dim=4,
        width=8,
        depth=2,
        norm="batch",
        placement="output",
        dtype="float64",
    )
    out = model(torch.randn(10, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1)))
    assert torch.allclose(out.mean(dim=0), torch.zeros(4, dtype=torch.float64), atol=1e-12)
    assert not any(p.numel() for p in model.out_norm.parameters())


def test_mlp_takes_per_layer_widths():
    model = nets.mlp(input_shape=(2, 3), output_dim=2, width=[7, 5, 9], depth=3, norm="batch")
    widths = [m.out_features for _, m in nets.linear_layers(model)]
    assert widths == [7, 5, 9, 2]
    assert model(torch.ones(4, 2, 3)).shape == (4, 2)


def test_mlp_keyword_builder_matches_spec_builder():
    kwargs = {"input_shape": (6,), "output_dim": 3, "width": 5, "depth": 2, "norm": "rms"}
    a = nets.mlp(**kwargs)
    b = nets.build(nets.NetSpec(arch="mlp", **kwargs))
    assert all(torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())


@pytest.mark.parametrize(
    ("input_shape", "patch_size"), [((12,), None), ((2, 12), None), ((3, 8, 8), 4)]
)
def test_transformer_takes_scalar_sequences_channel_sequences_and_patches(input_shape, patch_size):
    model = nets.transformer(
        input_shape=input_shape,
        output_dim=3,
        width=4,
        depth=1,
        norm="layer",
        patch_size=patch_size,
    )
    assert model(torch.ones(2, *input_shape)).shape == (2, 3)
    tokens = model.tokenizer(torch.ones(2, *input_shape))
    assert tokens.shape[1] == (4 if patch_size else 12)


@pytest.mark.parametrize("input_shape", [(10,), (2, 10)])
def test_cnn_takes_one_dimensional_samples(input_shape):
    model = nets.cnn(input_shape=input_shape, output_dim=3, width=4, depth=2, norm="instance")
    assert isinstance(model.norm1, torch.nn.InstanceNorm1d)
    assert model(torch.ones(2, *input_shape)).shape == (2, 3)


def test_standard_torch_modules_are_used():
    assert isinstance(
        nets.mlp(input_shape=(3,), output_dim=2, norm="batch").norm1, torch.nn.BatchNorm1d
    )
    assert isinstance(
        nets.mlp(input_shape=(3,), output_dim=2, norm="layer").norm1, torch.nn.LayerNorm
    )
    assert isinstance(nets.mlp(input_shape=(3,), output_dim=2, norm="rms").norm1, torch.nn.RMSNorm)
    cnn_layer = nets.cnn(input_shape=(1, 4, 4), output_dim=2, width=4, norm="layer").norm1
    assert isinstance(cnn_layer, torch.nn.GroupNorm) and cnn_layer.num_groups == 1
    assert isinstance(
        nets.cnn(input_shape=(1, 4, 4), output_dim=2, norm="batch").norm1, torch.nn.BatchNorm2d
    )


def test_shaped_activation_gains_follow_inverse_power_of_layer_index():
    gamma = 0.4
    model = nets.mlp(
        input_shape=(3,),
        output_dim=2,
        width=4,
        depth=4,
        activation="tanh",
        gain_exponent=gamma,
        dtype="float64",
    )
    h = torch.linspace(-3, 3, 8, dtype=torch.float64)
    for layer in range(1, 5):
        act = getattr(model, f"act{layer}")
        assert isinstance(act, ShapedActivation)
        assert torch.allclose(act(h), torch.tanh(h / layer**gamma), atol=1e-15)


def test_unshaped_activation_is_plain():
    model = nets.mlp(input_shape=(3,), output_dim=2, activation="sin")
    h = torch.linspace(-3, 3, 8)
    assert torch.equal(model.act1(h), torch.sin(h))


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ({"arch": "mlp", "norm": "instance"}, ["instance", "mlp", "layer"]),
        ({"arch": "mlp", "norm": "group", "width": 6, "groups": 4}, ["groups=4", "6"]),
        ({"arch": "transformer", "norm": "group"}, ["group", "transformer", "layer"]),
        ({"arch": "transformer", "width": 6, "heads": 4}, ["heads=4", "6"]),
        ({"arch": "transformer", "input_shape": (1, 8, 8)}, ["patch_size"]),
        ({"arch": "mlp", "norm": "batch", "placement": [0, 5]}, ["[5]", "0..1"]),
        ({"arch": "mlp", "norm": "batch", "placement": [1, 1]}, ["repeat"]),
        ({"arch": "mlp", "norm": "batch", "num_norm": 3}, ["num_norm=3", "2 hidden"]),
        ({"arch": "mlp", "norm": "batch", "num_norm": 1, "placement": "last"}, ["only one"]),
        ({"arch": "mlp", "norm": "group", "placement": "output"}, ["output", "batch"]),
        ({"arch": "mlp", "width": [3, 4, 5]}, ["depth is 2"]),
        ({"arch": "cnn", "width": [3, 4]}, ["MLP option"]),
        ({"arch": "resnet", "input_shape": (12,)}, ["(C, H, W)"]),
        ({"arch": "cnn", "input_shape": (1, 2, 3, 4)}, ["(C, H, W)"]),
        ({"arch": "mlp", "heads": 4}, ["heads", "transformer"]),
        ({"arch": "transformer", "gain_exponent": 0.4}, ["gain_exponent", "mlp"]),
        ({"arch": "mlp", "depth": 0}, ["depth"]),
    ],
    ids=str,
)
def test_senseless_combinations_raise_config_error_naming_the_options(spec, words):
    full = {"input_shape": (4,), "output_dim": 2, "width": 4, **spec}
    with pytest.raises(ConfigError) as error:
        nets.build(full)
    for word in words:
        assert word in str(error.value)
