"""Integrity check of a cube: does every variable agree with the status grid and the spec?

Every done task must have a present, checksum-valid inner chunk in every variable (format 2
writes one for each done task, NaN included, so absence means loss), finite where the metric is
declared ``always`` (pipeline/metrics.py); a failed task needs its error record; "not
applicable" must be what the spec says or what a run recorded; "done" where the spec says not
applicable is impossible. Each problem is one line naming the task.
``repair`` gives exactly the damaged tasks back the state a fresh template has (pending, or not
applicable where the spec says so), so the next run recomputes them and nothing else.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np
import zarr

from amsweep.pipeline.metrics import METRICS
from amsweep.storage import layout, template
from amsweep.storage.cube import Cube
from amsweep.storage.layout import DONE, FAILED, NOT_APPLICABLE, PENDING

__all__ = ["check", "CheckReport", "repair"]


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    damaged: list[tuple[int, ...]] = field(default_factory=list)
    documents: list[str] = field(default_factory=list)  # arrays whose own zarr.json is damaged

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
    if cube.format != layout.FORMAT_VERSION:
        report.problems.append(
            f"cube format {cube.format}: `amsweep upgrade {cube.path}` converts it "
            "(and verifies every value); check runs on format 2"
        )
        return report
    sweep = cube.sweep
    _check_documents(cube, report)
    _check_arrays(cube, report)
    if len(report.problems) > len(report.documents):
        return report
    status, present, damaged = cube.read_variable("status")
    for index in zip(*np.nonzero(damaged)):
        report.add(cube, index, "status chunk unreadable (checksum)")
    spec_na = layout.not_applicable_mask(sweep)
    for index in zip(*np.nonzero((status == DONE) & spec_na & ~damaged)):
        report.add(cube, index, "marked done, but the spec says this task does not exist")
    done = (status == DONE) & ~damaged
    for name, metric in METRICS.items():
        if name not in cube.members:
            continue  # added by the next run (NaN for tasks done before)
        values, have, bad = cube.read_variable(name)
        for index in zip(*np.nonzero(done & bad)):
            report.add(cube, index, f"{name} fails its checksum")
        for index in zip(*np.nonzero(done & ~have & ~bad)):
            report.add(cube, index, f"{name} is missing")
        if metric.always:  # declared finite for every done task (pipeline/metrics.py)
            finite = np.isfinite(values).all(axis=tuple(range(done.ndim, values.ndim)))
            for index in zip(*np.nonzero(done & have & ~bad & ~finite)):
                report.add(cube, index, f"{name} is NaN, but every done task has a value of it")
    recorded = {tuple(f["index"]): f["state"] for f in cube.failures()}
    for index in zip(*np.nonzero((status == FAILED) & ~damaged)):
        if tuple(int(i) for i in index) not in recorded:
            report.add(cube, index, "failed, with no error record")
    for index in zip(*np.nonzero((status == NOT_APPLICABLE) & ~spec_na & ~damaged)):
        if tuple(int(i) for i in index) not in recorded:
            report.add(cube, index, "not applicable, but the spec says applicable and no run recorded why")
    return report


def _check_documents(cube: Cube, report: CheckReport) -> None:
    """Each array's own ``zarr.json`` (what zarr reads without the root's consolidated copy) must
    say what the root document says; amsweep itself reads only the root."""
    names = sorted(cube.members)
    found = cube.objects.get_many([f"{n}/zarr.json" for n in names])
    for name in names:
        data = found[f"{name}/zarr.json"]
        try:
            with template.quiet_labels():
                ok = data is not None and json.loads(data) == json.loads(json.dumps(cube.members[name].to_dict()))
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
    coords = layout.coordinates(sweep)
    for c in coords:
        if c.name not in cube.members:
            report.problems.append(f"coordinate {c.name!r} is missing")
            continue
        if c.name in report.documents:
            continue
        try:
            with template.quiet_labels():
                stored = np.asarray(
                    zarr.open_array(
                        cube.path, path=c.name, mode="r", zarr_format=3, storage_options=cube.storage_options
                    )[...]
                )
        except Exception as e:  # any decode failure of a coordinate chunk is a finding, not a crash
            report.problems.append(f"coordinate {c.name!r} is unreadable ({type(e).__name__}: {e})")
            continue
        expected = c.data
        same = stored.shape == expected.shape and (
            [str(x) for x in stored.tolist()] == [str(x) for x in expected.tolist()]
            if expected.dtype == object
            else np.array_equal(stored, expected, equal_nan=expected.dtype.kind == "f")
        )
        if not same:
            report.problems.append(f"coordinate {c.name!r} does not match the stored spec")
    for v in layout.variables(sweep, [c.name for c in coords]):
        if v.name not in cube.members:
            continue
        shape = sweep.shape + ((len(sweep.noise),) if v.per_noise else ())
        if tuple(cube.members[v.name].shape) != shape:
            report.problems.append(
                f"variable {v.name!r} has shape {tuple(cube.members[v.name].shape)}, spec says {shape}"
            )


def repair(cube: Cube, report: CheckReport) -> int:
    """Give damaged tasks their template state back (pending; not applicable where the spec says
    so) so that the next run recomputes exactly them; returns the count."""
    if report.documents:
        cube.acquire()
        cube.objects.put_many({f"{n}/zarr.json": _document(cube.members[n]) for n in report.documents})
    spec_na = layout.not_applicable_mask(cube.sweep)
    cube.reset([i for i in report.damaged if not spec_na[i]], PENDING)
    cube.reset([i for i in report.damaged if spec_na[i]], NOT_APPLICABLE)
    return len(report.damaged) + len(report.documents)


def _document(meta) -> bytes:
    from zarr.core.buffer import default_buffer_prototype

    with template.quiet_labels():
        return meta.to_buffer_dict(default_buffer_prototype())["zarr.json"].to_bytes()
