"""The driver loop: fan out pending tasks, collect outcomes, write the cube, report progress.

The driver is the only writer. It buffers finished results and flushes them by count and by
time, so a crash loses at most one buffer (which the next run recomputes), and Ctrl-C flushes
what has finished before stopping.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

from tqdm import tqdm

from pipeline.cell import CellResult, run_cell
from pipeline.executors import Failed, SerialExecutor, Skipped
from storage.cube import Cube, Mark
from storage.layout import FAILED, NOT_APPLICABLE
from storage.status import save_run_record


@dataclass
class RunReport:
    """What one invocation did; ``interrupted`` is True when Ctrl-C stopped it."""

    done: int = 0
    failed: int = 0
    not_applicable: int = 0
    remaining: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)


def run(cube: Cube, executor: Any = None, retry_failed: bool = True, progress: bool = True,
        flush_every: int = 16, flush_seconds: float = 10.0, cell: Callable[..., CellResult] = run_cell
        ) -> RunReport:
    """Run every task of the cube's sweep that is not done yet.

    ``cell`` computes one task (default: the real cell); benchmarks and fault-injection tests
    pass a wrapper around it.
    """
    executor = executor or SerialExecutor()
    cube.ensure_writable()
    sweep = cube.sweep
    report = RunReport(remaining=cube.count_pending(retry_failed=retry_failed))
    tasks = cube.pending(retry_failed=retry_failed)
    jobs = ((t, sweep.noise, sweep.retrieval, sweep.root_seed) for t in tasks)
    buffer: list[CellResult] = []
    marks: list[Mark] = []
    last_flush = t_start = time.monotonic()
    started = time.strftime("%Y-%m-%dT%H:%M:%S%z")

    def flush() -> None:
        nonlocal last_flush
        if buffer or marks:
            cube.write(buffer, marks)
            report.done += len(buffer)
            report.remaining -= len(buffer)
            buffer.clear()
            marks.clear()
        last_flush = time.monotonic()
        save_run_record(cube, {"done": report.done, "seconds": last_flush - t_start,
                               "executor": executor.name, "workers": executor.workers,
                               "started": started, "updated": time.strftime("%Y-%m-%dT%H:%M:%S%z")})

    flush()  # the run record says from the start that a run is under way
    bar = tqdm(total=report.remaining, unit="task", disable=not progress, dynamic_ncols=True,
               desc=f"{sweep.name} [{executor.name}]")
    try:
        for (task, *_), outcome in executor.map_unordered(cell, jobs):
            if isinstance(outcome, CellResult):
                buffer.append(outcome)
            elif isinstance(outcome, Skipped):
                marks.append((task.index, NOT_APPLICABLE, outcome.reason))
                report.not_applicable += 1
                report.remaining -= 1
            else:
                assert isinstance(outcome, Failed)
                marks.append((task.index, FAILED, outcome.error))
                report.failed += 1
                report.remaining -= 1
                report.errors.append(outcome.error.strip().splitlines()[-1])
            bar.update(1)
            if len(buffer) >= flush_every or time.monotonic() - last_flush > flush_seconds:
                flush()
    except KeyboardInterrupt:
        report.interrupted = True
    finally:
        flush()
        bar.close()
        report.seconds = time.monotonic() - t_start
    return report
