"""Integrity check of a cube: does its content agree with its status and its spec?

``done`` must imply data on disk; a chunk that cannot be decoded, a done task without its
always-present metrics, or arrays whose shape disagrees with the stored spec are reported
with the task's coordinates. ``repair`` sets such tasks back to pending (never the other way),
so the next run recomputes exactly what was damaged and nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from pipeline.metrics import METRICS
from storage import layout
from storage.cube import Cube, read_robust
from storage.layout import DONE, FAILED, PENDING

ALWAYS_PRESENT = ("fixed_point_fraction", "m_train", "train_seconds")


@dataclass
class CheckReport:
    problems: list[str] = field(default_factory=list)
    damaged: list[tuple[int, ...]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(cube: Cube) -> CheckReport:
    """Compare status, data and spec; every problem is one line naming what and where."""
    report = CheckReport()
    sweep, group = cube.sweep, cube.group
    coords = layout.coordinates(sweep)
    for c in coords:
        stored = np.asarray(group[c.name][...])
        if stored.shape != c.values.shape or not np.array_equal(stored.astype(c.values.dtype), c.values):
            report.problems.append(f"coordinate {c.name!r} does not match the stored spec")
    for v in layout.variables(sweep, [c.name for c in coords]):
        expected = sweep.shape + ((len(sweep.noise),) if v.dims[-1] == "noise" else ())
        if group[v.name].shape != expected:
            report.problems.append(f"variable {v.name!r} has shape {group[v.name].shape}, spec says {expected}")
    if report.problems:
        return report
    status, bad = read_robust(group["status"], sweep.shape, PENDING)
    for index in bad:
        report.problems.append(f"status chunk of {cube.coords_of(index)} unreadable")
        report.damaged.append(index)
    done = status == DONE
    for name in METRICS:
        values, bad = read_robust(group[name], sweep.shape, np.nan)
        unreadable = np.zeros(sweep.shape, dtype=bool)
        for index in bad:
            unreadable[index] = True
        missing = np.zeros(sweep.shape, dtype=bool)
        if name in ALWAYS_PRESENT:
            finite = np.isfinite(values)
            missing = ~(finite.all(axis=-1) if values.ndim > len(sweep.shape) else finite)
        for index in zip(*np.nonzero(done & (unreadable | missing))):
            index = tuple(int(i) for i in index)
            what = "unreadable" if unreadable[index] else "missing"
            report.problems.append(f"{name} of done task {cube.coords_of(index)} is {what}")
            if index not in report.damaged:
                report.damaged.append(index)
    recorded = {tuple(f["index"]) for f in cube.failures() if f["state"] == "failed"}
    for index in zip(*np.nonzero(status == FAILED)):
        if tuple(int(i) for i in index) not in recorded:
            report.problems.append(f"failed task {cube.coords_of(tuple(int(i) for i in index))} has no error record")
    return report


def repair(cube: Cube, report: CheckReport) -> int:
    """Set damaged tasks back to pending so that the next run recomputes them; returns the count."""
    status = cube.group["status"]
    for index in report.damaged:
        status[index] = PENDING
    return len(report.damaged)
