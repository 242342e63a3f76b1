"""The experiment spec: a TOML file read with :mod:`tomllib`, validated by pydantic.

A spec names one network/data/loss setting (``[subject]``), optional training
(``[train]``), the measures to take (``[[measure]]``), the grid to sweep (``[sweep]``),
theory columns to compute beside them (``[[theory]]``), figures (``[[plot]]``) and the
claims the stored numbers are checked against (``[[claim]]``), words and units for the
columns its figures draw (``[labels]``: column -> label, e.g. ``"theory.gain" = "predicted
gain"``), and an optional smaller size (``[quick]``, applied by
``parse_spec(..., quick=True)``). Every table rejects
unknown fields; errors name the file, the field path and the fix.

Example::

    name = "width_fisher"
    [subject]
    net = {arch = "mlp", width = 64, depth = 3, norm = "batch"}
    data = {name = "gaussian", n = 128}
    loss = "mse"
    [[measure]]
    name = "loss"
    [sweep]
    "subject.net.width" = [32, 64, 128]
    seeds = [0, 1]
"""

from __future__ import annotations

import copy
import datetime
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, ValidationError, field_validator

from normscope.errors import ConfigError
from normscope.experiments.claims_spec import ClaimSpec, FilterValue
from normscope.experiments.errors import describe_validation_error
from normscope.strict import NoBoolNumbers

Scalar = str | int | float | bool


# JSON-mode dumps (run configs, the stored spec) keep NaN and inf as floats; pydantic's
# default would turn them into null, so that a value the user wrote changed meaning.
_KEEP_NAN = "constants"


class _Strict(NoBoolNumbers):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan=_KEEP_NAN)


class DataSpec(NoBoolNumbers):
    """``normscope.data.load(name, split=, n=, seed=, **options)``; extra keys are options."""

    model_config = ConfigDict(extra="allow", ser_json_inf_nan=_KEEP_NAN)

    name: str
    n: int | None = Field(default=None, gt=0)
    split: str = "train"
    seed: int = Field(default=0, ge=0)

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SubjectSpec(_Strict):
    """Network (``normscope.nets.NetSpec`` fields), data, loss and Subject options.

    ``net.input_shape`` and ``net.output_dim`` are filled from the data when omitted;
    ``dtype`` sets both the network's and the data's floating type.
    """

    net: dict[str, Any]
    data: DataSpec
    loss: Literal["cross_entropy", "mse"] = "cross_entropy"
    bn_mode: Literal["train", "eval"] = "train"
    batch_size: int | None = Field(default=None, gt=0)
    params: str | list[str] | None = None
    dtype: Literal["float32", "float64"] = "float32"


class MeasureSpec(NoBoolNumbers):
    """One measure from the registry; extra keys are its keyword options.

    ``label`` names the stored measurement (default: the measure's name), so one measure
    can be taken twice with different options. With ``[train]``: ``at`` says whether it
    is taken on the initial network, the trained one, or both; ``every = k`` instead
    tracks it every k training steps, from step 0 to the last step (``at`` is then moot).
    ``split`` takes the measure on another split of the subject's data source (same
    ``n``, seed and options), e.g. ``split = "test"`` for test loss and accuracy.
    ``point = "midpoint"`` (tracked measures only) takes it at the midpoint of the
    tracked iterate and the next one, the centre of gradient descent's period-two
    oscillation at the edge of stability (``normscope.train.Tracker``).
    """

    model_config = ConfigDict(extra="allow", ser_json_inf_nan=_KEEP_NAN)

    name: str
    label: str | None = None
    at: Literal["init", "end", "both"] = "end"
    every: int | None = Field(default=None, gt=0)
    split: str | None = None
    point: Literal["iterate", "midpoint"] = "iterate"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    @property
    def stored_name(self) -> str:
        return self.label or self.name


