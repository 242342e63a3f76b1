"""NetSpec validation: unknown fields and names, errors a user can act on."""

from __future__ import annotations

import pytest

from normscope import nets
from normscope.errors import ConfigError, NormscopeError, UnknownNameError
from normscope.nets.spec import parse_spec

BASE = {"arch": "mlp", "input_shape": (4,), "output_dim": 2}


def test_unknown_field_is_refused_with_the_closest_valid_field():
    with pytest.raises(UnknownNameError) as error:
        nets.build({**BASE, "widht": 8})
    assert "'widht'" in str(error.value)
    assert "Did you mean 'width'" in str(error.value)


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("norm", "btach", "batch"),
        ("activation", "rleu", "relu"),
        ("init", "orthogonl", "orthogonal"),
        ("arch", "resnt", "resnet"),
    ],
)
def test_unknown_names_suggest_the_valid_one(field, value, hint):
    with pytest.raises(UnknownNameError, match=f"Did you mean '{hint}'"):
        nets.build({**BASE, field: value})


def test_unknown_name_also_refused_when_constructing_netspec_directly():
    with pytest.raises(UnknownNameError):
        nets.NetSpec(**{**BASE, "norm": "spectral"})


def test_invalid_values_raise_config_error_naming_the_field():
    with pytest.raises(ConfigError, match="output_dim"):
        nets.build({**BASE, "output_dim": 0})
    with pytest.raises(ConfigError, match="input_shape"):
        nets.build({**BASE, "input_shape": (0, 3)})
    with pytest.raises(ConfigError, match="every"):
        nets.build({**BASE, "placement": {"each": 2}})


def test_missing_arch_is_a_config_error():
    with pytest.raises(ConfigError, match="arch"):
        parse_spec({"input_shape": (3,), "output_dim": 2})


def test_every_spec_error_is_a_normscope_error():
    for bad in ({**BASE, "depth": -1}, {**BASE, "nrom": "batch"}, {**BASE, "norm": "instance"}):
        with pytest.raises(NormscopeError):
            nets.build(bad)


def test_netspec_and_dict_build_the_same_net():
    spec = nets.NetSpec(**BASE, norm="batch_rms", mean_subtraction=True)
    a, b = nets.build(spec), nets.build(spec.model_dump())
    assert repr(a) == repr(b)


def test_constants_list_the_supported_names():
    assert nets.names() == ["mlp", "cnn", "resnet", "transformer"]
    assert set(nets.NORM_KINDS) == {
        "none",
        "batch",
        "layer",
        "rms",
        "group",
        "instance",
        "weight",
        "dyt",
        "batch_rms",
    }
    assert set(nets.ACTIVATIONS) == {"identity", "relu", "tanh", "gelu", "sin"}
    assert set(nets.INITS) == {"gaussian", "orthogonal", "kaiming", "xavier"}
    assert set(nets.PLACEMENTS) == {"all", "hidden", "last", "output", "none"}
