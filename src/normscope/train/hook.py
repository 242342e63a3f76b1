"""The training hook the experiment runner calls for a spec's ``[train]`` table."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from normscope.subject import Subject
from normscope.train.loop import train
from normscope.train.options import check_options
from normscope.train.tracker import Tracker


def run_training(
    subject: Subject,
    train_config: dict[str, Any],
    tracked: Sequence[Any],
    on_record: Callable[[int, str, Any], None],
) -> int:
    """Train ``subject`` with the options of ``train_config``; report tracked measures.

    ``tracked`` items carry ``label``, ``name``, ``every``, ``options``, ``data`` (a
    Dataset to measure on instead of the training data, or None) and ``point``
    (``"iterate"`` or ``"midpoint"``, see :class:`Tracker`); each gets a
    Tracker of its own (so warm starts and schedules are per measure), and every
    measurement reaches ``on_record(step, label, measurement)``. Returns the number of
    steps taken.
    """
    check_options(train_config, batch_size=subject.batch_size)
    trackers = [
        Tracker(
            [t.name],
            every=t.every,
            options={t.name: dict(t.options)} if t.options else None,
            track_weight_norms=False,
            data=getattr(t, "data", None),
            point=getattr(t, "point", "iterate"),
            on_measurement=lambda step, _name, m, label=t.label: on_record(step, label, m),
        )
        for t in tracked
    ]
    return train(subject, tracker=trackers, **train_config).steps