class TheorySpec(NoBoolNumbers):
    """A theory-column function (``experiments.theory_columns``); extra keys are options."""

    model_config = ConfigDict(extra="allow", ser_json_inf_nan=_KEEP_NAN)

    name: str

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class SweepSpec(NoBoolNumbers):
    """A grid: dotted field paths -> lists of values, ``seeds``, and ``zip`` groups.

    Keys in one ``zip`` group vary together (equal lengths); all other keys and the
    groups form a Cartesian product. ``seeds`` sets ``subject.net.seed`` and
    ``subject.data.seed``.
    """

    model_config = ConfigDict(extra="allow", ser_json_inf_nan=_KEEP_NAN)

    seeds: list[Annotated[int, Field(ge=0)]] | None = None
    zip: list[list[str]] = Field(default_factory=list)

    @property
    def axes(self) -> dict[str, list[Any]]:
        return dict(self.model_extra or {})


class PlotSpec(_Strict):
    """A figure of stored columns: ``y`` against ``x``, one line per ``color`` value,
    one panel per ``facet`` value. ``filter`` keeps rows whose columns equal the given
    values (a list means any of them); ``step`` picks training steps ("all", "first",
    "last" or a number). ``title`` heads the figure; ``caption`` says what it shows and
    what to see in it (printed under it in the report). Axes and legends name columns in
    words (``normscope.report.labels``, extended by the spec's ``[labels]``); ``ylabel``
    names the y axis when the lines are several quantities (default: the first's label)."""

    x: str
    y: str | list[str]
    color: str | None = None
    facet: str | None = None
    kind: Literal["line", "scatter"] = "line"
    logx: bool = False
    logy: bool = False
    filter: dict[str, FilterValue] = Field(default_factory=dict)
    step: Literal["all", "first", "last"] | int = "all"
    title: str | None = None
    caption: str | None = None
    ylabel: str | None = None


class QuickSpec(_Strict):
    """A smaller size of the same experiment, applied by ``parse_spec(..., quick=True)``.

    ``sweep`` replaces entries of ``[sweep]`` that the spec already has (axes, ``seeds``,
    ``zip``); ``set`` assigns values to dotted paths that already exist in the spec's
    ``subject``, ``train``, ``measure`` or ``theory`` tables (list items by index:
    ``"measure.0.num_probes"``). Claims and plots cannot be changed: a quick run is checked
    against exactly the claims of the full one. Example::

        [quick.sweep]
        "subject.net.width" = [64, 128]
        seeds = [0]
        [quick.set]
        "subject.data.n" = 50
    """

    sweep: dict[str, Any] = Field(default_factory=dict)
    set: dict[str, Any] = Field(default_factory=dict)


QUICK_SET_ROOTS = ("subject", "train", "measure", "theory")


class Spec(_Strict):
    """A whole experiment (see the module docstring)."""

    name: str = Field(min_length=1)
    description: str = ""
    paper: str | None = None
    subject: SubjectSpec
    train: dict[str, Any] | None = None
    measure: list[MeasureSpec] = Field(default_factory=list)
    sweep: SweepSpec | None = None
    theory: list[TheorySpec] = Field(default_factory=list)
    plot: list[PlotSpec] = Field(default_factory=list)
    claim: list[ClaimSpec] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    quick: QuickSpec | None = None

    @field_validator("name")
    @classmethod
    def _printable_name(cls, value: str) -> str:
        if not value.strip() or any(ord(c) < 32 for c in value):
            raise ValueError("name must be non-blank text without control characters")
        return value


MAX_SPEC_CHARS = 1 << 20
"""Longest spec file read (about a million characters): the shipped specs are under 20 KB,
and a longer file (or a device such as /dev/zero) is refused before it can fill memory."""


