"""Activations by name, and the shaped activations of meterez2024."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from normscope.errors import unknown_name

ACTIVATIONS: tuple[str, ...] = ("identity", "relu", "tanh", "gelu", "sin")
"""Every activation a spec accepts."""


class Sin(nn.Module):
    """Elementwise sine, one of the odd activations meterez2024 shapes."""

    def forward(self, input: Tensor) -> Tensor:
        return torch.sin(input)


_FACTORIES: dict[str, Callable[[], nn.Module]] = {
    "identity": nn.Identity,
    "relu": nn.ReLU,
    "tanh": nn.Tanh,
    "gelu": nn.GELU,
    "sin": Sin,
}


class ShapedActivation(nn.Module):
    """phi(g * h): an activation applied to its pre-activation times a fixed gain g.

    meterez2024 shapes the activation of hidden layer l (1-based) with g_l = l^(-gamma)
    (see :func:`shaping_gain`), so that deep layers act almost linearly and gradients stay
    bounded with depth.
    """

    def __init__(self, activation: nn.Module, gain: float) -> None:
        super().__init__()
        self.activation = activation
        self.gain = float(gain)

    def extra_repr(self) -> str:
        return f"gain={self.gain:.6g}"

    def forward(self, input: Tensor) -> Tensor:
        return self.activation(self.gain * input)


def shaping_gain(layer: int, gain_exponent: float) -> float:
    """Pre-activation gain g_l = l^(-gamma) of hidden layer ``layer`` (1-based), meterez2024."""
    return float(layer) ** (-gain_exponent)


def make_activation(
    name: str, *, layer: int | None = None, gain_exponent: float | None = None
) -> nn.Module:
    """The activation ``name``; shaped with g_l = l^(-gain_exponent) when both are given."""
    if name not in _FACTORIES:
        raise unknown_name("activation", name, ACTIVATIONS)
    activation = _FACTORIES[name]()
    if gain_exponent is None or layer is None:
        return activation
    return ShapedActivation(activation, shaping_gain(layer, gain_exponent))
