"""Plumbing shared by every routine: the vector space, seeded draws, counted products.

An operator is given as ``matvec: v -> A v`` on flat tensors of shape ``(dim,)`` and,
optionally, ``matmat: V -> A V`` on blocks of shape ``(k, dim)`` (one row per vector).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from normscope.errors import ConfigError

Matvec = Callable[[Tensor], Tensor]
Matmat = Callable[[Tensor], Tensor]
Seed = int | torch.Generator


@dataclass(frozen=True)
class Space:
    """Dimension, dtype and device of the vectors an operator acts on."""

    dim: int
    dtype: torch.dtype
    device: torch.device

    @property
    def eps(self) -> float:
        return torch.finfo(self.dtype).eps


def resolve_space(
    dim: int | Tensor, dtype: torch.dtype | None, device: torch.device | str | None
) -> Space:
    """``dim`` is an int, or an example tensor whose numel, dtype and device are used."""
    if isinstance(dim, Tensor):
        dtype = dim.dtype if dtype is None else dtype
        device = dim.device if device is None else device
        dim = dim.numel()
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ConfigError(f"dim must be a positive int or an example tensor, got {dim!r}.")
    dtype = torch.get_default_dtype() if dtype is None else dtype
    if not dtype.is_floating_point or dtype.is_complex:
        raise ConfigError(f"dtype must be a real floating dtype (float32, float64), got {dtype}.")
    return Space(dim, dtype, torch.device("cpu" if device is None else device))


def make_generator(seed: Seed) -> torch.Generator:
    """A ``torch.Generator`` from an int seed; a given generator is used as is."""
    if isinstance(seed, torch.Generator):
        return seed
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ConfigError(f"seed must be an int or a torch.Generator, got {seed!r}.")
    return torch.Generator().manual_seed(seed)


def gaussian(space: Space, rows: int, gen: torch.Generator) -> Tensor:
    """Standard normal rows ``(rows, dim)``, drawn in float64 so every dtype sees the same draw."""
    draw = torch.randn((rows, space.dim), generator=gen, dtype=torch.float64, device=gen.device)
    return draw.to(dtype=space.dtype, device=space.device)


def rademacher(space: Space, rows: int, gen: torch.Generator) -> Tensor:
    """Rows ``(rows, dim)`` of independent random signs."""
    bits = torch.randint(0, 2, (rows, space.dim), generator=gen, device=gen.device)
    return (2 * bits - 1).to(dtype=space.dtype, device=space.device)


def check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}.")
    return value


def check_positive_float(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}.")
    return float(value)


class CountedOperator:
    """Applies the operator to a block of rows and counts the products used."""

    def __init__(self, matvec: Matvec, matmat: Matmat | None, space: Space) -> None:
        if matvec is None and matmat is None:
            raise ConfigError("give matvec (v -> A v) or matmat (V -> A V); both are None.")
        self._matvec = matvec
        self._matmat = matmat
        self.space = space
        self.num_matvecs = 0

    def __call__(self, block: Tensor) -> Tensor:
        if block.shape[0] == 0:
            return block.clone()
        if self._matmat is not None:
            out = self._matmat(block)
        else:
            out = torch.stack([self._matvec(v) for v in block])
        self.num_matvecs += block.shape[0]
        if out.shape != block.shape:
            raise ConfigError(
                f"the operator returned shape {tuple(out.shape)} for input shape "
                f"{tuple(block.shape)}; matvec must map (dim,) -> (dim,) and matmat "
                f"(k, dim) -> (k, dim) with dim={self.space.dim}."
            )
        return out.to(dtype=block.dtype, device=block.device)
