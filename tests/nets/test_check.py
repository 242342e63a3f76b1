"""nets.check validates a spec exactly as nets.build does, without allocating weights;
booleans are not numbers."""

from __future__ import annotations

import pytest

from normscope import nets
from normscope.errors import ConfigError, NormscopeError

SHAPES = {"mlp": (6,), "cnn": (1, 6, 6), "resnet": (3, 8, 8), "transformer": (4, 6)}
OPTIONS = [
    {"norm": "batch", "placement": [0, 2]},
    {"norm": "layer", "num_norm": 3},
    {"norm": "instance"},
    {"norm": "group", "groups": 3, "width": 8},
    {"norm": "rms", "heads": 3, "width": 8},
    {"norm": "weight", "placement": "output"},
    {"norm": "batch", "width": [4, 4]},
    {"norm": "dyt", "placement": {"every": 2}},
]


def _outcome(call, spec):
    try:
        call(spec)
    except NormscopeError as err:
        return type(err).__name__, str(err)
    return None


@pytest.mark.parametrize("arch", nets.ARCHITECTURES)
@pytest.mark.parametrize("options", OPTIONS, ids=str)
def test_check_raises_exactly_what_build_raises(arch, options):
    spec = {"arch": arch, "input_shape": SHAPES[arch], "output_dim": 3, "width": 4, "depth": 2}
    spec.update(options)
    if "heads" in spec and arch != "transformer":
        del spec["heads"]
    assert _outcome(nets.check, spec) == _outcome(nets.build, spec)


def test_check_allocates_nothing_even_for_a_huge_network():
    spec = nets.check(
        {"arch": "mlp", "input_shape": (100_000,), "output_dim": 10, "width": 100_000, "depth": 4}
    )
    assert spec.width == 100_000


@pytest.mark.parametrize(
    "options", [{"width": True}, {"depth": True}, {"width": [8, False]}, {"sigma_w": True}], ids=str
)
def test_booleans_are_not_numbers(options):
    with pytest.raises(ConfigError, match="true/false is not a number"):
        nets.mlp(input_shape=(4,), output_dim=2, **options)


def test_booleans_set_boolean_fields():
    model = nets.mlp(input_shape=(4,), output_dim=2, width=3, bias=False)
    assert all(name.endswith("weight") for name, _ in model.named_parameters())
