"""``amsweep upgrade CUBE``: convert a format-1 cube to format 2 in place, kill-safe, verified.

Format 1's chunk keys (one per task) and format 2's shard keys share names (``m/c/0/0/0/0/0``
is a task in one and a shard in the other), so the conversion cannot write beside the old
arrays. It runs in three phases, each safe to interrupt:

1. *Stage*: every format-2 object is written under ``_amsweep/upgrade/`` and read back; each value
   of each done task must equal format 1's, bit for bit (NaN where format 1 has NaN). The stage
   ends by writing a marker. Interrupted here: the next ``upgrade`` starts the stage again.
2. *Swap*: each array's format-1 objects are removed and the staged ones copied in. Interrupted
   here: the cube refuses to open ("finish the upgrade") and the next ``upgrade`` redoes the swap
   from the staged copy, which is complete (the marker says so).
3. *Commit*: one write of the root document makes it a format-2 cube; then leftovers go.
"""

from __future__ import annotations

import io
import json
import uuid
from dataclasses import dataclass

import numpy as np

from amsweep.pipeline.errors import CubeError
from amsweep.pipeline.metrics import METRICS
from amsweep.storage import layout, legacy, template
from amsweep.storage.cube import UPGRADE_READY as READY
from amsweep.storage.cube import Cube
from amsweep.storage.layout import DONE, FAILED, NOT_APPLICABLE, PENDING
from amsweep.storage.objects import Objects, objects_at
from amsweep.storage.records import SIDE, ErrorRecords, now, task_key
from amsweep.storage.shards import choose_shard_shape

__all__ = ["cleanup", "interrupted", "STAGE", "upgrade", "UpgradeReport"]

STAGE = f"{SIDE}/upgrade"


@dataclass
class UpgradeReport:
    tasks: int
    done: int
    damaged: int
    verified_values: int


def interrupted(objects) -> bool:
    """True while a staged upgrade waits to be swapped in (the cube must not be read as format 1)."""
    return objects.get(READY) is not None


def _required(objects: Objects, key: str) -> bytes:
    """An object the staged upgrade wrote before READY; its absence means a damaged stage."""
    data = objects.get(key)
    if data is None:
        raise CubeError(f"{objects.url}: staged upgrade lacks {key}; remove {STAGE} and upgrade again")
    return data


def upgrade(path: str, storage_options: dict | None = None) -> UpgradeReport:
    objects = objects_at(path, storage_options)
    if interrupted(objects):
        cube = Cube._from_root(
            path, objects, json.loads(_required(objects, f"{STAGE}/{template.ROOT}")), storage_options
        )
        cube.acquire()
        report = UpgradeReport(**json.loads(_required(objects, READY))["report"])
    else:
        cube = Cube.open(path, storage_options)
        if cube.format == layout.FORMAT_VERSION:
            cube.acquire()
            cleanup(objects)  # leftovers of an upgrade killed after its commit, if any
            cube.release()
            raise CubeError(f"{path}: already format {layout.FORMAT_VERSION}; nothing to upgrade")
        cube.acquire()
        report = _stage(cube)
    try:
        _swap(cube)
    finally:
        cube.release()
    return report


def _stage(cube: Cube) -> UpgradeReport:
    objects, sweep = cube.objects, cube.sweep
    for key in objects.list(STAGE):
        objects.delete(key)
    tpl = template.build(sweep)
    # Metrics this amsweep declares but the old cube never had stay absent: the next run adds
    # them (NaN for tasks done before), as for any cube that predates a metric.
    metrics = [n for n in METRICS if n in legacy.group(cube)]
    dropped = set(METRICS) - set(metrics)
    tpl.members = {k: v for k, v in tpl.members.items() if k not in dropped}
    staged = {f"{STAGE}/{k}": v for k, v in tpl.objects.items() if k.split("/")[0] not in dropped}
    status, bad = legacy.read_status(cube)
    values = {}
    for name in metrics:
        v, damaged = legacy.read_array(cube, name, np.nan)
        bad += damaged
        values[name] = v
    for index in set(bad):
        status[index] = PENDING if status[index] == DONE else status[index]
    done = status == DONE
    cube_id = uuid.uuid4().hex  # the staged shards are bound to the upgraded cube's new identity
    staging = Cube(cube.path, objects, sweep, {"amsweep_cube_id": cube_id}, tpl.members, cube.storage_options)
    tasks = staging.layout("status")
    for s in np.ndindex(*tasks.grid(sweep.shape)):
        box, clip = tasks.region(s, sweep.shape)
        for name in ("status", *metrics):
            lay = staging.layout(name)
            block, present = lay.empty(tpl.members[name].fill_value)
            if name == "status":
                block[clip], present[clip] = status[box], status[box] != PENDING
            else:
                block[clip], present[clip] = values[name][box], done[box]
            data = staging.encode_shard(name, s, block, present)
            if data is not None:
                staged[f"{STAGE}/{lay.key(name, s)}"] = data
    objects.put_many(staged)
    verified = _verify(staging, status, values)  # every metric the old cube had
    _stage_side(cube, status)
    report = UpgradeReport(int(status.size), int(done.sum()), len(set(bad)), verified)
    attrs = {
        **{k: v for k, v in cube.attrs.items() if k != "amsweep_format"},
        "amsweep_format": layout.FORMAT_VERSION,
        "amsweep_cube_id": cube_id,
        "upgraded": f"from format {cube.format} on {now()}",
        "Conventions": "CF-1.10",
    }
    objects.put(f"{STAGE}/{template.ROOT}", template.root_document(attrs, tpl.members))
    objects.put(READY, json.dumps({"arrays": sorted(tpl.members), "report": report.__dict__}).encode())
    return report


