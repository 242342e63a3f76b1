"""scikit-learn's 8x8 handwritten digits (1797 images, 10 classes), shipped with the library."""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

from normscope.data.dataset import Dataset

TEST_FRACTION = 0.2


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    # Imported here: scikit-learn takes about a second to import and only this source needs it.
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


def digits(split: str, *, seed: int) -> Dataset:
    """The digits as (N, 1, 8, 8) images with grey levels 0..16 scaled to [0, 1].

    ``train`` / ``test`` are a shuffled 80 / 20 split of all 1797 images, fixed by ``seed``
    (``Dataset.split``); ``all`` is every image in the library's order.
    """
    pixels, target = _digits_arrays()
    x = torch.tensor(pixels / 16.0, dtype=torch.float32).reshape(-1, 1, 8, 8)
    data = Dataset(x, torch.tensor(target, dtype=torch.int64), num_classes=10, name="digits")
    if split == "all":
        return data
    train, test = data.split(TEST_FRACTION, seed=seed)
    return train if split == "train" else test
