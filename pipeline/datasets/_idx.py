"""Read and write IDX files (the MNIST container format), plain or gzip-compressed.

IDX is a 4-byte magic (two zero bytes, a dtype code, the number of dimensions), the
dimensions as big-endian uint32, then the data in big-endian order. Readers must be strict:
a truncated download or a wrong file otherwise surfaces much later as a reshape error, far
from the file that caused it, so every inconsistency raises ``ValueError`` naming the path.
"""

from __future__ import annotations

import gzip
import os
import struct
from pathlib import Path

import numpy as np

_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(np.uint8),
    0x09: np.dtype(np.int8),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES: dict[np.dtype, int] = {dt.newbyteorder(">") if dt.itemsize > 1 else dt: c for c, dt in _DTYPES.items()}


def _read_bytes(path: Path) -> bytes:
    """Whole file content, transparently gunzipped when the name ends in .gz."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise ValueError(f"cannot read IDX file {path}: {exc}") from exc


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """The array stored in an IDX file, in native byte order."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _DTYPES:
        raise ValueError(f"malformed IDX file {path}: bad magic number {raw[:4].hex() or '(empty)'}")
    dtype = _DTYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise ValueError(f"malformed IDX file {path}: truncated header ({ndim} dimensions)")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(
            f"malformed IDX file {path}: header says shape {shape} ({expected} bytes) "
            f"but the file holds {len(raw)} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def write_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as IDX (gzip-compressed when the name ends in .gz), e.g. to ship a subset.

    The gzip header's timestamp is zeroed so the same array always gives the same bytes (and
    the same sha256 in SOURCES.md).
    """
    path = Path(path)
    dt = array.dtype.newbyteorder(">") if array.dtype.itemsize > 1 else array.dtype
    if dt not in _CODES:
        raise ValueError(f"dtype {array.dtype} has no IDX code")
    header = bytes([0, 0, _CODES[dt], array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + np.ascontiguousarray(array, dtype=dt).tobytes()
    if path.suffix == ".gz":
        with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
            f.write(payload)
    else:
        path.write_bytes(payload)
