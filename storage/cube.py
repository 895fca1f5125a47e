"""The result cube (format 3) on local disk or any fsspec store: open, create, grow, status, writes.

Only one driver writes a cube (a lease in the cube says which), and every write it makes goes
through the lease's fence (``amsweep.storage.fence``): a driver that lost the lease writes nothing
more. It keeps the status grid in
memory and writes results in flushes: each flush rewrites every touched shard of every variable
once, data first, then error records, then status, each object whole. A kill during a flush can
cost only that flush's results (their status was not yet written, so the next run recomputes
them), never anything done before. The cube's spec, shapes and attributes change only by one
write of the root document (``amsweep.storage.zarr_documents``).
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, NamedTuple

import numpy as np

from amsweep.pipeline.outcomes import NO_INDICES, CellResult, Failed, ResultBlock
from amsweep.pipeline.errors import CubeError
from amsweep.pipeline.metric_table import METRICS, check_declared
from amsweep.pipeline.spec import Sweep, Task, canonical_order, from_canonical, spec_hash
from amsweep.storage import backup, extend, plugin_record, provenance, schema, zarr_documents
from amsweep.storage.fence import FencedObjects, StaleView
from amsweep.storage.lease import KEY as LEASE_KEY
from amsweep.storage.schema import DONE, FAILED, FORMAT_VERSION, NOT_APPLICABLE, PENDING, SENTINEL
from amsweep.storage.objects import Objects, objects_at
from amsweep.storage.records import ERRORS, AMSWEEP_DIR, ErrorRecords, now, task_key
from amsweep.storage import task_arrays as task_array_io
from amsweep.storage.store_errors import missing_bucket, no_bucket_message, store_boundary
from amsweep.storage.variable_store import DecodedShards, Placement, ShardIndex, VariableStore

__all__ = ["Cube", "Mark", "RESTAGE_READY", "UPGRADE_READY"]


class Mark(NamedTuple):
    """A task that ended without results: FAILED (with its error) or NOT_APPLICABLE (with why)."""

    task_index: tuple[int, ...]
    state: int
    error: str


UPGRADE_READY = f"{AMSWEEP_DIR}/upgrade/READY.json"  # a format-1 -> 2 upgrade staged by amsweep before restage
RESTAGE_READY = (
    f"{AMSWEEP_DIR}/stage/READY.json"  # a verified rewrite waiting to be swapped in (amsweep.storage.restage)
)
MERGES = 5  # flush attempts when a stale driver's writes are met on S3 (each re-reads and merges)


def _wanted(tasks: Iterable[Task], todo: np.ndarray) -> Iterator[Task]:
    """The tasks whose ``todo`` flag is set, in their order. Flags are read one (dataset, N, load)
    slab at a time as a nested list (list look-ups are ~5x cheaper per task than a numpy scalar
    index): the whole grid as lists held ~69 MiB for 10^6 one-seed tasks through the run, a slab
    holds rules x seeds flags."""
    key: tuple[int, ...] = ()
    flags: list[list[bool]] = []
    for t in tasks:
        i = t.index
        if i[:3] != key:
            key = i[:3]
            flags = todo[key].tolist()
        if flags[i[3]][i[4]]:
            yield t


@dataclass
class Cube:
    """An open cube: its sweep, its arrays (each a ``VariableStore``), and (for the writer) the
    status grid and the decoded shards it is filling."""

    path: str
    objects: Objects
    sweep: Sweep
    attrs: dict[str, Any]
    arrays: dict[str, Any]
    storage_options: dict | None = None
    format: int = FORMAT_VERSION
    lease: Any = None
    damaged_status: list[tuple[int, ...]] = field(default_factory=list)
    shard_errors: dict[str, str] = field(default_factory=dict)  # shard key -> why it was unreadable
    _status: np.ndarray | None = None
    _blocks: DecodedShards = field(default_factory=DecodedShards)
    _errors: ErrorRecords | None = None

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str, storage_options: dict | None = None, mode: str = "r") -> "Cube":
        """Open an existing cube (format 1, 2 or 3); ``mode="r+"`` also takes the writer's lease."""
        objects = objects_at(path, storage_options)
        doc = backup.read_root(objects, path)  # a lost root that a backup restores: say so
        if doc is None:
            raise CubeError(f"{path}: no cube there (no {zarr_documents.ROOT})")
        cube = cls._from_root(path, objects, doc, storage_options)
        if mode != "r":
            cube.acquire()
        return cube

    @classmethod
    def _from_root(
        cls, path: str, objects: Objects, doc: dict[str, Any], storage_options: dict | None, staged: bool = False
    ) -> "Cube":
        """``staged``: ``doc`` is a restage's new root document, read to finish its swap."""
        attrs = doc.get("attributes") or {}
        if "amsweep_spec" not in attrs:
            hint = (
                " (an amsweep template whose creation was interrupted: `amsweep run` rebuilds it)"
                if attrs.get(zarr_documents.CREATING)
                else " (no amsweep_spec attribute)"
            )
            raise CubeError(f"{path}: a Zarr group that is not a finished amsweep cube{hint}; refusing to touch it")
        fmt = attrs.get("amsweep_format")
        if fmt not in schema.READABLE_FORMATS:
            raise CubeError(f"{path}: cube format {fmt!r}; this amsweep reads formats {schema.READABLE_FORMATS}")
        if fmt != FORMAT_VERSION and objects.get(UPGRADE_READY) is not None:
            raise CubeError(
                f"{path}: an `amsweep upgrade` was interrupted half-way; run `amsweep upgrade "
                f"{path}` again to finish it (the staged copy is complete and verified)"
            )
        if not staged and objects.get(RESTAGE_READY) is not None:
            raise CubeError(
                f"{path}: a rewrite of the cube (an extension that inserted values mid-axis, or an upgrade) "
                "was interrupted while swapping in its verified copy; run the same `amsweep run` (or "
                f"`amsweep upgrade {path}`, or `amsweep check --repair {path}`) again to finish it"
            )
        canonical = json.loads(attrs["amsweep_spec"])
        if spec_hash(canonical) != attrs.get("amsweep_spec_hash"):
            raise CubeError(
                f"{path}/{zarr_documents.ROOT}: stored spec does not match its stored hash; the cube "
                "attributes were edited or damaged"
            )
        arrays = zarr_documents.arrays_of(doc, path) if fmt >= 2 else {}  # format 2 is read shard by shard too
        return cls(path, objects, from_canonical(canonical), attrs, arrays, storage_options, fmt)

    @classmethod
    def create_or_open(
        cls,
        path: str,
        sweep: Sweep,
        storage_options: dict | None = None,
        plugins: dict[str, str] | None = None,
        allow_changed_plugins: bool = False,
    ) -> "Cube":
        """The writer's entry: take the lease, then resume the cube of this spec, create it if the
        path is empty (or holds an interrupted template), grow it if the spec only adds values,
        and refuse it (touching nothing) if the spec changes anything else. A failing store (full
        disk, S3 gone) is a one-line ``CubeError``; an interrupted creation is rebuilt next time.

        ``plugins`` ({module: "sha256:..."}, from the sweeps layer: storage imports no plug-in code)
        is recorded as the ``plugins`` attribute; a module recorded with another hash is refused,
        touching nothing, unless ``allow_changed_plugins`` (then the new hash is recorded, and the
        change in ``plugins_changed``). None: neither recorded nor checked."""
        with store_boundary(path, "opening the cube for writing"):
            return cls._create_or_open(path, sweep, storage_options, plugins, allow_changed_plugins)

    @classmethod
    def _create_or_open(
        cls,
        path: str,
        sweep: Sweep,
        storage_options: dict | None,
        plugins: dict[str, str] | None = None,
        allow_changed_plugins: bool = False,
    ) -> "Cube":
        if sweep.canonical != canonical_order(sweep.canonical):  # a Sweep made from a stored spec of old
            sweep = from_canonical(canonical_order(sweep.canonical))
        objects = objects_at(path, storage_options)
        if objects.get(RESTAGE_READY) is not None:  # a rewrite killed mid-swap: finish it first
            from amsweep.storage import restage

            restage.resume(path, objects, storage_options)
            print(  # said before anything else: a refusal below ("nothing was changed") is about this spec
                f"amsweep: {path}: finished an interrupted rewrite of the cube (its verified copy is swapped in)",
                file=sys.stderr,
            )
        doc = backup.read_root(objects, path)  # a lost root that a backup restores: say so
        if doc is not None and "amsweep_spec" in (doc.get("attributes") or {}):
            cube = cls._from_root(path, objects, doc, storage_options)
            cube._refuse_other_spec(sweep)
            changed = plugin_record.changed_plugins(path, cube.attrs, plugins, allow_changed_plugins)
            cube.acquire()
            backup.ensure(objects)  # a cube made before root backups were kept gets one now
            cube._evolve(sweep)
            if plugins is not None:
                cube._record_plugins(plugins, changed)
            return cube
        if doc is not None and not (doc.get("attributes") or {}).get(zarr_documents.CREATING):
            raise CubeError(
                f"{path}: a Zarr group that was not written by amsweep (no amsweep_spec "
                "attribute); refusing to touch it (choose another --out)"
            )
        if doc is None and _foreign_objects(objects):
            raise CubeError(
                f"{path}: exists and is not a Zarr v3 group (it holds files but no "
                f"{zarr_documents.ROOT}); refusing to touch it (choose another --out)"
            )
        cube = cls(path, objects, sweep, {}, {}, storage_options)
        cube.acquire()
        try:
            cube._create(plugins)
        except BaseException:
            cube.release()  # the next driver need not take over the lease of a failed creation
            raise
        return cube

    def _refuse_other_spec(self, sweep: Sweep) -> None:
        if self.sweep.spec_hash == sweep.spec_hash:
            return
        _, problems = extend.merge(self.sweep.canonical, sweep.canonical)
        if problems:
            raise CubeError(
                f"{self.path} was written by another spec (hash {self.sweep.spec_hash}, this spec "
                f"{sweep.spec_hash}); nothing was changed. Differences:\n  "
                + "\n  ".join(problems)
                + "\nA spec may only add values (seeds, N, loads, datasets, rules) to extend a cube; "
                "use a new --out path for a new experiment."
            )

    def _record_plugins(self, plugins: dict[str, str], changed: dict[str, list[str]]) -> None:
        """One root write when the record moves (``storage/plugin_record.py``)."""
        update = plugin_record.merged_record(self.path, self.attrs, plugins, changed)
        if update is not None:
            self.attrs.update(update)
            self._commit(self.sweep)

    def _evolve(self, sweep: Sweep) -> "Cube":
        """Writer-side upgrades of an open cube: older formats refused, new values grown (in place
        when they append to every axis, else by a kill-safe restage), new metrics added."""
        if self.format != FORMAT_VERSION:
            self.release()
            raise CubeError(
                f"{self.path}: cube format {self.format} can be read but not written by this "
                f"amsweep; convert it in place with `amsweep upgrade {self.path}` (kill-safe, "
                "verifies every value), then run again"
            )
        merged = self.sweep
        if self.sweep.spec_hash != sweep.spec_hash:
            canonical, _ = extend.merge(self.sweep.canonical, sweep.canonical)
            merged = from_canonical(canonical)
        from amsweep.storage import restage

        if not restage.in_place(self.sweep, merged):
            self._restage(merged)
        missing = [n for n in ("status", *METRICS) if n not in self.arrays]
        if merged.canonical != self.sweep.canonical or missing:
            self._grow(merged, missing)
        return self

    # ---- lease ---------------------------------------------------------------------------
    def acquire(self) -> None:
        """Take (or confirm) the writer's lease; a live driver elsewhere makes this refuse."""
        from amsweep.storage.lease import Lease

        if self.lease is None:
            try:
                self.lease = Lease.acquire(self.objects, command=" ".join(sys.argv[:4]), expect_record=bool(self.attrs))
            except OSError as e:
                bucket = missing_bucket(e)
                raise CubeError(
                    no_bucket_message(self.path, bucket)
                    if bucket is not None
                    else f"{self.path}: cannot write to the cube ({e}); its results are intact. "
                    "Fix the permissions or the space, then run again."
                ) from None
            for message in (self.lease.vanished_message, self.lease.takeover_message):
                if message:
                    print(f"amsweep: {message}", file=sys.stderr)
            self.objects = FencedObjects(self.objects, self.lease, _merged)  # every write from here on is fenced
            self._forget()  # re-read: another driver may have written before we held it
        self.lease.check()

    def _forget(self) -> None:
        """Drop what was read from the store (status, shards, error records): it is read again."""
        self._status, self._errors = None, None
        self._blocks.clear()

    def _fence(self) -> FencedObjects:
        assert isinstance(self.objects, FencedObjects), "a write without the lease"
        return self.objects

    def release(self) -> None:
        if self.lease is not None:
            self.lease.release()
            self.lease = None
            if isinstance(self.objects, FencedObjects):
                self.objects = self.objects.inner

    def __enter__(self) -> "Cube":
        return self

    def __del__(self) -> None:
        """A lease lives as long as its Cube object: a cube dropped without ``release`` (as in
        ``run(Cube.create_or_open(...))``) frees it for the next driver at once.

        Only the main thread releases here; elsewhere a short thread does. The garbage collector
        runs this on whichever thread allocates: on fsspec's event-loop thread, releasing (a lock,
        then a store write through that same loop) waited for the lease's heartbeat, which held the
        lock while waiting for the loop: a CI run hung in tests/test_benchmarks_smoke.py (py-spy)."""
        with contextlib.suppress(Exception):  # interpreter shutdown, or an unreachable store:
            if threading.current_thread() is threading.main_thread():  # the lease then expires by itself
                self.release()
            else:
                threading.Thread(target=self.release, name="amsweep-cube-release", daemon=True).start()

    def __exit__(self, *exc: Any) -> None:
        self.release()

    # ---- creation and growth ---------------------------------------------------------------
    def _create(self, plugins: dict[str, str] | None = None) -> None:
        """Marker first, then arrays, then the root document: an interrupted creation is a
        template the next run rebuilds."""
        for key in self.objects.list():
            if key != LEASE_KEY:
                self.objects.delete(key)
        self.objects.put(zarr_documents.ROOT, zarr_documents.creating_document())
        tpl = zarr_documents.build(self.sweep)
        self.objects.put_many(tpl.objects)
        self.arrays = tpl.arrays
        self.attrs = {
            "amsweep_format": FORMAT_VERSION,
            "amsweep_cube_id": uuid.uuid4().hex,  # every shard is bound to it (storage/shards.py)
            "created": now(),
            "title": self.sweep.name,
            "description": self.sweep.description,
            "Conventions": "CF-1.10",
            **provenance.cube_attrs(),
            **({"plugins": dict(sorted(plugins.items()))} if plugins is not None else {}),
        }
        self._status = np.where(schema.not_applicable_mask(self.sweep), NOT_APPLICABLE, PENDING).astype(np.int8)
        self._put_status(self._all_shards())
        self._commit(self.sweep)

    def _grow(self, merged: Sweep, missing: list[str]) -> None:
        """Append coordinate values and add arrays a newer amsweep declares; done tasks untouched.

        Idempotent: the root document is written last, so an interrupted growth leaves the old
        cube, and the next run of the same spec grows it again.
        """
        old_status = self.status()
        kept = self.variable("status").geometry
        tpl = zarr_documents.build(merged, shard=kept.shard, block=kept.chunk_tasks)
        added = {n: tpl.arrays[n] for n in missing}
        self.objects.put_many(tpl.objects)  # array documents and coordinate chunks; no data
        self.arrays = tpl.arrays
        status = np.full(merged.shape, PENDING, dtype=np.int8)
        status[tuple(slice(0, n) for n in old_status.shape)] = old_status
        status = np.where(schema.not_applicable_mask(merged) & (status == PENDING), NOT_APPLICABLE, status)
        previous, self.sweep = self.sweep, merged
        self._status = status.astype(np.int8)
        self._blocks.clear()
        done = self.variable("status").shards_where(status == DONE)
        done_shards = Placement({}, {s: None for s in done})
        # A metric new to this cube: NaN, explicitly present, for tasks done before (sentinel last).
        self._put_data([n for n in added if n not in ("status", SENTINEL)], done_shards)
        self._put_data([n for n in added if n == SENTINEL], done_shards)
        self._put_status(self._all_shards())
        history = list(self.attrs.get("extended", []))
        if merged.canonical != previous.canonical:
            history.append(now())
        self.attrs["extended"] = history
        self._commit(merged)

    def _restage(self, merged: Sweep) -> None:
        """Rewrite the cube in ``merged``'s canonical order (values inserted mid-axis move done
        tasks); a kill at any point leaves the old cube or a verified copy the next run swaps in."""
        from amsweep.storage import restage

        restage.restage(self, merged, {"extended": [*self.attrs.get("extended", []), now()]})
        restage.finish(self.objects)
        fresh = Cube._from_root(
            self.path, self.objects, zarr_documents.read_root(self.objects, self.path) or {}, self.storage_options
        )
        self.sweep, self.attrs, self.arrays = fresh.sweep, fresh.attrs, fresh.arrays
        self._status, self._errors, self.damaged_status = None, None, []
        self._blocks.clear()

    def _commit(self, sweep: Sweep) -> None:
        """One write of the root document: spec, hash, provenance and every array's metadata."""
        self.attrs.update(
            {
                "amsweep_spec": json.dumps(sweep.canonical, sort_keys=True),
                "amsweep_spec_hash": sweep.spec_hash,
                **provenance.cube_attrs(),
            }
        )
        document = zarr_documents.root_document(self.attrs, self.arrays)
        backup.save(self.objects, document)  # first: a lost or damaged root is restored from it
        self.objects.put(zarr_documents.ROOT, document)
        self.sweep = sweep

    # ---- arrays ---------------------------------------------------------------------------
    def variable(self, name: str) -> VariableStore:
        """The shards of one array (status or a metric) of this cube."""
        cube_id = str(self.attrs.get("amsweep_cube_id", "")) if self.format >= 3 else None
        return VariableStore.of(self.objects, name, self.arrays[name], self.sweep.shape, cube_id, self.shard_errors)

    def read_variable(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A whole variable over the task grid: (values, present, damaged), one GET per shard."""
        return self.variable(name).read()

    def _shard_of(self, index: tuple[int, ...]) -> ShardIndex:
        return self.variable("status").shard_of(index)

    def _all_shards(self) -> list[ShardIndex]:
        """Every shard position of the task grid (creation and growth write every status shard)."""
        return self.variable("status").shards()

    def _put_data(self, names: list[str], placement: Placement | dict[ShardIndex, list[CellResult]]) -> None:
        """Rewrite each touched shard of these variables whole, in one ``put_many`` (decoded shards
        cached between flushes). A shard with no results (an array new to the cube) gets explicit
        NaN for every task done before. ``placement``: where the values go, worked out once for every
        variable of a flush (``Placement.of_flush``), or results grouped by shard (a restage)."""
        if not isinstance(placement, Placement):
            placement = Placement.of_results(self.variable("status"), placement)
        puts: dict[str, bytes] = {}
        fresh: dict[str, dict[ShardIndex, tuple[np.ndarray, np.ndarray]]] = {}
        done: np.ndarray | None = None
        if self._status is not None and any(w is None for w in placement.shards.values()):
            done = self._status == DONE
        for name in names:
            data, fresh[name] = self.variable(name).rewritten(placement, self._blocks, done)
            puts.update(data)
        self.objects.put_many(puts)
        for name, blocks in fresh.items():
            self._blocks.stored(name, blocks)
        self._blocks.trim()

    def _put_status(self, shards: list[ShardIndex]) -> None:
        """Rewrite these status shards whole. Every task's status chunk is stored, pending ones
        included, from the cube's creation on, so a status chunk that is absent was lost (a
        deleted shard), never merely not yet written: ``check`` and ``query`` tell a lost status
        from a flush killed between its data and its status."""
        store = self.variable("status")
        assert self._status is not None
        puts = {}
        for s in shards:
            values, present = store.empty()
            box, clip = store.box(s)
            values[clip] = self._status[box]
            present[clip] = True  # every status chunk is written, pending ones too: a missing one is lost
            data = store.encode(s, values, present)
            assert data is not None  # a shard's box is never empty
            puts[store.key(s)] = data
        self.objects.put_many(puts)

    # ---- status --------------------------------------------------------------------------
    def status(self) -> np.ndarray:
        """The int8 status grid over (dataset, N, load, rule, seed). A task whose status chunk is
        unreadable counts as pending (``damaged_status`` lists them): it may be recomputed,
        never lost or crashed on."""
        if self._status is None:
            if self.format == 1:
                from amsweep.storage.legacy import read_status

                self._status, self.damaged_status = read_status(self)
            else:
                values, _, damaged = self.read_variable("status")
                values[damaged] = PENDING
                self._status = values.astype(np.int8)
                self.damaged_status = [tuple(int(i) for i in x) for x in zip(*np.nonzero(damaged))]
        return self._status

    def pending(self, retry_failed: bool = True) -> Iterator[Task]:
        """Tasks still to run, lazily in task order: pending, and failed ones unless told otherwise."""
        todo = self._todo(retry_failed)
        if todo.all():  # a fresh cube: no per-task look-up (the driver generates every task it runs)
            return self.sweep.tasks()
        return _wanted(self.sweep.tasks(), todo)

    def count_pending(self, retry_failed: bool = True) -> int:
        return int(self._todo(retry_failed).sum())

    def _todo(self, retry_failed: bool) -> np.ndarray:
        """Which tasks a run would compute: pending, and failed ones unless told otherwise."""
        status = self.status()
        # 1-byte temporaries: np.isin peaked at ~7 bytes a task (tracemalloc, tests/test_extend.py)
        return (status == PENDING) | (status == FAILED) if retry_failed else status == PENDING

    # ---- writes --------------------------------------------------------------------------
    def ensure_writable(self) -> None:
        """Fail before any work if this process cannot be the cube's writer (lease, permissions)."""
        self.acquire()

    def write(self, results: Iterable[CellResult | ResultBlock], marks: Iterable[Mark] = ()) -> None:
        """One flush: the results' data, then error records, then status, every object whole.

        ``results``: CellResults, or ResultBlocks (a batch's results as columns, placed with one
        assignment per array per shard; its cells without results are marked as ``marks`` are)."""
        loose: list[CellResult] = []
        blocks: list[ResultBlock] = []
        marks = list(marks)
        for r in results:
            if isinstance(r, ResultBlock):
                if len(r.indices):
                    blocks.append(r)
                loose.extend(r.results)
                marks.extend(
                    Mark(index, FAILED, o.error) if isinstance(o, Failed) else Mark(index, NOT_APPLICABLE, o.reason)
                    for index, o in r.ended
                )
            else:
                loose.append(r)
        if not loose and not blocks and not marks:
            return
        for r in loose:  # a metric without a declaration has no variable: refuse, never drop it
            if r.values.keys() != METRICS.keys():
                check_declared(r.values, f"the result of task {self.coords_of(r.index)}")
        for b in blocks:
            if b.columns.keys() != METRICS.keys():
                check_declared(b.columns, f"the results of tasks {self.coords_of(tuple(b.indices[0].tolist()))} and on")
        indices, columns = _stacked(blocks)
        if indices is None:  # blocks whose columns do not stack together: one by one, as results
            loose += [r for b in blocks for r in b.cell_results()[: len(b.indices)]]
            indices, columns = NO_INDICES, {}
        self.acquire()
        try:
            for _ in range(MERGES):
                self._fence().begin_flush()
                try:
                    self._flush(indices, columns, loose, marks)
                    return
                except StaleView:  # S3: a stale driver wrote in the gap; merge, never overwrite
                    self._forget()
                    status = self.status()  # now holding its results: ours are added to them
                    marks = [m for m in marks if status[tuple(m.task_index)] != DONE]  # a done result wins
            raise CubeError(f"{self.path}: objects kept changing under this driver's flush; stopping (nothing lost)")
        except OSError as e:  # full disk, lost permission, unreachable store
            self._blocks.clear()
            raise CubeError(
                f"{self.path}: writing results failed ({e}). Tasks marked done before "
                "are intact; the unwritten ones stay pending and the next run recomputes "
                "them."
            ) from None

    def _flush(
        self, indices: np.ndarray, columns: dict[str, np.ndarray], results: list[CellResult], marks: list[Mark]
    ) -> None:
        status = self.status().copy()
        placement = Placement.of_flush(self.variable("status"), indices, columns, results)
        task_arrays, cube_id = {}, self.cube_id
        for r in results:
            for kind, array in (("couplings", r.couplings), ("magnetisations", r.magnetisations)):
                if array is not None:
                    key = task_key(r.index)
                    task_arrays[f"{AMSWEEP_DIR}/{kind}/{key}.npy"] = task_array_io.encode(array, cube_id, kind, key)
        self.objects.put_many(task_arrays)
        # Every variable but the sentinel, then the sentinel: a finite sentinel vouches for the rest.
        self._put_data([n for n in METRICS if n in self.arrays and n != SENTINEL], placement)
        self._put_data([n for n in (SENTINEL,) if n in self.arrays], placement)
        changes: dict[tuple[int, ...], dict[tuple[int, ...], Any]] = {}
        if len(indices):
            at = tuple(indices.T)
            before = status[at]
            for j in np.flatnonzero((before == FAILED) | (before == NOT_APPLICABLE)).tolist():
                index = tuple(indices[j].tolist())
                changes.setdefault(self._shard_of(index), {})[index] = None  # its old error record goes
            status[at] = DONE
        for r in results:
            if status[r.index] in (FAILED, NOT_APPLICABLE):
                changes.setdefault(self._shard_of(r.index), {})[r.index] = None
            status[r.index] = DONE
        for index, state, error in marks:
            record = {"state": schema.STATUS_NAMES[state], "error": error, "time": now()}
            changes.setdefault(self._shard_of(index), {})[tuple(index)] = record
            status[tuple(index)] = state
        records = self.errors()
        self.objects.put_many(records.updates(changes))
        records.commit()
        touched = set(placement.shards) | set(changes)
        self._status = status
        self._put_status(sorted(touched))

    def reset(self, indices: list[tuple[int, ...]], state: int = PENDING) -> None:
        """Set tasks back to a template state (``check --repair``): the next run recomputes them."""
        if not indices:
            return
        self.acquire()
        self._fence().begin_flush()
        status = self.status().copy()
        for index in indices:
            status[index] = state
        self._status = status
        self._put_status(sorted({self._shard_of(i) for i in indices}))

    # ---- per-task arrays (couplings, thermal states) ----------------------------------------
    def errors(self) -> ErrorRecords:
        if self._errors is None:
            self._errors = ErrorRecords(self.objects)
        return self._errors

    def failures(self) -> list[dict[str, Any]]:
        """Records of tasks now failed or not applicable, with their coordinates, in task order."""
        if self.format == 1:
            from amsweep.storage.legacy import read_failures

            return read_failures(self)
        status = self.status()
        out = []
        for key, record in sorted(self.errors().all().items(), key=lambda kv: tuple(map(int, kv[0].split("-")))):
            index = tuple(int(i) for i in key.split("-"))
            if status[index] in (FAILED, NOT_APPLICABLE):
                out.append({**record, "index": list(index), "coords": self.coords_of(index)})
        return out

    @property
    def cube_id(self) -> str:
        """The id every shard and task array of this cube is bound to ("" where none is stored)."""
        return str(self.attrs.get("amsweep_cube_id", ""))

    def couplings(self, index: tuple[int, ...]) -> np.ndarray:
        """The stored couplings (or memories) of one done task."""
        return self._task_array("couplings", index)

    def magnetisations(self, index: tuple[int, ...]) -> np.ndarray:
        """The stored thermal states (noise, training starts, N) of one done task."""
        return self._task_array("magnetisations", index)

    def _task_array(self, kind: str, index: tuple[int, ...]) -> np.ndarray:
        key = task_key(index)
        data = self.objects.get(f"{AMSWEEP_DIR}/{kind}/{key}.npy")
        if data is None:
            raise KeyError(
                f"no {kind} stored for {self.coords_of(index)}; the spec must set "
                f"[retrieval] store_{kind} = true before the task runs"
            )
        try:
            return task_array_io.decode(data, self.cube_id, kind, key)
        except task_array_io.TaskArrayError as e:  # swapped, cut short or not an array: one line
            raise CubeError(f"{self.path}: the stored {kind} of {self.coords_of(index)} is damaged ({e})") from None

    def coords_of(self, index: tuple[int, ...]) -> dict[str, Any]:
        return self.sweep.coords_of(index)


def _stacked(blocks: list[ResultBlock]) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
    """The blocks' task indices and columns as one of each (None: their columns do not stack)."""
    if len(blocks) == 1:
        return blocks[0].indices, blocks[0].columns
    if not blocks:
        return NO_INDICES, {}
    try:
        columns = {k: np.concatenate([b.columns[k] for b in blocks]) for k in blocks[0].columns}
    except (KeyError, ValueError):  # another set of metrics or shapes: checked and placed one by one
        return None, {}
    return np.concatenate([b.indices for b in blocks]), columns


def _merged(key: str) -> bool:
    """Objects a flush builds from its view of the store plus its results: status and data
    shards, error records (on S3 a conflict on one of them means re-read and merge). A function,
    not a method: the fenced store must not keep its Cube alive (``Cube.__del__`` frees the lease)."""
    head = key.split("/", 1)[0]
    return key.startswith(ERRORS) or ("/c/" in key and (head == "status" or head in METRICS))


def _foreign_objects(objects: Objects) -> bool:
    """True if the path holds anything but a lease (an empty folder, or one a killed creation
    left with only its lease, is free to use)."""
    if not objects.root_exists():
        return False
    return any(k != LEASE_KEY for k in objects.list())
