"""Tracker: run measures every k steps of any training loop.

Use it from :func:`normscope.train.train` or from your own loop::

    tracker = Tracker(["loss", "sharpness"], every=10, data=data, loss="mse")
    for step in range(steps):
        if tracker.due(step):
            tracker.step(model, step, lr=lr)
        ...  # your update
    tracker.table()  # tidy DataFrame: step, name, value

Measures that can warm-start (``warm_start`` in the registry, e.g. ``sharpness``) get the
eigenvectors of their previous two calls: Lanczos takes the best combination of them
(a Rayleigh-Ritz step, which also extrapolates how they drifted) and starts next to the
answer, so it needs fewer Hessian-vector products per tracked step
(``benchmarks/bench_tracking.py``). Each call records, besides every
measure's value, its scalar details (``"sharpness.iterations"``...), its product counts
(``"sharpness.cost.hvp"``), the learning rate and the stability line ``2/lr``, and the
norm of every scale-invariant parameter group (``"weight_norm.<group>"``, lyu2022).

``point="midpoint"`` asks :func:`normscope.train.train` to take the measures at the
midpoint ``(theta_t + theta_{t+1}) / 2`` of the tracked iterate and the next one instead of
at ``theta_t``. At the edge of stability gradient descent oscillates with period two
across a valley; the iterates sit on alternating sides, and a measure taken every k steps
(k even) sees one side only, while the midpoint is close to the valley's centre, where the
theory of the edge of stability (Arora, Li, Panigrahi 2022; lyu2022) states its limits.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from normscope import measures as registry
from normscope.data import batches as batch_io
from normscope.data.seeding import global_rng_preserved
from normscope.errors import ConfigError, unknown_name
from normscope.loggers import Logger
from normscope.subject import Subject

POINTS = ("iterate", "midpoint")


@dataclass(frozen=True)
class Record:
    """One tracked number: a row of the tidy result table."""

    step: int
    name: str
    value: float


class Tracker:
    """Runs named measures every ``every`` steps and keeps a tidy table of results.

    Args:
        measures: registered measure names (see ``normscope list measures``).
        every: track at steps ``0, every, 2*every, ...``.
        options: per-measure options, ``{"sharpness": {"k": 2}}``.
        budget_seconds: stop tracking (with a note) once tracking has cost this much time.
        data, loss, bn_mode, params, batch_size, subject_options: how to build a Subject
            when ``step`` is given a bare model (``data`` anything a Subject takes: a
            Dataset, ``(inputs, targets)``, a DataLoader of fixed probe batches...;
            ``subject_options`` e.g. ``{"ignore_index": -100, "output_fn": ...}``). When
            ``step`` is given a Subject and ``data`` is set, the measures run on ``data``
            with the Subject's model and settings (e.g. a test split).
        track_weight_norms: also record ``weight_norm.<group>`` of scale-invariant groups.
        warm_start: pass each warm-startable measure the eigenvectors of its previous two
            calls (two calls rather than one save ~10 % of the products on the benchmark's
            edge-of-stability run; more save nothing further).
        point: ``"iterate"`` (measure at the current parameters) or ``"midpoint"``
            (:func:`normscope.train.train` measures at the midpoint of the current and
            the next iterate; in a loop of your own, pass the model at that point).
        on_measurement: called as ``on_measurement(step, name, measurement)`` with every
            full Measurement (the experiment runner stores them this way).
        logger: a :class:`normscope.loggers.Logger` (TensorBoard, CSV, W&B...) that gets
            every tracked step's records as ``log_metrics({name: value}, step)``.
    """

    def __init__(
        self,
        measures: Sequence[str] = ("loss", "sharpness"),
        *,
        every: int = 10,
        options: dict[str, dict[str, Any]] | None = None,
        budget_seconds: float | None = None,
        data: Any = None,
        loss: str | Callable = "cross_entropy",
        bn_mode: str = "train",
        params: str | Sequence[str] | None = None,
        batch_size: int | None = None,
        subject_options: dict[str, Any] | None = None,
        track_weight_norms: bool = True,
        on_measurement: Callable[[int, str, Any], None] | None = None,
        warm_start: bool = True,
        point: str = "iterate",
        logger: Logger | None = None,
    ) -> None:
        if every < 1:
            raise ConfigError(f"every must be >= 1, got {every}.")
        if point not in POINTS:
            raise unknown_name("tracking point", point, POINTS)
        self.point = point
        self.infos = [registry.info(name) for name in measures]
        self.every = every
        self.options = dict(options or {})
        unknown = set(self.options) - set(measures)
        if unknown:
            raise ConfigError(
                f"options given for measures {sorted(unknown)} that are not tracked: add them "
                "to measures or drop their options."
            )
        self.budget_seconds = budget_seconds
        self.subject_args = {
            "data": data,
            "loss": loss,
            "bn_mode": bn_mode,
            "params": params,
            "batch_size": batch_size,
            **(subject_options or {}),
        }
        self.track_weight_norms = track_weight_norms
        self.on_measurement = on_measurement
        self.warm_start = warm_start
        self.logger = logger
        self.records: list[Record] = []
        self.notes: list[str] = []
        self.seconds = 0.0
        self._vectors: dict[str, list[torch.Tensor]] = {}

    def due(self, step: int) -> bool:
        """Whether ``step`` is a tracked step (and the time budget is not spent)."""
        return step % self.every == 0 and not self._over_budget()

    def _over_budget(self) -> bool:
        return self.budget_seconds is not None and self.seconds >= self.budget_seconds

    def _subject(self, model_or_subject: nn.Module | Subject) -> Subject:
        data = self.subject_args["data"]
        if isinstance(model_or_subject, Subject):
            if data is None:
                return model_or_subject
            # the Tracker has data of its own (e.g. a test split): the same model and
            # settings, measured on that data
            s = model_or_subject
            return Subject(
                s.model,
                data,
                loss=s.loss_fn,
                bn_mode=s.bn_mode,
                batch_size=s.batch_size if batch_io.in_memory(data) else None,
                params=s.params_selection,
                output_fn=s.output_fn,
            )
        if self.subject_args["data"] is None:
            raise ConfigError(
                "Tracker.step was given a model, so the Tracker needs data: "
                "Tracker(..., data=dataset, loss=...)."
            )
        return Subject(model_or_subject, **self.subject_args)

    def step(
        self, model_or_subject: nn.Module | Subject, step: int, *, lr: float | None = None
    ) -> list[Record]:
        """Measure now; returns the records added."""
        if self._over_budget():
            return []
        start = time.perf_counter()
        # measuring must not change the training: a DataLoader of probe batches alone
        # draws from torch's global generator
        with global_rng_preserved():
            added = self._records(model_or_subject, step, lr)
        self.records += added
        if self.logger is not None and added:
            self.logger.log_metrics({r.name: r.value for r in added}, step)
        self.seconds += time.perf_counter() - start
        if self._over_budget():
            self.notes.append(
                f"tracking stopped after step {step}: budget of {self.budget_seconds} s spent"
            )
        return added

    def _records(
        self, model_or_subject: nn.Module | Subject, step: int, lr: float | None
    ) -> list[Record]:
        subject = self._subject(model_or_subject)
        added: list[Record] = []
        if lr is not None:
            # a schedule that decays to 0 ends with no stability limit at all
            two_over_lr = 2.0 / lr if lr != 0 else math.inf
            added += [Record(step, "lr", lr), Record(step, "two_over_lr", two_over_lr)]
        if self.track_weight_norms:
            theta = subject.theta
            for g in subject.scale_invariant_groups():
                norm = float((theta * subject.layout.mask(g.params, theta)).norm())
                added.append(Record(step, f"weight_norm.{g.name}", norm))
        for info in self.infos:
            added += self._measure(info, subject, step, lr)
        return added

    def _measure(self, info, subject: Subject, step: int, lr: float | None) -> list[Record]:
        options = dict(self.options.get(info.name, {}))
        if self.warm_start and info.warm_start:
            options.setdefault("return_vectors", True)
            if info.name in self._vectors:
                options["init_vectors"] = torch.cat(self._vectors[info.name])
        if info.takes_lr and lr is not None:
            options.setdefault("lr", lr)
        m = info.fn(subject, **options)
        vectors = m.details.pop("eigenvectors", None)
        if vectors is not None:
            latest = torch.as_tensor(np.asarray(vectors))
            latest = latest.reshape(-1, latest.shape[-1])
            self._vectors[info.name] = [latest, *self._vectors.get(info.name, [])][:2]
        if self.on_measurement is not None:
            self.on_measurement(step, info.name, m)
        out = [Record(step, info.name, m.value)]
        for key, value in m.details.items():
            if isinstance(value, (int, float, np.floating, np.integer)) and not isinstance(
                value, bool
            ):
                out.append(Record(step, f"{info.name}.{key}", float(value)))
        out += [
            Record(step, f"{info.name}.cost.{k}", v) for k, v in m.cost.items() if k != "seconds"
        ]
        return out

    def table(self):
        """The records as a tidy pandas DataFrame with columns step, name, value."""
        import pandas as pd

        return pd.DataFrame(
            [(r.step, r.name, r.value) for r in self.records], columns=["step", "name", "value"]
        )

    def series(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of one tracked name, in step order."""
        rows = [(r.step, r.value) for r in self.records if r.name == name]
        if not rows:
            return np.zeros(0), np.zeros(0)
        steps, values = zip(*rows, strict=True)
        return np.asarray(steps), np.asarray(values)

    def __repr__(self) -> str:
        names = [i.name for i in self.infos]
        spent = f"{self.seconds:.3g}s" if math.isfinite(self.seconds) else "?"
        return f"Tracker({names}, every={self.every}, records={len(self.records)}, {spent})"
