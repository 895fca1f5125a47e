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
    while flusher._queue.qsize():  # the thread has taken flush 0 and is writing it
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

    def full_disk(self, results, marks):
        threads.append(threading.current_thread().name)
        if len(threads) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(self, results, marks)

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


def test_no_flush_holds_more_than_max_buffered_results_however_fast_they_come(tmp_path, small_raw, monkeypatch):
    """Memory bound (issue 26): results arriving faster than ``min_flush_seconds`` lets a flush go
    were all buffered into one flush (a 60,000-cells/s collector held ~60,000 results per flush,
    and RSS rose to 1.3 GiB over 10^6 cells); every flush is now at most ``MAX_BUFFERED`` results."""
    from amsweep.pipeline import spec as spec_mod
    from amsweep.pipeline.metric_table import METRICS
    from amsweep.pipeline.outcomes import CellResult
    from amsweep.sweeps import runner

    small_raw["seeds"] = 10  # 40 tasks
    sweep = spec_mod.from_dict(small_raw)
    values = {k: np.zeros(len(sweep.noise), np.float32) if m.per_noise else np.float32(0) for k, m in METRICS.items()}
    sizes: list[int] = []
    real = Cube.write

    def write(self, results, marks=()):
        results, marks = list(results), list(marks)
        sizes.append(len(results) + len(marks))
        return real(self, results, marks)

    monkeypatch.setattr(runner, "MAX_BUFFERED", 7)
    monkeypatch.setattr(cube_mod.Cube, "write", write)
    path = str(tmp_path / "bounded.zarr")
    with Cube.create_or_open(path, sweep) as cube:  # no flush is due by time: only the bound can cut them
        report = run(
            cube,
            SerialExecutor(),
            progress=False,
            flush_every=2,
            min_flush_seconds=3600.0,
            flush_seconds=3600.0,
            cell=lambda job, *a: CellResult(job.task.index, dict(values)),
        )
    assert report.done == 40 and sum(sizes) == 40
    assert max(sizes) <= 7, f"flush sizes {sizes}: a flush held more than MAX_BUFFERED results"
    assert (Cube.open(path).status() == DONE).all()
