"""Every file reader checks the sizes a file declares before it reads, and holds no more
in memory than the declaration allows: IDX (plain and gzip), CIFAR-10 batches, the
MNIST-1D cache and spec files. Memory is measured with tracemalloc (NumPy reports its
array allocations there)."""

from __future__ import annotations

import gzip
import io
import struct
import tracemalloc
import zipfile

import numpy as np
import pytest

from normscope.data import cifar10, mnist1d
from normscope.data.idx import MAX_DEFLATE_RATIO, read_idx
from normscope.errors import ConfigError, DataError
from normscope.experiments.spec import MAX_SPEC_CHARS, load_spec

MiB = 1 << 20


def peak_bytes(fn, *args):
    """(result or raised exception, peak bytes allocated while ``fn`` ran)."""
    tracemalloc.start()
    try:
        try:
            out = fn(*args)
        except Exception as err:
            out = err
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def idx_header(type_code: int, shape: tuple[int, ...]) -> bytes:
    return bytes([0, 0, type_code, len(shape)]) + b"".join(struct.pack(">I", s) for s in shape)


def test_a_gzip_bomb_behind_a_small_header_is_refused_with_bounded_memory(tmp_path):
    """398 KB-style bomb: the header says 10 images of 28x28, the stream inflates to 64 MiB."""
    path = tmp_path / "train-images-idx3-ubyte.gz"
    zeros = bytes(MiB)
    with gzip.open(path, "wb") as handle:
        handle.write(idx_header(0x08, (10, 28, 28)))
        for _ in range(64):
            handle.write(zeros)
    del zeros
    assert path.stat().st_size < MiB // 4
    error, peak = peak_bytes(read_idx, path)
    assert isinstance(error, DataError) and "more data than its header" in str(error)
    assert peak < 4 * MiB, peak


@pytest.mark.parametrize("gz", [False, True])
def test_a_header_that_claims_more_than_the_file_can_hold_is_refused_before_reading(tmp_path, gz):
    raw = idx_header(0x08, (60000, 28, 28)) + bytes(100)
    path = tmp_path / ("a.gz" if gz else "a")
    path.write_bytes(gzip.compress(raw) if gz else raw)
    error, peak = peak_bytes(read_idx, path)
    assert isinstance(error, DataError) and "more than the file can hold" in str(error)
    assert peak < MiB, peak


def test_absurd_dimensions_are_refused_without_allocating(tmp_path):
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(idx_header(0x0E, (2**32 - 1,) * 4)))
    error, peak = peak_bytes(read_idx, path)
    assert isinstance(error, DataError) and "more than the file can hold" in str(error)
    assert peak < MiB


def test_a_truthful_large_gzip_file_is_read_with_one_copy_of_its_data(tmp_path):
    """8 MiB of int16 values: peak memory is the array plus a bounded read buffer, where
    decompressing the whole file first would need at least twice the array."""
    values = np.arange(4 * MiB, dtype=np.int16)
    path = tmp_path / "a.gz"
    path.write_bytes(gzip.compress(idx_header(0x0B, values.shape) + values.astype(">i2").tobytes()))
    array, peak = peak_bytes(read_idx, path)
    assert array.dtype == np.int16 and array.dtype.isnative
    np.testing.assert_array_equal(array, values)
    assert peak < values.nbytes + 3 * MiB, (peak, values.nbytes)


def test_deflate_ratio_bound_holds_for_the_most_compressible_stream():
    raw = bytes(8 * MiB)
    assert len(raw) / len(gzip.compress(raw, compresslevel=9)) < MAX_DEFLATE_RATIO


@pytest.mark.parametrize("gz", [False, True])
def test_truncated_and_overlong_files_are_data_errors(tmp_path, gz):
    good = idx_header(0x08, (4, 3)) + bytes(12)
    for raw, message in [(good[:-1], "truncated"), (good + b"\x00", "more data|more than")]:
        path = tmp_path / ("a.gz" if gz else "a")
        path.write_bytes(gzip.compress(raw) if gz else raw)
        with pytest.raises(DataError, match=message):
            read_idx(path)


def test_cifar_file_size_is_checked_before_reading(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    with path.open("wb") as handle:  # sparse: 30 MB declared by the file system, none written
        handle.truncate(10000 * cifar10.RECORD + 1)
    error, peak = peak_bytes(cifar10.read_batch, path)
    assert isinstance(error, DataError) and "not a positive multiple" in str(error)
    assert peak < MiB


def test_cifar_batch_is_read_into_one_array(tmp_path):
    path = tmp_path / "data_batch_1.bin"
    with path.open("wb") as handle:
        handle.truncate(2000 * cifar10.RECORD)
    size = path.stat().st_size
    (images, labels), peak = peak_bytes(cifar10.read_batch, path)
    assert images.shape == (2000, 3, 32, 32) and labels.shape == (2000,)
    assert peak < 1.1 * size, (peak, size)


def _npz_claiming(shape: tuple[int, ...]) -> bytes:
    member = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        member, {"descr": "<f8", "fortran_order": False, "shape": shape}
    )
    member.write(bytes(8))
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zipped:
        for key in ("x", "y", "x_test", "y_test"):
            zipped.writestr(f"{key}.npy", member.getvalue())
    return archive.getvalue()


def _npz_of_large_arrays() -> bytes:
    archive = io.BytesIO()
    np.savez(archive, **dict.fromkeys(mnist1d._KEYS, np.zeros(200_000)))
    return archive.getvalue()


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(lambda: _npz_claiming((10**9,)), id="header-beyond-member"),
        pytest.param(_npz_of_large_arrays, id="arrays-beyond-budget"),
    ],
)
def test_a_mnist1d_cache_declaring_too_much_is_regenerated_unread(tmp_path, monkeypatch, content):
    monkeypatch.setenv("NORMSCOPE_CACHE", str(tmp_path))
    mnist1d.cache_path(20).write_bytes(content())
    generated = []

    def generate(n):
        generated.append(n)
        return {k: np.zeros((n, 40) if k.startswith("x") else n) for k in mnist1d._KEYS}

    monkeypatch.setattr(mnist1d, "generate", generate)
    arrays, peak = peak_bytes(mnist1d.cached_arrays, 20)
    assert generated == [20] and arrays["x"].shape == (20, 40)
    assert peak < MiB


def test_a_spec_file_longer_than_the_limit_is_refused(tmp_path):
    path = tmp_path / "spec.toml"
    path.write_text("#" * (MAX_SPEC_CHARS + 1))
    with pytest.raises(ConfigError, match="longer than"):
        load_spec(path)
    error, peak = peak_bytes(load_spec, "/dev/zero")
    assert isinstance(error, ConfigError) and peak < 12 * MAX_SPEC_CHARS
