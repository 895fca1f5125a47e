"""The shards of one cube array: read any region of the task grid, rewrite touched shards, and say
which tasks are present or damaged.

Why one object: the cube's status grid and metrics, ``amsweep check`` and the xarray backend all
read the same shards the same way (one GET per shard, the format-3 identity header checked, an
unreadable shard marking its tasks damaged and saying why). One region reader keeps them agreeing;
before it, the shard-intersection loop was written twice (``Cube.read_variable`` and the backend).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Protocol, Sequence

import numpy as np

from amsweep.storage import zarr_documents
from amsweep.storage.objects import Objects
from amsweep.storage.shards import ShardError, ShardIdentity, ShardGeometry

__all__ = [
    "BLOCK_CACHE_BYTES",
    "DecodedShards",
    "Placement",
    "Region",
    "ShardIndex",
    "ShardWrites",
    "TaskValues",
    "VariableStore",
]

BLOCK_CACHE_BYTES = 64 * 2**20  # decoded shards the writer keeps: the ones being filled (~1 MB a shard set)

ShardIndex = tuple[int, ...]  # a shard's position on the grid of shards
Region = tuple[slice, ...]  # a box of the task grid (start <= stop, step 1)
Block = tuple[np.ndarray, np.ndarray]  # (values, present) of one decoded shard


class TaskValues(Protocol):
    """What a write needs of a result (``CellResult`` is one): its task and its values by array."""

    @property
    def index(self) -> tuple[int, ...]: ...

    @property
    def values(self) -> Mapping[str, Any]: ...


@dataclass
class ShardWrites:
    """What one flush sets in one shard: rows of the flush's columns (``rows``, at the shard-local
    places ``local``) and results given one by one (``results``, at ``result_local``)."""

    rows: np.ndarray
    local: tuple[np.ndarray, ...]
    results: Sequence[TaskValues] = ()
    result_local: tuple[np.ndarray, ...] = ()


@dataclass
class Placement:
    """Where one flush's values go, worked out once for every array it rewrites: the flush's
    columns (metric -> (n, ...) values) and, per touched shard, its ``ShardWrites`` (None: a
    shard with no writes, whose done tasks get explicit fill: an array new to the cube)."""

    columns: Mapping[str, np.ndarray]
    shards: dict[ShardIndex, ShardWrites | None]

    @classmethod
    def of_results(cls, store: "VariableStore", by_shard: Mapping[ShardIndex, Sequence[TaskValues]]) -> "Placement":
        """Results given one by one, already grouped by shard (an empty list: no writes there)."""
        empty = np.zeros(0, dtype=np.int64)
        shards: dict[ShardIndex, ShardWrites | None] = {
            s: ShardWrites(empty, (), rs, store.local_places(rs, s)) if rs else None for s, rs in by_shard.items()
        }
        return cls({}, shards)

    @classmethod
    def of_flush(
        cls,
        store: "VariableStore",
        indices: np.ndarray,
        columns: Mapping[str, np.ndarray],
        results: Sequence[TaskValues],
    ) -> "Placement":
        """A flush's columns (rows at task ``indices``) grouped by shard with one sort, each group at
        its shard-local places, plus its results given one by one (``of_results``' placing)."""
        shards: dict[ShardIndex, ShardWrites | None] = {}
        if len(indices):
            size = np.asarray(store.geometry.shard[: indices.shape[1]], dtype=np.int64)
            of = indices // size
            linear = np.ravel_multi_index(tuple(of.T), store.geometry.grid(store.task_shape))
            order = np.argsort(linear, kind="stable")
            ordered = linear[order]
            starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
            for a, b in zip(starts.tolist(), [*starts[1:].tolist(), len(order)]):
                rows = order[a:b]
                shards[tuple(of[rows[0]].tolist())] = ShardWrites(rows, tuple((indices[rows] - of[rows[0]] * size).T))
        by_shard: dict[ShardIndex, list[TaskValues]] = {}
        for r in results:
            by_shard.setdefault(store.shard_of(r.index), []).append(r)
        for s, loose in cls.of_results(store, by_shard).shards.items():
            assert loose is not None  # every group here has results
            w = shards.get(s)
            shards[s] = ShardWrites(w.rows, w.local, loose.results, loose.result_local) if w else loose
        return cls(columns, shards)


@dataclass
class VariableStore:
    """One array of a cube as its shards. ``errors`` (shard key -> why it was unreadable) is the
    cube's, shared by all its arrays, so ``check`` can name every unreadable shard it met."""

    objects: Objects
    name: str
    geometry: ShardGeometry
    fill: Any
    task_shape: tuple[int, ...]
    cube_id: str | None  # what every format-3 shard must say it belongs to; None: format 2 (no header)
    errors: dict[str, str]

    @classmethod
    def of(
        cls,
        objects: Objects,
        name: str,
        meta: Any,
        task_shape: tuple[int, ...],
        cube_id: str | None,
        errors: dict[str, str],
    ) -> "VariableStore":
        """The store of an array from its Zarr metadata (``cube_id`` None: a format-2 cube)."""
        geometry = zarr_documents.shard_geometry(meta, headed=cube_id is not None)
        return cls(objects, name, geometry, meta.fill_value, tuple(task_shape), cube_id, errors)

    # ---- where tasks live -------------------------------------------------------------------
    def key(self, shard: ShardIndex) -> str:
        return self.geometry.key(self.name, shard)

    def shard_of(self, index: tuple[int, ...]) -> ShardIndex:
        return tuple(int(i) // s for i, s in zip(index, self.geometry.shard))

    def shards(self) -> list[ShardIndex]:
        """Every shard position of the task grid."""
        return [tuple(int(i) for i in s) for s in np.ndindex(*self.geometry.grid(self.task_shape))]

    def shards_where(self, mask: np.ndarray) -> list[ShardIndex]:
        """The shards holding the tasks ``mask`` marks, in order."""
        return sorted({self.shard_of(idx) for idx in zip(*np.nonzero(mask))})

    def shards_touching(self, region: Region) -> list[ShardIndex]:
        """The shards a non-empty region of the task grid intersects, in C order."""
        ranges = [range(s.start // n, (s.stop - 1) // n + 1) for s, n in zip(region, self.geometry.shard)]
        return [tuple(r[i] for r, i in zip(ranges, s)) for s in np.ndindex(*[len(r) for r in ranges])]

    def box(self, shard: ShardIndex) -> tuple[Region, Region]:
        """(the task-grid slice a shard covers, the same cells within the shard's own block)."""
        return self.geometry.region(shard, self.task_shape)

    # ---- bytes <-> arrays -------------------------------------------------------------------
    def identity(self, shard: ShardIndex) -> ShardIdentity | None:
        """What a shard must say it is (None for format 2: no header)."""
        return None if self.cube_id is None else ShardIdentity(self.cube_id, self.name, self.key(shard))

    def empty(self) -> Block:
        """(values, present) of a shard that holds nothing yet."""
        return self.geometry.empty(self.fill)

    def encode(self, shard: ShardIndex, values: np.ndarray, present: np.ndarray) -> bytes | None:
        """A shard's bytes, bound to this cube, variable and position (None: nothing present)."""
        return self.geometry.encode(values, present, self.identity(shard))

    def decode(self, shard: ShardIndex, data: bytes | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, present, damaged) of a shard's bytes (None: the shard does not exist). An
        unreadable index, or a shard written for another variable, position or cube, marks all
        its tasks damaged; ``errors`` keeps why, by key, for ``check`` to print."""
        key = self.key(shard)
        try:
            out = self.geometry.decode(data, self.fill, self.identity(shard))
        except ShardError as e:
            self.errors[key] = str(e)
            values, present = self.empty()
            return values, present, np.ones(self.geometry.shard, dtype=bool)
        self.errors.pop(key, None)
        return out

    def read_shard(self, shard: ShardIndex) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, present, damaged) of one shard, fetched from the store."""
        return self.decode(shard, self.objects.get(self.key(shard)))

    # ---- reads ------------------------------------------------------------------------------
    def read(self, region: Region | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(values, present, damaged) over a region of the task grid (None: all of it), one GET
        per shard it touches; values are the fill value where absent or damaged."""
        whole = region is None
        if region is None:
            region = tuple(slice(0, n) for n in self.task_shape)
        size = tuple(max(0, s.stop - s.start) for s in region)
        geometry = self.geometry
        values = np.full(size + geometry.inner, self.fill, dtype=geometry.dtype)
        present = np.zeros(size, dtype=bool)
        damaged = np.zeros(size, dtype=bool)
        if 0 in size:
            return values, present, damaged
        shards = self.shards() if whole else self.shards_touching(region)
        keys = [self.key(s) for s in shards]
        found = self.objects.get_many(keys)
        for s, key in zip(shards, keys):
            v, p, d = self.decode(s, found[key])
            if whole:  # every shard lies inside: no intersection to compute (the common read)
                box, clip = geometry.region(s, self.task_shape)
                values[box], present[box], damaged[box] = v[clip], p[clip], d[clip]
                continue
            box = geometry.bounds(s, self.task_shape)
            lo = [max(b.start, r.start) for b, r in zip(box, region)]
            hi = [min(b.stop, r.stop) for b, r in zip(box, region)]
            if any(h <= low for low, h in zip(lo, hi)):
                continue
            src = tuple(slice(a - b.start, z - b.start) for a, z, b in zip(lo, hi, box))
            dst = tuple(slice(a - r.start, z - r.start) for a, z, r in zip(lo, hi, region))
            values[dst], present[dst], damaged[dst] = v[src], p[src], d[src]
        return values, present, damaged

    # ---- writes -----------------------------------------------------------------------------
    def rewritten(
        self, placement: Placement, cache: "DecodedShards", done: np.ndarray | None = None
    ) -> tuple[dict[str, bytes], dict[ShardIndex, Block]]:
        """(new shard bytes by key, their arrays) for a flush's values of this array (NaN where a
        result lacks it), each touched shard rewritten whole from its cached or fetched contents.
        A shard with no writes gets ``done`` tasks' values marked present (an array new to the cube:
        explicit fill for tasks done before). The cache learns what was read, never what is not yet
        stored."""
        writes = placement.shards
        wanted = [s for s in writes if cache.get(self.name, s) is None]
        found = self.objects.get_many([self.key(s) for s in wanted])
        for s in wanted:
            v, p, _ = self.decode(s, found[self.key(s)])
            cache.put(self.name, s, (v, p))
        puts: dict[str, bytes] = {}
        fresh: dict[ShardIndex, Block] = {}
        column = placement.columns.get(self.name)
        for s, w in writes.items():
            stored = cache.get(self.name, s)
            assert stored is not None
            values, present = (a.copy() for a in stored)
            if w is not None:
                if len(w.rows):  # the flush's columns: one assignment per array per shard
                    values[w.local] = np.nan if column is None else column[w.rows]
                    present[w.local] = True
                if w.results:
                    self._place(values, present, w.results, w.result_local)
            elif done is not None:
                box, clip = self.box(s)
                present[clip] |= done[box]
            data = self.encode(s, values, present)
            if data is not None:
                puts[self.key(s)] = data
            fresh[s] = (values, present)
        return puts, fresh

    def local_places(self, items: Sequence[TaskValues], shard: ShardIndex) -> tuple[np.ndarray, ...]:
        """The results' positions inside this shard, as index arrays (one per task dimension)."""
        origin = np.multiply(shard, self.geometry.shard[: len(shard)])
        return tuple((np.array([r.index for r in items], dtype=np.int64) - origin).T)

    def _place(
        self, values: np.ndarray, present: np.ndarray, items: Sequence[TaskValues], local: tuple[np.ndarray, ...]
    ) -> None:
        """Set these results' values in a shard's arrays: one fancy-indexed assignment per array, not
        one per result (per-result assignments cost the driver ~100 us a cell over 29 arrays, issue 26);
        result by result where one lacks the value (NaN) or the values' shapes differ."""
        column = [r.values.get(self.name) for r in items]
        try:
            stacked = np.array(column)  # a missing value (None) or mixed shapes: object dtype or ValueError
            if stacked.dtype == object or stacked.shape[1:] != values.shape[len(local) :]:
                raise ValueError("not one stack")
        except ValueError:  # the general case, as before
            for r, at in zip(items, zip(*local)):
                values[at] = r.values.get(self.name, np.nan)
        else:
            values[local] = stacked
        present[local] = True


class DecodedShards:
    """The writer's cache of decoded shards (by array and position), so a flush that adds tasks to
    a shard it wrote before need not fetch and decode it again; least recently written forgotten
    first beyond ``BLOCK_CACHE_BYTES``."""

    def __init__(self, budget: int = BLOCK_CACHE_BYTES) -> None:
        self.budget = budget
        self._blocks: dict[tuple[str, ShardIndex], Block] = {}

    def get(self, name: str, shard: ShardIndex) -> Block | None:
        return self._blocks.get((name, shard))

    def put(self, name: str, shard: ShardIndex, block: Block) -> None:
        self._blocks[(name, shard)] = block

    def stored(self, name: str, fresh: dict[ShardIndex, Block]) -> None:
        """``fresh`` blocks of ``name`` are now in the store: keep them as the newest."""
        for s, block in fresh.items():
            self._blocks.pop((name, s), None)
            self._blocks[(name, s)] = block

    def trim(self) -> None:
        size = sum(v.nbytes + p.nbytes for v, p in self._blocks.values())
        while size > self.budget and self._blocks:
            v, p = self._blocks.pop(next(iter(self._blocks)))
            size -= v.nbytes + p.nbytes

    def clear(self) -> None:
        self._blocks.clear()

    def __len__(self) -> int:
        return len(self._blocks)
