"""Shard-level reads and writes of a cube's variables (the part of ``Cube`` that moves bytes).

Kept apart from ``amsweep.storage.cube`` (opening, lease, creation, status, flush order) so each file
holds one concept. ``ShardIO`` is a mixin: the class using it provides ``objects`` (the store),
``members`` (Zarr metadata by array name), ``sweep``, ``path``, ``format``, ``attrs`` (whose
``amsweep_cube_id`` every format-3 shard is bound to), ``coords_of``, the status grid ``_status``,
the writer's decoded-shard cache ``_blocks`` and ``shard_errors`` (why a shard was unreadable).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from amsweep.pipeline.outcomes import CellResult
from amsweep.storage import template
from amsweep.storage.layout import DONE, PENDING
from amsweep.storage.shards import ShardError, ShardIdentity, ShardLayout

__all__ = ["BLOCK_CACHE_BYTES", "ShardIO"]

BLOCK_CACHE_BYTES = 64 * 2**20  # decoded shards the writer keeps: the ones being filled (~1 MB a shard set)


class ShardIO:
    """Reads whole variables and single shards; rewrites touched shards whole."""

    objects: Any
    members: dict[str, Any]
    sweep: Any
    format: int
    attrs: dict[str, Any]
    shard_errors: dict[str, str]
    _status: Any
    _blocks: dict[tuple[str, tuple[int, ...]], tuple[np.ndarray, np.ndarray]]

    def layout(self, name: str) -> ShardLayout:
        return template.shard_layout(self.members[name], headed=self.format >= 3)

    def identity(self, name: str, shard_index: tuple[int, ...]) -> ShardIdentity | None:
        """What a shard of this cube must say it is (None for format 2: no header)."""
        if self.format < 3:
            return None
        return ShardIdentity(str(self.attrs.get("amsweep_cube_id", "")), name, self.layout(name).key(name, shard_index))

    def encode_shard(
        self, name: str, shard_index: tuple[int, ...], values: np.ndarray, present: np.ndarray
    ) -> bytes | None:
        """A shard's bytes, bound to this cube, variable and position (None: nothing present)."""
        return self.layout(name).encode(values, present, self.identity(name, shard_index))

    def _shard_of(self, index: tuple[int, ...]) -> tuple[int, ...]:
        shard = self.layout("status").shard
        return tuple(i // s for i, s in zip(index, shard))

    def _shards_where(self, mask: np.ndarray) -> list[tuple[int, ...]]:
        shard = self.layout("status").shard
        return sorted({tuple(int(i) // s for i, s in zip(idx, shard)) for idx in zip(*np.nonzero(mask))})

    def read_shard(self, name: str, shard_index: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, present, damaged) of one shard, fetched from the store."""
        return self.decode_shard(name, shard_index, self.objects.get(self.layout(name).key(name, shard_index)))

    def decode_shard(
        self, name: str, shard_index: tuple[int, ...], data: bytes | None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, present, damaged) of a shard's bytes (None: the shard does not exist). An
        unreadable index, or a shard written for another variable, position or cube, marks all
        its tasks damaged; ``shard_errors`` keeps why, by key, for ``check`` to print."""
        lay = self.layout(name)
        fill = self.members[name].fill_value
        key = lay.key(name, shard_index)
        try:
            out = lay.decode(data, fill, self.identity(name, shard_index))
        except ShardError as e:
            self.shard_errors[key] = str(e)
            values, present = lay.empty(fill)
            return values, present, np.ones(lay.shard, dtype=bool)
        self.shard_errors.pop(key, None)
        return out

    def read_variable(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A whole variable over the task grid: (values, present, damaged), one GET per shard."""
        lay = self.layout(name)
        shape = self.sweep.shape
        grid = lay.grid(shape)
        shards = list(np.ndindex(*grid))
        found = self.objects.get_many([lay.key(name, s) for s in shards])
        values = np.full(shape + lay.inner, self.members[name].fill_value, dtype=lay.dtype)
        present = np.zeros(shape, dtype=bool)
        damaged = np.zeros(shape, dtype=bool)
        for s in shards:
            v, p, d = self.decode_shard(name, s, found[lay.key(name, s)])
            box, clip = lay.region(s, shape)
            values[box], present[box], damaged[box] = v[clip], p[clip], d[clip]
        return values, present, damaged

    def _put_data(self, names: list[str], by_shard: dict[tuple[int, ...], list[CellResult]]) -> None:
        """Rewrite each touched shard of these variables whole, in one ``put_many`` (decoded shards
        cached between flushes)."""
        puts: dict[str, bytes] = {}
        fresh: dict[tuple[str, tuple[int, ...]], tuple[np.ndarray, np.ndarray]] = {}
        for name in names:
            self._encode_data(name, by_shard, puts, fresh)
        self.objects.put_many(puts)
        for key in fresh:
            self._blocks.pop(key, None)
        self._blocks.update(fresh)
        self._trim_cache()

    def _encode_data(
        self,
        name: str,
        by_shard: dict[tuple[int, ...], list[CellResult]],
        puts: dict[str, bytes],
        fresh: dict[tuple[str, tuple[int, ...]], tuple[np.ndarray, np.ndarray]],
    ) -> None:
        """Add the new bytes of one variable's touched shards to ``puts`` (their arrays to ``fresh``)."""
        lay = self.layout(name)
        wanted = [s for s in by_shard if (name, s) not in self._blocks]
        found = self.objects.get_many([lay.key(name, s) for s in wanted])
        for s in wanted:
            v, p, _ = self.decode_shard(name, s, found[lay.key(name, s)])
            self._blocks[(name, s)] = (v, p)
        origin = lay.shard
        for s, rs in by_shard.items():
            values, present = (a.copy() for a in self._blocks[(name, s)])
            for r in rs:
                local = tuple(i - si * n for i, si, n in zip(r.index, s, origin))
                values[local] = r.values.get(name, np.nan)
                present[local] = True
            if not rs:  # an added metric: explicit NaN for every done task of the shard
                box, clip = lay.region(s, self.sweep.shape)
                present[clip] |= self._status[box] == DONE
            data = self.encode_shard(name, s, values, present)
            if data is not None:
                puts[lay.key(name, s)] = data
            fresh[(name, s)] = (values, present)

    def _put_status(self, shards: list[tuple[int, ...]]) -> None:
        """Rewrite these status shards whole. Every task's status chunk is stored, pending ones
        included, from the cube's creation on, so a status chunk that is absent was lost (a
        deleted shard), never merely not yet written: ``check`` and ``query`` tell a lost status
        from a flush killed between its data and its status."""
        lay = self.layout("status")
        shape = self.sweep.shape
        puts = {}
        for s in shards:
            values, present = lay.empty(PENDING)
            box, clip = lay.region(s, shape)
            values[clip] = self._status[box]
            present[clip] = True  # every status chunk is written, pending ones too: a missing one is lost
            data = self.encode_shard("status", s, values, present)
            assert data is not None  # a shard's box is never empty
            puts[lay.key("status", s)] = data
        self.objects.put_many(puts)

    def _all_shards(self) -> list[tuple[int, ...]]:
        """Every shard position of the task grid (creation and growth write every status shard)."""
        return [tuple(int(i) for i in s) for s in np.ndindex(*self.layout("status").grid(self.sweep.shape))]

    def _trim_cache(self) -> None:
        """Forget the least recently written shards beyond the cache budget."""
        size = sum(v.nbytes + p.nbytes for v, p in self._blocks.values())
        while size > BLOCK_CACHE_BYTES and self._blocks:
            v, p = self._blocks.pop(next(iter(self._blocks)))
            size -= v.nbytes + p.nbytes
