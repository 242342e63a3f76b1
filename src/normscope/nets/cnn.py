"""Plain convolutional stacks with pluggable normalization."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from normscope.errors import ConfigError
from normscope.nets.activations import make_activation
from normscope.nets.building import (
    build_seeded,
    ordered_layer,
    output_norm,
    site_norm,
    weight_norm_targets,
)
from normscope.nets.placement import resolve_sites
from normscope.nets.spec import NetSpec

_CONV = {1: nn.Conv1d, 2: nn.Conv2d}
_POOL = {1: nn.AdaptiveAvgPool1d, 2: nn.AdaptiveAvgPool2d}


def conv_layout(input_shape: tuple[int, ...]) -> tuple[int, int]:
    """(input channels, spatial dims) of a sample: (L,) and (C, L) are 1-d, (C, H, W) 2-d."""
    if len(input_shape) == 1:
        return 1, 1
    if len(input_shape) in (2, 3):
        return input_shape[0], len(input_shape) - 1
    raise ConfigError(
        f"convolutional nets take samples of shape (L,), (C, L) or (C, H, W); "
        f"got input_shape {input_shape}"
    )


def build_cnn(spec: NetSpec) -> nn.Sequential:
    """``depth`` 3x3 convolutions (stride 1, padding 1) of ``width`` channels, global
    average pooling and a linear head.

    Each conv layer l is conv -> norm -> act ("pre") or conv -> act -> norm ("post") at
    a norm site. Norms on feature maps: batch = BatchNorm1d/2d, layer = GroupNorm(1, C)
    (each sample normalized over channels and positions), rms = ChannelRMSNorm, group =
    GroupNorm(groups, C), instance = InstanceNorm1d/2d (affine), weight = weight norm on
    the conv, dyt and batch_rms per channel. Samples of shape (L,) get one channel.
    Modules are named conv1, norm1, act1, ..., pool, out, out_norm.
    """
    width = spec.single_width()
    channels, spatial = conv_layout(spec.input_shape)
    sites = resolve_sites(spec, spec.depth)

    def construct(_: torch.Generator) -> tuple[nn.Module, list[nn.Module]]:
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        if len(spec.input_shape) == 1:
            layers["unflatten"] = nn.Unflatten(1, (1, spec.input_shape[0]))
        convs = []
        fan_in = channels
        for index in range(spec.depth):
            convs.append(_CONV[spatial](fan_in, width, 3, padding=1, bias=spec.bias))
            norm = site_norm(spec, sites, index, width, ndim=spatial + 2)
            act = make_activation(
                spec.activation, layer=index + 1, gain_exponent=spec.gain_exponent
            )
            layers.update(ordered_layer(index + 1, convs[-1], norm, act, spec.order, "conv"))
            fan_in = width
        layers["pool"] = nn.Sequential(_POOL[spatial](1), nn.Flatten())
        layers["out"] = nn.Linear(width, spec.output_dim, bias=spec.bias)
        out_norm = output_norm(spec, sites)
        if out_norm is not None:
            layers["out_norm"] = out_norm
        targets = weight_norm_targets(spec, sites, [[c] for c in convs], layers["out"])
        return nn.Sequential(layers), targets

    return build_seeded(spec, construct)
