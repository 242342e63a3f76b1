"""A small encoder-only transformer for sequences and image patches, pre- or post-norm."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from normscope.errors import ConfigError
from normscope.nets.activations import make_activation
from normscope.nets.building import build_seeded, check_norm_allowed, output_norm, site_norm
from normscope.nets.placement import resolve_sites
from normscope.nets.spec import NetSpec

TRANSFORMER_NORMS: tuple[str, ...] = ("none", "layer", "rms", "dyt", "batch")
"""Norms that act on token features; batch norm is taken per feature over batch and tokens."""

POSITION_STD = 0.02
"""Standard deviation of the learned position embedding at initialization (as in BERT)."""


class Tokenizer(nn.Module):
    """Samples to token sequences (N, T, token_dim), one linear embedding per token.

    (N, L): L scalar tokens. (N, C, L): L tokens of C features (e.g. MNIST-1D, L = 40).
    (N, C, H, W): non-overlapping p x p patches of C p^2 features (as in ViT).
    """

    def __init__(
        self, input_shape: tuple[int, ...], width: int, patch_size: int | None, bias: bool
    ) -> None:
        super().__init__()
        self.input_shape = input_shape
        self.patch_size = patch_size
        self.num_tokens, token_dim = _token_layout(input_shape, patch_size)
        self.embed = nn.Linear(token_dim, width, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        if len(self.input_shape) == 1:
            tokens = x.unsqueeze(-1)
        elif len(self.input_shape) == 2:
            tokens = x.transpose(1, 2)
        else:
            tokens = F.unfold(x, self.patch_size, stride=self.patch_size).transpose(1, 2)
        return self.embed(tokens)


def _token_layout(input_shape: tuple[int, ...], patch_size: int | None) -> tuple[int, int]:
    if len(input_shape) == 1:
        return input_shape[0], 1
    if len(input_shape) == 2:
        return input_shape[1], input_shape[0]
    if len(input_shape) != 3:
        raise ConfigError(
            f"transformer takes samples of shape (L,), (C, L) or (C, H, W); got {input_shape}"
        )
    channels, height, width = input_shape
    if patch_size is None or height % patch_size or width % patch_size:
        raise ConfigError(
            f"image samples {input_shape} need `patch_size` dividing both {height} and "
            f"{width}; got patch_size={patch_size}"
        )
    return (height // patch_size) * (width // patch_size), channels * patch_size**2


class SelfAttention(nn.Module):
    """Multi-head self-attention softmax(Q K^T / sqrt(d_head)) V with explicit Linear layers.

    Written out (not ``nn.MultiheadAttention``) so every projection is an ``nn.Linear``
    that measures can find, and so second derivatives take the plain autograd path.
    """

    def __init__(self, width: int, heads: int, bias: bool) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width, bias=bias)
        self.proj = nn.Linear(width, width, bias=bias)

    def forward(self, x: Tensor) -> Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).unbind(2)
        q, k, v = (z.transpose(1, 2) for z in (q, k, v))
        scores = q @ k.transpose(-2, -1) / math.sqrt(d // self.heads)
        out = (scores.softmax(dim=-1) @ v).transpose(1, 2).reshape(n, t, d)
        return self.proj(out)


class EncoderBlock(nn.Module):
    """pre-norm: x + attn(n1 x), then + ffn(n2 x). post-norm: n1(x + attn x), n2(x + ffn x)."""

    def __init__(
        self,
        width: int,
        heads: int,
        mlp_ratio: int,
        norms: tuple[nn.Module, nn.Module],
        activation: nn.Module,
        order: str,
        bias: bool,
    ) -> None:
        super().__init__()
        self.order = order
        self.norm1, self.norm2 = norms
        self.attn = SelfAttention(width, heads, bias)
        self.ffn = nn.Sequential(
            nn.Linear(width, mlp_ratio * width, bias=bias),
            activation,
            nn.Linear(mlp_ratio * width, width, bias=bias),
        )

    def forward(self, x: Tensor) -> Tensor:
        if self.order == "pre":
            x = x + self.attn(self.norm1(x))
            return x + self.ffn(self.norm2(x))
        x = self.norm1(x + self.attn(x))
        return self.norm2(x + self.ffn(x))


class Transformer(nn.Module):
    """tokens + position embedding -> encoder blocks -> mean over tokens -> linear head."""

    def __init__(
        self, tokenizer: Tokenizer, blocks: list[EncoderBlock], head: nn.Linear, out_norm: nn.Module
    ) -> None:
        super().__init__()
        self.tokenizer = tokenizer
        self.position = nn.Parameter(torch.zeros(tokenizer.num_tokens, head.in_features))
        self.blocks = nn.Sequential(*blocks)
        self.out = head
        self.out_norm = out_norm

    def forward(self, x: Tensor) -> Tensor:
        h = self.blocks(self.tokenizer(x) + self.position)
        return self.out_norm(self.out(h.mean(dim=1)))


def build_transformer(spec: NetSpec) -> Transformer:
    """An encoder of ``depth`` blocks with model dimension ``width`` and ``heads`` heads.

    ``order`` "pre" builds a pre-norm, "post" a post-norm encoder. The hidden layers that
    ``placement`` indexes are the blocks; a normalized block holds 2 norm layers (one per
    sublayer), an unnormalized one Identity. There is no final norm before pooling. Norms:
    layer = LayerNorm, rms = RMSNorm, dyt = DyT, batch = BatchNorm1d over the feature
    dimension (:class:`~normscope.nets.norms.TokenBatchNorm`), none.
    """
    check_norm_allowed(spec, TRANSFORMER_NORMS, "norms of token features")
    width = spec.single_width()
    if width % spec.heads:
        raise ConfigError(
            f"transformer width {width} must be divisible by heads={spec.heads}; "
            "change width or heads"
        )
    sites = resolve_sites(spec, spec.depth)

    def norms(index: int) -> tuple[nn.Module, nn.Module]:
        made = [site_norm(spec, sites, index, width, ndim=3, features_last=True) for _ in "12"]
        return tuple(norm or nn.Identity() for norm in made)

    def construct(generator: torch.Generator) -> tuple[nn.Module, list[nn.Module]]:
        tokenizer = Tokenizer(spec.input_shape, width, spec.patch_size, spec.bias)
        blocks = [
            EncoderBlock(
                width,
                spec.heads,
                spec.mlp_ratio,
                norms(index),
                make_activation(spec.activation),
                spec.order,
                spec.bias,
            )
            for index in range(spec.depth)
        ]
        head = nn.Linear(width, spec.output_dim, bias=spec.bias)
        model = Transformer(tokenizer, blocks, head, output_norm(spec, sites) or nn.Identity())
        position = torch.randn(model.position.shape, generator=generator, dtype=torch.float64)
        with torch.no_grad():
            model.position.copy_(POSITION_STD * position)
        return model, []

    return build_seeded(spec, construct)