def load_spec(path: str | Path) -> tuple[Spec, str]:
    """Read and validate the spec at ``path``; returns the Spec and its TOML text.

    At most :data:`MAX_SPEC_CHARS` are read; a longer file raises ConfigError."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as handle:
            text = handle.read(MAX_SPEC_CHARS + 1)
    except FileNotFoundError:
        raise ConfigError(
            f"spec file {str(path)!r} does not exist; give the path of a TOML spec."
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"cannot read spec file {str(path)!r}: {err}.") from None
    if len(text) > MAX_SPEC_CHARS:
        raise ConfigError(
            f"spec file {str(path)!r} is longer than {MAX_SPEC_CHARS} characters; a spec is "
            "a short TOML file. Give the path of the spec."
        )
    return parse_spec(text, source=str(path)), text


def parse_spec(
    text: str, *, source: str = "<spec>", check: bool = True, quick: bool = False
) -> Spec:
    """Validate TOML ``text`` into a :class:`Spec` (``source`` names it in errors).

    ``check=False`` skips the registry checks (used to read back stored specs, whose
    measures need not exist in this installation to check claims or draw figures).
    ``quick=True`` applies the spec's ``[quick]`` table (see :class:`QuickSpec`) before
    validation; the paths of a ``[quick]`` table are checked either way.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{source}: not valid TOML: {err}. Fix the TOML syntax there.") from None
    quick_raw = apply_quick(raw, source)
    return spec_from_dict(quick_raw if quick else raw, source=source, check=check)


def apply_quick(raw: dict[str, Any], source: str = "<spec>") -> dict[str, Any]:
    """A copy of the parsed spec ``raw`` with its ``[quick]`` table applied and removed
    (``raw`` itself when it has none). Unknown paths or sweep keys raise ConfigError."""
    if "quick" not in raw:
        return raw
    try:
        quick = QuickSpec.model_validate(raw["quick"])
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, QuickSpec, f"{source}: quick")) from None
    out = copy.deepcopy({k: v for k, v in raw.items() if k != "quick"})
    sweep = out.get("sweep")
    for key, value in quick.sweep.items():
        if not isinstance(sweep, dict) or key not in sweep:
            have = ", ".join(repr(k) for k in (sweep or {})) or "none"
            raise ConfigError(
                f"{source}: quick.sweep.{key!r}: the spec's [sweep] has no entry {key!r} to "
                f"replace (it has: {have})."
            )
        sweep[key] = copy.deepcopy(value)
    for path, value in quick.set.items():
        _set_path(out, path, copy.deepcopy(value), source)
    return out


def _set_path(raw: dict[str, Any], path: str, value: Any, source: str) -> None:
    parts = path.split(".")
    if parts[0] not in QUICK_SET_ROOTS or len(parts) < 2:
        raise ConfigError(
            f"{source}: quick.set.{path!r}: a path starts with "
            f"{', '.join(QUICK_SET_ROOTS)} and names a field, e.g. 'subject.data.n'."
        )
    node: Any = raw
    for depth, part in enumerate(parts):
        where = ".".join(parts[: depth + 1])
        if isinstance(node, list) and part.isdigit() and int(part) < len(node):
            key: Any = int(part)
        elif isinstance(node, dict) and part in node:
            key = part
        else:
            raise ConfigError(
                f"{source}: quick.set.{path!r}: the spec has no field {where!r}; [quick] "
                "only changes values the spec sets (write the full-size value there first)."
            )
        if depth == len(parts) - 1:
            node[key] = value
        else:
            node = node[key]


def _reject_dates(value: Any, path: str, source: str) -> None:
    """TOML dates and times have no JSON form, so the store could not keep a run that
    used one; they are refused here, by field path, instead of failing at store time."""
    if isinstance(value, dict):
        for key, item in value.items():
            _reject_dates(item, f"{path}.{key}" if path else str(key), source)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _reject_dates(item, f"{path}[{i}]", source)
    elif isinstance(value, datetime.date | datetime.time):
        raise ConfigError(
            f"{source}: {path or '(top level)'}: TOML {type(value).__name__} values are not "
            f"accepted (got {value.isoformat()}); quote it to pass it as a string."
        )


def spec_from_dict(raw: dict[str, Any], *, source: str = "<spec>", check: bool = True) -> Spec:
    """Validate a parsed spec dict, then check names against the registries."""
    _reject_dates(raw, "", source)
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(describe_validation_error(err, Spec, source)) from None
    if check:
        from normscope.experiments.checks import check_spec

        check_spec(spec, source)
    return spec
