"""CIFAR-10 (krizhevsky2009) read from the binary version's batch files in a local folder.

Each file is a sequence of 3073-byte records: one label byte (0..9), then 1024 red,
1024 green and 1024 blue pixel bytes, each plane in row-major order of a 32x32 image.
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


def parse_batch(raw: bytes, source: str = "CIFAR-10 data") -> tuple[np.ndarray, np.ndarray]:
    """Decode one batch file into images (N, 3, 32, 32) uint8 and labels (N,) uint8."""
    if len(raw) == 0 or len(raw) % RECORD:
        raise DataError(
            f"{source} has {len(raw)} bytes, not a positive multiple of the {RECORD}-byte "
            "record (1 label + 3072 pixels): the file is truncated or not the binary version."
        )
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].copy()
    if labels.max() >= NUM_CLASSES:
        raise DataError(
            f"{source} has label byte {labels.max()}; CIFAR-10 labels lie in 0..9 "
            "(is it the 100-class version?)."
        )
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


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
    parts = [parse_batch((folder / name).read_bytes(), str(folder / name)) for name in names]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    x = torch.from_numpy(images).to(torch.float32).div_(255.0)
    return Dataset(
        x, torch.from_numpy(labels.astype(np.int64)), num_classes=NUM_CLASSES, name="cifar10"
    )
