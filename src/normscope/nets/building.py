"""Steps every builder shares: seeded construction, norm sites, the output norm."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable

import torch
from torch import nn

from normscope.errors import ConfigError
from normscope.nets.init import initialize, make_generator
from normscope.nets.norms import apply_weight_norm, make_norm
from normscope.nets.placement import NormSites
from normscope.nets.spec import NetSpec

OUTPUT_NORMS: tuple[str, ...] = ("batch", "batch_rms", "layer", "rms", "dyt", "weight")
"""Kinds that can normalize a network's (N, output_dim) output (placement "output")."""

Construct = Callable[[torch.Generator], tuple[nn.Module, list[nn.Module]]]


def build_seeded(spec: NetSpec, construct: Construct) -> nn.Module:
    """Run ``construct`` and initialize its result from ``spec.seed`` alone.

    ``construct(generator)`` returns the model and the layers to weight-normalize. Module
    constructors draw default weights from torch's global RNG; its state is saved and
    restored around them, and every weight is then redrawn from a local generator.
    Weight normalization is applied last so that it keeps the initialized weights.
    """
    generator = make_generator(spec.seed)
    with torch.random.fork_rng(devices=[]):
        model, weight_normed = construct(generator)
    model = model.to(spec.torch_dtype)
    initialize(
        model,
        scheme=spec.init,
        sigma_w=spec.sigma_w,
        sigma_b=spec.sigma_b,
        weight_scale=spec.weight_scale,
        generator=generator,
    )
    for module in weight_normed:
        apply_weight_norm(module)
    return model


def check_norm_allowed(spec: NetSpec, allowed: Iterable[str], reason: str = "") -> None:
    """Raise ConfigError when ``spec.norm`` is not among ``allowed`` for this architecture."""
    allowed = tuple(allowed)
    if spec.norm not in allowed:
        why = f" ({reason})" if reason else ""
        raise ConfigError(
            f"norm {spec.norm!r} does not apply to a {spec.arch}{why}; "
            f"choose one of {', '.join(allowed)}"
        )


def site_norm(
    spec: NetSpec,
    sites: NormSites,
    index: int,
    num_features: int,
    *,
    ndim: int,
    features_last: bool = False,
) -> nn.Module | None:
    """The norm module of hidden layer ``index``, or None (not a site, or weight norm)."""
    if index not in sites.hidden or spec.norm == "weight":
        return None
    return make_norm(
        spec.norm,
        num_features,
        ndim=ndim,
        features_last=features_last,
        groups=spec.groups,
        mean_subtraction=spec.mean_subtraction,
        eps=spec.eps,
        where=f"{spec.arch} hidden layer {index} ({num_features} features)",
    )


def output_norm(spec: NetSpec, sites: NormSites) -> nn.Module | None:
    """The norm on the network's output (placement "output"), without affine parameters.

    karakida2019's batch norm in the last layer subtracts the batch mean of the outputs;
    a learnable shift would put back the constant direction that this removes from the
    Fisher, so output norms have no affine parameters.
    """
    if not sites.output or spec.norm == "weight":
        return None
    if spec.norm not in OUTPUT_NORMS:
        raise ConfigError(
            f"norm {spec.norm!r} cannot normalize the (N, {spec.output_dim}) output "
            f"(placement 'output'); choose one of {', '.join(OUTPUT_NORMS)}"
        )
    return make_norm(
        spec.norm,
        spec.output_dim,
        ndim=2,
        mean_subtraction=spec.mean_subtraction,
        eps=spec.eps,
        affine=False,
        where="output norm",
    )


def weight_norm_targets(
    spec: NetSpec, sites: NormSites, hidden: list[list[nn.Module]], head: nn.Module
) -> list[nn.Module]:
    """Layers to weight-normalize: those of each hidden site, and the head for "output"."""
    if spec.norm != "weight":
        return []
    targets = [module for index in sites.hidden for module in hidden[index]]
    return [*targets, head] if sites.output else targets


def ordered_layer(
    number: int,
    layer: nn.Module,
    norm: nn.Module | None,
    act: nn.Module,
    order: str,
    prefix: str,
) -> OrderedDict[str, nn.Module]:
    """layer -> norm -> act ("pre") or layer -> act -> norm ("post"), named with ``number``."""
    named: OrderedDict[str, nn.Module] = OrderedDict({f"{prefix}{number}": layer})
    if norm is not None and order == "pre":
        named[f"norm{number}"] = norm
    named[f"act{number}"] = act
    if norm is not None and order == "post":
        named[f"norm{number}"] = norm
    return named
