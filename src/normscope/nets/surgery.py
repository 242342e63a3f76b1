"""Norm surgery on any nn.Module: find, count, swap and remove normalization layers.

Works on models normscope did not build: torch's own norm modules are recognized by
type, normscope's by their ``norm_kind`` class attribute, and weight normalization by
its parametrization (or the older ``torch.nn.utils.weight_norm`` hook).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.nn.modules.conv import _ConvNd
from torch.nn.modules.instancenorm import _InstanceNorm
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import _WeightNorm
from torch.nn.utils.weight_norm import WeightNorm

from normscope.errors import ConfigError, ModelError, unknown_name
from normscope.nets.norms import NORM_KINDS, ChannelRMSNorm, DyT, TokenBatchNorm, make_norm

LAYER_KINDS: tuple[str, ...] = tuple(kind for kind in NORM_KINDS if kind != "none")
"""Kinds :func:`find_norm_layers` reports."""


@dataclass(frozen=True)
class NormLayer:
    """A normalization layer of a model: its qualified name, kind and module.

    For kind "weight" the module is the weight-normalized Linear or Conv layer.
    """

    name: str
    kind: str
    module: nn.Module


def norm_kind(module: nn.Module) -> str | None:
    """The normalization kind of ``module``, or None if it normalizes nothing.

    GroupNorm(1, C) is reported as "layer": it is layer norm on feature maps.
    """
    declared = getattr(type(module), "norm_kind", None)
    if declared is not None:
        return declared
    if _is_weight_normalized(module):
        return "weight"
    if isinstance(module, _InstanceNorm):
        return "instance"
    if isinstance(module, _BatchNorm):
        return "batch"
    if isinstance(module, nn.GroupNorm):
        return "layer" if module.num_groups == 1 else "group"
    by_type = {nn.LayerNorm: "layer", nn.RMSNorm: "rms"}
    return next((kind for cls, kind in by_type.items() if isinstance(module, cls)), None)


def _is_weight_normalized(module: nn.Module) -> bool:
    if parametrize.is_parametrized(module, "weight"):
        return any(isinstance(p, _WeightNorm) for p in module.parametrizations.weight)
    return any(isinstance(hook, WeightNorm) for hook in module._forward_pre_hooks.values())


def find_norm_layers(model: nn.Module) -> list[NormLayer]:
    """Every normalization layer of ``model``, in registration order."""
    found = []
    for name, module in model.named_modules():
        kind = norm_kind(module)
        if kind is not None:
            found.append(NormLayer(name, kind, module))
    return found


def count_norm_layers(model: nn.Module, kinds: Iterable[str] | None = None) -> int:
    """Number of normalization layers of ``model`` (of ``kinds`` only, if given)."""
    wanted = _check_kinds(kinds) if kinds is not None else LAYER_KINDS
    return sum(layer.kind in wanted for layer in find_norm_layers(model))


def linear_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """(name, module) of every Linear and Conv layer of ``model``, in registration order."""
    return [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear | _ConvNd)]


def swap_norm(
    model: nn.Module,
    to: str,
    *,
    kinds: str | Iterable[str] = ("batch",),
    example_input: Tensor | tuple | Mapping | None = None,
    groups: int = 8,
    mean_subtraction: bool = False,
) -> nn.Module:
    """A deep copy of ``model`` whose norm layers of ``kinds`` are replaced by ``to``.

    The replacement normalizes the same features: BatchNorm2d(C) -> "layer" is
    GroupNorm(1, C), BatchNorm1d(C) on (N, C) -> "layer" is LayerNorm(C), "rms" on feature
    maps is ChannelRMSNorm(C), "none" is Identity; affine parameters are kept or omitted
    as in the original (at their initial values), and eps is carried over. Layers that
    already are of kind ``to`` are left as they are. Where the rank of a layer's input
    matters and its type does not tell it (BatchNorm1d, LayerNorm(C), ...), one forward
    pass of ``example_input`` in eval mode records it; without it such layers are taken
    to see (N, C) inputs. Weight normalization can only be removed (``to="none"``), which
    keeps the effective weight g v / ||v||. ``groups`` and ``mean_subtraction`` configure
    group and batch_rms replacements. The original model is left untouched.

    Raises ConfigError naming the layer where the replacement cannot normalize its input.
    """
    if to not in NORM_KINDS:
        raise unknown_name("norm", to, NORM_KINDS)
    wanted = _check_kinds((kinds,) if isinstance(kinds, str) else kinds)
    swapped = _deep_copy(model)
    targets = [layer for layer in find_norm_layers(swapped) if layer.kind in wanted]
    targets = [layer for layer in targets if layer.kind != to]
    ranks = _input_ranks(swapped, targets, example_input)
    reference = _reference_tensor(swapped)
    for layer in targets:
        if layer.kind == "weight":
            _remove_weight_norm(layer, to)
            continue
        replacement = _replacement(layer, to, ranks.get(layer.name), groups, mean_subtraction)
        replacement = _match(replacement, layer.module, reference)
        if not layer.name:
            return replacement
        parent_name, _, child = layer.name.rpartition(".")
        setattr(swapped.get_submodule(parent_name), child, replacement)
    return swapped


def remove_norm(
    model: nn.Module, *, example_input: Tensor | tuple | Mapping | None = None
) -> nn.Module:
    """A deep copy of ``model`` with every normalization layer removed.

    Norm modules become Identity; weight-normalized layers keep their effective weight.
    """
    return swap_norm(model, "none", kinds=LAYER_KINDS, example_input=example_input)


def _deep_copy(model: nn.Module) -> nn.Module:
    try:
        return copy.deepcopy(model)
    except RuntimeError as error:
        raise ModelError(
            f"norm surgery works on a deep copy, and this model cannot be copied ({error}). "
            "The deprecated torch.nn.utils.weight_norm is the usual cause: use "
            "torch.nn.utils.parametrizations.weight_norm instead"
        ) from None


def _check_kinds(kinds: Iterable[str]) -> tuple[str, ...]:
    kinds = tuple(kinds)
    for kind in kinds:
        if kind not in LAYER_KINDS:
            raise unknown_name("norm layer kind", kind, LAYER_KINDS)
    return kinds


@torch.no_grad()
def _input_ranks(
    model: nn.Module, targets: list[NormLayer], example_input: Tensor | tuple | Mapping | None
) -> dict[str, int]:
    """Rank of each target's input in one eval-mode forward pass (modes restored after)."""
    if example_input is None or not targets:
        return {}
    ranks: dict[str, int] = {}

    def recorder(name: str):
        def record(_: nn.Module, args: tuple) -> None:
            ranks.setdefault(name, args[0].dim())

        return record

    hooks = [layer.module.register_forward_pre_hook(recorder(layer.name)) for layer in targets]
    modes = {module: module.training for module in model.modules()}
    try:
        model.eval()
        # inputs as a model takes them: a tensor, a tuple (positional), a mapping (keywords)
        if isinstance(example_input, Mapping):
            model(**example_input)
        elif isinstance(example_input, tuple | list):
            model(*example_input)
        else:
            model(example_input)
    finally:
        for hook in hooks:
            hook.remove()
        for module, mode in modes.items():
            module.train(mode)
    return ranks


