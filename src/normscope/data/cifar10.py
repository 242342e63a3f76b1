"""CIFAR-10 (krizhevsky2009) read from the binary version's batch files in a local folder.

Each file is a sequence of 3073-byte records: one label byte (0..9), then 1024 red,
1024 green and 1024 blue pixel bytes, each plane in row-major order of a 32x32 image.
The format has no header, so the file's size is its declaration: it is checked to be a
positive multiple of the record before anything is read, and then exactly that many
bytes are read into one array.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from normscope.data.dataset import Dataset
from normscope.data.paths import missing_files, source_folder
from normscope.errors import DataError

FILES = {
    "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
    "test": ("test_batch.bin",),
}
ARCHIVE_FOLDER = "cifar-10-batches-bin"
RECORD = 1 + 3 * 32 * 32
NUM_CLASSES = 10


def _check_size(size: int, source: str) -> None:
    if size == 0 or size % RECORD:
        raise DataError(
            f"{source} has {size} bytes, not a positive multiple of the {RECORD}-byte "
            "record (1 label + 3072 pixels): the file is truncated or not the binary version."
        )


def _decode(records: np.ndarray, source: str) -> tuple[np.ndarray, np.ndarray]:
    records = records.reshape(-1, RECORD)
    labels = records[:, 0].copy()
    if labels.max() >= NUM_CLASSES:
        raise DataError(
            f"{source} has label byte {labels.max()}; CIFAR-10 labels lie in 0..9 "
            "(is it the 100-class version?)."
        )
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def parse_batch(raw: bytes, source: str = "CIFAR-10 data") -> tuple[np.ndarray, np.ndarray]:
    """Decode one batch file's bytes into images (N, 3, 32, 32) uint8 and labels (N,) uint8."""
    _check_size(len(raw), source)
    return _decode(np.frombuffer(raw, dtype=np.uint8), source)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Read one batch file: its size is checked first, then exactly that many bytes are
    read into one array (no second copy)."""
    try:
        size = path.stat().st_size
        _check_size(size, str(path))
        records = np.fromfile(path, dtype=np.uint8, count=size)
    except OSError as err:
        raise DataError(
            f"cannot read {path} ({err}); check the file and its permissions."
        ) from None
    if records.size != size:
        raise DataError(f"{path} changed while it was read ({records.size} of {size} bytes).")
    return _decode(records, str(path))


def batch_folder(root: str | os.PathLike[str] | None) -> Path:
    """``root`` (else ``$NORMSCOPE_DATA/cifar10``), or its ``cifar-10-batches-bin``
    subfolder if the archive was unpacked there."""
    folder = source_folder("cifar10", root)
    nested = folder / ARCHIVE_FOLDER
    return nested if nested.is_dir() else folder


def cifar10(split: str, *, root: str | os.PathLike[str] | None = None) -> Dataset:
    """CIFAR-10 as (N, 3, 32, 32) images with channel values scaled to [0, 1], labels 0..9."""
    folder = batch_folder(root)
    names = [*FILES["train"], *FILES["test"]] if split == "all" else list(FILES[split])
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        note = f" (unpacked from the {ARCHIVE_FOLDER} archive)"
        raise missing_files("cifar10", folder, names, missing, note=note)
    parts = [read_batch(folder / name) for name in names]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)
    return Dataset(
        x, torch.from_numpy(labels.astype(np.int64)), num_classes=NUM_CLASSES, name="cifar10"
    )
