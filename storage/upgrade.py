"""``amsweep upgrade CUBE``: convert an older cube to the current format, in place, kill-safe, verified.

Older cubes are format 1 (one object per task per variable) and format-2 cubes whose axes are in
the order extensions appended values (``[0.05, 0.1, 0.2, 0.4, 0.3, 0.6]``). Both are rewritten by
``amsweep.storage.restage`` as a cube of the same spec in canonical order
(``amsweep.pipeline.spec.canonical_order``) and the current format: read through the cube's own
readers, staged under ``_amsweep/stage/``, verified value for value against the source, swapped
in and committed by one write of the root document. A kill at any point leaves the old cube or a
verified copy that the next ``upgrade`` (or ``run``) swaps in.

A format-1 -> 2 upgrade staged by an amsweep before this one (``_amsweep/upgrade/``, marked by
``UPGRADE_READY``) and killed during its swap is still finished from its staged copy.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from amsweep.pipeline.errors import CubeError
from amsweep.pipeline.spec import canonical_order, from_canonical
from amsweep.storage import restage, schema, zarr_documents
from amsweep.storage.cube import UPGRADE_READY as READY
from amsweep.storage.cube import Cube
from amsweep.storage.objects import Objects, objects_at
from amsweep.storage.records import AMSWEEP_DIR, now

__all__ = ["cleanup", "interrupted", "STAGE", "upgrade", "UpgradeReport"]

STAGE = f"{AMSWEEP_DIR}/upgrade"  # where an earlier amsweep staged its format-1 -> 2 upgrade


@dataclass
class UpgradeReport:
    tasks: int
    done: int
    damaged: int
    verified_values: int
    moved: int = 0  # done tasks whose position changed (axes put in canonical order)
    source_format: int = 1


def interrupted(objects) -> bool:
    """True while a staged upgrade waits to be swapped in (the cube must not be read as is)."""
    return objects.get(READY) is not None or restage.interrupted(objects)


def _required(objects: Objects, key: str) -> bytes:
    """An object the staged upgrade wrote before READY; its absence means a damaged stage."""
    data = objects.get(key)
    if data is None:
        raise CubeError(f"{objects.url}: staged upgrade lacks {key}; remove {STAGE} and upgrade again")
    return data


def _report(r: restage.RestageReport, source_format: int) -> UpgradeReport:
    return UpgradeReport(r.tasks, r.done, r.damaged, r.verified_values, r.moved, source_format)


def upgrade(path: str, storage_options: dict | None = None) -> UpgradeReport:
    """Rewrite the cube at ``path`` in the current format and canonical order (or finish that)."""
    objects = objects_at(path, storage_options)
    if restage.interrupted(objects):
        ready = restage.read_ready(objects) or {}
        source = int(ready.get("source_format", schema.FORMAT_VERSION))
        return _report(restage.resume(path, objects, storage_options), source)
    if objects.get(READY) is not None:  # an earlier amsweep's format-1 -> 2 upgrade, killed mid-swap
        cube = Cube._from_root(
            path, objects, json.loads(_required(objects, f"{STAGE}/{zarr_documents.ROOT}")), storage_options
        )
        cube.acquire()
        report = UpgradeReport(**json.loads(_required(objects, READY))["report"])
        try:
            _swap(cube)
        finally:
            cube.release()
        return report
    cube = Cube.open(path, storage_options)
    target = from_canonical(canonical_order(cube.sweep.canonical))
    cube.acquire()
    try:
        if cube.format == schema.FORMAT_VERSION and target.canonical == cube.sweep.canonical:
            cleanup(cube.objects)  # leftovers of an upgrade killed after its commit, if any
            raise CubeError(
                f"{path}: already format {schema.FORMAT_VERSION} in canonical axis order; nothing to upgrade"
            )
        note = f"from format {cube.format} on {now()}"
        if cube.format == schema.FORMAT_VERSION:
            note += ", axes put in canonical order"
        staged = restage.restage(cube, target, {"upgraded": note, "Conventions": "CF-1.10"})
        restage.finish(cube.objects)  # through the writer's fence, like every write of the swap
    finally:
        cube.release()
    return _report(staged, cube.format)


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
    objects.put(zarr_documents.ROOT, _required(objects, f"{STAGE}/{zarr_documents.ROOT}"))  # the commit
    objects.delete(READY)  # first: from here on the staged copy is garbage, never a source
    cleanup(objects)


def cleanup(objects) -> None:
    """Remove what a finished upgrade leaves: the staged copy and format 1's per-task records."""
    restaging = restage.interrupted(objects)
    for key in objects.list(AMSWEEP_DIR):
        if (
            key.startswith(f"{STAGE}/")
            or (key.startswith(f"{restage.STAGE}/") and not restaging)
            or key.startswith(f"{AMSWEEP_DIR}/failures/")
            or key == f"{AMSWEEP_DIR}/{zarr_documents.ROOT}"
            or (key.startswith(f"{AMSWEEP_DIR}/couplings/") and not key.endswith(".npy"))
        ):
            objects.delete(key)
