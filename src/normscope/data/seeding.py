"""Independent, reproducible random streams derived from one user seed."""

from __future__ import annotations

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
