"""A Lightning callback that tracks normscope measures during ``Trainer.fit``.

Example (a LightningModule whose ``forward`` maps inputs to outputs)::

    from lightning.pytorch import Trainer
    from lightning.pytorch.loggers import TensorBoardLogger
    from normscope.integrations.lightning import NormscopeCallback

    probe = (x[:256], y[:256])                     # fixed probe batch(es)
    callback = NormscopeCallback(["loss", "sharpness"], every_n_steps=50, data=probe)
    Trainer(callbacks=[callback], logger=TensorBoardLogger("tb")).fit(module, loader)
    callback.tracker.table()                       # step, name, value

The values go to every logger of the trainer (``trainer.loggers``) under
``normscope/<name>`` at ``trainer.global_step``, the number of optimizer steps taken, as
Lightning's own ``LearningRateMonitor`` writes them.
"""

from __future__ import annotations

from typing import Any

from normscope.integrations.schedule import Tracking, learning_rate

try:
    from lightning.pytorch import Callback, LightningModule, Trainer
except ImportError as err:  # pragma: no cover - exercised only without lightning
    raise ImportError(
        "normscope.integrations.lightning needs Lightning: pip install lightning"
    ) from err


class NormscopeCallback(Tracking, Callback):
    """Runs ``measures`` on fixed probe data every ``every_n_steps`` optimizer steps (and
    at the start of training) or at the end of every ``every_n_epochs``-th epoch.

    Args:
        measures: registered measure names (``normscope list measures``).
        every_n_steps: measure after optimizer steps ``0, k, 2k, ...`` (``trainer.global_step``).
        every_n_epochs: or measure after the last step of epochs ``k, 2k, ...``.
        prefix: put before every logged name (``"normscope/sharpness"``), so TensorBoard
            shows normscope's numbers in a section of their own.
        **tracker_options: the :class:`~normscope.train.Tracker`'s: ``data`` (required:
            the fixed probe set: ``(inputs, targets)``, a Dataset, a list or non-shuffling
            DataLoader of batches), ``loss``, ``bn_mode``, ``options``, ``params``,
            ``subject_options``, ``track_weight_norms``, ``warm_start``, ``budget_seconds``.

    The measured model is the LightningModule itself: its ``forward`` must map a probe
    batch's inputs to outputs. Only the global rank 0 process measures. The Tracker is
    ``callback.tracker`` (``table()``, ``series(name)``, warm-start vectors).

    Raises:
        ConfigError: neither or both of ``every_n_steps`` / ``every_n_epochs``, no
            ``data``, or a Tracker option the callback sets itself (``every``, ``logger``).
    """

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        def write(metrics, step):
            for logger in trainer.loggers:
                logger.log_metrics(metrics, step=step)

        self.log_with(write)

    def _measure(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.is_global_zero:
            self.measure(pl_module, trainer.global_step, learning_rate(trainer.optimizers))

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.schedule.step_due(trainer.global_step):
            self._measure(trainer, pl_module)

    def on_train_batch_end(
        self, trainer: Trainer, pl_module: LightningModule, outputs: Any, batch: Any, idx: int
    ) -> None:
        if self.schedule.step_due(trainer.global_step):
            self._measure(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.schedule.epoch_due(trainer.current_epoch + 1):
            self._measure(trainer, pl_module)
