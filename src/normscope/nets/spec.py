"""NetSpec: the one validated description every architecture is built from."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from normscope.errors import ConfigError, unknown_name
from normscope.nets.activations import ACTIVATIONS
from normscope.nets.init import INITS
from normscope.nets.norms import NORM_KINDS
from normscope.strict import NoBoolNumbers

ARCHITECTURES: tuple[str, ...] = ("mlp", "cnn", "resnet", "transformer")
"""Every architecture :func:`~normscope.nets.build` makes."""

PLACEMENTS: tuple[str, ...] = ("all", "hidden", "last", "output", "none")
"""Named placements; a list of hidden-layer indices or {"every": k} are accepted too."""

_ONLY_FOR: dict[str, tuple[str, ...]] = {
    "heads": ("transformer",),
    "mlp_ratio": ("transformer",),
    "patch_size": ("transformer",),
    "gain_exponent": ("mlp", "cnn"),
}

_NAMED_FIELDS: dict[str, tuple[str, tuple[str, ...]]] = {
    "arch": ("architecture", ARCHITECTURES),
    "norm": ("norm", NORM_KINDS),
    "activation": ("activation", ACTIVATIONS),
    "init": ("init", INITS),
}

Placement = Literal["all", "hidden", "last", "output", "none"] | list[int] | dict[str, int]


MAX_DEPTH = 100_000
"""Most layers (or blocks) a spec may ask for."""

MAX_WIDTH = 1_000_000
"""Widest hidden layer a spec may ask for."""


class NetSpec(NoBoolNumbers):
    """Architecture, normalization and initialization of one network.

    Fields (defaults in brackets):

    - ``arch``: one of :data:`ARCHITECTURES`.
    - ``input_shape``: shape of one sample, e.g. (784,), (1, 40) or (3, 32, 32).
    - ``output_dim``: number of outputs (classes).
    - ``width`` [64]: hidden width (MLP: an int or one int per hidden layer, for the width
      ratios of karakida2019), conv channels (CNN), base channels (ResNet), model
      dimension (transformer).
    - ``depth`` [2]: hidden layers (MLP), conv layers (CNN), basic blocks per stage
      (ResNet, 3 stages), encoder blocks (transformer).
    - ``norm`` ["none"]: one of :data:`NORM_KINDS`.
    - ``placement`` ["all"]: which hidden layers get a norm: "all", "hidden" (all but the
      last), "last", "output" (a norm on the network's output, karakida2019), "none", a
      list of 0-based hidden-layer indices, or {"every": k} (layers k-1, 2k-1, ...).
    - ``num_norm`` [None]: K norm layers spread evenly over the hidden layers at fixed
      depth (hiddenpower2025); replaces ``placement``.
    - ``order`` ["pre"]: "pre" = linear -> norm -> act (pre-norm transformer), "post" =
      linear -> act -> norm (post-norm transformer).
    - ``activation`` ["relu"]; ``gain_exponent`` [None]: gamma of meterez2024's shaped
      activations, act(l^(-gamma) h) in hidden layer l (MLP, CNN).
    - ``init`` ["gaussian"], ``sigma_w`` [1.0], ``sigma_b`` [0.0], ``weight_scale`` [1.0],
      ``bias`` [True]: see :func:`normscope.nets.init.draw_weight`.
    - ``groups`` [8] (group norm), ``mean_subtraction`` [False] (batch_rms), ``eps`` [1e-5].
    - ``heads`` [2], ``mlp_ratio`` [2], ``patch_size`` [None]: transformer only.
    - ``seed`` [0], ``dtype`` ["float32"].

    Numbers are numbers: ``true`` / ``false`` are refused for every field but ``bias``
    and ``mean_subtraction`` (a boolean would otherwise count as 1 or 0).
    """

    # A NaN or inf scale would build a network of NaN weights; refuse it by name here.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    arch: str
    input_shape: tuple[int, ...]
    output_dim: int = Field(gt=0)
    width: int | list[int] = 64
    # far beyond any network measured here (meterez2024 goes to 1000 layers), and small
    # enough that a typo (depth = 1e10) is an error, not an attempt to build it
    depth: int = Field(default=2, ge=1, le=MAX_DEPTH)
    norm: str = "none"
    placement: Placement = "all"
    num_norm: int | None = Field(default=None, ge=0)
    order: Literal["pre", "post"] = "pre"
    activation: str = "relu"
    gain_exponent: float | None = None
    init: str = "gaussian"
    sigma_w: float = Field(default=1.0, ge=0)
    sigma_b: float = Field(default=0.0, ge=0)
    weight_scale: float = 1.0
    bias: bool = True
    groups: int = Field(default=8, ge=1)
    mean_subtraction: bool = False
    eps: float = Field(default=1e-5, gt=0)
    heads: int = Field(default=2, ge=1)
    mlp_ratio: int = Field(default=2, ge=1)
    patch_size: int | None = Field(default=None, ge=1)
    seed: int = 0
    dtype: Literal["float32", "float64"] = "float32"

    @field_validator("input_shape")
    @classmethod
    def _positive_shape(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if not value or any(size < 1 for size in value):
            raise ValueError(f"input_shape must be a non-empty tuple of positive sizes: {value}")
        return value

    @field_validator("width")
    @classmethod
    def _positive_width(cls, value: int | list[int]) -> int | list[int]:
        sizes = value if isinstance(value, list) else [value]
        if not sizes or any(size < 1 for size in sizes):
            raise ValueError(f"width must be a positive int or a list of them: {value}")
        if any(size > MAX_WIDTH for size in sizes):
            raise ValueError(f"width must be at most {MAX_WIDTH}: {value}")
        return value

    @field_validator("placement", mode="before")
    @classmethod
    def _known_placement(cls, value: Any) -> Any:
        if isinstance(value, str) and value not in PLACEMENTS:
            raise unknown_name("placement", value, PLACEMENTS)
        return value

    @field_validator("placement")
    @classmethod
    def _placement_form(cls, value: Placement) -> Placement:
        if isinstance(value, dict) and (set(value) != {"every"} or value["every"] < 1):
            raise ValueError(f'a placement dict must be {{"every": k}} with k >= 1, got {value}')
        return value

    @field_validator("arch", "norm", "activation", "init")
    @classmethod
    def _known_name(cls, value: str, info: ValidationInfo) -> str:
        kind, valid = _NAMED_FIELDS[info.field_name]
        if value not in valid:
            # Not a ValueError, so pydantic lets it through unwrapped.
            raise unknown_name(kind, value, valid)
        return value

    @property
    def torch_dtype(self) -> torch.dtype:
        """The torch dtype named by ``dtype``."""
        return torch.float64 if self.dtype == "float64" else torch.float32

    def hidden_widths(self) -> list[int]:
        """One width per hidden layer (``width`` repeated ``depth`` times if an int)."""
        if isinstance(self.width, int):
            return [self.width] * self.depth
        if len(self.width) != self.depth:
            raise ConfigError(
                f"width lists {len(self.width)} layer widths but depth is {self.depth}; "
                "give one width per hidden layer or a single int"
            )
        return list(self.width)

    def single_width(self) -> int:
        """``width`` as one int; a per-layer list is an MLP-only option."""
        if isinstance(self.width, list):
            raise ConfigError(
                f"a list of widths is an MLP option; {self.arch} takes one int width "
                f"(got {self.width})"
            )
        return self.width


def parse_spec(spec: NetSpec | Mapping[str, Any]) -> NetSpec:
    """Validate ``spec`` into a NetSpec with normscope errors a user can act on.

    Unknown fields and unknown names raise UnknownNameError listing the valid ones; other
    invalid values raise ConfigError naming the field; options that belong to another
    architecture raise ConfigError.
    """
    if isinstance(spec, NetSpec):
        _check_arch_fields(spec)
        return spec
    if not isinstance(spec, Mapping):
        raise ConfigError(f"a net spec must be a NetSpec or a dict, got {type(spec).__name__}")
    for key in spec:
        if key not in NetSpec.model_fields:
            raise unknown_name("NetSpec field", key, NetSpec.model_fields)
    if "arch" not in spec:
        raise ConfigError(f"a net spec needs `arch`, one of {', '.join(ARCHITECTURES)}")
    try:
        parsed = NetSpec.model_validate(dict(spec))
    except ValidationError as error:
        raise ConfigError(_describe(error)) from None
    _check_arch_fields(parsed)
    return parsed


def _describe(error: ValidationError) -> str:
    problems = [
        f"{'.'.join(str(p) for p in item['loc']) or 'spec'}: {item['msg']}"
        + ("" if isinstance(item.get("input"), Mapping) else f" (got {item.get('input')!r})")
        for item in error.errors()
    ]
    return "invalid net spec: " + "; ".join(problems)


def _check_arch_fields(spec: NetSpec) -> None:
    """Refuse options of another architecture set to anything but their default.

    Defaults pass so that a dumped spec (``model_dump``) validates again.
    """
    for field, archs in _ONLY_FOR.items():
        value = getattr(spec, field)
        if value != NetSpec.model_fields[field].default and spec.arch not in archs:
            raise ConfigError(
                f"`{field}`={value!r} applies to {', '.join(archs)} only, not to {spec.arch}; "
                "remove it"
            )
