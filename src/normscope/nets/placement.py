"""Which hidden layers of a network get a normalization layer."""

from __future__ import annotations

from dataclasses import dataclass

from normscope.errors import ConfigError
from normscope.nets.spec import NetSpec


@dataclass(frozen=True)
class NormSites:
    """The 0-based hidden layers that are normalized, and whether the output is."""

    hidden: tuple[int, ...]
    output: bool = False


def evenly_spread(num_norm: int, num_hidden: int) -> tuple[int, ...]:
    """K = ``num_norm`` of ``num_hidden`` layers, evenly spread (hiddenpower2025).

    Layer floor((i + 1) n / K) - 1 for i < K: one norm closing each of K equal runs of
    layers, so the last hidden layer is always normalized. Distinct since n / K >= 1.
    """
    if num_norm > num_hidden:
        raise ConfigError(
            f"num_norm={num_norm} normalization layers do not fit into {num_hidden} hidden "
            f"layers; use num_norm <= {num_hidden} or a larger depth"
        )
    return tuple((i + 1) * num_hidden // num_norm - 1 for i in range(num_norm))


def resolve_sites(spec: NetSpec, num_hidden: int) -> NormSites:
    """The layers of a network with ``num_hidden`` hidden layers that ``spec`` normalizes."""
    if spec.norm == "none":
        return NormSites(())
    if spec.num_norm is not None:
        if spec.placement != "all":
            raise ConfigError(
                f"num_norm={spec.num_norm} and placement={spec.placement!r} both choose the "
                "normalized layers; give only one"
            )
        return NormSites(evenly_spread(spec.num_norm, num_hidden))
    placement = spec.placement
    if isinstance(placement, dict):
        every = placement["every"]
        return NormSites(tuple(range(every - 1, num_hidden, every)))
    if isinstance(placement, list):
        return NormSites(_checked_indices(placement, num_hidden))
    named = {
        "all": NormSites(tuple(range(num_hidden))),
        "hidden": NormSites(tuple(range(num_hidden - 1))),
        "last": NormSites((num_hidden - 1,)),
        "output": NormSites((), output=True),
        "none": NormSites(()),
    }
    return named[placement]


def _checked_indices(indices: list[int], num_hidden: int) -> tuple[int, ...]:
    bad = [i for i in indices if not 0 <= i < num_hidden]
    if bad:
        raise ConfigError(
            f"placement indices {bad} are out of range: this network has {num_hidden} hidden "
            f"layers, indexed 0..{num_hidden - 1}"
        )
    if len(set(indices)) != len(indices):
        raise ConfigError(f"placement indices {indices} repeat a layer; list each at most once")
    return tuple(sorted(indices))
