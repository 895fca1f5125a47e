"""Rewriting a cube into another layout, in place, kill-safe and verified.

Used when tasks must move: an extension that inserts values in the middle of an axis (axes stay
in the canonical order, ``amsweep.pipeline.spec.canonical_order``), a refine round, and
``amsweep upgrade`` (an older format, or axes stored in insertion order). Shard keys of the new
layout collide with the old ones (``m/c/0/0/1/0/0`` is a different set of tasks after a value is
inserted), so the new cube cannot be written beside the old one; it is built in three phases,
each safe to interrupt:

1. *Stage*: the source cube is read whole (status, every variable, error records, per-task side
   objects) through its normal readers; each task goes to the position its coordinate *values*
   have in the target sweep (variants matched by their stream label); the target's objects are
   written under ``_amsweep/stage/`` by the normal shard writer, read back and compared with the
   source value for value. Then one object, ``READY``, records the new root document. Killed
   before READY: the cube is untouched and the next attempt stages again from scratch.
2. *Swap*: each array's old objects and the old task arrays are removed and the staged ones
   copied in. Killed here: the cube refuses to be read ("finish it") and the next ``run`` or
   ``upgrade`` redoes the swap from the staged copy, which READY says is complete.
3. *Commit*: one write of the root document (the one READY holds); then READY and the staged
   copy go.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from amsweep.pipeline.outcomes import CellResult
from amsweep.pipeline.errors import CubeError
from amsweep.pipeline.metric_table import METRICS
from amsweep.pipeline.spec import Sweep
from amsweep.storage import backup, legacy, provenance, schema, zarr_documents
from amsweep.storage import task_arrays as task_array_io
from amsweep.storage.cube import RESTAGE_READY as READY
from amsweep.storage.cube import Cube
from amsweep.storage.fence import FencedObjects
from amsweep.storage.objects import Objects
from amsweep.storage.schema import DONE, FAILED, NOT_APPLICABLE, PENDING
from amsweep.storage.shards import MAGIC
from amsweep.storage.records import ERRORS, AMSWEEP_DIR, ErrorRecords, task_key

__all__ = [
    "abandoned",
    "discard_abandoned",
    "finish",
    "in_place",
    "interrupted",
    "positions",
    "READY",
    "restage",
    "RestageReport",
    "resume",
    "STAGE",
]

STAGE = f"{AMSWEEP_DIR}/stage"
TASK_ARRAY_KINDS = ("couplings", "magnetisations")
# Per-task records a finished restage replaces: the new ones come from the stage; format 1's
# ``failures/`` records and group document under _amsweep are superseded by ``errors/``.
REPLACED_TASK_RECORDS = (ERRORS, *(f"{AMSWEEP_DIR}/{k}" for k in TASK_ARRAY_KINDS), f"{AMSWEEP_DIR}/failures")


@dataclass
class RestageReport:
    tasks: int
    done: int
    damaged: int
    moved: int
    verified_values: int


@dataclass
class _Source:
    """Everything a cube holds, over its own task grid."""

    status: np.ndarray
    values: dict[str, np.ndarray]
    records: dict[tuple[int, ...], dict[str, Any]]
    task_arrays: dict[tuple[str, tuple[int, ...]], bytes]
    damaged: int


def interrupted(objects: Objects) -> bool:
    """True while a staged copy waits to be swapped in (the cube must not be read until then)."""
    return objects.get(READY) is not None


def abandoned(objects: Objects) -> list[str]:
    """Staged objects that nothing will read: without READY, anything under the stage is garbage
    (a restage killed before READY, or one killed after its commit while removing its copy)."""
    return [] if interrupted(objects) else objects.list(STAGE)


def discard_abandoned(objects: Objects) -> int:
    """Remove the abandoned staged objects; the caller holds the lease (so no restage is under
    way, and READY absent now stays absent). Returns how many were removed."""
    keys = abandoned(objects)
    _delete(objects, keys)
    return len(keys)


def positions(source: Sweep, target: Sweep) -> tuple[np.ndarray, ...]:
    """Where each source value lands in the target, per task axis and then noise."""

    def place(axis: str, old: list[Any], new: list[Any]) -> np.ndarray:
        at = {v: i for i, v in enumerate(new)}
        lost = [v for v in old if v not in at]
        if lost:
            raise CubeError(f"restage: {axis} value(s) {lost} of the cube are missing from the new spec")
        return np.array([at[v] for v in old], dtype=np.intp)

    return (
        place("dataset", [d.stream_label for d in source.datasets], [d.stream_label for d in target.datasets]),
        place("N", list(source.N_values), list(target.N_values)),
        place(source.load_axis, list(source.load_values), list(target.load_values)),
        place("rule", [r.stream_label for r in source.rules], [r.stream_label for r in target.rules]),
        place("seed", list(source.seeds), list(target.seeds)),
        place("noise", list(source.noise), list(target.noise)),
    )


def in_place(source: Sweep, target: Sweep) -> bool:
    """True when every source task keeps its position (values only appended): no restage needed."""
    return all(np.array_equal(p, np.arange(len(p))) for p in positions(source, target))


def _read(cube: Cube) -> _Source:
    """The source cube through its own readers; a damaged done task becomes pending (recomputed)."""
    records: dict[tuple[int, ...], dict[str, Any]] = {}
    task_arrays: dict[tuple[str, tuple[int, ...]], bytes] = {}
    if cube.format == 1:
        status, bad = legacy.read_status(cube)
        names = [n for n in METRICS if n in legacy.group(cube)]
        values: dict[str, np.ndarray] = {}
        for name in names:
            values[name], damaged = legacy.read_array(cube, name, np.nan)
            bad += damaged
        for f in legacy.read_failures(cube):
            records[tuple(f["index"])] = {k: f[k] for k in ("state", "error", "time") if k in f}
        for index in zip(*np.nonzero(status == DONE)):
            task = tuple(int(i) for i in index)
            J = legacy.read_couplings(cube, task_key(task))
            if J is not None:
                buf = io.BytesIO()
                np.save(buf, J, allow_pickle=False)
                task_arrays[("couplings", task)] = buf.getvalue()
    else:
        status = cube.status().copy()
        bad = list(cube.damaged_status)
        values = {}
        for name in (n for n in METRICS if n in cube.arrays):
            values[name], present, lost = cube.read_variable(name)
            bad += [tuple(int(i) for i in x) for x in zip(*np.nonzero(lost | ((status == DONE) & ~present)))]
        for key, record in cube.errors().all().items():
            records[tuple(int(i) for i in key.split("-"))] = record
        for kind in TASK_ARRAY_KINDS:
            keys = [k for k in cube.objects.list(f"{AMSWEEP_DIR}/{kind}") if k.endswith(".npy")]
            for key, data in cube.objects.get_many(keys).items():
                if data is not None:
                    task = tuple(int(i) for i in key.rsplit("/", 1)[1][: -len(".npy")].split("-"))
                    task_arrays[(kind, task)] = data
    bad_set = {tuple(int(i) for i in b) for b in bad}
    for index in bad_set:
        if status[index] == DONE:
            status[index] = PENDING
    return _Source(status.astype(np.int8), values, records, task_arrays, len(bad_set))


def _moved(where: tuple[np.ndarray, ...], index: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(w[i]) for w, i in zip(where, index))


def _target_status(src: _Source, target: Sweep, where: tuple[np.ndarray, ...]) -> np.ndarray:
    """The source's states at their new positions; template states (pending, or not applicable
    where no dataset lists the cell) everywhere else, as a fresh cube of ``target`` would have."""
    status = np.full(target.shape, PENDING, dtype=np.int8)
    status[np.ix_(*where[:5])] = src.status
    mask = schema.not_applicable_mask(target)
    recorded = np.zeros(target.shape, dtype=bool)
    for index in src.records:
        recorded[_moved(where, index)] = True
    status[(status == PENDING) & mask] = NOT_APPLICABLE
    status[(status == NOT_APPLICABLE) & ~mask & ~recorded] = PENDING  # a cell the new values made applicable
    return status


def restage(cube: Cube, target: Sweep, attrs: dict[str, Any]) -> RestageReport:
    """Stage ``cube`` rewritten as a current-format cube of ``target``, verify it, write READY.

    ``attrs`` are the new root document's attributes besides the spec (history entries, format).
    The caller holds the lease; ``finish`` swaps the staged copy in.
    """
    objects = cube.objects
    _delete(objects, objects.list(STAGE))
    src = _read(cube)
    where = positions(cube.sweep, target)
    tpl = zarr_documents.build(target)
    dropped = set(METRICS) - set(src.values)  # a metric the cube never had: the next run adds it
    arrays = {k: v for k, v in tpl.arrays.items() if k not in dropped}
    view = _Prefixed(objects, STAGE)
    view.put_many({k: v for k, v in tpl.objects.items() if k.split("/")[0] in arrays})
    new_attrs = {**cube.attrs, **attrs, "amsweep_format": schema.FORMAT_VERSION}
    # A new cube id: every shard names it (storage/shards.py), so no shard after the swap equals,
    # byte for byte or by ETag, one before it, and a stale writer's condition on one never matches.
    new_attrs["amsweep_cube_id"] = uuid.uuid4().hex
    staging = Cube(cube.path, view, target, new_attrs, arrays, cube.storage_options)  # type: ignore[arg-type]
    status = _target_status(src, target, where)
    staging._status = status
    by_shard: dict[tuple[int, ...], list[CellResult]] = {}
    for index in zip(*np.nonzero(src.status == DONE)):
        old = tuple(int(i) for i in index)
        new = _moved(where, old)
        row = {name: _noise_moved(v[old], where[5]) for name, v in src.values.items()}
        by_shard.setdefault(staging._shard_of(new), []).append(CellResult(new, row))
    for name in src.values:
        staging._put_data([name], by_shard)
        staging._blocks.clear()
    staging._put_status(staging._all_shards())
    changes: dict[tuple[int, ...], dict[tuple[int, ...], dict[str, Any] | None]] = {}
    for index, record in src.records.items():
        new = _moved(where, index)
        if status[new] in (FAILED, NOT_APPLICABLE):
            changes.setdefault(staging._shard_of(new), {})[new] = record
    view.put_many(ErrorRecords(view).updates(changes))  # type: ignore[arg-type]
    task_arrays = {
        f"{AMSWEEP_DIR}/{kind}/{task_key(_moved(where, index))}.npy": _task_array_moved(
            cube, kind, data, index, (staging.cube_id, task_key(_moved(where, index))), where[5]
        )
        for (kind, index), data in src.task_arrays.items()
    }
    view.put_many(task_arrays)
    verified = _verify(staging, status, src, where, task_arrays)
    done = int((status == DONE).sum())
    moved = sum(1 for i in zip(*np.nonzero(src.status == DONE)) if _moved(where, tuple(map(int, i))) != tuple(i))
    report = RestageReport(int(status.size), done, src.damaged, moved, verified)
    new_attrs.update(
        {
            "amsweep_spec": json.dumps(target.canonical, sort_keys=True),
            "amsweep_spec_hash": target.spec_hash,
            **provenance.cube_attrs(),
        }
    )
    root = zarr_documents.root_document(new_attrs, arrays).decode()
    cube.acquire()  # still the writer (a long stage outlives no lease unnoticed) before the point of no return
    _prove(objects)
    ready = {
        "arrays": sorted(arrays),
        "root": root,
        "report": asdict(report),
        "source_format": cube.format,
        "staged": sorted(view.list()),  # finish refuses a READY whose staged copy is not all there
    }
    objects.put(READY, json.dumps(ready).encode())
    return report


def _noise_moved(value: np.ndarray, where: np.ndarray) -> np.ndarray:
    """A per-noise row in the target's noise order (scalars pass through)."""
    if np.ndim(value) == 0 or np.array_equal(where, np.arange(len(where))):
        return value
    out = np.empty_like(value)
    out[where] = value
    return out


