"""Reader for the IDX format of the MNIST files (LeCun et al.), plain or gzip-compressed.

Layout: two zero bytes, a type code, the number of dimensions d, then d sizes as
big-endian unsigned 32-bit integers, then the values in C order, big-endian.

The header is read and checked first; the reader then allocates the array the header
declares and reads exactly that many bytes into it, so it never holds more than the
header allows. Before allocating, the declared size is checked against what the file
can hold: the file's own size for a plain file, and the largest output deflate can
produce from the compressed bytes (:data:`MAX_DEFLATE_RATIO`) for a ``.gz`` file. A
stream holding more data than the header declares (a gzip bomb behind a small header)
is refused after reading one byte past the declared end.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from normscope.errors import DataError

TYPE_CODES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
MAX_DEFLATE_RATIO = 1032
"""Deflate's largest expansion (RFC 1951): a 258-byte match coded in 2 bits gives at most
about 1032 output bytes per input byte; a gzip file of n bytes can hold no more."""
_CHUNK = 1 << 20


def _read_exactly(handle: BinaryIO, n: int, source: str, what: str) -> bytes:
    data = handle.read(n)
    if len(data) < n:
        raise DataError(
            f"{source} is truncated inside its {what} ({len(data)} of {n} bytes); "
            "the file is incomplete or corrupt."
        )
    return data


def _header(handle: BinaryIO, source: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """Type, shape and header length, from the first bytes of ``handle``."""
    magic = handle.read(4)
    if len(magic) < 4:
        raise DataError(f"{source} is truncated: {len(magic)} bytes, fewer than the 4-byte magic.")
    if magic[:2] != b"\x00\x00" or magic[2] not in TYPE_CODES or magic[3] == 0:
        raise DataError(
            f"{source} is not an IDX file: magic number {magic.hex(' ')} should be "
            f"'00 00 <type> <ndim>' with type one of "
            f"{', '.join(f'{c:02x}' for c in TYPE_CODES)} and ndim >= 1."
        )
    ndim = magic[3]
    shape = struct.unpack(f">{ndim}I", _read_exactly(handle, 4 * ndim, source, "header"))
    return TYPE_CODES[magic[2]], shape, 4 + 4 * ndim


def _capacity(path: Path, compressed: bool) -> int:
    """The most bytes of IDX data the file at ``path`` can hold."""
    size = path.stat().st_size
    return size * MAX_DEFLATE_RATIO if compressed else size


def _read_values(
    handle: BinaryIO, dtype: np.dtype, shape: tuple[int, ...], source: str
) -> np.ndarray:
    """The ``prod(shape)`` values that follow the header, read straight into one array."""
    out = np.empty(shape, dtype=dtype)
    view = memoryview(out.reshape(-1).view(np.uint8))
    filled = 0
    while filled < len(view):
        got = handle.readinto(view[filled : filled + _CHUNK])
        if not got:
            raise DataError(
                f"{source} holds {filled} data bytes but its header {shape} of "
                f"{dtype.itemsize}-byte values needs {len(view)}: the file is truncated "
                "or corrupt."
            )
        filled += got
    if handle.read(1):
        raise DataError(
            f"{source} holds more data than its header {shape} of {dtype.itemsize}-byte "
            f"values declares ({len(view)} bytes): the file is corrupt or not IDX."
        )
    return out


def _parse(handle: BinaryIO, capacity: int, source: str) -> np.ndarray:
    dtype, shape, header = _header(handle, source)
    needed = math.prod(shape) * dtype.itemsize
    if header + needed > capacity:
        raise DataError(
            f"{source}: its header declares shape {shape} of {dtype.itemsize}-byte values "
            f"({header + needed} bytes), more than the file can hold ({capacity} bytes): the "
            "file is truncated or corrupt."
        )
    values = _read_values(handle, dtype, shape, source)
    if dtype.isnative:
        return values
    # Swap to native byte order in place: no second copy of a large array.
    values.byteswap(inplace=True)
    return values.view(dtype.newbyteorder("="))


def parse_idx(raw: bytes, source: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes into an array of native byte order, checking magic and sizes."""
    import io

    return _parse(io.BytesIO(raw), len(raw), source)


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` decompressed on the fly) into a NumPy array of native
    byte order, holding in memory no more than the array its header declares.

    Raises :class:`~normscope.errors.DataError` for a file that is not IDX, is truncated,
    declares more data than it can hold, or holds more than it declares.
    """
    path = Path(path)
    compressed = path.suffix == ".gz"
    try:
        capacity = _capacity(path, compressed)
        with path.open("rb") as raw:
            if not compressed:
                return _parse(raw, capacity, str(path))
            with gzip.GzipFile(fileobj=raw) as handle:
                return _parse(handle, capacity, str(path))
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path} is not a readable {'gzip ' if compressed else ''}file ({err}); "
            "download it again" + (" or unpack it." if compressed else ".")
        ) from None
