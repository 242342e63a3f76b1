"""Reader for the IDX format of the MNIST files (LeCun et al.), plain or gzip-compressed.

Layout: two zero bytes, a type code, the number of dimensions d, then d sizes as
big-endian unsigned 32-bit integers, then the values in C order, big-endian.
"""

from __future__ import annotations

import gzip
import math
import struct
import zlib
from pathlib import Path

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


def read_bytes(path: Path) -> bytes:
    """The file's bytes, decompressed if its name ends in ``.gz``."""
    if path.suffix != ".gz":
        return path.read_bytes()
    try:
        return gzip.decompress(path.read_bytes())
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(
            f"{path} is not a readable gzip file ({err}); download it again or unpack it."
        ) from err


def parse_idx(raw: bytes, source: str = "IDX data") -> np.ndarray:
    """Decode IDX bytes into an array of native byte order, checking magic and sizes."""
    if len(raw) < 4:
        raise DataError(f"{source} is truncated: {len(raw)} bytes, fewer than the 4-byte magic.")
    if raw[:2] != b"\x00\x00" or raw[2] not in TYPE_CODES or raw[3] == 0:
        raise DataError(
            f"{source} is not an IDX file: magic number {raw[:4].hex(' ')} should be "
            f"'00 00 <type> <ndim>' with type one of "
            f"{', '.join(f'{c:02x}' for c in TYPE_CODES)} and ndim >= 1."
        )
    dtype, ndim = TYPE_CODES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{source} is truncated inside its header ({len(raw)} < {header} bytes).")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{source} holds {len(raw) - header} data bytes but its header {shape} of "
            f"{dtype.itemsize}-byte values needs {expected}: the file is truncated or corrupt."
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (``.gz`` decompressed on the fly) into a NumPy array."""
    path = Path(path)
    return parse_idx(read_bytes(path), source=str(path))