def _task_array_moved(
    cube: Cube, kind: str, data: bytes, index: tuple[int, ...], new: tuple[str, str], where: np.ndarray
) -> bytes:
    """The task array re-headed for its new (cube id, task key) ``new`` (storage/task_arrays.py),
    after verifying it against the source cube. Magnetisations lead with the noise axis: reorder
    it with the noise coordinate."""
    old = (cube.cube_id, task_key(index))
    try:
        if kind != "magnetisations" or np.array_equal(where, np.arange(len(where))):
            return task_array_io.rebind(data, old, new, kind)
        values = task_array_io.decode(data, old[0], kind, old[1])
    except task_array_io.TaskArrayError as e:
        raise CubeError(
            f"{cube.path}: the stored {kind} of {cube.coords_of(index)} is damaged ({e}); "
            "`amsweep check --repair` first; nothing was changed"
        ) from None
    moved = np.empty_like(values)
    moved[where] = values
    return task_array_io.encode(moved, new[0], kind, new[1])


def _verify(
    staging: Cube, status: np.ndarray, src: _Source, where: tuple[np.ndarray, ...], task_arrays: dict[str, bytes]
) -> int:
    """Read the staged copy back; every done task's value, state, record and side object must
    equal the source's at its new position (bit for bit, NaN where the source has NaN)."""
    path = staging.path

    def fail(what: str) -> CubeError:
        return CubeError(
            f"{path}: staged {what} differs from the cube; nothing was changed (the staged copy is unused)"
        )

    reader = Cube(path, staging.objects, staging.sweep, staging.attrs, staging.arrays)
    box = np.ix_(*where[:5])
    stored, _, damaged = reader.read_variable("status")
    if damaged.any() or not np.array_equal(stored, status) or not np.array_equal(stored[box], src.status):
        raise fail("status")
    done, count = src.status == DONE, 0
    for name, want in src.values.items():
        got, present, damaged = reader.read_variable(name)
        got = got[np.ix_(*where)] if want.ndim == 6 else got[box]
        mask = done.reshape(done.shape + (1,) * (want.ndim - done.ndim))
        same = np.where(mask, (got == want) | (np.isnan(got) & np.isnan(want)), True)
        if damaged.any() or not present[box][done].all() or not same.all():  # presence is per inner chunk
            raise fail(name)
        count += int(np.broadcast_to(mask, want.shape).sum())
    want_records: dict[str, dict[str, Any]] = {}
    for index, record in src.records.items():
        new = _moved(where, index)
        if status[new] in (FAILED, NOT_APPLICABLE):
            want_records[task_key(new)] = record
    if ErrorRecords(staging.objects).all() != want_records:
        raise fail("error records")
    if any(staging.objects.get(key) != data for key, data in task_arrays.items()):
        raise fail("task arrays")
    return count


