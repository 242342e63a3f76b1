"""The variants of a model an audit compares, built by norm surgery on deep copies.

- ``as_given``: the model itself (a deep copy).
- ``no_norm``: every normalization layer removed (``nets.remove_norm``).
- ``bn_to_layer``, ``bn_to_rms``, ``bn_to_group``: batch norm swapped for layer, RMS or
  group norm (``nets.swap_norm``) where the shapes allow; where they do not, the variant
  is skipped with the surgery's reason.

Each variant that still holds batch norm is measured once per batch-norm mode (``train``:
batch statistics; ``eval``: running statistics); the others once, with the mode marked
as not applying.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from normscope import nets
from normscope.errors import ConfigError, ModelError, NormscopeError, unknown_name
from normscope.subject import BN_MODES, is_batch_norm

VARIANTS: tuple[str, ...] = ("as_given", "no_norm", "bn_to_layer", "bn_to_rms", "bn_to_group")
"""Variant names, in the order they are reported."""

_SWAPS = {"bn_to_layer": "layer", "bn_to_rms": "rms", "bn_to_group": "group"}
NO_NORM_NOTE = "no normalization layers found; variants that need them were skipped"


@dataclass(frozen=True)
class Variant:
    """One model variant: its name, the model (None when skipped) and why it was skipped."""

    name: str
    model: nn.Module | None
    reason: str = ""

    @property
    def has_batch_norm(self) -> bool:
        return self.model is not None and any(is_batch_norm(m) for m in self.model.modules())


@dataclass(frozen=True)
class Run:
    """One measured configuration: a variant in one batch-norm mode.

    ``bn_mode`` is ``""`` when the variant holds no batch norm (the mode does not apply;
    the Subject then runs with ``"train"``, which changes nothing).
    """

    variant: Variant
    bn_mode: str

    @property
    def label(self) -> str:
        return f"{self.variant.name}/{self.bn_mode}" if self.bn_mode else self.variant.name

    @property
    def subject_mode(self) -> str:
        return self.bn_mode or "train"


def _ordered_choice(kind: str, names: Sequence[str] | str, valid: Sequence[str]) -> tuple[str, ...]:
    """``names`` validated against ``valid`` and put in ``valid``'s order."""
    names = [names] if isinstance(names, str) else list(names)
    for name in names:
        if name not in valid:
            raise unknown_name(kind, name, valid)
    if not names:
        raise ConfigError(f"{kind}s is empty: give one or more of {', '.join(valid)}.")
    return tuple(v for v in valid if v in names)


def check_variants(names: Sequence[str]) -> tuple[str, ...]:
    """``names`` validated and put in report order (UnknownNameError for a bad name)."""
    return _ordered_choice("audit variant", names, VARIANTS)


def check_bn_modes(modes: Sequence[str]) -> tuple[str, ...]:
    """Batch-norm modes validated, in the order ``train``, ``eval``."""
    return _ordered_choice("bn_mode", modes, BN_MODES)


def copy_model(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` (ModelError, saying why, when it cannot be copied)."""
    try:
        return copy.deepcopy(model)
    except RuntimeError as err:
        raise ModelError(
            f"the audit measures deep copies so that the model is never modified, and this "
            f"model cannot be copied ({err}). The deprecated torch.nn.utils.weight_norm is "
            "the usual cause: use torch.nn.utils.parametrizations.weight_norm instead."
        ) from None


def _variant(name: str, model: nn.Module, example: torch.Tensor) -> Variant:
    kinds = {layer.kind for layer in nets.find_norm_layers(model)}
    if name == "as_given":
        return Variant(name, copy_model(model))
    if name == "no_norm":
        if not kinds:
            return Variant(name, None, "the model has no normalization layer to remove")
        return Variant(name, nets.remove_norm(model, example_input=example))
    if "batch" not in kinds:
        return Variant(name, None, "the model has no batch norm layer to swap")
    try:
        swapped = nets.swap_norm(model, _SWAPS[name], kinds=("batch",), example_input=example)
    except NormscopeError as err:
        return Variant(name, None, str(err))
    return Variant(name, swapped)


def build_variants(model: nn.Module, names: Sequence[str], example: torch.Tensor) -> list[Variant]:
    """The variants ``names`` of ``model`` (deep copies; ``model`` itself is not touched).

    ``example`` is a few input samples: surgery runs one eval-mode forward of it (on a
    copy) to read the rank of each norm layer's input.
    """
    return [_variant(name, model, example) for name in check_variants(names)]


def runs_of(variants: Sequence[Variant], bn_modes: Sequence[str]) -> list[Run]:
    """Every (variant, mode) to measure: one per mode for variants with batch norm."""
    out = []
    for variant in variants:
        if variant.model is None:
            continue
        modes = check_bn_modes(bn_modes) if variant.has_batch_norm else ("",)
        out += [Run(variant, mode) for mode in modes]
    return out
