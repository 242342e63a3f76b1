"""A Hugging Face ``TrainerCallback`` that tracks normscope measures during ``train()``.

Example::

    from transformers import Trainer
    from normscope.integrations.huggingface import NormscopeCallback

    trainer = Trainer(model=model, args=args, train_dataset=train)
    NormscopeCallback(["loss", "sharpness"], every_n_steps=50,
                      data=probe_batches).attach(trainer)
    trainer.train()

The values go through ``trainer.log``: into ``trainer.state.log_history`` and to every
integration the trainer reports to (``report_to``: TensorBoard, W&B, MLflow...), at
``state.global_step``. The Trainer's TensorBoard callback files them under
``train/normscope/<name>``.
"""

from __future__ import annotations

from normscope.errors import ConfigError
from normscope.integrations.schedule import Tracking, learning_rate

try:
    from transformers import Trainer, TrainerCallback
except ImportError as err:  # pragma: no cover - exercised only without transformers
    raise ImportError(
        "normscope.integrations.huggingface needs transformers: pip install transformers"
    ) from err


class NormscopeCallback(Tracking, TrainerCallback):
    """Runs ``measures`` on fixed probe data every ``every_n_steps`` optimizer steps (and
    before the first) or at the end of every ``every_n_epochs``-th epoch.

    Args:
        measures: registered measure names (``normscope list measures``).
        every_n_steps: measure after optimizer steps ``0, k, 2k, ...`` (``state.global_step``).
        every_n_epochs: or measure at the end of epochs ``k, 2k, ...``.
        prefix: put before every logged name (``"normscope/sharpness"``).
        **tracker_options: the :class:`~normscope.train.Tracker`'s: ``data`` (required:
            the fixed probe set, e.g. a list of the batches a data collator made, mappings
            with ``input_ids``, ``attention_mask`` and ``labels``), ``loss``, ``bn_mode``,
            ``options``, ``params``, ``subject_options`` (``{"ignore_index": -100}``),
            ``track_weight_norms``, ``warm_start``, ``budget_seconds``.

    A ``TrainerCallback`` is not handed the trainer, and the trainer calls the
    integrations that log before any callback given by the user, so the callback logs
    with ``trainer.log``: add it with :meth:`attach`. The measured model is the one the
    trainer hands its callbacks; only the main process (``state.is_world_process_zero``)
    measures. The Tracker is ``callback.tracker``.

    Raises:
        ConfigError: neither or both of ``every_n_steps`` / ``every_n_epochs``, no
            ``data``, a Tracker option the callback sets itself, or training started
            without :meth:`attach`.
    """

    trainer: Trainer | None = None

    def attach(self, trainer: Trainer) -> NormscopeCallback:
        """Add this callback to ``trainer`` and log through it; returns the callback."""
        self.trainer = trainer
        self.log_with(lambda metrics, _step: trainer.log(dict(metrics)))
        trainer.add_callback(self)
        return self

    def _measure(self, state, model, optimizer) -> None:
        if state.is_world_process_zero:
            lr = learning_rate([optimizer] if optimizer is not None else [])
            self.measure(model, state.global_step, lr)

    def on_train_begin(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.trainer is None:
            raise ConfigError(
                "NormscopeCallback logs through the trainer: add it with "
                "NormscopeCallback(...).attach(trainer), not Trainer(callbacks=[...])."
            )
        if self.schedule.step_due(state.global_step):
            self._measure(state, model, optimizer)

    def on_step_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.schedule.step_due(state.global_step):
            self._measure(state, model, optimizer)

    def on_epoch_end(self, args, state, control, model=None, optimizer=None, **kwargs):
        if self.schedule.epoch_due(round(state.epoch or 0)):
            self._measure(state, model, optimizer)