def finish(objects: Objects) -> RestageReport:
    """Swap the staged copy in and commit its root document; idempotent while READY exists.

    No object of the new layout is deleted and put again: each staged object *overwrites* its key,
    after this writer read what is there, so the fence (``storage.fence``) makes the overwrite
    conditional on that content (S3: If-Match on its ETag, If-None-Match where it was absent;
    local disk: under the lease lock). Only keys the new layout lacks are deleted, conditionally
    in the same way. A writer frozen in the swap and taken over therefore replaces or removes
    nothing the new holder wrote since: every shard the new holder writes names the restage's new
    cube id, so its bytes (and ETag) differ from any shard before the swap, and its other objects
    are the staged ones (the same bytes this writer would put) or later growth of them."""
    ready = read_ready(objects)
    staged = [k for k in objects.list(STAGE) if k != READY]
    why = unfinishable(objects, ready, staged)
    if why or ready is None:
        raise CubeError(
            f"{objects.url}: an interrupted rewrite cannot be finished: {why}. Nothing was changed; "
            "`amsweep check --repair` removes it (the cube stays as last committed)"
        )
    _prove(objects)
    for name in [*ready["arrays"], *REPLACED_TASK_RECORDS]:
        mine = [k for k in staged if k.startswith(f"{STAGE}/{name}/")]
        new = {k[len(STAGE) + 1 :]: v for k, v in objects.get_many(mine).items() if v is not None}
        old = [k for k in objects.list(name) if k.startswith(f"{name}/")]
        there = objects.get_many(list(new))  # what each overwrite is conditional on (the fence keeps it)
        objects.put_many({k: v for k, v in new.items() if there[k] != v})
        _delete(objects, [k for k in old if k not in new])
    _delete(objects, [f"{AMSWEEP_DIR}/{zarr_documents.ROOT}"])  # format 1's group document under _amsweep, if any
    backup.save(objects, ready["root"].encode())  # first: a lost or damaged root is restored from it
    objects.put(zarr_documents.ROOT, ready["root"].encode())  # the commit
    _delete(objects, [READY])  # first: from here on the staged copy is garbage, never a source
    _delete(objects, staged)
    return RestageReport(**ready["report"])


