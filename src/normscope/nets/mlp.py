"""Fully connected networks with pluggable normalization (karakida2019, meterez2024)."""

from __future__ import annotations

import math
from collections import OrderedDict

import torch
from torch import nn

from normscope.nets.activations import make_activation
from normscope.nets.building import (
    build_seeded,
    check_norm_allowed,
    ordered_layer,
    output_norm,
    site_norm,
    weight_norm_targets,
)
from normscope.nets.norms import NORM_KINDS
from normscope.nets.placement import resolve_sites
from normscope.nets.spec import NetSpec

MLP_NORMS = tuple(kind for kind in NORM_KINDS if kind != "instance")


def build_mlp(spec: NetSpec) -> nn.Sequential:
    """An MLP: flatten, ``depth`` hidden layers, a linear output layer.

    Hidden layer l (1-based) computes h_l = W_l x_{l-1} + b_l and then, at a norm site,
    x_l = act(norm(h_l)) (order "pre") or norm(act(h_l)) (order "post"); elsewhere
    x_l = act(h_l). With ``gain_exponent`` gamma, act(h) becomes act(l^(-gamma) h)
    (meterez2024). Modules are named flatten, fc1, norm1, act1, ..., out, out_norm.
    """
    check_norm_allowed(spec, MLP_NORMS, "an MLP has no positions to take instance statistics")
    widths = spec.hidden_widths()
    sites = resolve_sites(spec, len(widths))

    def construct(_: torch.Generator) -> tuple[nn.Module, list[nn.Module]]:
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        linears = []
        fan_in = math.prod(spec.input_shape)
        for index, width in enumerate(widths):
            linears.append(nn.Linear(fan_in, width, bias=spec.bias))
            norm = site_norm(spec, sites, index, width, ndim=2)
            act = make_activation(
                spec.activation, layer=index + 1, gain_exponent=spec.gain_exponent
            )
            layers.update(ordered_layer(index + 1, linears[-1], norm, act, spec.order, "fc"))
            fan_in = width
        layers["out"] = nn.Linear(fan_in, spec.output_dim, bias=spec.bias)
        out_norm = output_norm(spec, sites)
        if out_norm is not None:
            layers["out_norm"] = out_norm
        targets = weight_norm_targets(spec, sites, [[m] for m in linears], layers["out"])
        return nn.Sequential(layers), targets

    return build_seeded(spec, construct)
