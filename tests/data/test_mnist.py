import gzip
import struct

import numpy as np
import pytest
import torch

from normscope.data import load
from normscope.data.idx import parse_idx, read_idx
from normscope.errors import DataError

NAMES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def idx_ubyte(array: np.ndarray) -> bytes:
    """IDX bytes written from the format's definition: 0, 0, type 0x08, ndim, sizes."""
    header = bytes([0, 0, 0x08, array.ndim])
    header += b"".join(struct.pack(">I", size) for size in array.shape)
    return header + array.astype(np.uint8).tobytes(order="C")


def write_mnist(folder, sizes=(5, 3), rows=4, cols=6, gz=False, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for (split, (image_name, label_name)), n in zip(NAMES.items(), sizes, strict=True):
        images = rng.integers(0, 256, size=(n, rows, cols), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        for name, array in ((image_name, images), (label_name, labels)):
            raw = idx_ubyte(array)
            path = folder / (f"{name}.gz" if gz else name)
            path.write_bytes(gzip.compress(raw) if gz else raw)
        written[split] = (images, labels)
    return written


def test_parse_idx_reads_big_endian_int32_matrix():
    values = [[1, -2, 70000], [3, 2**31 - 1, -(2**31)]]
    raw = bytes([0, 0, 0x0C, 2]) + struct.pack(">II", 2, 3)
    raw += b"".join(struct.pack(">i", v) for row in values for v in row)
    array = parse_idx(raw)
    assert array.dtype == np.int32 and array.dtype.isnative
    np.testing.assert_array_equal(array, values)


def test_parse_idx_reads_big_endian_float64_vector():
    raw = bytes([0, 0, 0x0E, 1]) + struct.pack(">I", 2) + struct.pack(">dd", 0.5, -3.25)
    np.testing.assert_array_equal(parse_idx(raw), [0.5, -3.25])


@pytest.mark.parametrize("gz", [False, True])
def test_mnist_loads_plain_and_gzipped_files(tmp_path, gz):
    written = write_mnist(tmp_path, gz=gz)
    for split, (images, labels) in written.items():
        data = load("mnist", split=split, root=tmp_path, standardize=False)
        assert data.x.shape == (len(images), 1, 4, 6) and data.x.dtype == torch.float32
        assert data.y.dtype == torch.int64 and data.num_classes == 10
        np.testing.assert_allclose(data.x[:, 0].numpy(), images / 255.0, rtol=1e-6)
        np.testing.assert_array_equal(data.y.numpy(), labels)
    assert len(load("mnist", split="all", root=tmp_path)) == 8


def test_read_idx_of_gz_equals_plain(tmp_path):
    array = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    (tmp_path / "a").write_bytes(idx_ubyte(array))
    (tmp_path / "a.gz").write_bytes(gzip.compress(idx_ubyte(array)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), read_idx(tmp_path / "a.gz"))


def test_mnist_standardizes_both_splits_with_the_training_mean_and_std(tmp_path):
    written = write_mnist(tmp_path)
    train_pixels = written["train"][0] / 255.0
    mean, std = train_pixels.mean(), train_pixels.std(ddof=1)
    expected = (written["test"][0] / 255.0 - mean) / std
    test = load("mnist", split="test", root=tmp_path)
    np.testing.assert_allclose(test.x[:, 0].numpy(), expected, rtol=1e-5, atol=1e-5)


def test_mnist_flatten_option_gives_vectors(tmp_path):
    write_mnist(tmp_path)
    assert load("mnist", root=tmp_path, flatten=True).x.shape == (5, 24)


def test_mnist_found_through_normscope_data(tmp_path, monkeypatch):
    write_mnist(tmp_path / "mnist")
    monkeypatch.setenv("NORMSCOPE_DATA", str(tmp_path))
    assert len(load("mnist", split="test")) == 3


def test_missing_folder_error_names_the_folder_and_files(tmp_path):
    folder = tmp_path / "nowhere"
    with pytest.raises(DataError) as err:
        load("mnist", root=folder)
    message = str(err.value)
    assert str(folder) in message and "does not exist" in message
    assert all(name in message for name in NAMES["train"])
    assert "NORMSCOPE_DATA" in message


def test_missing_file_error_names_the_missing_file(tmp_path):
    write_mnist(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(DataError, match=r"lacks t10k-labels-idx1-ubyte\."):
        load("mnist", split="test", root=tmp_path)


def _corrupt(tmp_path, name, raw):
    write_mnist(tmp_path)
    (tmp_path / name).write_bytes(raw)
    return tmp_path


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        (b"\x01\x00\x08\x03" + struct.pack(">III", 5, 4, 6) + bytes(120), "magic number"),
        (b"\x00\x00\x07\x03" + struct.pack(">III", 5, 4, 6) + bytes(120), "magic number"),
        (b"\x00\x00\x08\x03" + struct.pack(">III", 5, 4, 6) + bytes(119), "truncated"),
        (b"\x00\x00\x08\x03" + struct.pack(">II", 5, 4), "header"),
        (b"\x00\x00", "truncated"),
        (b"\x00\x00\x08\x02" + struct.pack(">II", 5, 24) + bytes(120), "shape"),
    ],
    ids=["bad-magic", "bad-type", "truncated-data", "truncated-header", "tiny", "wrong-ndim"],
)
def test_corrupt_image_file_raises_data_error(tmp_path, raw, match):
    folder = _corrupt(tmp_path, "train-images-idx3-ubyte", raw)
    with pytest.raises(DataError, match=match):
        load("mnist", root=folder)


def test_label_count_mismatch_raises_data_error(tmp_path):
    folder = _corrupt(tmp_path, "train-labels-idx1-ubyte", idx_ubyte(np.zeros(4, np.uint8)))
    with pytest.raises(DataError, match="4 labels for 5 images"):
        load("mnist", root=folder)


def test_label_outside_0_to_9_raises_data_error(tmp_path):
    folder = _corrupt(tmp_path, "train-labels-idx1-ubyte", idx_ubyte(np.full(5, 10, np.uint8)))
    with pytest.raises(DataError, match="label 10"):
        load("mnist", root=folder)


def test_unreadable_gzip_raises_data_error(tmp_path):
    write_mnist(tmp_path, gz=True)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DataError, match="gzip"):
        load("mnist", root=tmp_path)


def test_test_split_alone_loads_without_standardization(tmp_path):
    write_mnist(tmp_path)
    for name in NAMES["train"]:
        (tmp_path / name).unlink()
    with pytest.raises(DataError, match="standardize=False"):
        load("mnist", split="test", root=tmp_path)
    assert len(load("mnist", split="test", root=tmp_path, standardize=False)) == 3