def _verify(staging: Cube, status: np.ndarray, values: dict[str, np.ndarray]) -> int:
    """Read the staged shards back and compare every done task's values with format 1's."""
    real = staging.objects
    staging.objects = _Prefixed(real, STAGE)  # type: ignore[assignment]  # reads only
    try:
        stored, _, damaged = staging.read_variable("status")
        if damaged.any() or not np.array_equal(stored, status):
            raise CubeError(f"{staging.path}: staged status differs from format 1; upgrade aborted, cube unchanged")
        done, count = status == DONE, 0
        for name in values:
            got, present, damaged = staging.read_variable(name)
            want = values[name]
            mask = done.reshape(done.shape + (1,) * (want.ndim - done.ndim))
            same = np.where(mask, (got == want) | (np.isnan(got) & np.isnan(want)), True)
            if damaged.any() or not present[done].all() or not same.all():
                raise CubeError(f"{staging.path}: staged {name} differs from format 1; upgrade aborted, cube unchanged")
            count += int(np.broadcast_to(mask, want.shape).sum())
        return count
    finally:
        staging.objects = real


def _stage_side(cube: Cube, status: np.ndarray) -> None:
    """Error records and couplings go to their format-2 keys now (format 1 does not use them)."""
    shard = choose_shard_shape(cube.sweep.shape)
    changes: dict = {}
    for f in legacy.read_failures(cube):
        index = tuple(f["index"])
        if status[index] in (FAILED, NOT_APPLICABLE):
            record = {"state": f["state"], "error": f["error"], "time": f.get("time", now())}
            changes.setdefault(tuple(i // s for i, s in zip(index, shard)), {})[index] = record
    cube.objects.put_many(ErrorRecords(cube.objects).updates(changes))
    for index in zip(*np.nonzero(status == DONE)):
        J = legacy.read_couplings(cube, task_key(tuple(int(i) for i in index)))
        if J is not None:
            buf = io.BytesIO()
            np.save(buf, J, allow_pickle=False)
            cube.objects.put(f"{SIDE}/couplings/{task_key(tuple(int(i) for i in index))}.npy", buf.getvalue())


def _swap(cube: Cube) -> None:
    objects = cube.objects
    arrays = json.loads(_required(objects, READY))["arrays"]
    staged = objects.list(STAGE)
    for name in arrays:
        for key in objects.list(name):
            objects.delete(key)
        mine = [k for k in staged if k.startswith(f"{STAGE}/{name}/")]
        got = objects.get_many(mine)
        objects.put_many({k[len(STAGE) + 1 :]: v for k, v in got.items() if v is not None})
    objects.put(template.ROOT, _required(objects, f"{STAGE}/{template.ROOT}"))  # the commit
    objects.delete(READY)  # first: from here on the staged copy is garbage, never a source
    cleanup(objects)


def cleanup(objects) -> None:
    """Remove what a finished upgrade leaves: the staged copy and format 1's side records."""
    for key in objects.list(SIDE):
        if (
            key.startswith(f"{STAGE}/")
            or key.startswith(f"{SIDE}/failures/")
            or key == f"{SIDE}/{template.ROOT}"
            or (key.startswith(f"{SIDE}/couplings/") and not key.endswith(".npy"))
        ):
            objects.delete(key)


class _Prefixed:
    """A view of a store under a prefix (to read the staged copy with the normal reader)."""

    def __init__(self, inner, prefix: str) -> None:
        self.inner, self.prefix = inner, prefix

    def get_many(self, keys):
        got = self.inner.get_many([f"{self.prefix}/{k}" for k in keys])
        return {k: got[f"{self.prefix}/{k}"] for k in keys}

    def get(self, key):
        return self.inner.get(f"{self.prefix}/{key}")
