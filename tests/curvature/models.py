"""Small float64 models with every normalization the curvature code must handle.

Built from plain ``torch.nn`` so that curvature tests do not depend on normscope's
builders. Batch-norm running statistics are set to non-trivial values so that eval
mode differs from train mode.
"""

from __future__ import annotations

import torch
from torch import nn

from normscope import Subject


class ResidualBlock(nn.Module):
    """``x + W2 tanh(BN(W1 x))``: a skip connection around a batch-norm branch."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.branch = nn.Sequential(
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.Tanh(), nn.Linear(width, width)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.branch(x)


def _mlp(norm: nn.Module) -> nn.Module:
    return nn.Sequential(nn.Linear(4, 5), norm, nn.Tanh(), nn.Linear(5, 3))


BUILDERS = {
    "mlp_batchnorm": lambda: _mlp(nn.BatchNorm1d(5)),
    "mlp_layernorm": lambda: _mlp(nn.LayerNorm(5)),
    "mlp_rmsnorm": lambda: _mlp(nn.RMSNorm(5)),
    "cnn_batchnorm": lambda: nn.Sequential(
        nn.Unflatten(1, (1, 2, 2)),
        nn.Conv2d(1, 3, 2, padding=1),
        nn.BatchNorm2d(3),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(3, 3),
    ),
    "residual": lambda: nn.Sequential(
        nn.Linear(4, 4), ResidualBlock(4), nn.LayerNorm(4), nn.Linear(4, 3)
    ),
}
MODELS = tuple(BUILDERS)


def build(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = BUILDERS[name]().double()
    gen = torch.Generator().manual_seed(seed + 100)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.rand(m.num_features, generator=gen) - 0.5)
                m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=gen))
            if isinstance(m, (nn.LayerNorm, nn.RMSNorm, nn.modules.batchnorm._BatchNorm)):
                # affine parameters away from their (1, 0) init, so they carry curvature
                m.weight.add_(
                    0.3 * torch.randn(m.weight.shape, generator=gen, dtype=m.weight.dtype)
                )
                if getattr(m, "bias", None) is not None:
                    m.bias.add_(0.3 * torch.randn(m.bias.shape, generator=gen, dtype=m.bias.dtype))
    return model


def data(n: int = 10, loss: str = "cross_entropy", seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=gen, dtype=torch.float64)
    if loss == "mse":
        return x, torch.randn(n, 3, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, 3, (n,), generator=gen)


def subject(
    name: str,
    bn_mode: str = "train",
    *,
    loss: str = "cross_entropy",
    batch_size: int | None = None,
    n: int = 10,
    params=None,
) -> Subject:
    return Subject(
        build(name),
        data(n, loss),
        loss=loss,
        bn_mode=bn_mode,
        batch_size=batch_size,
        params=params,
    )
