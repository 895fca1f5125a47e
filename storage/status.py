"""What a cube says about its own progress: counts by state, failures, throughput, ETA.

Throughput comes from the run record the driver keeps beside the cube (one small JSON,
rewritten at each flush), so ``amsweep status`` works from any machine that can read the cube,
while the sweep is running or after it stopped.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

import numpy as np

from amsweep.storage import provenance
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE, FAILED, NOT_APPLICABLE, PENDING, STATUS_NAMES
from amsweep.storage.records import AMSWEEP_DIR

__all__ = ["counts", "load_run_record", "render_status", "RUN_RECORD", "save_run_record"]

RUN_RECORD = f"{AMSWEEP_DIR}/run.json"


def save_run_record(cube: Cube, record: dict[str, Any]) -> None:
    """Written whole at each flush, so a reader polling it never sees half a record; it carries
    the run's host and numeric stack (provenance of the results it reports)."""
    cube.objects.put(RUN_RECORD, json.dumps({**record, **provenance.run_environment()}).encode())


def load_run_record(cube: Cube) -> dict[str, Any] | None:
    data = cube.objects.get(RUN_RECORD)
    return json.loads(data) if data else None


def counts(status: np.ndarray) -> dict[str, int]:
    return {STATUS_NAMES[s]: int(np.sum(status == s)) for s in (DONE, PENDING, FAILED, NOT_APPLICABLE)}


def render_status(path: str, show_errors: bool = False, storage_options: dict | None = None) -> str:
    """A short report for humans."""
    cube = Cube.open(path, storage_options, mode="r")
    sweep = cube.sweep
    status = cube.status()
    c = counts(status)
    total = status.size
    applicable = total - c["not applicable"]
    lines = [
        f"cube {path}",
        f"sweep {sweep.name!r}  spec {sweep.spec_hash}  format {cube.format}  written by amsweep "
        f"{cube.attrs.get('amsweep_version')} on {cube.attrs.get('created')}"
        + (
            f" (source {cube.attrs['source_commit'][:10]}{', dirty' if cube.attrs.get('source_dirty') else ''})"
            if cube.attrs.get("source_commit")
            else ""
        ),
        f"axes: dataset {len(sweep.datasets)} x N {len(sweep.N_values)} x {sweep.load_axis} "
        f"{len(sweep.load_values)} x rule {len(sweep.rules)} x seed {len(sweep.seeds)} "
        f"(x noise {len(sweep.noise)})",
        "tasks: "
        + ", ".join(f"{k} {v}" for k, v in c.items())
        + f"  ({100.0 * c['done'] / max(applicable, 1):.1f}% of {applicable} applicable)",
    ]
    if cube.format >= 3:  # every status chunk is stored from creation on: an absent or unreadable one was lost
        _, present, damaged = cube.read_variable("status")
        lost = int((~present | damaged).sum())
        if lost:
            lines.append(
                f"warning: the status of {lost} task(s) is lost (a status shard missing or damaged); they count "
                "as pending above: `amsweep check --repair` restores it from their data where they are intact"
            )
    from amsweep.storage.lease import describe_holder

    writer = describe_holder(cube.objects)
    lines.append(writer or "writer: none (no driver holds the cube)")
    record = load_run_record(cube)
    if record and record.get("seconds", 0) > 0 and record.get("done", 0) > 0:
        rate = record["done"] / record["seconds"]
        todo = c["pending"] + c["failed"]
        eta = _dt.timedelta(seconds=round(todo / rate)) if todo else _dt.timedelta(0)
        lines.append(
            f"last run: {record['done']} tasks in {record['seconds']:.0f} s "
            f"({rate * 60:.1f} tasks/min, {record.get('executor', '?')}, updated "
            f"{record.get('updated', '?')}); ETA for the rest at that rate: {eta}"
        )
    failures = [f for f in cube.failures() if f["state"] == STATUS_NAMES[FAILED]]
    skipped = [f for f in cube.failures() if f["state"] == STATUS_NAMES[NOT_APPLICABLE]]
    if failures:
        lines.append(f"failures ({len(failures)}):")
        for f in failures if show_errors else failures[:10]:
            error = f["error"].strip() if show_errors else f["error"].strip().splitlines()[-1]
            lines.append(f"  {f['coords']}: {error}")
        if not show_errors and len(failures) > 10:
            lines.append(f"  ... {len(failures) - 10} more (amsweep status --errors)")
    if skipped:
        reasons = sorted({f["error"] for f in skipped})
        lines.append(f"not applicable at run time ({len(skipped)}): " + "; ".join(reasons[:3]))
    return "\n".join(lines)
