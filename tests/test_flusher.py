"""The background flusher: flushes land in the order handed over, a full queue makes the caller
wait (memory stays bounded), the first failed flush drops the ones after it and its error is
raised in the caller's thread; through the runner, a store error raised on the flusher thread
ends the run with the store's one-line CubeError, the results flushed before it intact."""

from __future__ import annotations

import errno
import os
import threading

import numpy as np
import pytest

from amsweep.pipeline.errors import CubeError
from amsweep.pipeline.executors import SerialExecutor
from amsweep.storage import cube as cube_mod
from amsweep.storage import history
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE, PENDING
from amsweep.sweeps.flusher import Flusher
from amsweep.sweeps.runner import run


def test_flushes_land_in_order_and_a_full_queue_makes_the_caller_wait():
    landed: list[int] = []
    gate = threading.Event()

    def flush(i: int):
        def write() -> None:
            if i == 0:
                gate.wait(30)  # the store is slow: flush 0 is under way until the gate opens
            landed.append(i)

        return write

    flusher = Flusher(depth=1)
    flusher.put(flush(0))
    while flusher.full():  # until the thread has taken flush 0 and is writing it
        threading.Event().wait(0.01)
    flusher.put(flush(1))  # queued behind it: the queue (depth 1) is now full
    assert flusher.full() and flusher.pending() == 2
    third = threading.Thread(target=flusher.put, args=(flush(2),))
    third.start()
    third.join(0.5)
    assert third.is_alive(), "a put into a full queue returned: memory is not bounded"
    assert landed == []
    gate.set()
    third.join(30)
    flusher.wait()
    assert landed == [0, 1, 2] and flusher.written == 3 and flusher.pending() == 0
    flusher.close()
    flusher.close()  # harmless twice


def test_a_failed_flush_drops_the_later_ones_and_raises_once_in_the_callers_thread():
    landed: list[int] = []

    def ok(i: int):
        return lambda: landed.append(i)

    def failing() -> None:
        raise CubeError("cube: writing results failed (disk full)")

    flusher = Flusher(depth=4)
    for f in (ok(0), failing, ok(2), ok(3)):
        flusher.put(f)
    with pytest.raises(CubeError, match="disk full"):
        flusher.wait()
    assert landed == [0] and isinstance(flusher.error, CubeError) and flusher.written == 1
    flusher.wait()  # raised once: the runner then records how the run ended
    flusher.close()


def test_a_store_error_on_the_flusher_thread_is_the_runs_one_line_cube_error(tmp_path, small_sweep, monkeypatch):
    """The second flush of results fails with ENOSPC inside ``Cube._flush`` on the flusher thread:
    ``run`` raises the store's CubeError (no retry), the first flush's results are intact and
    the run record, saved after them, says the run failed."""
    real, threads = cube_mod.Cube._flush, []

    def full_disk(self, *args):
        threads.append(threading.current_thread().name)
        if len(threads) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, *args)

    monkeypatch.setattr(cube_mod.Cube, "_flush", full_disk)
    path = str(tmp_path / "full.zarr")
    with Cube.create_or_open(path, small_sweep) as cube:
        with pytest.raises(CubeError) as e:
            run(cube, SerialExecutor(), progress=False, flush_every=2, min_flush_seconds=0.0)
    message = str(e.value)
    assert "writing results failed" in message and "No space left on device" in message
    assert "\n" not in message
    assert len(threads) == 2 and set(threads) == {"amsweep-flusher"}  # no retry; written off the collector
    status = Cube.open(path).status()
    assert (status == DONE).sum() == 2 and (status == PENDING).sum() == status.size - 2
    record = history.latest(Cube.open(path).objects)
    assert record is not None and record["done"] == 2 and record["ending"].startswith("failed")
    np.testing.assert_array_equal(Cube.open(path).status(), status)