def read_ready(objects: Objects) -> dict[str, Any] | None:
    """READY as a restage writes it, or None where it is damaged (cut short, not JSON, or lacking
    its root document, arrays or report): such a READY can never be finished."""
    try:
        ready = json.loads(objects.get(READY) or b"")
        root = json.loads(ready["root"])
        if not isinstance(root["attributes"]["amsweep_cube_id"], str):
            return None
        if not (isinstance(ready["arrays"], list) and isinstance(ready["report"], dict)):
            return None
        if not isinstance(ready.get("staged", []), list):
            return None
    except (ValueError, KeyError, TypeError):
        return None
    return ready


def unfinishable(objects: Objects, ready: dict[str, Any] | None, staged: list[str]) -> str | None:
    """Why READY cannot be finished, or None. READY is written only after its staged copy is
    complete and verified, and removed before any of that copy is, so a READY whose copy is
    incomplete, or whose copy names another cube id (the staged copy of another restage: the
    same keys when the same positions were added), was never a commit of that copy: a stale
    driver's late READY or damage. Swapping it in would lose every finished task."""
    if ready is None:
        return f"its marker {READY} is damaged"
    have = {k[len(STAGE) + 1 :] for k in staged}
    # a READY from before READY listed its copy: at least every array's document must be staged
    listed = ready.get("staged") or [f"{name}/zarr.json" for name in ready["arrays"]]
    missing = sorted(set(listed) - have)
    if missing:
        return f"{READY} lists {len(missing)} staged object(s) that are missing (first {STAGE}/{missing[0]})"
    cube_id = json.loads(ready["root"])["attributes"]["amsweep_cube_id"]
    status = [k for k in staged if k.startswith(f"{STAGE}/status/c/")]
    for key, data in objects.get_many(status).items():
        if data is not None and data.startswith(MAGIC) and _cube_of(data) != cube_id:
            return f"its staged copy ({key}) was written for another rewrite than {READY}"
    return _damaged_shard(objects, ready, staged)


