"""When a training-framework callback measures: every k optimizer steps or epochs."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from torch import nn

from normscope.errors import ConfigError
from normscope.train.tracker import Tracker


class Schedule:
    """Exactly one of ``every_n_steps`` (measure after optimizer steps ``0, k, 2k, ...``)
    and ``every_n_epochs`` (after the last step of epochs ``k, 2k, ...``).

    A step is measured at most once, however many hooks report it (gradient
    accumulation calls the batch hook several times per optimizer step).
    """

    def __init__(self, every_n_steps: int | None, every_n_epochs: int | None) -> None:
        if (every_n_steps is None) == (every_n_epochs is None):
            raise ConfigError(
                "give exactly one of every_n_steps (measure every k optimizer steps) and "
                f"every_n_epochs (at the end of every k-th epoch), got every_n_steps="
                f"{every_n_steps}, every_n_epochs={every_n_epochs}."
            )
        for name, value in (("every_n_steps", every_n_steps), ("every_n_epochs", every_n_epochs)):
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number >= 1, got {value!r}.")
        self.every_n_steps = every_n_steps
        self.every_n_epochs = every_n_epochs
        self._last: int | None = None

    def step_due(self, step: int) -> bool:
        """Whether optimizer step ``step`` (steps taken so far) is measured by steps."""
        return self.every_n_steps is not None and step % self.every_n_steps == 0

    def epoch_due(self, epochs_done: int) -> bool:
        """Whether the end of the ``epochs_done``-th epoch (1 for the first) is measured."""
        return self.every_n_epochs is not None and epochs_done % self.every_n_epochs == 0

    def claim(self, step: int) -> bool:
        """True the first time ``step`` is claimed, False after."""
        if self._last == step:
            return False
        self._last = step
        return True


class Tracking:
    """What both framework callbacks hold: a :class:`Schedule`, a Tracker it drives,
    and the prefix of every logged name. The callbacks' docstrings give the arguments."""

    def __init__(
        self,
        measures: Sequence[str] = ("loss", "sharpness"),
        *,
        every_n_steps: int | None = None,
        every_n_epochs: int | None = None,
        prefix: str = "normscope/",
        **tracker_options: Any,
    ) -> None:
        self.schedule = Schedule(every_n_steps, every_n_epochs)
        self.tracker = make_tracker(measures, tracker_options)
        self.prefix = prefix

    def log_with(self, write: Callable[[dict[str, float], int], None]) -> None:
        """Send the Tracker's records, prefixed, to ``write(metrics, step)``."""
        self.tracker.logger = Prefixed(write, self.prefix)

    def measure(self, model: nn.Module, step: int, lr: float | None) -> None:
        """Track ``model`` at optimizer step ``step`` unless that step was tracked."""
        if self.schedule.claim(step):
            self.tracker.step(model, step, lr=lr)


def make_tracker(measures: Sequence[str], options: dict[str, Any]) -> Tracker:
    """The Tracker of a callback: scheduled by the callback (so ``every=1``); the
    callback's other keyword arguments are the Tracker's."""
    if "every" in options or "logger" in options:
        raise ConfigError(
            "the callback schedules the Tracker and gives it the trainer's loggers: use "
            "every_n_steps / every_n_epochs instead of every, and drop logger."
        )
    if options.get("data") is None:
        raise ConfigError(
            "the callback needs fixed probe data to measure on: data=(inputs, targets), a "
            "Dataset, or a list or DataLoader of batches that is the same every pass."
        )
    return Tracker(measures, every=1, **options)


class Prefixed:
    """A :class:`~normscope.loggers.Logger` that renames every metric ``prefix + name``
    and hands it to ``write(metrics, step)``."""

    def __init__(self, write, prefix: str) -> None:
        self.write = write
        self.prefix = prefix

    def log_metrics(self, metrics, step: int) -> None:
        self.write({self.prefix + k: v for k, v in metrics.items()}, step)

    def close(self) -> None:
        pass


def learning_rate(optimizers: Sequence[Any]) -> float | None:
    """The first parameter group's learning rate of the first optimizer, if any."""
    for opt in optimizers:
        for group in getattr(opt, "param_groups", []):
            if "lr" in group:
                return float(group["lr"])
    return None
