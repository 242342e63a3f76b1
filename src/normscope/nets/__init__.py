"""Architectures with pluggable normalization, placement, activation and init; norm surgery.

Build from one spec (a :class:`NetSpec` or a dict)::

    model = nets.build({"arch": "mlp", "input_shape": (784,), "output_dim": 10,
                        "width": 512, "depth": 3, "norm": "batch"})

or with keyword arguments: ``nets.mlp(input_shape=(784,), output_dim=10, norm="batch")``.
Every build is deterministic given ``seed`` and leaves torch's global RNG untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from normscope.nets.activations import ACTIVATIONS
from normscope.nets.cnn import build_cnn
from normscope.nets.init import INITS
from normscope.nets.mlp import build_mlp
from normscope.nets.norms import NORM_KINDS, BatchRMSNorm, ChannelRMSNorm, DyT, TokenBatchNorm
from normscope.nets.resnet import build_resnet
from normscope.nets.spec import ARCHITECTURES, PLACEMENTS, NetSpec, parse_spec
from normscope.nets.surgery import (
    LAYER_KINDS,
    NormLayer,
    count_norm_layers,
    find_norm_layers,
    linear_layers,
    norm_kind,
    remove_norm,
    swap_norm,
)
from normscope.nets.transformer import build_transformer

_BUILDERS: dict[str, Callable[[NetSpec], nn.Module]] = {
    "mlp": build_mlp,
    "cnn": build_cnn,
    "resnet": build_resnet,
    "transformer": build_transformer,
}


def names() -> list[str]:
    """Names of the architectures :func:`build` makes."""
    return list(ARCHITECTURES)


def build(spec: NetSpec | Mapping[str, Any]) -> nn.Module:
    """The network described by ``spec`` (a NetSpec or a dict of its fields).

    Unknown fields or names raise UnknownNameError; values that are invalid or do not fit
    together (instance norm in an MLP, a width not divisible by ``groups``, a placement
    index out of range, ...) raise ConfigError saying which options are valid.
    """
    parsed = parse_spec(spec)
    return _BUILDERS[parsed.arch](parsed)


def check(spec: NetSpec | Mapping[str, Any]) -> NetSpec:
    """Validate ``spec`` exactly as :func:`build` does, without allocating any weights.

    The network is built on PyTorch's ``meta`` device (tensors with shapes and no
    storage), so every error :func:`build` would raise, including options that do not
    fit together (a placement index beyond the depth, more norm layers than layers, a
    width not divisible by ``groups`` or ``heads``), is raised here in milliseconds,
    whatever the width. Returns the parsed :class:`NetSpec`.

    Example::

        >>> from normscope import nets
        >>> nets.check({"arch": "mlp", "input_shape": (4,), "output_dim": 2, "depth": 2,
        ...             "norm": "batch", "placement": [0, 2]})
        Traceback (most recent call last):
        ...
        normscope.errors.ConfigError: placement indices [2] are out of range: this network has 2 hidden layers, indexed 0..1
    """  # noqa: E501
    parsed = parse_spec(spec)
    with torch.device("meta"):
        _BUILDERS[parsed.arch](parsed)
    return parsed


def mlp(**options: Any) -> nn.Module:
    """A fully connected net; ``options`` are :class:`NetSpec` fields (see :func:`build_mlp`)."""
    return build({"arch": "mlp", **options})


def cnn(**options: Any) -> nn.Module:
    """A plain conv stack; ``options`` are :class:`NetSpec` fields (see :func:`build_cnn`)."""
    return build({"arch": "cnn", **options})


def resnet(**options: Any) -> nn.Module:
    """A CIFAR-style ResNet; ``options`` are :class:`NetSpec` fields (see :func:`build_resnet`)."""
    return build({"arch": "resnet", **options})


def transformer(**options: Any) -> nn.Module:
    """A small encoder; ``options`` are :class:`NetSpec` fields (see :func:`build_transformer`)."""
    return build({"arch": "transformer", **options})


__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "INITS",
    "LAYER_KINDS",
    "NORM_KINDS",
    "PLACEMENTS",
    "BatchRMSNorm",
    "ChannelRMSNorm",
    "DyT",
    "NetSpec",
    "NormLayer",
    "TokenBatchNorm",
    "build",
    "check",
    "cnn",
    "count_norm_layers",
    "find_norm_layers",
    "linear_layers",
    "mlp",
    "names",
    "norm_kind",
    "remove_norm",
    "resnet",
    "swap_norm",
    "transformer",
]