def _damaged_shard(objects: Objects, ready: dict[str, Any], staged: list[str]) -> str | None:
    """The first staged shard that fails its checksums or names another place, or None: READY
    says the copy was verified when staged, but bytes can be damaged since, and swapping a damaged
    shard over a good one would lose its finished tasks."""
    target = Cube._from_root(objects.url, objects, json.loads(ready["root"]), None, staged=True)
    if target.format < 3:
        return None
    for name in [n for n in target.arrays if n == "status" or n in METRICS]:  # the sharded variables
        prefix = f"{STAGE}/{name}/c/"
        keys = [k for k in staged if k.startswith(prefix)]
        store = target.variable(name)
        for key, data in objects.get_many(keys).items():
            shard = tuple(int(i) for i in key[len(prefix) :].split("/"))[: len(target.sweep.shape)]  # noise: one
            if store.decode(shard, data)[2].any():
                return f"its staged shard {key} fails its checksum ({store.errors.get(store.key(shard), 'damaged')})"
    return None


def _cube_of(shard: bytes) -> str | None:
    """The cube id a format-3 shard's identity header names (None if the header is unreadable)."""
    start = len(MAGIC) + 4
    n = int.from_bytes(shard[len(MAGIC) : start], "little")
    try:
        return str(json.loads(shard[start : start + n])["cube"])
    except (ValueError, KeyError, TypeError):
        return None


