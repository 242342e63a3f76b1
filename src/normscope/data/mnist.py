"""MNIST (lecun1998) read from the four IDX files in a local folder."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from normscope.data.dataset import Dataset
from normscope.data.idx import read_idx
from normscope.data.paths import missing_files, source_folder
from normscope.errors import DataError

FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
NUM_CLASSES = 10


def _locate(folder: Path, names: tuple[str, ...]) -> list[Path]:
    found = {
        name: next((p for p in (folder / name, folder / f"{name}.gz") if p.is_file()), None)
        for name in names
    }
    missing = [name for name, path in found.items() if path is None]
    if missing:
        raise missing_files("mnist", folder, list(names), missing, note=" (each plain or .gz)")
    return list(found.values())


def _check_images(images: np.ndarray, path: Path) -> None:
    if images.dtype != np.uint8 or images.ndim != 3:
        raise DataError(
            f"{path} should hold unsigned bytes of shape (N, rows, cols), got dtype "
            f"{images.dtype} and shape {images.shape}: is it an image file?"
        )


def _check_labels(labels: np.ndarray, path: Path, n_images: int) -> None:
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{path} should hold unsigned bytes of shape (N,), got dtype {labels.dtype} and "
            f"shape {labels.shape}: is it a label file?"
        )
    if len(labels) != n_images:
        raise DataError(f"{path} has {len(labels)} labels for {n_images} images.")
    if len(labels) and labels.max() >= NUM_CLASSES:
        raise DataError(f"{path} has label {labels.max()}; MNIST labels lie in 0..9.")


def read_split(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, rows, cols) uint8 and labels (N,) uint8 of one split, validated."""
    image_path, label_path = _locate(folder, FILES[split])
    images = read_idx(image_path)
    _check_images(images, image_path)
    labels = read_idx(label_path)
    _check_labels(labels, label_path, len(images))
    return images, labels


def mnist(split: str, *, root: str | os.PathLike[str] | None = None) -> Dataset:
    """MNIST as (N, 1, 28, 28) images with grey levels scaled to [0, 1] and labels 0..9.

    Files are read from ``root``, else ``$NORMSCOPE_DATA/mnist``; any folder holding the
    same four names in the same format (e.g. Fashion-MNIST) loads the same way.
    """
    folder = source_folder("mnist", root)
    names = ["train", "test"] if split == "all" else [split]
    parts = [read_split(folder, name) for name in names]
    images = np.concatenate([images for images, _ in parts])
    labels = np.concatenate([labels for _, labels in parts])
    x = torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)
    return Dataset(
        x, torch.from_numpy(labels.astype(np.int64)), num_classes=NUM_CLASSES, name="mnist"
    )
