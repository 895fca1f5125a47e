"""Cells grouped into batches, so that Ray's per-task overhead is paid per ~2 s of work, and the
driver sees at most ``TASKS_PER_SECOND`` batches a second however large the cluster.

Ray costs 9-15 ms of worker and driver time per task here (benchmarks/RESULTS.md), three to
ten times a small cell (N = 32: ~1 ms). A batch carries about ``target_seconds`` of cells,
sized from the durations the workers report for the cells of the same shape (dataset, N, P,
rule) measured so far in the run, or of the same dataset, N and rule at another load (scaled by
the load ratio): a shape with neither travels at most ``UNMEASURED`` cells at a time, and
batches grow at most ``GROWTH`` x the largest measured one, so a mis-estimate costs
little. Batches never mix cells that need different CPUs or memory, and
near the end of a sweep they shrink so the last cells spread over every worker.

The target grows with the cluster: ``workers`` busy workers finishing batches of ``target``
seconds send ``workers / target`` batches a second, and each costs the driver a Ray wait and
get plus the result handling (issue 26: 2-3 ms a batch, so ~2 s batches on 1,000 cores were
~500 tasks/s, more than one driver core). ``BatchSizer.target`` is therefore at least
``workers / TASKS_PER_SECOND`` seconds (10 s on 1,000 workers); the first batches of a shape
stay small (``UNMEASURED``, ``GROWTH``) and the tail still shrinks.

The worker side, ``run_batch``, runs each cell guarded (a failing cell fails alone) and
returns every cell's outcome with its duration. The driver side takes a finished batch as one
``ResultBlock`` (``settle_block``): the durations recorded as one sum per shape, the values left in
the worker's columns (``settle`` is the per-cell form, for ``map_unordered``).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import numpy as np

from amsweep.pipeline.outcomes import Failed, ResultBlock, guarded
from amsweep.pipeline.packing import Packed, pack, to_block
from amsweep.pipeline.resources import cell_memory, cell_threads
from amsweep.pipeline.spec import CellJob

__all__ = [
    "Batch",
    "Batcher",
    "BatchSizer",
    "GROWTH",
    "needs_of",
    "run_batch",
    "settle",
    "settle_block",
    "shape_of",
    "TASKS_PER_SECOND",
    "UNMEASURED",
]

UNMEASURED = 2
GROWTH = 4
TASKS_PER_SECOND = 100.0  # batches a second the driver is sized for (see the module note)


def shape_of(job: CellJob) -> tuple:
    """Cells of one shape cost about the same: every seed of (dataset, N, P, rule)."""
    task = job.task
    return (task.dataset.label, task.N, task.P, task.rule.label)


def needs_of(job: CellJob) -> tuple[int, int]:
    """(CPUs, memory bytes) a cell asks of its node."""
    return cell_threads(job.task, job.retrieval), cell_memory(job.task, job.retrieval)


@dataclass
class Batch:
    """Cells travelling in one Ray task, and the resources that task asks for."""

    jobs: list[CellJob]
    cpus: int
    memory: int
    shapes: list[tuple] | None = None  # each job's shape_of, as the Batcher computed it (None: not kept)
    counts: dict[tuple, int] | None = None  # cells per shape (None: not kept); one key: a one-shape batch


@dataclass
class BatchSizer:
    """Measured seconds per cell by shape, and the batches they imply.

    ``fixed``: exactly that many cells per batch (``--cells-per-task``), still without mixing
    resource needs. ``workers``: the cluster's CPUs, which raise the target to
    ``workers / TASKS_PER_SECOND`` seconds (``target``).
    """

    target_seconds: float = 2.0
    fixed: int | None = None
    max_cells: int = 20_000
    workers: int = 1
    _mean: dict[tuple, tuple[float, int]] = field(default_factory=dict)  # shape -> (sum s, count)
    _largest: dict[tuple, int] = field(default_factory=dict)  # shape -> most cells measured in a batch

    @property
    def target(self) -> float:
        """Seconds of cells per batch: the configured target, or more on a cluster so large that
        the driver would otherwise see more than TASKS_PER_SECOND batches a second."""
        return max(self.target_seconds, self.workers / TASKS_PER_SECOND)

    def record(self, results: list[tuple[CellJob, float]]) -> None:
        """Durations of the cells of one batch that came back: (job, seconds) pairs."""
        self.record_shapes([(shape_of(job), seconds) for job, seconds in results])

    def record_shapes(self, results: list[tuple[tuple, float]]) -> None:
        """``record`` with each cell's shape already known ((shape, seconds) pairs): a batch is
        almost always one shape, so it costs a sum and two dict updates per shape, not per cell."""
        if not results:
            return
        first = results[0][0]
        if all(shape == first for shape, _ in results):
            groups: dict[tuple, list[float]] = {first: [s for _, s in results]}
        else:
            groups = {}
            for shape, seconds in results:
                groups.setdefault(shape, []).append(seconds)
        for key, times in groups.items():
            self.record_total(key, sum(times), len(times))

    def record_total(self, shape: tuple, seconds: float, cells: int) -> None:
        """``cells`` cells of one shape, of one batch, took ``seconds`` in all."""
        if cells <= 0:
            return
        total, n = self._mean.get(shape, (0.0, 0))
        self._mean[shape] = (total + seconds, n + cells)
        self._largest[shape] = max(self._largest.get(shape, 0), cells)

    def _related(self, job: CellJob) -> tuple[float, int] | None:
        """(seconds, largest batch) of a measured shape of the same dataset, N and rule (another
        load), the seconds scaled up by the load ratio when this one is larger (cost ~ P)."""
        d, N, P, rule = shape_of(job)
        best = None
        for (d2, N2, P2, rule2), (total, n) in self._mean.items():
            if (d2, N2, rule2) == (d, N, rule):
                estimate = total / n * max(1.0, P / max(P2, 1))
                if best is None or estimate > best[0]:
                    best = (estimate, self._largest[(d2, N2, P2, rule2)])
        return best

    def seconds(self, job: CellJob) -> float | None:
        """Mean seconds of the job's shape, or of a related shape (another load), None if neither
        was measured yet."""
        total, n = self._mean.get(shape_of(job), (0.0, 0))
        if n:
            return total / n
        related = self._related(job)
        return related[0] if related else None

    def cost(self, job: CellJob) -> float:
        """Seconds to budget for a job: ``seconds``, else the slowest shape seen so far, else a
        share of the target that lets only UNMEASURED unknown cells into a batch."""
        known = self.seconds(job)
        if known is not None:
            return known
        if self._mean:
            return max(total / n for total, n in self._mean.values())
        return self.target / UNMEASURED

    def allowance(self, job: CellJob) -> int:
        """Most cells of this job's shape the next batch may carry: enough for the target, but at
        most GROWTH x the largest batch of it (or of a related shape) measured so far."""
        if self.fixed:
            return self.fixed
        per_cell = self.seconds(job)
        if per_cell is None:
            return UNMEASURED
        largest = self._largest.get(shape_of(job)) or (self._related(job) or (0.0, 1))[1]
        want = max(1, int(self.target / max(per_cell, 1e-6)))
        return min(want, GROWTH * largest, self.max_cells)


class Batcher:
    """Pulls jobs lazily (one look-ahead) and cuts them into batches; ``retry`` puts cells of a
    lost batch back at the front, one per batch, so that a cell that kills its worker is found
    and fails alone while the others are computed."""

    def __init__(self, jobs: Iterator[CellJob], sizer: BatchSizer, total: int | None, workers: int) -> None:
        self._jobs = iter(jobs)
        self._next: CellJob | None = None
        self._retry: list[CellJob] = []
        self.sizer = sizer
        self.remaining = total
        self.workers = max(1, workers)
        self._needs: dict[tuple, tuple[int, int]] = {}
        self._floor: int | None = None  # the tail's least batch, fixed when the tail begins (``_tail_cap``)

    def _peek(self) -> CellJob | None:
        if self._next is None:
            self._next = next(self._jobs, None)
        return self._next

    def retry(self, jobs: list[CellJob]) -> None:
        self._retry.extend(jobs)

    def needs(self, job: CellJob, key: tuple | None = None) -> tuple[int, int]:
        """(CPUs, memory) of a job, computed once per shape (``key``: its shape_of, if known)."""
        key = shape_of(job) if key is None else key
        need = self._needs.get(key)
        if need is None:
            need = self._needs[key] = needs_of(job)
        return need

    def take(self) -> Batch | None:
        """The next batch, or None when every job has been handed out."""
        if self._retry:
            job = self._retry.pop(0)
            key = shape_of(job)
            return Batch([job], *self.needs(job, key), shapes=[key], counts={key: 1})
        first = self._peek()
        if first is None:
            return None
        cpus, memory = self.needs(first)
        cap = self.sizer.fixed if self.sizer.fixed else self._tail_cap(first)
        jobs: list[CellJob] = []
        shapes: list[tuple] = []
        per_shape: dict[tuple, int] = {}
        allowed: dict[tuple, int] = {}
        budget = 0.0
        target = self.sizer.target
        fixed = bool(self.sizer.fixed)
        costs: dict[tuple, float] = {}  # the sizer does not change within a take: once per shape
        needs: dict[tuple, tuple[int, int]] = {}
        source = self._jobs
        while len(jobs) < cap:
            peeked = self._next  # ``_peek`` inlined: this loop runs once per cell
            if peeked is None:
                peeked = self._next = next(source, None)
                if peeked is None:
                    break
            job = peeked
            key = shape_of(job)
            if key not in allowed:
                needs[key] = self.needs(job, key)
                allowed[key], costs[key] = self.sizer.allowance(job), self.sizer.cost(job)
            job_cpus, job_memory = needs[key]
            if job_cpus != cpus:
                break
            n = per_shape.get(key, 0)
            if n >= allowed[key]:
                break
            cost = costs[key]
            if jobs and not fixed and budget + cost > target:
                break
            budget += cost
            jobs.append(job)
            shapes.append(key)
            per_shape[key] = n + 1
            if job_memory > memory:
                memory = job_memory
            self._next = None
        if self.remaining is not None:
            self.remaining -= len(jobs)
        return Batch(jobs, cpus, memory, shapes, per_shape)

    def _tail_cap(self, first: CellJob) -> int:
        """Near the end, at most a share of what is left per batch (half a wave: ``remaining / (2 x
        workers)``), so every worker gets some; but never below the batch that keeps the driver at
        ``TASKS_PER_SECOND`` (``workers / TASKS_PER_SECOND`` seconds of cells), unless what is left
        when the tail begins is less than two waves of those: then the tail is cut once into about
        two batches per worker and shrinks no further. The shrinking share alone sent 10^5 cells of
        0.1 s on 1,000 workers as 8,997 tasks in a 10 s run (~900 tasks/s, 2,000 one-cell tasks at
        the end); with the floor they go as 2,000 (tests/test_attack26_driver.py). A small cluster's
        floor is one cell: its tail still shrinks to one-cell batches."""
        if self.remaining is None:
            return self.sizer.max_cells
        share = max(1, math.ceil(self.remaining / (2 * self.workers)))
        if self._floor is None:
            if share >= self.sizer.allowance(first):
                return share  # not the tail yet: the sizer's batch is the smaller
            per_cell = self.sizer.seconds(first)
            rate = 1 if per_cell is None else math.ceil(self.workers / TASKS_PER_SECOND / max(per_cell, 1e-6))
            self._floor = max(1, min(rate, share))
        return max(share, self._floor)


def settle(batch: Batch, results: list[tuple[Any, float]], sizer: BatchSizer) -> list[tuple[CellJob, Any]]:
    """Driver side, after a batch came back: its cells' durations recorded (failures left out: a
    failure's time says nothing of a cell's cost), and its (job, outcome) pairs in batch order."""
    shapes = batch.shapes if batch.shapes is not None else [shape_of(job) for job in batch.jobs]
    sizer.record_shapes(
        [(shape, seconds) for shape, (outcome, seconds) in zip(shapes, results) if not isinstance(outcome, Failed)]
    )
    return [(job, outcome) for job, (outcome, _) in zip(batch.jobs, results)]


def settle_block(batch: Batch, packed: Packed, sizer: BatchSizer) -> ResultBlock:
    """``settle`` for a batch taken whole: its cells' durations recorded (failures left out) as one
    sum per shape, and the batch as one ``ResultBlock`` (``amsweep.pipeline.packing.to_block``)."""
    failed = [i for i, o in packed.others if isinstance(o, Failed)]
    seconds = packed.seconds
    if batch.counts is not None and len(batch.counts) == 1:  # the common batch: one shape
        kept = np.delete(seconds, failed) if failed else seconds
        sizer.record_total(next(iter(batch.counts)), float(kept.sum()), len(kept))
    else:
        shapes = batch.shapes if batch.shapes is not None else [shape_of(job) for job in batch.jobs]
        skip = set(failed)
        sizer.record_shapes([(shape, t) for i, (shape, t) in enumerate(zip(shapes, seconds.tolist())) if i not in skip])
    return to_block(packed, batch.jobs)


def run_batch(
    fn: Callable[..., Any], jobs: list[CellJob], setup: Callable[[list[CellJob]], list[CellJob]] | None = None
) -> Packed:
    """Worker side: every cell's outcome (CellResult, Skipped or Failed) and its wall seconds,
    packed (``amsweep.pipeline.packing``: unpickled per batch, not per cell, by the driver).

    ``setup`` adapts the jobs to this worker first (e.g. points dataset paths at shipped copies).
    """
    if setup is not None:
        jobs = setup(jobs)
    out = []
    cpu = 0.0
    for job in jobs:
        t0, c0 = time.perf_counter(), time.thread_time()
        outcome = guarded(fn, job)
        cpu += time.thread_time() - c0
        out.append((outcome, time.perf_counter() - t0))
    return pack(out, cpu)
