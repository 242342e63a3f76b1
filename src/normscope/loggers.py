"""Where tracked numbers go besides normscope's own tables: TensorBoard, CSV, W&B.

One protocol, :class:`Logger`: ``log_metrics(metrics, step)`` writes scalars taken at a
training step, ``close()`` flushes and releases the file or run. The Tracker
(``Tracker(..., logger=...)``), experiment runs (``normscope run --log KIND:WHERE``) and
the training-framework callbacks all write through it, so a backend is one small class
and nothing else knows which one it talks to.

- :class:`TensorBoardLogger`: event files written by PyTorch's
  ``torch.utils.tensorboard.SummaryWriter`` (needs the ``tensorboard`` package), the
  writer Lightning's and the Hugging Face Trainer's TensorBoard loggers use too.
- :class:`CSVLogger`: a tidy CSV file, one row per number (``step,name,value``),
  appended to, flushed at every call (a crash loses nothing written before it).
- :class:`WandbLogger`: a Weights & Biases run (needs ``wandb``; ``mode="offline"``
  writes the run to disk for a later ``wandb sync``).

:func:`open_logger` builds one from a kind and a place, as the command line does.

Example:
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> with CSVLogger(folder / "tracked.csv") as log:
    ...     log.log_metrics({"sharpness": 12.5, "loss": 0.25}, step=10)
    >>> print((folder / "tracked.csv").read_text().strip())
    step,name,value
    10,sharpness,12.5
    10,loss,0.25
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from normscope.errors import ConfigError, unknown_name

LOGGER_KINDS = ("tensorboard", "csv", "wandb")


@runtime_checkable
class Logger(Protocol):
    """Anything that takes scalars by training step.

    ``metrics`` maps names (``"sharpness"``, ``"sharpness.cost.hvp"``) to finite or
    infinite floats; ``step`` is the number of optimizer steps taken when they were
    measured. A logger may be called several times with the same step.
    """

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None: ...

    def close(self) -> None: ...


class _Closing:
    """``with logger: ...`` closes it at the end."""

    def __enter__(self):
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()  # type: ignore[attr-defined]


def _needs(package: str, kind: str) -> ConfigError:
    return ConfigError(
        f"the {kind} logger needs the {package!r} package, which is not installed: "
        f"pip install {package}"
    )


class TensorBoardLogger(_Closing):
    """Scalars as TensorBoard event files in ``log_dir`` (``tensorboard --logdir``).

    Each name becomes a scalar tag, written by ``SummaryWriter.add_scalar`` at ``step``.
    """

    def __init__(self, log_dir: str | os.PathLike[str]) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # torch's writer imports the tensorboard package
            raise _needs("tensorboard", "tensorboard") from None
        self.log_dir = Path(log_dir)
        self.writer = SummaryWriter(log_dir=str(self.log_dir))

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, float(value), global_step=int(step))

    def close(self) -> None:
        self.writer.close()


class CSVLogger(_Closing):
    """A tidy CSV file ``path`` with columns ``step,name,value``, appended to."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists() or self.path.stat().st_size == 0
        self._file = self.path.open("a", newline="", encoding="utf-8")
        self._writer = csv.writer(self._file)
        if fresh:
            self._writer.writerow(["step", "name", "value"])
            self._file.flush()

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self._writer.writerows([int(step), name, repr(float(v))] for name, v in metrics.items())
        self._file.flush()

    def close(self) -> None:
        self._file.close()


class WandbLogger(_Closing):
    """A Weights & Biases run; every other keyword goes to ``wandb.init``.

    ``mode="offline"`` writes the run under ``dir`` without a network or an account.
    """

    def __init__(self, **init: Any) -> None:
        try:
            import wandb
        except ImportError:
            raise _needs("wandb", "wandb") from None
        self.run = wandb.init(**init)

    def log_metrics(self, metrics: Mapping[str, float], step: int) -> None:
        self.run.log({k: float(v) for k, v in metrics.items()}, step=int(step))

    def close(self) -> None:
        self.run.finish()


def open_logger(kind: str, where: str | os.PathLike[str], *, run: str) -> Logger:
    """A logger of ``kind`` writing run ``run`` (a relative path such as
    ``"experiment/run"``) under ``where``.

    ``"tensorboard"``: event files in ``where/run/``; ``"csv"``: ``where/run.csv``;
    ``"wandb"``: an offline W&B run named ``run`` in project ``where``'s folder name,
    written under ``where`` (``wandb sync`` uploads it).
    """
    if kind not in LOGGER_KINDS:
        raise unknown_name("logger", kind, LOGGER_KINDS)
    if not run or Path(run).is_absolute() or ".." in Path(run).parts:
        raise ConfigError(f"run name {run!r} must be a relative path without '..'.")
    where = Path(where)
    if kind == "tensorboard":
        return TensorBoardLogger(where / run)
    if kind == "csv":
        return CSVLogger(where / f"{run}.csv")
    where.mkdir(parents=True, exist_ok=True)
    return WandbLogger(project=where.resolve().name, name=run, dir=str(where), mode="offline")


def parse_target(text: str) -> tuple[str, Path]:
    """``"tensorboard:runs/tb"`` -> ``("tensorboard", Path("runs/tb"))``; refuses an
    unknown kind or an empty place with a message listing the kinds."""
    kind, sep, where = text.partition(":")
    if not sep or not where.strip():
        raise ConfigError(
            f"--log takes KIND:FOLDER with KIND one of {', '.join(LOGGER_KINDS)}, got "
            f"{text!r} (e.g. --log tensorboard:results/tb)."
        )
    if kind not in LOGGER_KINDS:
        raise unknown_name("logger", kind, LOGGER_KINDS)
    return kind, Path(where)
