"""MNIST-1D (greydanus2020): 1-D signals of length 40 in 10 classes, generated locally.

The samples come from the ``mnist1d`` package's own generator with its default
arguments (seed 42), so ``num_samples=5000`` gives the published 4000 / 1000 split.
normscope never uses the package's download path or its pickle files: the arrays are
generated once and cached as ``.npz`` under :func:`normscope.data.paths.cache_dir`. A
cache file whose arrays declare more than :data:`MAX_CACHE_BYTES_PER_SAMPLE` bytes per
sample, or more than its archive holds, is regenerated without being read.
"""

from __future__ import annotations

import math
import os
import random
import sys
import tempfile
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from importlib.metadata import version
from pathlib import Path

import numpy as np
import torch

from normscope.data.checks import positive_int
from normscope.data.dataset import Dataset
from normscope.data.paths import cache_dir
from normscope.errors import ConfigError

_KEYS = ("x", "y", "x_test", "y_test")


@contextmanager
def preserved_global_rng() -> Iterator[None]:
    """Restore NumPy's and Python's global random states on exit.

    ``mnist1d.make_dataset`` calls ``np.random.seed`` and ``random.seed``; without this a
    caller's global random stream would silently change whenever data is generated.
    """
    np_state = np.random.get_state()
    py_state = random.getstate()
    try:
        yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


def _headless_matplotlib() -> None:
    # mnist1d imports pyplot at import time; choose the file-only backend unless the user
    # has picked one (MPLBACKEND) or pyplot is already running with theirs.
    import matplotlib

    if "MPLBACKEND" not in os.environ and "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")


def generate(num_samples: int) -> dict[str, np.ndarray]:
    """Run the package's generator for ``num_samples`` signals; global RNG state untouched."""
    with preserved_global_rng():
        _headless_matplotlib()
        from mnist1d.data import get_dataset_args, make_dataset

        args = get_dataset_args()
        args.num_samples = num_samples
        data = make_dataset(args)
    return {key: np.asarray(data[key]) for key in _KEYS}


def cache_path(num_samples: int) -> Path:
    """Cache file keyed by the package version (which fixes every default argument,
    including the generator seed) and the one argument normscope changes."""
    return cache_dir() / f"mnist1d-{version('mnist1d')}-n{num_samples}.npz"


MAX_CACHE_BYTES_PER_SAMPLE = 1024
"""Most bytes a cache file's arrays may declare per generated sample. A sample takes 40
values and a label (at most 328 bytes in float64 / int64); anything far beyond is not a
cache normscope wrote."""


def _declares_no_more_than(path: Path, budget: int) -> bool:
    """Whether the arrays in the ``.npz`` at ``path`` declare at most ``budget`` bytes in
    all, and each ``.npy`` header no more than its archive member holds; checked from the
    zip directory and the headers, before any array is read."""
    with zipfile.ZipFile(path) as archive:
        members = archive.infolist()
        if sum(m.file_size for m in members) > budget:
            return False
        for member in members:
            with archive.open(member) as handle:
                major, _ = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if major == 1
                    else np.lib.format.read_array_header_2_0
                )
                shape, _, dtype = read_header(handle)
                if math.prod(shape) * dtype.itemsize > member.file_size:
                    return False
    return True


def _read_cache(path: Path, num_samples: int) -> dict[str, np.ndarray] | None:
    try:
        if not _declares_no_more_than(path, num_samples * MAX_CACHE_BYTES_PER_SAMPLE):
            return None
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in _KEYS}
    except (OSError, ValueError, KeyError, zipfile.BadZipFile):
        return None


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    # Write-then-rename so that a reader running in parallel never sees half a file.
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
        np.savez(handle, **arrays)
    os.replace(handle.name, path)


def cached_arrays(num_samples: int) -> dict[str, np.ndarray]:
    """The generated arrays, read from the cache or generated and cached."""
    path = cache_path(num_samples)
    arrays = _read_cache(path, num_samples) if path.exists() else None
    if arrays is None:
        arrays = generate(num_samples)
        _write_cache(path, arrays)
    return arrays


def mnist1d(split: str, *, num_samples: int = 5000) -> Dataset:
    """MNIST-1D signals as (N, 40) float inputs (zero mean, unit standard deviation over
    the whole generated set, as the generator returns them) and labels 0..9.

    ``num_samples`` (a multiple of 10, since the generator draws equally per class) sets
    how many signals are generated; 80 % of them form ``train``, the rest ``test``.
    """
    positive_int("num_samples", num_samples)
    if num_samples % 10 or num_samples < 10:
        raise ConfigError(
            f"num_samples must be a positive multiple of 10 (equal samples per class), "
            f"got {num_samples}."
        )
    arrays = cached_arrays(num_samples)
    parts = {"train": ("x", "y"), "test": ("x_test", "y_test")}
    chosen = [parts[split]] if split != "all" else list(parts.values())
    x = np.concatenate([arrays[kx] for kx, _ in chosen])
    y = np.concatenate([arrays[ky] for _, ky in chosen])
    return Dataset(
        torch.tensor(x, dtype=torch.float32),
        torch.tensor(y, dtype=torch.int64),
        num_classes=10,
        name="mnist1d",
    )
