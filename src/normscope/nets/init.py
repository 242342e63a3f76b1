"""Weight initialization schemes, drawn from a local generator (global RNG untouched).

Every draw is made in float64 and then copied into the parameter, so a float32 and a
float64 build of the same spec and seed hold the same weights up to rounding.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn
from torch.nn.modules.conv import _ConvNd

from normscope.errors import unknown_name

INITS: tuple[str, ...] = ("gaussian", "orthogonal", "kaiming", "xavier")
"""Every initialization scheme a spec accepts."""


def haar_orthogonal(rows: int, cols: int, generator: torch.Generator) -> Tensor:
    """A Haar-distributed (rows, cols) matrix with orthonormal rows (or columns if rows > cols).

    QR of a Gaussian matrix with the signs of R's diagonal moved into Q (Mezzadri 2007);
    without the sign correction Q is not Haar distributed.
    """
    tall = torch.randn(max(rows, cols), min(rows, cols), generator=generator, dtype=torch.float64)
    q, r = torch.linalg.qr(tall)
    q = q * torch.sign(torch.diagonal(r)).where(torch.diagonal(r) != 0, 1.0)
    return q if rows >= cols else q.T


def draw_weight(
    shape: torch.Size, scheme: str, *, sigma_w: float, generator: torch.Generator
) -> Tensor:
    """A weight of ``shape`` (out, in, *kernel) with fan_in = in * prod(kernel).

    gaussian: N(0, sigma_w^2 / fan_in) (karakida2019). orthogonal: Haar orthogonal
    (out, fan_in) matrix times sigma_w (meterez2024). kaiming: N(0, 2 / fan_in) (He et
    al. 2015, the ReLU gain). xavier: N(0, 2 / (fan_in + fan_out)) (Glorot & Bengio 2010).
    """
    fan_out, fan_in = shape[0], math.prod(shape[1:])
    if scheme == "orthogonal":
        return sigma_w * haar_orthogonal(fan_out, fan_in, generator).reshape(shape)
    std = {
        "gaussian": sigma_w / math.sqrt(fan_in),
        "kaiming": math.sqrt(2.0 / fan_in),
        "xavier": math.sqrt(2.0 / (fan_in + fan_out * math.prod(shape[2:]))),
    }
    if scheme not in std:
        raise unknown_name("init", scheme, INITS)
    return std[scheme] * torch.randn(shape, generator=generator, dtype=torch.float64)


@torch.no_grad()
def initialize(
    model: nn.Module,
    *,
    scheme: str,
    sigma_w: float,
    sigma_b: float,
    weight_scale: float,
    generator: torch.Generator,
) -> None:
    """Initialize every Linear and Conv layer of ``model`` in registration order.

    W = weight_scale * draw_weight(scheme); b ~ N(0, sigma_b^2) (zero when sigma_b = 0).
    """
    for module in model.modules():
        # a network built on the meta device (nets.check) has no values to draw
        if not isinstance(module, nn.Linear | _ConvNd) or module.weight.is_meta:
            continue
        weight = draw_weight(module.weight.shape, scheme, sigma_w=sigma_w, generator=generator)
        module.weight.copy_(weight_scale * weight)
        if module.bias is not None:
            bias = torch.randn(module.bias.shape, generator=generator, dtype=torch.float64)
            module.bias.copy_(sigma_b * bias)


def make_generator(seed: int) -> torch.Generator:
    """A CPU generator seeded with ``seed``, independent of torch's global RNG."""
    return torch.Generator().manual_seed(seed)
