"""Hand-written models that normscope did not build, for the audit tests."""

from __future__ import annotations

import torch
from torch import nn


class _Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(x + self.bn2(self.conv2(h)))


class TinyResNet(nn.Module):
    """Conv-BN stem, one residual block, global average pooling, linear head."""

    def __init__(self, channels: int = 4, classes: int = 3, in_channels: int = 1) -> None:
        super().__init__()
        self.stem = nn.Conv2d(in_channels, channels, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.block = _Block(channels)
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.block(torch.relu(self.bn(self.stem(x))))
        return self.head(h.mean(dim=(2, 3)))


class TinyTransformer(nn.Module):
    """Tokens from the input vector, one pre-LN self-attention + MLP block, mean-pooled head.

    Attention is written out (softmax(q k^T / sqrt(d)) v) so that every measure can take
    its second derivatives.
    """

    def __init__(self, d_in: int = 8, tokens: int = 4, width: int = 8, classes: int = 3):
        super().__init__()
        self.tokens, self.chunk, self.width = tokens, d_in // tokens, width
        self.embed = nn.Linear(self.chunk, width)
        self.ln1 = nn.LayerNorm(width)
        self.qkv = nn.Linear(width, 3 * width)
        self.ln2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(
            nn.Linear(width, 2 * width), nn.GELU(), nn.Linear(2 * width, width)
        )
        self.head = nn.Linear(width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.embed(x.reshape(x.shape[0], self.tokens, self.chunk))
        q, k, v = self.qkv(self.ln1(h)).split(self.width, dim=-1)
        weights = torch.softmax(q @ k.transpose(1, 2) / self.width**0.5, dim=-1)
        h = h + weights @ v
        h = h + self.mlp(self.ln2(h))
        return self.head(h.mean(dim=1))


def plain_mlp(d_in: int = 8, width: int = 12, classes: int = 3) -> nn.Module:
    """No normalization anywhere."""
    return nn.Sequential(nn.Linear(d_in, width), nn.Tanh(), nn.Linear(width, classes))


def bn_mlp(d_in: int = 8, width: int = 12, classes: int = 3) -> nn.Module:
    """Linear-BN-ReLU-Linear with non-trivial running statistics (eval differs from train)."""
    model = nn.Sequential(
        nn.Linear(d_in, width), nn.BatchNorm1d(width), nn.ReLU(), nn.Linear(width, classes)
    )
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        model[1].running_mean.copy_(0.5 * torch.randn(width, generator=gen))
        model[1].running_var.copy_(0.5 + torch.rand(width, generator=gen))
    return model


def seeded(factory, seed: int = 0, **kwargs) -> nn.Module:
    """``factory(**kwargs)`` built under a fixed seed, global RNG state restored after."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return factory(**kwargs)


def gaussian_data(n: int = 64, shape: tuple[int, ...] = (8,), classes: int = 3, seed: int = 1):
    """``n`` Gaussian inputs of ``shape`` with uniform labels (a normscope Dataset)."""
    from normscope.data import Dataset

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=gen)
    y = torch.randint(0, classes, (n,), generator=gen)
    return Dataset(x, y, num_classes=classes, name="gaussian")