def _layout(layer: NormLayer, rank: int | None) -> tuple[int, int | None, bool]:
    """(features, input rank or None, features last) of a norm layer."""
    module = layer.module
    if isinstance(module, TokenBatchNorm):
        return module.num_features, 3, True
    if isinstance(module, _InstanceNorm | _BatchNorm):
        default = {nn.BatchNorm2d: 4, nn.BatchNorm3d: 5, nn.InstanceNorm1d: 3}
        default |= {nn.InstanceNorm2d: 4, nn.InstanceNorm3d: 5}
        implied = next((r for cls, r in default.items() if isinstance(module, cls)), 2)
        return module.num_features, rank or implied, False
    if isinstance(module, nn.LayerNorm | nn.RMSNorm):
        shape = module.normalized_shape
        if len(shape) == 1:
            return shape[0], rank or 2, True
        return shape[0], len(shape) + 1, False
    if isinstance(module, nn.GroupNorm):
        return module.num_channels, rank, False
    if isinstance(module, ChannelRMSNorm):
        return module.num_features, rank, False
    if isinstance(module, DyT):
        return module.num_features, rank or 2, module.dim == -1
    raise ConfigError(
        f"layer {layer.name!r} ({type(module).__name__}, kind {layer.kind}) is not a module "
        "whose features normscope can read; swap it by hand"
    )


def _replacement(
    layer: NormLayer, to: str, rank: int | None, groups: int, mean_subtraction: bool
) -> nn.Module:
    if to == "none":
        return nn.Identity()
    if to == "weight":
        raise ConfigError(
            f"layer {layer.name!r}: weight normalization reparametrizes a Linear or Conv "
            "layer and cannot replace a norm layer; swap to none and apply "
            "torch.nn.utils.parametrizations.weight_norm to the layers you want"
        )
    features, ndim, features_last = _layout(layer, rank)
    if to == "group" and ndim in (None, 2) and features < 2 * groups:
        # on (N, C) features a group holds C / groups values; one value normalizes to 0,
        # and the layer would output its bias whatever its input
        raise ConfigError(
            f"layer {layer.name!r}: group norm with groups={groups} on {features} features "
            "would normalize single values (every output would be the bias): choose "
            f"groups <= {features // 2} or swap to another kind"
        )
    eps = getattr(layer.module, "eps", None)
    return make_norm(
        to,
        features,
        ndim=ndim,
        features_last=features_last,
        groups=groups,
        mean_subtraction=mean_subtraction,
        eps=eps if isinstance(eps, float) else 1e-5,
        affine=getattr(layer.module, "weight", None) is not None,
        where=f"layer {layer.name!r} ({layer.module})",
    )


def _remove_weight_norm(layer: NormLayer, to: str) -> None:
    if to != "none":
        raise ConfigError(
            f"layer {layer.name!r} is weight-normalized, which can only be removed "
            f"(to='none'), not swapped to {to!r}"
        )
    _own_class(layer.module)
    parametrize.remove_parametrizations(layer.module, "weight", leave_parametrized=True)


def _own_class(module: nn.Module) -> None:
    """Give a deep-copied parametrized module a class of its own.

    A deep copy shares the generated Parametrized* class with the original, and removing
    a parametrization deletes the property from that class, which would break the
    original model.
    """
    cls = type(module)
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    module.__class__ = type(cls.__name__, cls.__bases__, namespace)


def _reference_tensor(model: nn.Module) -> Tensor | None:
    tensors = [*model.parameters(), *model.buffers()]
    return next((t for t in tensors if t.is_floating_point()), None)


def _match(replacement: nn.Module, original: nn.Module, reference: Tensor | None) -> nn.Module:
    """Put ``replacement`` on the original's device and dtype, in its train/eval mode."""
    own = _reference_tensor(original)
    like = own if own is not None else reference
    if like is not None:
        replacement = replacement.to(device=like.device, dtype=like.dtype)
    return replacement.train(original.training)
