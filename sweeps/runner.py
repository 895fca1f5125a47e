"""The driver loop: fan out pending tasks, collect outcomes, write the cube, report progress.

The driver is the only writer. It buffers finished results and flushes them by count and by
time; the flushes run in order on a background thread (``amsweep.sweeps.flusher``), so result
collection never waits on storage (issue 26: inline writes cost the collector ~330 us per cell on
S3). While the store is behind (``FLUSH_DEPTH`` flushes queued), results keep buffering into one
larger flush, up to ``MAX_BUFFERED``, and then the collector waits for the store (back-pressure:
memory stays bounded). A crash loses at most the buffer and the queued flushes (which the next run
recomputes), and Ctrl-C flushes what has finished before stopping (a second Ctrl-C drops the
queued flushes and lets only the one under way finish). A flush is one ``cube.write`` of everything
buffered, and never more often than every ``min_flush_seconds`` unless ``MAX_BUFFERED`` cells wait:
with batches, thousands of small cells arrive per second, and a flush has a fixed cost (status and
run record), so they are written in large flushes, not one small flush per ``flush_every`` results.

Before anything runs, every cell's memory and CPU needs are held against what the executor
offers (``amsweep.pipeline.resources``), and driver-local data files are shipped to the workers.
``preflight`` is that check alone: the CLI calls it, with the executor already connected, before
it creates or opens the cube, so that a refused sweep leaves nothing at ``--out``. A store that
fails (full disk, S3 gone) ends the run with a one-line ``CubeError`` (``store_errors``) and no
retry of the failed flush: its tasks stay pending and the next run recomputes them.
Pending cells are generated lazily and handed to the executor as it asks for them, so the
driver holds only the cells in flight and the results not yet flushed.

Results arrive a finished batch at a time, as ``ResultBlock`` columns (the executor's optional
``map_blocks``; an executor without it has each cell of ``map_unordered`` wrapped as a block), and
are buffered and written as blocks: issue 26 measured the per-cell path (a CellResult per cell,
the loop per cell, the cube gathering the values again) at ~18 us a cell of collector time.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator

from tqdm import tqdm

from amsweep.pipeline.cell import run_cell
from amsweep.pipeline.outcomes import CellResult, ResultBlock, cell_blocks
from amsweep.pipeline.contracts import Executor, optional
from amsweep.pipeline.errors import AmsweepError
from amsweep.pipeline.executors import Failed, SerialExecutor
from amsweep.pipeline.resources import check_fits
from amsweep.pipeline.spec import Sweep
from amsweep.storage import restage, temporaries
from amsweep.storage.cube import Cube
from amsweep.storage.history import RunLog, one_line
from amsweep.storage.store_errors import WRITING, store_boundary
from amsweep.sweeps.flusher import Flusher
from amsweep.sweeps.termination import sigterm_as_interrupt

__all__ = ["preflight", "run", "RunReport", "FLUSH_DEPTH", "MAX_BUFFERED"]

FLUSH_DEPTH = 2  # flushes queued behind the one being written before the collector buffers on
# Cells in one flush at most: handed over at once when reached (min_flush_seconds or not), and while
# the store is behind the collector then waits. Capped only while the store was behind, a flush held
# min_flush_seconds of cells: at 10^5 cells/s, 10^5 cells, and the driver's RSS followed its rate
# (1.1 GiB at 10^6 cells, issue 26).
MAX_BUFFERED = 10_000


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
    run: str = ""  # this run's id in the cube's history (``_amsweep/runs/<run>.json``)


def preflight(sweep: Sweep, executor: Executor) -> None:
    """Refuse a sweep with a cell that no node of ``executor`` can run (``ResourceError``): every
    refusal that needs no cube, so a caller makes it before creating one."""
    memory, cpus, where = executor.capacity()
    check_fits(sweep, memory, cpus, where)


def blocks(executor: Executor, fn: Callable[..., Any], jobs: Iterable[Any], total: int | None) -> Iterator[ResultBlock]:
    """The executor's outcomes as blocks: its ``map_blocks`` if it has one, else each cell of
    ``map_unordered`` as a one-cell block."""
    map_blocks = optional(executor, "map_blocks")
    if map_blocks is not None:
        return iter(map_blocks(fn, jobs, total=total))
    return cell_blocks(executor.map_unordered(fn, jobs, total=total))


def run(
    cube: Cube,
    executor: Executor | None = None,
    retry_failed: bool = True,
    progress: bool = True,
    flush_every: int = 16,
    flush_seconds: float = 10.0,
    min_flush_seconds: float = 1.0,
    cell: Callable[..., CellResult] = run_cell,
    on_start: Callable[[str], None] | None = None,
    command: str | None = None,
) -> RunReport:
    """Run every task of the cube's sweep that is not done yet.

    Flushes when ``flush_every`` results are buffered and ``min_flush_seconds`` have passed
    since the last flush, or after ``flush_seconds`` whatever the count. The first flush of
    results does not wait: a write that fails (full disk, lost permission) fails early, and
    ``amsweep status`` shows progress at once. ``cell`` computes one
    task (default: the real cell); benchmarks and fault-injection tests pass a wrapper around
    it. ``on_start`` hears one line once the data files are shipped (the driver's copies are no
    longer needed from then on). Temporaries that killed writes left in the cube are removed
    once this driver holds it. SIGTERM stops it as Ctrl-C does (``amsweep.sweeps.termination``).
    ``command``: what the run record names (None: this process's argv).
    """
    with sigterm_as_interrupt():  # Slurm's preemption, ``ray job stop``, ``kill``: stop like Ctrl-C
        return _run(
            cube,
            executor or SerialExecutor(),
            retry_failed,
            progress,
            flush_every,
            flush_seconds,
            min_flush_seconds,
            cell,
            on_start,
            command,
        )


def _run(
    cube: Cube,
    executor: Executor,
    retry_failed: bool,
    progress: bool,
    flush_every: int,
    flush_seconds: float,
    min_flush_seconds: float,
    cell: Callable[..., CellResult],
    on_start: Callable[[str], None] | None,
    command: str | None,
) -> RunReport:
    sweep = cube.sweep
    preflight(sweep, executor)
    with store_boundary(cube.path, "opening the cube for writing"):
        cube.ensure_writable()
        temporaries.remove(cube.objects)
        restage.discard_abandoned(cube.objects)  # a restage killed after its commit, or before READY
        report = RunReport(remaining=cube.count_pending(retry_failed=retry_failed))
    shipped = executor.prepare(sweep)
    tasks = cube.pending(retry_failed=retry_failed)
    jobs = map(sweep.job, tasks)
    buffer: list[ResultBlock] = []
    buffered = 0  # cells in the buffer (drives the flush timing only: the flush counts the blocks)
    last_flush = t_start = time.monotonic()
    history = RunLog(cube, executor.name, executor.workers, getattr(executor, "describe", None), command)
    report.run = history.id
    initial = report.remaining
    # (results, failures, not-applicable marks): those whose flush completed (counted on the flusher
    # thread, read once it is idle or closed), and those handed to the flusher so far. The run's record
    # counts what landed: a failed flush's tasks, and those of the flushes dropped after it, stay pending.
    landed = [0, 0, 0]
    handed = (0, 0, 0)
    offered: tuple[Callable[[], None], tuple[int, int, int]] | None = None  # the last put, until settled

    def tally(these: list[ResultBlock]) -> tuple[int, int, int]:
        ended = [o for b in these for _, o in b.ended]
        failed = sum(1 for o in ended if isinstance(o, Failed))
        return sum(b.done for b in these), failed, len(ended) - failed

    def counts(done: int, failed: int, not_applicable: int) -> dict[str, int]:
        return {
            "done": done,
            "failed": failed,
            "not_applicable": not_applicable,
            "remaining": initial - done - failed - not_applicable,
        }

    def flush_of(these: list[ResultBlock], record: dict[str, int], ending: str) -> Callable[[], None]:
        """One flush: the blocks, then this run's own record, which counts them (after them)."""

        def write() -> None:
            with store_boundary(cube.path, WRITING):
                if these:
                    cube.write(these)
                    for i, n in enumerate(tally(these)):
                        landed[i] += n
                history.save(record, ending)

        return write

    try:
        flush_of([], counts(0, 0, 0), "running")()  # the run's record says from the start that a run is under way
    except KeyboardInterrupt:  # Ctrl-C in this flush: nothing ran yet; stop like any Ctrl-C
        report.interrupted = True
        report.seconds = time.monotonic() - t_start
        history.try_end(counts(0, 0, 0), "interrupted")
        return report
    flusher = Flusher(FLUSH_DEPTH)

    def hand_over(ending: str = "running") -> None:
        """Queue the buffer as one flush (waiting for room if the queue is full); the buffer is
        emptied only once queued (``settle``), so a Ctrl-C while waiting leaves it for the final flush."""
        nonlocal offered
        total = tuple(h + n for h, n in zip(handed, tally(buffer)))
        assert len(total) == 3
        flush = flush_of(buffer, counts(*total), ending)
        offered = (flush, total)
        flusher.put(flush)
        settle()

    def settle() -> None:
        """Empty the buffer once the flusher holds its flush: also when a Ctrl-C landed after the put
        took it (inside ``put`` or just after), so the final flush does not hand the same results over
        again (report.done counted them twice). One assignment: a Ctrl-C cannot split it."""
        nonlocal buffer, buffered, handed, last_flush, offered
        if offered is not None and flusher.holds(offered[0]):
            buffer, buffered, handed, offered, last_flush = [], 0, offered[1], None, time.monotonic()

    flushed_results = False  # the first results are written as soon as there are flush_every
    failure: str | None = None  # why the run stopped, if an error stopped it
    bar = tqdm(
        total=report.remaining,
        unit="task",
        disable=not progress,
        dynamic_ncols=True,
        desc=f"{sweep.name} [{executor.name}]",
    )
    unshown, shown_at = 0, t_start  # progress not yet drawn: tqdm costs ~1 us a call, drawn every 0.1 s
    try:
        outcomes = blocks(executor, cell, jobs, report.remaining)
        if on_start is not None:
            on_start(f"shipped {shipped} data file(s) to the workers" if shipped else "no data file to ship")
        for block in outcomes:
            buffer.append(block)
            size = block.size
            buffered += size
            for _, outcome in block.ended:
                if isinstance(outcome, Failed):
                    report.errors.append(outcome.error.strip().splitlines()[-1])
            unshown += size
            now = time.monotonic()
            if now - shown_at >= 0.1:
                bar.update(unshown)
                unshown, shown_at = 0, now
                flusher.check()  # a failed flush ends the run within 0.1 s, not at the next one
            since = now - last_flush
            enough = buffered >= flush_every
            full = buffered >= MAX_BUFFERED  # a flush holds at most ~MAX_BUFFERED cells, whatever the rate
            if (enough and (since >= min_flush_seconds or not flushed_results)) or since > flush_seconds or full:
                if not flusher.full() or full:
                    flushed_results = True
                    hand_over()  # else: the store is behind; keep buffering into one larger flush
        bar.update(unshown)
    except KeyboardInterrupt:
        report.interrupted = True
    except Exception as e:  # recorded as this run's ending, then raised as before
        failure = f"failed: {one_line(e)}"
        raise
    finally:
        ending = failure or ("interrupted" if report.interrupted else "finished")
        try:
            stopped = False  # a Ctrl-C in the final flush ended the run
            try:
                settle()  # a Ctrl-C just after a put: that buffer is already the flusher's
                if flusher.error is None:
                    hand_over(ending)
                    flusher.wait()  # raises the error of any flush, the final one included
            except KeyboardInterrupt:  # Ctrl-C in the final flush: its tasks stay pending (nothing lost)
                report.interrupted = stopped = True
                flusher.abandon()  # the flush under way finishes (a thread cannot be stopped mid-write)
                try:
                    flusher.wait()
                except (AmsweepError, KeyboardInterrupt):
                    pass
                flusher.close()
                history.try_end(counts(*landed), "interrupted")
            except Exception as e:  # a flush failed, perhaps after the last result: recorded below
                if e is not flusher.error:
                    raise
            error = flusher.error
            if error is not None and not stopped:  # the store or the lease failed: no retry of the failed flush
                flusher.close()  # the queued flushes were dropped; nothing writes any more
                history.try_end(counts(*landed), failure or f"failed: {one_line(error)}")  # if the store takes it
                if failure is None:  # else the loop's own error is on its way out
                    raise error
        finally:
            flusher.close()
            bar.close()
            report.done, report.failed, report.not_applicable = landed
            report.remaining = initial - sum(landed)
            report.seconds = time.monotonic() - t_start
    return report