def settle(path: str, objects: Objects, storage_options: dict | None = None) -> str | None:
    """``check --repair``: finish an interrupted rewrite where it can be finished, else remove its
    marker and staged copy (the cube stays as last committed; shards a half-done swap already
    replaced name the new cube id and are found as damaged, so their tasks are recomputed).
    Returns what was done, None if no rewrite was pending."""
    from amsweep.storage.lease import Lease

    if not interrupted(objects):
        return None
    lease = Lease.acquire(objects, command="amsweep check --repair")
    try:
        ready = read_ready(objects)
        staged = [k for k in objects.list(STAGE) if k != READY]
        why = unfinishable(objects, ready, staged)
        if why is not None:
            fenced = FencedObjects(objects, lease)
            _delete(fenced, [READY])  # first: from here on the staged copy is garbage, never a source
            _delete(fenced, staged)
    finally:
        lease.release()
    if why is None:
        resume(path, objects, storage_options)
        return "finished an interrupted rewrite of the cube (its verified staged copy is swapped in)"
    return f"removed an interrupted rewrite that could not be finished ({why}) and its {len(staged)} staged object(s)"


def _delete(objects: Objects, keys: list[str]) -> None:
    """Remove ``keys``: through the writer's fence in one batch (conditional deletes on S3)."""
    if hasattr(objects, "delete_many"):
        objects.delete_many(keys)
    else:
        for key in keys:
            objects.delete(key)


def _prove(objects: Objects) -> None:
    """Prove the writer's lease now (S3: a conditional heartbeat) before a point of no return."""
    if isinstance(objects, FencedObjects):
        objects.begin_flush()


def resume(path: str, objects: Objects, storage_options: dict | None = None) -> RestageReport:
    """Finish a restage killed during its swap, under the writer's lease."""
    ready = read_ready(objects)
    why = unfinishable(objects, ready, [k for k in objects.list(STAGE) if k != READY])
    if why or ready is None:
        raise CubeError(
            f"{path}: an interrupted rewrite of the cube cannot be finished: {why}. Nothing was changed; "
            "`amsweep check --repair` removes it (the cube stays as last committed), then run again"
        )
    doc = json.loads(ready["root"])
    cube = Cube._from_root(path, objects, doc, storage_options, staged=True)
    cube.acquire()
    try:
        return finish(cube.objects)  # the fenced store: a resumer taken over mid-swap is fenced too
    finally:
        cube.release()


def _required(objects: Objects, key: str) -> bytes:
    data = objects.get(key)
    if data is None:
        raise CubeError(f"{objects.url}: the staged copy lacks {key}; remove {STAGE} and run again")
    return data


class _Prefixed:
    """The store under a prefix: the staged copy, written and read by the normal shard code."""

    def __init__(self, inner: Objects, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix

    def _k(self, key: str) -> str:
        return f"{self.prefix}/{key}"

    def get(self, key: str) -> bytes | None:
        return self.inner.get(self._k(key))

    def get_many(self, keys: Any) -> dict[str, bytes | None]:
        keys = list(keys)
        got = self.inner.get_many([self._k(k) for k in keys])
        return {k: got[self._k(k)] for k in keys}

    def put(self, key: str, data: bytes) -> None:
        self.inner.put(self._k(key), data)

    def put_many(self, items: dict[str, bytes]) -> None:
        self.inner.put_many({self._k(k): v for k, v in items.items()})

    def delete(self, key: str) -> None:
        self.inner.delete(self._k(key))

    def list(self, prefix: str = "") -> list[str]:
        return [k[len(self.prefix) + 1 :] for k in self.inner.list(self._k(prefix) if prefix else self.prefix)]
