"""Independent, reproducible random streams derived from one user seed."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch


def generator(seed: int, *stream: int) -> torch.Generator:
    """A torch generator for stream ``stream`` of ``seed``.

    NumPy's ``SeedSequence`` hashes ``(seed, *stream)`` so that, e.g., the teacher weights
    (stream 0) and the test inputs (stream 2) of one seed are statistically independent,
    which consecutive integer seeds fed straight to ``manual_seed`` do not promise.
    """
    state = np.random.SeedSequence([seed, *stream]).generate_state(1, dtype=np.uint64)[0]
    return torch.Generator().manual_seed(int(state))


# Stream 0 is reserved for things shared by all splits (a teacher's weights).
SPLIT_STREAMS = {"train": 1, "test": 2}


@contextmanager
def global_rng_preserved() -> Iterator[None]:
    """Leave every global random stream as it was on entry, whatever runs inside.

    The streams are torch's CPU generator, the generator of every CUDA device once CUDA
    is initialized, NumPy's legacy global state and Python's ``random``. Measuring during
    training goes through this, so that a training run draws the same dropout masks,
    shuffles and augmentations with or without measurements (iterating a DataLoader
    alone draws from torch's generator).

    Example:
        >>> before = torch.get_rng_state()
        >>> with global_rng_preserved():
        ...     _ = torch.rand(3), np.random.rand(), random.random()
        >>> torch.equal(torch.get_rng_state(), before)
        True
    """
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    numpy_state, python_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
