"""Zarr v3 shards of a cube variable, encoded and decoded in bulk with numpy.

Every variable is stored with Zarr's ``sharding_indexed`` codec, byte for byte as the Zarr v3
sharding specification says, so Zarr, xarray and tensorstore read what amsweep writes: inner
chunks use the ``bytes`` (little-endian) and ``crc32c`` codecs, and the shard index (one
(offset, nbytes) uint64 pair per inner chunk, C order, at the end of the shard) carries its own
CRC-32C.

Format 3 inner chunks are *blocks* of tasks (a seed row or more, ~256 tasks): plain readers pay
per inner chunk (zarr-python ~200 us, an xarray dask chunk far more), so one-task chunks (format
2) made ``xr.open_zarr(CUBE)[m].values`` take over a minute at 10^5 tasks. A task's present and
damaged flags are its block's. Format 3 shards also start with an *identity header* the index
never references (Zarr readers reach inner chunks only through the index, so they skip it):
magic, the (cube id, variable, shard key) the shard was written for, and a BLAKE2b digest over
that identity and the index. A shard swapped with another variable's, or copied from another
cube of the same shape, is then damage that names where it came from, not silently wrong data.

Why not let zarr-python encode them: its codec pipeline costs ~200 us per inner chunk, which
capped a driver at a few hundred cells per second over 15 variables. Every inner chunk of a
variable has the same size, so a whole shard is one reshape plus one C CRC-32C call per inner chunk.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

import google_crc32c
import numpy as np

__all__ = [
    "choose_block_shape",
    "choose_shard_shape",
    "crc32c_rows",
    "EMPTY",
    "MAGIC",
    "ShardError",
    "ShardIdentity",
    "ShardIdentityError",
    "ShardGeometry",
    "TARGET_TASKS_PER_BLOCK",
    "TARGET_TASKS_PER_SHARD",
    "UNWRITTEN_BITS",
]

EMPTY = np.uint64(2**64 - 1)
# About 4,096 tasks per shard: a 10^5-cell cube is then ~25 shards per variable (~400 objects
# with 16 variables, against a budget of 5,000), while one shard of a per-noise float32 metric
# stays ~100-300 KB, cheap to rewrite whole at every flush that touches it (a few ms locally).
TARGET_TASKS_PER_SHARD = 4096
# About 256 tasks per inner chunk (at least a shard's seed row): few enough chunks that plain
# Zarr readers are fast, small enough that one flipped byte costs one block of tasks.
TARGET_TASKS_PER_BLOCK = 256
MAGIC = b"AMSWEEP\x03"  # first bytes of a format-3 shard: its identity header follows
_DIGEST = 16
# Within a stored inner chunk (a seed row or more) the tasks never written hold this quiet-NaN
# payload, and a computed NaN is stored as the canonical one, so a reader tells "this task was
# never written here" from "its value is NaN" task by task (every reader still sees NaN). Why: a
# chunk is rewritten whole at every flush, so an older copy of a shard (a restored backup, a
# torn copy of the folder) holds present chunks in which tasks done since are unwritten; without
# the mark they would read as NaN results and a query would average the other seeds silently.
UNWRITTEN_BITS = {4: np.uint32(0x7FC0A115), 8: np.uint64(0x7FF80000A115A115)}


def crc32c_rows(rows: np.ndarray) -> np.ndarray:
    """CRC-32C of each row of a 2-D uint8 array (the checksum Zarr's ``crc32c`` codec appends).

    One call per row of google-crc32c, the C library (hardware CRC instructions) zarr-python's own
    ``crc32c`` codec uses. It replaced a numba table kernel: format-3 rows are inner chunks of a seed
    row or more (hundreds of bytes to tens of KB), where C is 2.5-25x faster per row (0.3 us a call,
    then ~5 GB/s), and numba's import and cache load cost `amsweep status` ~1 s of its start. The
    kernel won only on rows under ~128 bytes (format 2's one-task chunks, read-only now): 2x over a
    whole format-2 cube, less than its own import (benchmarks/RESULTS.md, issue 26: imports).
    """
    rows = np.ascontiguousarray(rows, dtype=np.uint8)
    n, width = rows.shape
    data = rows.tobytes()  # google_crc32c takes bytes, not a memoryview: slices of one copy
    value = google_crc32c.value
    return np.fromiter((value(data[i * width : (i + 1) * width]) for i in range(n)), dtype=np.uint32, count=n)


def choose_shard_shape(task_shape: tuple[int, ...], target: int = TARGET_TASKS_PER_SHARD) -> tuple[int, ...]:
    """Shard extent along each task axis, filled from the last axis (seed) backwards.

    Tasks run in C order over (dataset, N, load, rule, seed), so the trailing axes finish
    together: a shard spanning all seeds, rules and loads of one (dataset, N) is completed by
    consecutive flushes and then never rewritten again. Each axis is covered whole while the
    budget allows; the first axis that does not fit gets the largest extent that does.
    """
    shape = [1] * len(task_shape)
    budget = target
    for axis in range(len(task_shape) - 1, -1, -1):
        extent = max(1, min(task_shape[axis], budget))
        shape[axis] = extent
        budget //= extent
        if budget <= 1:
            break
    return tuple(shape)


def choose_block_shape(shard: tuple[int, ...], target: int = TARGET_TASKS_PER_BLOCK) -> tuple[int, ...]:
    """Inner-chunk extent along each task axis: the shard's whole seed extent, then earlier axes
    filled backwards while ~``target`` tasks allow. Each extent divides the shard's (Zarr requires
    a shard to be a whole number of inner chunks)."""
    shape = [1] * len(shard)
    shape[-1] = shard[-1]
    budget = target // shard[-1]
    for axis in range(len(shard) - 2, -1, -1):
        if budget <= 1:
            break
        extent = max(d for d in range(1, min(shard[axis], budget) + 1) if shard[axis] % d == 0)
        shape[axis] = extent
        budget //= extent
    return tuple(shape)


@dataclass(frozen=True)
class ShardIdentity:
    """What a shard was written for: the cube (``attrs["amsweep_cube_id"]``), variable, and key."""

    cube: str
    variable: str
    key: str

    def to_bytes(self) -> bytes:
        return json.dumps({"cube": self.cube, "variable": self.variable, "key": self.key}, sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes) -> "ShardIdentity":
        d = json.loads(data)
        return cls(str(d["cube"]), str(d["variable"]), str(d["key"]))

    def __str__(self) -> str:
        return f"{self.variable} shard {self.key} of cube {self.cube}"


@dataclass(frozen=True)
class ShardGeometry:
    """How one variable is cut: task-grid shard shape, inner-chunk block, per-task values.

    ``inner`` is the shape of one task's values (``()`` for scalars, ``(n_noise,)`` for
    per-noise metrics); ``dtype`` is fixed-size little-endian. ``block`` is the task extent of
    one inner chunk (None: one task, as in format 2); ``headed`` says shards carry the format-3
    identity header (format 2 shards do not).
    """

    shard: tuple[int, ...]
    inner: tuple[int, ...]
    dtype: np.dtype
    block: tuple[int, ...] | None = None
    headed: bool = False

    @property
    def tasks(self) -> int:
        return math.prod(self.shard)

    @property
    def chunk_tasks(self) -> tuple[int, ...]:
        return self.block or (1,) * len(self.shard)

    @property
    def chunk_grid(self) -> tuple[int, ...]:
        """Inner chunks per shard along each task axis."""
        return tuple(s // b for s, b in zip(self.shard, self.chunk_tasks))

    @property
    def n_chunks(self) -> int:
        return math.prod(self.chunk_grid)

    @property
    def chunk_nbytes(self) -> int:
        return math.prod(self.chunk_tasks) * math.prod(self.inner) * np.dtype(self.dtype).itemsize

    def grid(self, task_shape: tuple[int, ...]) -> tuple[int, ...]:
        return tuple(-(-n // s) for n, s in zip(task_shape, self.shard))

    def key(self, name: str, shard_index: tuple[int, ...]) -> str:
        """Zarr's default chunk key: ``name/c/i/j/...`` (the noise axis is one shard: index 0)."""
        tail = (0,) if self.inner else ()
        return f"{name}/c/" + "/".join(str(i) for i in (*shard_index, *tail))

    def bounds(self, shard_index: tuple[int, ...], task_shape: tuple[int, ...]) -> tuple[slice, ...]:
        """The slice of the task grid a shard covers, clipped to the grid."""
        return tuple(slice(i * s, min((i + 1) * s, n)) for i, s, n in zip(shard_index, self.shard, task_shape))

    def region(
        self, shard_index: tuple[int, ...], task_shape: tuple[int, ...]
    ) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
        """(the grid slice a shard covers, the same cells within the shard's own block)."""
        box = self.bounds(shard_index, task_shape)
        return box, tuple(slice(0, b.stop - b.start) for b in box)

    def empty(self, fill) -> tuple[np.ndarray, np.ndarray]:
        """(values, present) of a shard that holds nothing yet."""
        values = np.full(self.shard + self.inner, fill, dtype=self.dtype)
        return values, np.zeros(self.shard, dtype=bool)

    # ---- task grid <-> inner chunks ----------------------------------------------------------
    def _split(self) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
        """(interleaved (g0, b0, g1, b1, ...) shape, the axes order putting grid axes first, its inverse)."""
        k = len(self.shard)
        split = tuple(x for g, b in zip(self.chunk_grid, self.chunk_tasks) for x in (g, b))
        order = tuple(range(0, 2 * k, 2)) + tuple(range(1, 2 * k, 2))
        order += tuple(range(2 * k, 2 * k + len(self.inner)))
        return split, order, tuple(np.argsort(order))

    def _chunk_any(self, per_task: np.ndarray) -> np.ndarray:
        """Per inner chunk (C order): whether any of its tasks is set."""
        split, _, _ = self._split()
        return per_task.reshape(split).any(axis=tuple(range(1, len(split), 2))).reshape(self.n_chunks)

    def _per_task(self, per_chunk: np.ndarray) -> np.ndarray:
        """A per-chunk flag spread over the chunk's tasks."""
        grid = per_chunk.reshape(tuple(x for g in self.chunk_grid for x in (g, 1)))
        split, _, _ = self._split()
        return np.broadcast_to(grid, split).reshape(self.shard).copy()

    def _to_rows(self, values: np.ndarray) -> np.ndarray:
        """Shard values -> (n_chunks, chunk_nbytes) little-endian bytes, each row one inner chunk."""
        split, order, _ = self._split()
        raw = np.asarray(values, dtype=np.dtype(self.dtype).newbyteorder("<"))
        blocks = np.ascontiguousarray(raw.reshape(split + self.inner).transpose(order))
        return blocks.reshape(self.n_chunks, -1).view(np.uint8).reshape(self.n_chunks, self.chunk_nbytes)

    def _from_rows(self, rows: np.ndarray) -> np.ndarray:
        """Inverse of ``_to_rows`` for (n_chunks, elements) values."""
        split, order, inverse = self._split()
        full = split + self.inner
        shaped = rows.reshape(tuple(full[i] for i in order))
        return np.ascontiguousarray(shaped.transpose(inverse)).reshape(self.shard + self.inner)

    # ---- encode / decode ---------------------------------------------------------------------
    def encode(self, values: np.ndarray, present: np.ndarray, identity: ShardIdentity | None = None) -> bytes | None:
        """Shard bytes holding the inner chunks with any task ``present``; None if none is (the
        object should then not exist, as Zarr itself does for an all-empty shard). A headed
        geometry needs the ``identity`` the shard is written for."""
        if self.headed and identity is None:
            raise TypeError("a format-3 shard is encoded with the identity it is written for")
        n = self.n_chunks
        used = self._chunk_any(present)
        if not used.any():
            return None
        size = self.chunk_nbytes
        rows = self._to_rows(self._marked(values, present))[used]
        crcs = crc32c_rows(rows)
        body = np.empty((rows.shape[0], size + 4), dtype=np.uint8)
        body[:, :size] = rows
        body[:, size:] = crcs.astype("<u4").view(np.uint8).reshape(-1, 4)
        ident = identity.to_bytes() if identity is not None else b""
        header_len = len(MAGIC) + 4 + len(ident) + _DIGEST if self.headed else 0
        index = np.full((n, 2), EMPTY, dtype="<u8")
        index[used, 0] = np.uint64(header_len) + np.arange(rows.shape[0], dtype=np.uint64) * np.uint64(size + 4)
        index[used, 1] = size + 4
        index_bytes = index.view(np.uint8).reshape(1, -1)
        tail = index_bytes.tobytes() + crc32c_rows(index_bytes).astype("<u4").tobytes()
        header = b""
        if self.headed:
            digest = hashlib.blake2b(ident + tail, digest_size=_DIGEST).digest()
            header = MAGIC + len(ident).to_bytes(4, "little") + ident + digest
        return header + body.tobytes() + tail

    def _check_header(self, buf: np.ndarray, tail: bytes, expected: ShardIdentity | None) -> None:
        if expected is None:
            raise TypeError("a format-3 shard is decoded with the identity it was written for")
        if buf.size < len(MAGIC) + 4 or buf[: len(MAGIC)].tobytes() != MAGIC:
            raise ShardIdentityError(f"{expected}: no amsweep identity header (not a format-3 shard of this cube)")
        n = int.from_bytes(buf[len(MAGIC) : len(MAGIC) + 4].tobytes(), "little")
        start = len(MAGIC) + 4
        if buf.size < start + n + _DIGEST:
            raise ShardError(f"{expected}: identity header truncated")
        ident = buf[start : start + n].tobytes()
        digest = buf[start + n : start + n + _DIGEST].tobytes()
        if hashlib.blake2b(ident + tail, digest_size=_DIGEST).digest() != digest:
            raise ShardError(f"{expected}: identity header or shard index fails its BLAKE2b digest")
        if ident != expected.to_bytes():
            try:
                found: object = ShardIdentity.from_bytes(ident)
            except (ValueError, KeyError, TypeError):
                found = ident[:200]
            raise ShardIdentityError(f"{expected} holds the bytes of {found} (a swapped or copied shard)")

    def decode(
        self, data: bytes | None, fill, identity: ShardIdentity | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, present, damaged) of a shard, per task (a task's flags are its inner chunk's).

        ``damaged`` marks inner chunks whose checksum fails or whose extent is impossible; a
        shard whose index or identity cannot be trusted raises ``ShardError`` (a shard written
        for another variable, position or cube: ``ShardIdentityError``). Absent object: all empty.
        """
        values, present = self.empty(fill)
        if data is None:
            return values, present, np.zeros(self.shard, dtype=bool)
        n, size = self.n_chunks, self.chunk_nbytes
        buf = np.frombuffer(data, dtype=np.uint8)
        index_len = n * 16
        if buf.size < index_len + 4:
            raise ShardError(f"shard of {buf.size} bytes is shorter than its index ({index_len + 4})")
        index_bytes = buf[-(index_len + 4) : -4]
        stored = int(np.frombuffer(buf[-4:].tobytes(), dtype="<u4")[0])
        if int(crc32c_rows(index_bytes.reshape(1, -1))[0]) != stored:
            raise ShardError("shard index fails its CRC-32C checksum")
        if self.headed:
            self._check_header(buf, buf[-(index_len + 4) :].tobytes(), identity)
        index = index_bytes.view("<u8").reshape(n, 2)
        used = index[:, 0] != EMPTY
        offsets, lengths = index[used, 0], index[used, 1]
        body_end = buf.size - index_len - 4
        ok = (lengths == size + 4) & (offsets + lengths <= body_end)
        chunk_present = np.zeros(n, dtype=bool)
        chunk_damaged = np.zeros(n, dtype=bool)
        where = np.nonzero(used)[0]
        chunk_damaged[where[~ok]] = True
        good = where[ok]
        if good.size:
            starts = offsets[ok].astype(np.int64)
            rows = buf[starts[:, None] + np.arange(size + 4)[None, :]]
            crc_ok = crc32c_rows(rows[:, :size]) == rows[:, size:].copy().view("<u4").reshape(-1)
            chunk_damaged[good[~crc_ok]] = True
            keep = good[crc_ok]
            elements = size // np.dtype(self.dtype).itemsize
            chunk = rows[crc_ok, :size].copy().view(np.dtype(self.dtype).newbyteorder("<"))
            flat = np.full((n, elements), fill, dtype=self.dtype)
            flat[keep] = chunk.reshape(keep.size, elements).astype(self.dtype, copy=False)
            values = self._from_rows(flat)
            chunk_present[keep] = True
        present = self._per_task(chunk_present)
        unwritten = self._unwritten(values)
        if unwritten is not None:  # per task, inside the stored chunks
            present &= ~unwritten
            values[unwritten] = fill
        return values, present, self._per_task(chunk_damaged)

    def _bits(self) -> tuple[np.dtype, np.generic] | None:
        """(unsigned view dtype, the unwritten mark) for a format-3 float variable, else None."""
        dtype = np.dtype(self.dtype)
        if not self.headed or dtype.kind != "f" or dtype.itemsize not in UNWRITTEN_BITS:
            return None
        return np.dtype(f"u{dtype.itemsize}"), UNWRITTEN_BITS[dtype.itemsize]

    def _marked(self, values: np.ndarray, present: np.ndarray) -> np.ndarray:
        """``values`` with the unwritten mark on every task not ``present`` and canonical NaN for
        computed NaN (so no result can carry the mark)."""
        bits = self._bits()
        if bits is None:
            return values
        view, mark = bits
        out = np.array(values, dtype=self.dtype)
        out[np.isnan(out)] = np.nan
        out.view(view)[~present] = mark
        return out

    def _unwritten(self, values: np.ndarray) -> np.ndarray | None:
        """Per task: every value holds the unwritten mark (None where the geometry has no mark)."""
        bits = self._bits()
        if bits is None:
            return None
        view, mark = bits
        flat = np.ascontiguousarray(values).view(view).reshape(self.shard + (-1,))
        return (flat == mark).all(axis=-1)


class ShardError(ValueError):
    """A shard whose index cannot be trusted: every task in it is unreadable."""


class ShardIdentityError(ShardError):
    """A readable shard written for another variable, position or cube (swapped or copied in)."""
