"""CIFAR-style residual networks (He et al., 2016) with pluggable normalization."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from normscope.errors import ConfigError
from normscope.nets.activations import make_activation
from normscope.nets.building import build_seeded, output_norm, site_norm, weight_norm_targets
from normscope.nets.placement import resolve_sites
from normscope.nets.spec import NetSpec

STAGES = 3
"""Stages of width w, 2w, 4w; the second and third halve the resolution."""

NormFactory = Callable[[int], nn.Module | None]


class BasicBlock(nn.Module):
    """Two 3x3 convolutions and a shortcut (a 1x1 convolution when the shape changes).

    order "pre": out = act(n2(conv2(act(n1(conv1 x)))) + shortcut(x)) (the original ResNet).
    order "post": out = n2(act(conv2(n1(act(conv1 x))))) + shortcut(x). The projection
    shortcut is conv1x1 -> norm. Unnormalized blocks hold Identity in place of norms.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        stride: int,
        *,
        norm: NormFactory,
        activation: Callable[[], nn.Module],
        order: str,
        bias: bool,
    ) -> None:
        super().__init__()
        self.order = order
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, padding=1, bias=bias)
        self.norm1 = norm(out_channels) or nn.Identity()
        self.act1 = activation()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=bias)
        self.norm2 = norm(out_channels) or nn.Identity()
        self.act2 = activation()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            projection = nn.Conv2d(in_channels, out_channels, 1, stride, bias=bias)
            self.shortcut = nn.Sequential(projection, norm(out_channels) or nn.Identity())

    def convs(self) -> list[nn.Module]:
        """The block's convolutions (weight normalization targets)."""
        convs = [self.conv1, self.conv2]
        return convs if isinstance(self.shortcut, nn.Identity) else [*convs, self.shortcut[0]]

    def forward(self, x: Tensor) -> Tensor:
        if self.order == "pre":
            h = self.norm2(self.conv2(self.act1(self.norm1(self.conv1(x)))))
            return self.act2(h + self.shortcut(x))
        h = self.norm2(self.act2(self.conv2(self.norm1(self.act1(self.conv1(x))))))
        return h + self.shortcut(x)


class ResNet(nn.Module):
    """stem (conv3x3 -> norm -> act) -> stages of BasicBlocks -> global average pool -> head."""

    def __init__(
        self, stem: nn.Sequential, blocks: list[BasicBlock], head: nn.Linear, out_norm: nn.Module
    ) -> None:
        super().__init__()
        self.stem = stem
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = head
        self.out_norm = out_norm

    def forward(self, x: Tensor) -> Tensor:
        return self.out_norm(self.out(self.pool(self.blocks(self.stem(x)))))


def build_resnet(spec: NetSpec) -> ResNet:
    """A CIFAR-style ResNet with 3 stages of ``depth`` basic blocks each (6 depth + 2 layers).

    Stage s has ``width`` * 2^s channels. The hidden layers that ``placement`` indexes are
    the stem (index 0) and the blocks (1 .. 3 depth); a normalized block normalizes after
    each of its convolutions and its projection shortcut, so it holds 2 norm layers (3
    with a projection). Norm kinds on feature maps as in :func:`build_cnn`.
    """
    width = spec.single_width()
    if len(spec.input_shape) != 3:
        raise ConfigError(
            f"resnet takes image samples of shape (C, H, W); got input_shape {spec.input_shape}"
        )
    sites = resolve_sites(spec, 1 + STAGES * spec.depth)

    def norm_at(index: int) -> NormFactory:
        return lambda channels: site_norm(spec, sites, index, channels, ndim=4)

    def construct(_: torch.Generator) -> tuple[nn.Module, list[nn.Module]]:
        stem_conv = nn.Conv2d(spec.input_shape[0], width, 3, padding=1, bias=spec.bias)
        stem_norm = norm_at(0)(width) or nn.Identity()
        act = make_activation(spec.activation)
        pre = spec.order == "pre"
        stem = nn.Sequential(stem_conv, *((stem_norm, act) if pre else (act, stem_norm)))
        blocks = _blocks(spec, width, norm_at)
        head = nn.Linear(width * 2 ** (STAGES - 1), spec.output_dim, bias=spec.bias)
        model = ResNet(stem, blocks, head, output_norm(spec, sites) or nn.Identity())
        hidden = [[stem_conv]] + [block.convs() for block in blocks]
        return model, weight_norm_targets(spec, sites, hidden, head)

    return build_seeded(spec, construct)


def _blocks(spec: NetSpec, width: int, norm_at: Callable[[int], NormFactory]) -> list[BasicBlock]:
    blocks = []
    in_channels = width
    for stage in range(STAGES):
        out_channels = width * 2**stage
        for position in range(spec.depth):
            stride = 2 if stage > 0 and position == 0 else 1
            block = BasicBlock(
                in_channels,
                out_channels,
                stride,
                norm=norm_at(1 + len(blocks)),
                activation=lambda: make_activation(spec.activation),
                order=spec.order,
                bias=spec.bias,
            )
            blocks.append(block)
            in_channels = out_channels
    return blocks
