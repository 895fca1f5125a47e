"""Ways to damage a format-3 cube on disk, as disks, people and crashes do (for the check tests)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from amsweep.storage.cube import Cube
from amsweep.storage.shards import EMPTY


def chunk_span(path: str, name: str, index: tuple[int, ...]) -> tuple[Path, int, int]:
    """(shard file, offset, length) of the inner chunk holding one task, read from the shard's index."""
    store = Cube.open(path).variable(name)
    lay = store.geometry
    shard = store.shard_of(index)
    file = Path(path, store.key(shard))
    data = file.read_bytes()
    n = lay.n_chunks
    table = np.frombuffer(data[-(n * 16 + 4) : -4], dtype="<u8").reshape(lay.chunk_grid + (2,))
    local = tuple((i - s * k) // b for i, s, k, b in zip(index, shard, lay.shard, lay.chunk_tasks))
    offset, length = (int(x) for x in table[local])
    assert offset != int(EMPTY), f"{name} of {index} is not stored"
    return file, offset, length


def flip_byte(path: str, name: str, index: tuple[int, ...], at: int = 1) -> None:
    """Change one byte of the values of the inner chunk holding a task (not its checksum): a silent
    bit flip (every task of that chunk is then damaged)."""
    file, offset, _ = chunk_span(path, name, index)
    data = bytearray(file.read_bytes())
    data[offset + at] ^= 0x10
    file.write_bytes(bytes(data))


def delete_shard(path: str, name: str, index: tuple[int, ...]) -> None:
    """Remove the whole shard object holding a task (every task in that shard loses ``name``)."""
    chunk_span(path, name, index)[0].unlink()


def force_status(path: str, index: tuple[int, ...], state: int) -> None:
    """Rewrite one task's status with a valid checksum, as a buggy tool or a person might."""
    store = Cube.open(path).variable("status")
    shard = store.shard_of(index)
    values, present, _ = store.read_shard(shard)
    local = tuple(i - s * k for i, s, k in zip(index, shard, store.geometry.shard))
    values[local], present[local] = state, True
    Path(path, store.key(shard)).write_bytes(store.encode(shard, values, present))


def delete_status(path: str) -> list[str]:
    """Remove every status shard object (a lost status); returns the keys removed."""
    store = Cube.open(path).variable("status")
    keys = [store.key(s) for s in store.shards()]
    removed = [k for k in keys if Path(path, k).exists()]
    for key in removed:
        Path(path, key).unlink()
    return removed


def blank_value(path: str, name: str, index: tuple[int, ...]) -> None:
    """Overwrite one task's values of ``name`` with NaN, checksums valid (a buggy writer): the
    chunk is present, the value is gone (format 3 stores a seed row or more per chunk)."""
    store = Cube.open(path).variable(name)
    shard = store.shard_of(index)
    values, present, _ = store.read_shard(shard)
    local = tuple(i - s * k for i, s, k in zip(index, shard, store.geometry.shard))
    assert present[local], f"{name} of {index} is not stored"
    values[local] = np.nan
    Path(path, store.key(shard)).write_bytes(store.encode(shard, values, present))
