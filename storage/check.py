"""Integrity check of a cube: does every variable agree with the status grid and the spec, both ways?

Every done task must have a present, checksum-valid inner chunk in every variable (format 2
writes one for each done task, NaN included, so absence means loss), finite where the metric is
declared ``always`` (pipeline/metric_table.py); a failed task needs its error record; "not
applicable" must be what the spec says or what a run recorded; "done" where the spec says not
applicable is impossible. The other way round: a task not marked done whose every chunk is
present, valid and finite where declared (the sentinel ``retrieval_seconds`` is written after
every other variable of a flush, so a finite sentinel means all of them were) has lost its
status: a lost status shard, or a run killed between its data and status writes.
Each problem is one line naming the task; a lost status shard, a damaged coordinate or array
document is named once.

``repair`` gives damaged tasks the state a fresh template has (pending, or not applicable where
the spec says so), rebuilds "done" from intact data and "failed"/"not applicable" from the error
records where the status was lost, rewrites damaged array documents from the root document and
damaged coordinates from the stored spec, and removes temporaries of interrupted writes.
The root document itself, lost or damaged, is restored from its backup (``storage.backup``)
before the cube can be opened at all (``restore_root``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from amsweep.pipeline.metric_table import METRICS
from amsweep.storage import backup, history, restage, schema, temporaries, zarr_documents
from amsweep.storage import task_arrays as task_array_io
from amsweep.storage.cube import Cube
from amsweep.storage.objects import Objects
from amsweep.storage.records import AMSWEEP_DIR
from amsweep.storage.restage import TASK_ARRAY_KINDS
from amsweep.storage.schema import DONE, FAILED, NOT_APPLICABLE, PENDING, STATUS_NAMES

SENTINEL = "retrieval_seconds"  # written last of a task's variables (see the flush order in cube.py)

__all__ = ["check", "CheckReport", "complete", "driver_writing", "repair", "restore_root", "SENTINEL"]


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    damaged: list[tuple[int, ...]] = field(default_factory=list)  # tasks to set back to their template state
    documents: list[str] = field(default_factory=list)  # arrays whose own zarr.json is damaged
    coordinates: list[str] = field(default_factory=list)  # coordinates to rewrite from the stored spec
    rebuild: list[tuple[int, ...]] = field(default_factory=list)  # not marked done, data intact: done
    recorded: dict[tuple[int, ...], int] = field(default_factory=dict)  # lost status, an error record says
    notes: list[str] = field(default_factory=list)  # findings that are not damage (temporaries)
    temporaries: int = 0
    stage: int = 0  # objects of an abandoned staged copy (a restage killed before READY or after its commit)
    actions: list[str] = field(default_factory=list)  # what ``repair`` did
    shards: list[str] = field(default_factory=list)  # data shard objects unreadable as a whole: removed
    task_arrays: list[str] = field(default_factory=list)  # per-task arrays damaged or another's: removed

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, cube: Cube, index: tuple[int, ...], what: str) -> None:
        index = tuple(int(i) for i in index)
        self.problems.append(f"task {cube.coords_of(index)}: {what}")
        if index not in self.damaged:
            self.damaged.append(index)


def check(cube: Cube) -> CheckReport:
    """Compare coordinates, shapes, status, data and records; nothing is written."""
    report = CheckReport()
    if cube.format != schema.FORMAT_VERSION:
        report.problems.append(
            f"cube format {cube.format}: `amsweep upgrade {cube.path}` converts it "
            f"(and verifies every value); check runs on format {schema.FORMAT_VERSION}"
        )
        return report
    left = temporaries.find(cube.objects)
    if left:
        report.temporaries = len(left)
        report.notes.append(f"{len(left)} temporary file(s) of interrupted writes (`check --repair` removes them)")
    report.notes.extend(history.damaged_records(cube.objects))  # history, not data: named, not repaired
    staged = restage.abandoned(cube.objects)
    if staged and not (cube.lease is None and driver_writing(cube.objects)):  # a live driver may be staging
        report.stage = len(staged)
        report.notes.append(
            f"{len(staged)} object(s) of an abandoned staged copy under {restage.STAGE}/ "
            "(`check --repair` removes them)"
        )
    sweep = cube.sweep
    _check_documents(cube, report)
    _check_arrays(cube, report)
    if len(report.problems) > len(report.documents) + len(set(report.coordinates) - set(report.documents)):
        return report  # shapes disagree with the spec: task-level findings would be noise
    status, status_present, damaged = cube.read_variable("status")
    for index in zip(*np.nonzero(damaged)):
        report.add(cube, index, "status chunk unreadable (checksum)")
    spec_na = schema.not_applicable_mask(sweep)
    for index in zip(*np.nonzero((status == DONE) & spec_na & ~damaged)):
        report.add(cube, index, "marked done, but the spec says this task does not exist")
    done = (status == DONE) & ~damaged
    intact = np.ones(sweep.shape, dtype=bool)  # every variable's chunk present, valid, finite where declared
    for name, metric in METRICS.items():
        if name not in cube.arrays:
            continue  # added by the next run (NaN for tasks done before)
        values, have, bad = cube.read_variable(name)
        _unreadable_shards(cube, name, bad, report)
        for index in zip(*np.nonzero(done & bad)):
            report.add(cube, index, f"{name} fails its checksum")
        for index in zip(*np.nonzero(done & ~have & ~bad)):
            report.add(cube, index, f"{name} is missing")
        intact &= have & ~bad
        if metric.always:  # declared finite for every done task (pipeline/metric_table.py)
            finite = np.isfinite(values).all(axis=tuple(range(done.ndim, values.ndim)))
            for index in zip(*np.nonzero(done & have & ~bad & ~finite)):
                report.add(cube, index, f"{name} is NaN, but every done task has a value of it")
            intact &= finite
    records = {tuple(int(i) for i in k.split("-")): r for k, r in cube.errors().all().items()}
    for index in zip(*np.nonzero((status == FAILED) & ~damaged)):
        if tuple(int(i) for i in index) not in records:
            report.add(cube, index, "failed, with no error record")
    for index in zip(*np.nonzero((status == NOT_APPLICABLE) & ~spec_na & ~damaged)):
        if tuple(int(i) for i in index) not in records:
            report.add(cube, index, "not applicable, but the spec says applicable and no run recorded why")
    _check_task_arrays(cube, report, status == DONE)
    if SENTINEL in cube.arrays:
        _data_without_done(cube, report, status, status_present, damaged, intact & ~spec_na, records)
    return report


def _data_without_done(
    cube: Cube,
    report: CheckReport,
    status: np.ndarray,
    status_present: np.ndarray,
    damaged: np.ndarray,
    intact: np.ndarray,
    records: dict[tuple[int, ...], dict[str, Any]],
) -> None:
    """Tasks not marked done whose data are complete. Every status chunk is written from creation
    on, so where it is absent (a deleted shard) or unreadable the status was *lost*: a problem, and
    repair rebuilds it from the data and the error records. Where it is present and says pending,
    the task's flush was killed between its data and its status: no damage (the next run recomputes
    it), a note, and repair may mark it done from its complete data."""
    store = cube.variable("status")
    lost = ~status_present | damaged
    for s in store.shards():
        box, _ = store.box(s)
        if (~status_present[box]).any():
            report.problems.append(
                f"status shard {store.key(s)} is missing, though {int(intact[box].sum())} of its tasks "
                "hold complete results (lost status: `check --repair` rebuilds it from the data)"
            )
    orphans = intact & (status != DONE)
    in_flight = orphans & ~lost
    if in_flight.any():
        writing = cube.lease is None and driver_writing(cube.objects)
        report.notes.append(
            f"{int(in_flight.sum())} task(s) hold results not yet marked done: "
            + (
                "a driver holds the cube and is writing (their status follows their data)"
                if writing
                else "a flush was interrupted between data and status (the next run recomputes them; "
                "`check --repair` marks them done from their complete data)"
            )
        )
        if not writing:
            report.rebuild += [tuple(int(i) for i in x) for x in zip(*np.nonzero(in_flight))]
    for index in (tuple(int(i) for i in x) for x in zip(*np.nonzero(orphans & lost))):
        if index not in report.damaged:
            report.add(
                cube,
                index,
                f"holds complete results but its status was lost (reads {STATUS_NAMES[int(status[index])]})",
            )
        report.rebuild.append(index)  # the data prove it ran: done (what repair restores)
    for index, record in records.items():
        if lost[index] and not intact[index] and record.get("state") in (STATUS_NAMES[FAILED], "not applicable"):
            report.recorded[index] = FAILED if record["state"] == STATUS_NAMES[FAILED] else NOT_APPLICABLE


def _check_task_arrays(cube: Cube, report: CheckReport, done: np.ndarray) -> None:
    """Verify every per-task array against its identity header (storage/task_arrays.py): one
    damaged, cut short, or copied from another task or cube is a problem naming it; ``repair``
    removes it and sets a done task back to pending, so the next run (with ``store_*``) writes it
    afresh. Arrays written before the header can only be parsed, not verified."""
    for kind in TASK_ARRAY_KINDS:
        keys = [k for k in cube.objects.list(f"{AMSWEEP_DIR}/{kind}") if k.endswith(".npy")]
        for key, data in cube.objects.get_many(keys).items():
            if data is None:
                continue
            name = key.rsplit("/", 1)[1][: -len(".npy")]
            parts = name.split("-")
            index = tuple(int(i) for i in parts) if all(p.isdigit() for p in parts) else ()
            if len(index) != done.ndim or any(i >= n for i, n in zip(index, done.shape)):
                report.task_arrays.append(key)
                report.problems.append(f"stored {kind} {key} names no task of this cube; `check --repair` removes it")
                continue
            try:
                task_array_io.decode(data, cube.cube_id, kind, name)
            except task_array_io.TaskArrayError as e:
                report.task_arrays.append(key)
                what = f"stored {kind} is damaged or another's ({e}); `check --repair` removes it"
                if done[index]:
                    report.add(cube, index, what)
                else:
                    report.problems.append(f"{what} (task {cube.coords_of(index)})")


def complete(cube: Cube) -> np.ndarray:
    """Tasks whose every variable's chunk is present, valid and finite where declared ``always``:
    what a done task holds, so a task that is not marked done but is complete lost its status."""
    out = np.ones(cube.sweep.shape, dtype=bool)
    for name, metric in METRICS.items():
        if name in cube.arrays:
            values, have, bad = cube.read_variable(name)
            out &= have & ~bad
            if metric.always:
                out &= np.isfinite(values).all(axis=tuple(range(out.ndim, values.ndim)))
    return out & ~schema.not_applicable_mask(cube.sweep)


def _unreadable_shards(cube: Cube, name: str, bad: np.ndarray, report: CheckReport) -> None:
    """Shard objects that cannot be decoded at all (torn, foreign, or not this variable's, as
    ``read_variable`` found them): named once, and removed by ``repair`` so the next run writes them
    afresh; their tasks are damaged."""
    store = cube.variable(name)
    for s in store.shards():
        key = store.key(s)
        why = store.errors.get(key)
        if why is not None:
            report.problems.append(f"shard {key} is unreadable ({why}); `check --repair` removes it")
            report.shards.append(key)


def damaged_entries(path: str, storage_options: dict | None = None) -> list[str]:
    """One line per array entry of the root document that cannot be read (``DamagedArray``): opening
    a cube stops at the first, and ``check`` used to report only that one (a root document damaged by
    a broken tool rarely breaks one entry only)."""
    from amsweep.storage.objects import objects_at

    doc = zarr_documents.read_root(objects_at(path, storage_options), path) or {}
    found = (doc.get("consolidated_metadata") or {}).get("metadata") or {}
    fmt = (doc.get("attributes") or {}).get("amsweep_format")
    lines = []
    for name, entry in found.items():
        if isinstance(entry, dict) and entry.get("node_type") != "array":
            continue
        try:
            stored = zarr_documents.StoredArray.read(entry, name, path)
            if name == "status" or name in METRICS:  # the variables: read shard by shard
                zarr_documents.shard_geometry(stored, headed=fmt == 3)
        except zarr_documents.DamagedArray as e:
            lines.append(str(e))
    return lines


def driver_writing(objects: Objects) -> bool:
    """True if another driver holds the lease with a fresh heartbeat (and, on this machine, lives):
    its flush may be between the data and the status writes, which is not damage."""
    import time

    from amsweep.storage import lease

    record = lease.holder_of(objects)
    if not record:
        return False
    try:
        fresh = time.time() - float(record.get("heartbeat_epoch", 0)) < 60.0
    except (TypeError, ValueError):
        return False
    if record.get("machine") == lease.MACHINE:
        return lease._alive(record.get("pid"), record.get("pid_start"))  # a killed driver writes nothing
    return fresh


def _check_documents(cube: Cube, report: CheckReport) -> None:
    """Each array's own ``zarr.json`` (what zarr reads without the root's consolidated copy) must
    say what the root document says; amsweep itself reads only the root."""
    names = sorted(cube.arrays)
    found = cube.objects.get_many([f"{n}/zarr.json" for n in names])
    for name in names:
        data = found[f"{name}/zarr.json"]
        try:
            with zarr_documents.quiet_labels():
                ok = data is not None and json.loads(data) == json.loads(json.dumps(cube.arrays[name].to_dict()))
        except ValueError:
            ok = False
        if not ok:
            report.problems.append(
                f"array document {name}/zarr.json is missing or damaged "
                "(`check --repair` rewrites it from the root document)"
            )
            report.documents.append(name)


def _check_arrays(cube: Cube, report: CheckReport) -> None:
    sweep = cube.sweep
    coords = schema.coordinates(sweep)
    for c in coords:
        if c.name not in cube.arrays:
            report.problems.append(f"coordinate {c.name!r} is missing")
            continue
        if c.name in report.documents:
            report.coordinates.append(c.name)  # its chunks may be as stale as its document
            continue
        try:
            import zarr  # only here: `amsweep query` imports this module for ``driver_writing``

            with zarr_documents.quiet_labels():
                stored = np.asarray(
                    zarr.open_array(
                        cube.path, path=c.name, mode="r", zarr_format=3, storage_options=cube.storage_options
                    )[...]
                )
        except Exception as e:  # any decode failure of a coordinate chunk is a finding, not a crash
            report.problems.append(
                f"coordinate {c.name!r} is unreadable ({type(e).__name__}: {e}); "
                "`check --repair` rewrites it from the stored spec"
            )
            report.coordinates.append(c.name)
            continue
        expected = c.data
        same = stored.shape == expected.shape and (
            [str(x) for x in stored.tolist()] == [str(x) for x in expected.tolist()]
            if expected.dtype == object
            else np.array_equal(stored, expected, equal_nan=expected.dtype.kind == "f")
        )
        if not same:
            report.problems.append(
                f"coordinate {c.name!r} does not match the stored spec (`check --repair` rewrites it from the spec)"
            )
            report.coordinates.append(c.name)
    for v in schema.variables(sweep, [c.name for c in coords]):
        if v.name not in cube.arrays:
            continue
        shape = sweep.shape + ((len(sweep.noise),) if v.per_noise else ())
        if tuple(cube.arrays[v.name].shape) != shape:
            report.problems.append(
                f"variable {v.name!r} has shape {tuple(cube.arrays[v.name].shape)}, spec says {shape}"
            )


def repair(cube: Cube, report: CheckReport) -> int:
    """Fix what ``report`` found; returns how many tasks and documents were fixed, and lists what
    was done in ``report.actions``. Damaged tasks get their template state back (pending; not
    applicable where the spec says so) unless their data are intact (then done) or their status
    was lost and an error record says failed / not applicable; the next run recomputes exactly the
    pending ones. Re-run ``check`` afterwards: it says what, if anything, remains."""
    cube.acquire()
    actions = report.actions
    if report.documents:
        cube.objects.put_many({f"{n}/zarr.json": _document(cube.arrays[n]) for n in report.documents})
        actions.append(f"rewrote {len(report.documents)} array document(s) from the root document")
    coordinates = sorted(set(report.coordinates))
    if coordinates:
        _rewrite_coordinates(cube, coordinates)
        actions.append(f"rewrote coordinate(s) {', '.join(coordinates)} from the stored spec")
    cube._fence().delete_many(report.shards)  # conditional on S3: a shard rewritten since (a takeover) stays
    if report.shards:
        actions.append(f"removed {len(report.shards)} unreadable shard object(s); the next run writes them afresh")
    cube._fence().delete_many(report.task_arrays)
    if report.task_arrays:
        actions.append(f"removed {len(report.task_arrays)} damaged task array(s); their tasks are pending again")
    rebuilt, recorded = set(report.rebuild), {i: s for i, s in report.recorded.items() if i not in report.rebuild}
    reset = [i for i in report.damaged if i not in rebuilt and i not in recorded]
    spec_na = schema.not_applicable_mask(cube.sweep)
    cube.reset([i for i in reset if not spec_na[i]], PENDING)
    cube.reset([i for i in reset if spec_na[i]], NOT_APPLICABLE)
    if reset:
        actions.append(f"set {len(reset)} damaged task(s) back to pending; run the sweep again to recompute them")
    cube.reset(sorted(rebuilt), DONE)
    if rebuilt:
        actions.append(f"marked {len(rebuilt)} task(s) done again from their intact data (status rebuilt)")
    for state in (FAILED, NOT_APPLICABLE):
        cube.reset(sorted(i for i, s in recorded.items() if s == state), state)
    if recorded:
        actions.append(f"restored {len(recorded)} failed / not applicable task(s) from their error records")
    cube.status()  # (read before any shard was removed, with every reset above applied)
    cube._put_status(cube._all_shards())  # every status chunk present again: a lost one is rewritten
    removed = temporaries.remove(cube.objects)
    if removed:
        actions.append(f"removed {removed} temporary file(s) of interrupted writes")
    removed = restage.discard_abandoned(cube.objects)  # under the lease: no restage is under way
    if removed:
        actions.append(f"removed {removed} object(s) of an abandoned staged copy under {restage.STAGE}/")
    root = cube.objects.get(zarr_documents.ROOT)
    if backup.valid(root) is not None:
        assert root is not None
        backup.save(cube.objects, root)  # the newest backup is the committed root again
    return len(set(report.damaged) | rebuilt | set(recorded)) + len(report.documents) + len(coordinates)


def restore_root(path: str, storage_options: dict | None = None) -> str | None:
    """Restore a lost or damaged root document from its newest backup (``check --repair``, before
    the cube can be opened); returns what was done, None if the root needed nothing."""
    from amsweep.storage.lease import Lease
    from amsweep.storage.objects import objects_at

    objects = objects_at(path, storage_options)
    if backup.problem(objects) is None:
        return None
    lease = Lease.acquire(objects, command="amsweep check --repair")
    try:
        key = backup.restore(objects)
    finally:
        lease.release()
    return None if key is None else f"restored the root document {zarr_documents.ROOT} from its backup {key}"


def _rewrite_coordinates(cube: Cube, names: list[str]) -> None:
    """Coordinate chunks from the stored spec (as the template wrote them), documents from the root."""
    tpl = zarr_documents.build(cube.sweep, shard=cube.variable("status").geometry.shard)
    for name in names:
        puts = {k: v for k, v in tpl.objects.items() if k.startswith(f"{name}/") and k != f"{name}/zarr.json"}
        if name in cube.arrays:
            puts[f"{name}/zarr.json"] = _document(cube.arrays[name])
        for key in cube.objects.list(f"{name}/"):
            if key not in puts:
                cube.objects.delete(key)  # a chunk of a longer (interrupted, grown) axis
        cube.objects.put_many(puts)


def _document(meta) -> bytes:
    from zarr.core.buffer import default_buffer_prototype

    with zarr_documents.quiet_labels():
        return meta.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes()
