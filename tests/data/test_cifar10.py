import numpy as np
import pytest
import torch

from normscope.data import load
from normscope.errors import DataError

TRAIN = [f"data_batch_{i}.bin" for i in range(1, 6)]


def records(labels, planes) -> bytes:
    """Binary CIFAR-10 records: label byte, then red, green, blue 32x32 planes row-major."""
    return b"".join(
        bytes([label]) + b"".join(plane.tobytes(order="C") for plane in image)
        for label, image in zip(labels, planes, strict=True)
    )


def write_cifar(folder, per_file=2, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for name in [*TRAIN, "test_batch.bin"]:
        labels = rng.integers(0, 10, size=per_file, dtype=np.uint8)
        images = rng.integers(0, 256, size=(per_file, 3, 32, 32), dtype=np.uint8)
        (folder / name).write_bytes(records(labels.tolist(), images))
        written[name] = (images, labels)
    return written


def test_cifar10_images_labels_shapes_and_scaling(tmp_path):
    written = write_cifar(tmp_path)
    train = load("cifar10", root=tmp_path, standardize=False)
    assert train.x.shape == (10, 3, 32, 32) and train.x.dtype == torch.float32
    assert train.y.dtype == torch.int64 and train.num_classes == 10
    images = np.concatenate([written[name][0] for name in TRAIN])
    labels = np.concatenate([written[name][1] for name in TRAIN])
    np.testing.assert_allclose(train.x.numpy(), images / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(train.y.numpy(), labels)
    test = load("cifar10", split="test", root=tmp_path, standardize=False)
    np.testing.assert_array_equal(test.y.numpy(), written["test_batch.bin"][1])
    assert len(load("cifar10", split="all", root=tmp_path)) == 12


def test_red_plane_comes_first_and_rows_are_row_major(tmp_path):
    folder = tmp_path / "c"
    write_cifar(folder)
    image = np.zeros((3, 32, 32), np.uint8)
    image[0, 0, 1] = 255  # red, row 0, column 1: byte 1 + 1 of the record
    image[2, 31, 0] = 51  # blue, row 31, column 0: byte 1 + 2048 + 992
    (folder / "test_batch.bin").write_bytes(records([7], image[None]))
    data = load("cifar10", split="test", root=folder, standardize=False)
    raw = (folder / "test_batch.bin").read_bytes()
    assert raw[2] == 255 and raw[1 + 2048 + 31 * 32] == 51
    assert data.x[0, 0, 0, 1] == 1.0 and data.x[0, 2, 31, 0] == pytest.approx(0.2)
    assert data.x.sum().item() == pytest.approx(1.2) and data.y.tolist() == [7]


def test_cifar10_standardizes_per_channel_with_training_statistics(tmp_path):
    written = write_cifar(tmp_path)
    train = np.concatenate([written[name][0] for name in TRAIN]) / 255.0
    mean = train.mean(axis=(0, 2, 3), keepdims=True)[0]
    std = train.std(axis=(0, 2, 3), ddof=1, keepdims=True)[0]
    expected = (written["test_batch.bin"][0] / 255.0 - mean) / std
    test = load("cifar10", split="test", root=tmp_path)
    np.testing.assert_allclose(test.x.numpy(), expected, rtol=1e-5, atol=1e-5)


def test_unpacked_archive_folder_inside_root_is_found(tmp_path):
    write_cifar(tmp_path / "cifar-10-batches-bin")
    assert len(load("cifar10", root=tmp_path)) == 10


def test_cifar10_found_through_normscope_data(tmp_path, monkeypatch):
    write_cifar(tmp_path / "cifar10")
    monkeypatch.setenv("NORMSCOPE_DATA", str(tmp_path))
    assert len(load("cifar10", split="test")) == 2


def test_cifar10_flatten_option_gives_vectors(tmp_path):
    write_cifar(tmp_path)
    assert load("cifar10", root=tmp_path, flatten=True).x.shape == (10, 3072)


def test_missing_folder_error_names_the_folder_and_files(tmp_path):
    with pytest.raises(DataError) as err:
        load("cifar10", root=tmp_path / "none")
    message = str(err.value)
    assert str(tmp_path / "none") in message and "does not exist" in message
    assert all(name in message for name in TRAIN)


def test_missing_batch_is_named(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "data_batch_3.bin").unlink()
    with pytest.raises(DataError, match=r"lacks data_batch_3\.bin\."):
        load("cifar10", root=tmp_path)


@pytest.mark.parametrize("cut", [1, 3072, 3074])
def test_file_size_not_a_multiple_of_the_record_raises_data_error(tmp_path, cut):
    write_cifar(tmp_path)
    path = tmp_path / "data_batch_2.bin"
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(DataError, match="3073-byte record"):
        load("cifar10", root=tmp_path)


def test_empty_file_raises_data_error(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "test_batch.bin").write_bytes(b"")
    with pytest.raises(DataError, match="0 bytes"):
        load("cifar10", split="test", root=tmp_path)


def test_label_byte_above_9_raises_data_error(tmp_path):
    write_cifar(tmp_path)
    (tmp_path / "test_batch.bin").write_bytes(records([12], np.zeros((1, 3, 32, 32), np.uint8)))
    with pytest.raises(DataError, match="label byte 12"):
        load("cifar10", split="test", root=tmp_path)