def test_a_flush_places_every_value_where_one_result_at_a_time_would(tmp_path, small_sweep):
    """The write path's one-assignment-per-array placement (issue 26) stores exactly the values
    given, per-noise and scalar (a plain Python float among float32 scalars included), over two
    flushes into the same shards, and nothing else."""
    from amsweep.pipeline.metric_table import METRICS
    from amsweep.pipeline.outcomes import CellResult

    rng = np.random.default_rng(3)
    n_noise = len(small_sweep.noise)
    tasks = list(small_sweep.tasks())
    results = [
        CellResult(
            t.index,
            {
                k: rng.random(n_noise, dtype=np.float32) if m.per_noise else np.float32(rng.random())
                for k, m in METRICS.items()
            },
        )
        for t in tasks
    ]
    scalar = next(k for k, m in METRICS.items() if not m.per_noise)
    results[1].values[scalar] = 0.1  # a Python float: stored as the array's dtype, as one assignment does
    path = str(tmp_path / "placed.zarr")
    with Cube.create_or_open(path, small_sweep) as cube:
        cube.write(results[: len(results) // 2])
        cube.write(results[len(results) // 2 :])
    opened = Cube.open(path)
    for name in METRICS:
        values, present, _ = opened.read_variable(name)
        assert present.all(), name
        for r in results:
            expected = np.asarray(r.values[name]).astype(values.dtype)
            np.testing.assert_array_equal(values[r.index], expected, err_msg=name)


def test_blocks_store_the_same_bits_as_results_given_one_by_one(tmp_path, small_sweep):
    """The columnar write path (issue 26): a batch's ResultBlock (its columns as the worker packed
    them, cells without results among them) stores every variable and status bit for bit as the
    same outcomes given as CellResults and Marks; blocks merged in one flush, and mixed with loose
    results, included."""
    from amsweep.pipeline.metric_table import METRICS
    from amsweep.pipeline.outcomes import CellResult, Failed, Skipped
    from amsweep.pipeline.packing import pack, to_block
    from amsweep.storage.cube import Mark
    from amsweep.storage.schema import FAILED, NOT_APPLICABLE

    rng = np.random.default_rng(5)
    n_noise = len(small_sweep.noise)
    jobs = [small_sweep.job(t) for t in small_sweep.tasks()]

    def values() -> dict:
        return {
            k: rng.random(n_noise, dtype=np.float32) if m.per_noise else np.float32(rng.random())
            for k, m in METRICS.items()
        }

    outcomes = [CellResult(j.task.index, values()) for j in jobs]
    outcomes[1] = Failed("Traceback ...\nValueError: boom")
    outcomes[4] = Skipped("not applicable here")
    third = len(jobs) // 3
    parts = [slice(0, third), slice(third, 2 * third), slice(2 * third, len(jobs) - 1)]
    blocks = [to_block(pack([(o, 0.1) for o in outcomes[p]]), jobs[p]) for p in parts]
    assert sum(b.size for b in blocks) == len(jobs) - 1 and sum(len(b.ended) for b in blocks) == 2

    def marks(p: slice) -> list:
        return [
            Mark(j.task.index, FAILED, o.error)
            if isinstance(o, Failed)
            else Mark(j.task.index, NOT_APPLICABLE, o.reason)
            for j, o in zip(jobs[p], outcomes[p])
            if not isinstance(o, CellResult)
        ]

    def results(p: slice) -> list:
        return [o for o in outcomes[p] if isinstance(o, CellResult)]

    by_results, by_blocks = str(tmp_path / "results.zarr"), str(tmp_path / "blocks.zarr")
    with Cube.create_or_open(by_results, small_sweep) as cube:
        cube.write(results(parts[0]) + results(parts[1]), marks(parts[0]) + marks(parts[1]))
        cube.write(results(slice(2 * third, None)), marks(slice(2 * third, None)))
    with Cube.create_or_open(by_blocks, small_sweep) as cube:
        cube.write(blocks[:2])  # two blocks merged into one flush's columns
        cube.write([blocks[2], outcomes[-1]])  # a block and a loose result
    a, b = Cube.open(by_results), Cube.open(by_blocks)
    np.testing.assert_array_equal(a.status(), b.status())
    assert (a.status() == FAILED).sum() == 1 and (a.status() == NOT_APPLICABLE).sum() >= 1
    assert [f["error"] for f in a.failures()] == [f["error"] for f in b.failures()]
    for name in METRICS:
        for x, y in zip(a.read_variable(name), b.read_variable(name)):
            assert x.tobytes() == y.tobytes(), name


def test_a_flush_holds_at_most_max_buffered_cells_whatever_the_rate(tmp_path, small_sweep, monkeypatch):
    """Memory follows MAX_BUFFERED, not the rate: cells arriving faster than min_flush_seconds lets
    flushes go are handed over once MAX_BUFFERED wait (before, a flush held min_flush_seconds of
    cells: at 10^5 cells/s the driver's RSS reached 1.1 GiB, issue 26)."""
    from amsweep.sweeps import runner

    from tests.test_conformance import _fake_cell

    sizes: list[int] = []
    real = Cube.write

    def write(self, results, marks=()):
        results, marks = list(results), list(marks)
        sizes.append(sum(getattr(r, "size", 1) for r in results) + len(marks))
        return real(self, results, marks)

    monkeypatch.setattr(runner, "MAX_BUFFERED", 3)
    monkeypatch.setattr(Cube, "write", write)
    with Cube.create_or_open(str(tmp_path / "capped.zarr"), small_sweep) as cube:
        report = run(cube, SerialExecutor(), progress=False, flush_seconds=1e6, min_flush_seconds=1e6, cell=_fake_cell)
    assert sum(sizes) == report.done + report.failed == int(np.prod(small_sweep.shape))
    assert len(sizes) >= 3 and max(sizes) <= 3 + 1, sizes  # the first flush does not wait; then every 3 cells


def test_a_cube_dropped_off_the_main_thread_never_waits_for_its_lease(tmp_path, small_sweep):
    """The garbage collector finalizes a Cube on whichever thread allocates, e.g. fsspec's event-loop
    thread, while the lease's heartbeat holds the lease lock and waits for that very loop: a CI run
    hung so (py-spy: fsspecIO in Cube.__del__ -> Lease.release, the heartbeat in Lease._swap). Off
    the main thread the finalizer hands the release to a thread of its own and returns at once."""
    cube = Cube.create_or_open(str(tmp_path / "dropped.zarr"), small_sweep)
    lease = cube.lease
    assert lease is not None
    with lease._mutex:  # a heartbeat mid-renewal
        finalizer = threading.Thread(target=cube.__del__)
        finalizer.start()
        finalizer.join(5)
        assert not finalizer.is_alive(), "the finalizer waited for the lease lock"
    for t in [t for t in threading.enumerate() if t.name == "amsweep-cube-release"]:
        t.join(10)
    assert cube.lease is None and lease._released, "the lease is still released, by the finalizer's thread"
