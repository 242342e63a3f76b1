"""The training hook: how a run hands its Subject to ``normscope.train``.

A spec with a ``[train]`` table is trained between the ``at = "init"`` and
``at = "end"`` measurements by calling::

    normscope.train.run_training(subject, train_config, tracked, on_record) -> int

- ``subject``: the run's :class:`~normscope.subject.Subject`; its model is trained in
  place.
- ``train_config``: the ``[train]`` table as a plain dict (after sweep substitution).
- ``tracked``: the :class:`Tracked` measures of the spec that set ``every = k`` (with
  ``data`` set when the measure is taken on another split).
- ``on_record(step, label, measurement)``: to be called with every tracked measurement.
- returns the number of training steps taken; ``at = "end"`` measurements are stored at
  that step (the initial network is step 0).

Before anything runs, every sweep point's ``[train]`` table is checked with::

    normscope.train.check_options(train_config, batch_size=...) -> None

which raises a :class:`~normscope.errors.NormscopeError` for an unknown option or a bad
value, so that a spec with ``lr = -0.1`` is refused instead of storing failed runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

from normscope.errors import ConfigError
from normscope.measurement import Measurement

Record = Callable[[int, str, Measurement], None]
TrainFn = Callable[[Any, dict[str, Any], list["Tracked"], Record], int]


@dataclass(frozen=True)
class Tracked:
    """A measure the training loop takes every ``every`` steps, stored as ``label``."""

    label: str
    name: str
    fn: Callable[..., Measurement]
    every: int
    options: dict[str, Any] = field(default_factory=dict)
    data: Any = None  # a Dataset to measure on instead of the training data (a split)
    point: str = "iterate"  # or "midpoint": (theta_t + theta_{t+1}) / 2 (train.Tracker)


def _train_module() -> ModuleType:
    try:
        return importlib.import_module("normscope.train")
    except ImportError as err:
        raise ConfigError(
            "the spec has a [train] table but this normscope has no training module "
            f"(normscope.train: {err}); remove [train] or install a normscope with training."
        ) from None


def _function(name: str, signature: str) -> Callable[..., Any]:
    function = getattr(_train_module(), name, None)
    if function is None:
        raise ConfigError(
            f"the spec has a [train] table but normscope.train has no {name}({signature}) "
            "function; remove [train] or update normscope."
        )
    return function


def training_hook() -> TrainFn:
    """``normscope.train.run_training``, or a ConfigError saying training is unavailable."""
    return _function("run_training", "subject, train_config, tracked, on_record")


def check_training(train_config: dict[str, Any], batch_size: int | None) -> None:
    """Check a ``[train]`` table with ``normscope.train.check_options``."""
    _function("check_options", "train_config, *, batch_size")(train_config, batch_size=batch_size)
