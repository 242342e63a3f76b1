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
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
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


def training_hook() -> TrainFn:
    """``normscope.train.run_training``, or a ConfigError saying training is unavailable."""
    try:
        module = importlib.import_module("normscope.train")
    except ImportError as err:
        raise ConfigError(
            "the spec has a [train] table but this normscope has no training module "
            f"(normscope.train: {err}); remove [train] or install a normscope with training."
        ) from None
    hook = getattr(module, "run_training", None)
    if hook is None:
        raise ConfigError(
            "the spec has a [train] table but normscope.train has no run_training(subject, "
            "train_config, tracked, on_record) function; remove [train] or update normscope."
        )
    return hook
