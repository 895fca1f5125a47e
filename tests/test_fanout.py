"""Fan-out in batches: batched equals unbatched value for value, a bad cell fails alone inside a
batch, cells no node can hold are refused before the sweep starts, pending cells are pulled
lazily, and a local Ray does not outlive a killed driver."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.batching import TASKS_PER_SECOND, UNMEASURED, Batch, Batcher, BatchSizer, settle, shape_of
from amsweep.pipeline.outcomes import Failed
from amsweep.pipeline.executors import SerialExecutor
from amsweep.pipeline.metrics import mean_or_nan
from amsweep.pipeline.resources import LARGE_THREADS, ResourceError, cell_memory, cell_threads
from amsweep.sweeps.runner import run
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE, FAILED
from tests.conftest import SMALL, assert_same_cube, wait_for_first_flush

MANY = {**copy.deepcopy(SMALL), "seeds": 5}  # 20 cells of 4 shapes


def jobs_of(raw: dict):
    sweep = spec_mod.from_dict(copy.deepcopy(raw))
    return sweep, [sweep.job(t) for t in sweep.tasks()]


def test_batched_equals_unbatched_serial_and_local_ray(tmp_path, ray_local):
    from amsweep.pipeline.ray_executor import RayExecutor

    sweep = spec_mod.from_dict(copy.deepcopy(MANY))
    serial = str(tmp_path / "serial.zarr")
    run(Cube.create_or_open(serial, sweep), SerialExecutor(), progress=False)
    for label, kwargs in [
        ("one", {"cells_per_task": 1}),
        ("seven", {"cells_per_task": 7}),
        ("adaptive", {"target_seconds": 0.05}),
        ("one_worker", {"workers": 1}),
    ]:
        path = str(tmp_path / f"{label}.zarr")
        executor = RayExecutor(**kwargs)
        report = run(Cube.create_or_open(path, sweep), executor, progress=False)
        assert report.done == 20 and report.failed == 0, (label, report)
        if label == "seven":
            assert executor.batches == 3  # 7 + 7 + 6 cells
        assert_same_cube(serial, path)


def crash_in_batch(job):
    """Kills its worker process (as a segfault would) for one cell; the others are real cells."""
    from amsweep.pipeline.cell import run_cell

    if job.task.index == (0, 0, 1, 1, 2):
        os._exit(1)
    return run_cell(job)


def test_a_cell_that_kills_its_worker_inside_a_batch_fails_alone(tmp_path, ray_local):
    import ray.cloudpickle

    from amsweep.pipeline.ray_executor import RayExecutor

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    sweep = spec_mod.from_dict(copy.deepcopy(MANY))
    path = str(tmp_path / "crash.zarr")
    # 5 cells per task: the crashing cell (seed index 2 of the last shape) shares its batch
    # with 4 good cells, which must still be written.
    executor = RayExecutor(max_retries=1, cells_per_task=5)
    report = run(Cube.create_or_open(path, sweep), executor, progress=False, cell=crash_in_batch)
    assert report.failed == 1 and report.done == 19, report
    status = Cube.open(path).status()
    assert status[0, 0, 1, 1, 2] != DONE
    assert (status[0, 0, 1, 1, [0, 1, 3, 4]] == DONE).all()  # its batch-mates
    failures = Cube.open(path).failures()
    assert [tuple(f["index"]) for f in failures] == [(0, 0, 1, 1, 2)]
    assert "died" in failures[0]["error"].lower() or "crash" in failures[0]["error"].lower(), failures


def cell_checking_threads(job):
    """The real cell, then a check that BLAS ran with the task's thread count (not the machine's)."""
    from threadpoolctl import threadpool_info

    from amsweep.pipeline.cell import run_cell

    result = run_cell(job)
    used = {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}
    if used != {cell_threads(job.task, job.retrieval)}:
        raise RuntimeError(f"BLAS ran with {used} threads, the task asks for {cell_threads(job.task, job.retrieval)}")
    return result


def test_a_large_cell_uses_its_threads_serially_and_on_ray_with_the_same_values(tmp_path, ray_local):
    import ray.cloudpickle

    from amsweep.pipeline.ray_executor import RayExecutor

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    raw = {
        **copy.deepcopy(SMALL),
        "seeds": 1,
        "noise": [0.1],
        "P_test": 10,
        "retrieval": {"train_starts": 50, "test_starts": 10, "random_starts": 5},
        "datasets": {"random": {"N": [2000, 48], "P": [500]}},
        "rules": {"hebb": {}},
    }
    sweep = spec_mod.from_dict(raw)
    assert sorted(cell_threads(t, sweep.retrieval) for t in sweep.tasks()) == [1, LARGE_THREADS]
    paths = []
    for name, executor in (("serial", SerialExecutor()), ("ray", RayExecutor())):
        paths.append(str(tmp_path / f"{name}.zarr"))
        report = run(Cube.create_or_open(paths[-1], sweep), executor, progress=False, cell=cell_checking_threads)
        assert report.done == 2 and report.failed == 0, report.errors
    assert_same_cube(*paths)


def oversized(raw: dict) -> spec_mod.Sweep:
    raw = copy.deepcopy(raw)
    raw["datasets"]["huge"] = {"kind": "random", "N": [100_000], "P": [10]}
    raw["datasets"]["random"]["P"] = raw["datasets"]["random"].pop("alpha")
    raw["datasets"]["random"]["P"] = [2, 14]
    return spec_mod.from_dict(raw)


def test_a_cell_no_machine_can_hold_is_refused_before_anything_runs(tmp_path):
    sweep = oversized(SMALL)
    path = str(tmp_path / "huge.zarr")
    with pytest.raises(
        ResourceError,
        match=r"dataset huge, N = 100000, P = 10, rule \w+ needs \d+\.\d GiB; "
        r"this machine offers \d+\.\d GiB",
    ):
        run(Cube.create_or_open(path, sweep), SerialExecutor(), progress=False)
    assert not np.isin(Cube.open(path).status(), [DONE, FAILED]).any()  # nothing ran


def test_ray_refuses_a_cell_larger_than_the_largest_node(tmp_path, ray_local):
    from amsweep.pipeline.ray_executor import RayExecutor

    path = str(tmp_path / "huge.zarr")
    with pytest.raises(ResourceError, match=r"needs \d+\.\d GiB; the largest node offers \d+\.\d GiB"):
        run(Cube.create_or_open(path, oversized(SMALL)), RayExecutor(), progress=False)
    assert not np.isin(Cube.open(path).status(), [DONE, FAILED]).any()  # nothing ran


def test_cli_refusal_is_one_clear_line(tmp_path):
    spec = tmp_path / "huge.toml"
    spec.write_text(
        'name = "huge"\nseeds = 1\nnoise = [0.1]\n[datasets.random]\nN = [100000]\nP = [10]\n[rules.hebb]\n'
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "amsweep.sweeps.cli",
            "run",
            str(spec),
            "--out",
            str(tmp_path / "h.zarr"),
            "--executor",
            "serial",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "needs" in proc.stderr and "GiB; this machine offers" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_memory_and_threads_grow_with_the_cell_and_ignore_the_seed():
    sweep, jobs = jobs_of({**SMALL, "datasets": {"random": {"N": [32, 2000], "alpha": [0.5]}}})
    small = next(t for t in (j.task for j in jobs) if t.N == 32)
    large = next(t for t in (j.task for j in jobs) if t.N == 2000)
    assert cell_memory(large, sweep.retrieval) > cell_memory(small, sweep.retrieval)
    assert cell_threads(small, sweep.retrieval) == 1 and cell_threads(large, sweep.retrieval) == LARGE_THREADS
    same_shape = [t for t in (j.task for j in jobs) if t.N == 32 and t.rule.label == "hebb"]
    assert len({cell_memory(t, sweep.retrieval) for t in same_shape}) == 1


def test_batches_start_small_grow_with_measurements_and_shrink_at_the_end():
    sweep, jobs = jobs_of({**SMALL, "seeds": 500, "rules": {"hebb": {}}})  # 1,000 cells, 2 shapes
    sizer = BatchSizer(target_seconds=1.0)
    batcher = Batcher(iter(jobs), sizer, total=len(jobs), workers=2)
    first = batcher.take()
    assert len(first.jobs) == UNMEASURED
    sizer.record([(job, 0.001) for job in first.jobs])
    second = batcher.take()
    assert len(second.jobs) == 4 * UNMEASURED  # grows, but at most 4 x what was measured
    sizer.record([(job, 0.001) for job in second.jobs])
    sizes = []
    while (batch := batcher.take()) is not None:
        sizes.append(len(batch.jobs))
        assert len({(t.dataset.label, t.N, t.P) for t in (j.task for j in batch.jobs)}) >= 1
        sizer.record([(job, 0.001) for job in batch.jobs])
    assert sum(sizes) == len(jobs) - 10
    assert max(sizes) > 100 and sizes[-1] < max(sizes)  # grew, then shrank for the tail


def test_a_large_cluster_gets_batches_that_keep_the_driver_under_its_task_rate():
    """500 workers x 0.1 s cells: 2 s batches would send 250 tasks/s; the target grows to
    workers / TASKS_PER_SECOND seconds, the first batches stay small and the tail still shrinks."""
    sweep, jobs = jobs_of({**SMALL, "seeds": 50_000, "rules": {"hebb": {}}})  # 100,000 cells, 2 shapes
    workers, cell = 500, 0.1
    sizer = BatchSizer(target_seconds=2.0, workers=workers)
    assert sizer.target == workers / TASKS_PER_SECOND == 5.0
    assert BatchSizer(target_seconds=2.0, workers=8).target == 2.0  # a small cluster keeps its target
    batcher = Batcher(iter(jobs), sizer, total=len(jobs), workers=workers)
    sizes = []
    while (batch := batcher.take()) is not None:
        sizes.append(len(batch.jobs))
        assert batch.shapes is not None and len(batch.shapes) == len(batch.jobs)
        settle(batch, [(None, cell)] * len(batch.jobs), sizer)
    assert sum(sizes) == len(jobs) and sizes[0] == UNMEASURED
    steady = max(sizes)
    assert steady == int(sizer.target / cell) == 50  # 5 s of 0.1 s cells (the tail cap starts at 100)
    assert workers / (steady * cell) <= TASKS_PER_SECOND  # batches a second the busy cluster sends
    assert sizes[-1] < steady  # the tail still shrinks


def test_settle_records_durations_per_shape_and_leaves_failures_out():
    sweep, jobs = jobs_of(MANY)  # 20 cells of 4 shapes
    batch = Batch(jobs[:6], 1, 0)  # no shapes kept: settle computes them
    sizer = BatchSizer()
    outcomes = [(Failed("boom") if i == 0 else "ok", 0.5 + i) for i in range(6)]
    pairs = settle(batch, outcomes, sizer)
    assert pairs == [(job, outcome) for job, (outcome, _) in zip(jobs[:6], outcomes)]
    expected: dict = {}
    for job, (_, seconds) in zip(jobs[1:6], outcomes[1:]):  # the failure's time says nothing of a cell's cost
        total, n = expected.get(shape_of(job), (0.0, 0))
        expected[shape_of(job)] = (total + seconds, n + 1)
    assert sizer._mean == expected and len(expected) > 1


def test_batches_never_mix_cells_that_need_different_cpus():
    sweep, jobs = jobs_of({**SMALL, "datasets": {"random": {"N": [32, 2000], "alpha": [0.5]}}, "rules": {"hebb": {}}})
    batcher = Batcher(iter(jobs), BatchSizer(fixed=10), total=None, workers=1)
    while (batch := batcher.take()) is not None:
        assert {cell_threads(j.task, sweep.retrieval) for j in batch.jobs} == {batch.cpus}


def test_the_driver_pulls_pending_cells_lazily():
    pulled = 0
    sweep = spec_mod.from_dict({**copy.deepcopy(SMALL), "seeds": 500_000, "rules": {"hebb": {}}})

    def counting():  # a 10^6-cell sweep, generated as it is consumed
        nonlocal pulled
        for task in sweep.tasks():
            pulled += 1
            yield sweep.job(task)

    batcher = Batcher(counting(), BatchSizer(fixed=50), total=10**6, workers=2)
    for _ in range(4):  # what RayExecutor keeps in flight on 2 workers
        batcher.take()
    assert pulled <= 4 * 50 + 1  # the batches (plus at most one look-ahead), not the sweep


def test_packed_outcomes_unpack_to_the_same_bits():
    from amsweep.pipeline.cell import run_cell
    from amsweep.pipeline.outcomes import CellResult
    from amsweep.pipeline.outcomes import Failed, Skipped
    from amsweep.pipeline.packing import pack, unpack

    sweep, jobs = jobs_of(SMALL)
    results = [run_cell(job) for job in jobs[:3]]
    kept = CellResult(results[0].index, results[0].values, np.ones((2, 2), np.float32))
    outcomes = [
        (results[0], 0.1),
        (Failed("boom"), 0.2),
        (results[1], 0.3),
        (Skipped("n/a"), 0.0),
        (kept, 0.4),
        (results[2], 0.5),
    ]
    back = unpack(pack(outcomes))
    assert [s for _, s in back] == [s for _, s in outcomes]
    for (a, _), (b, _) in zip(outcomes, back):
        assert type(a) is type(b)
        if isinstance(a, CellResult):
            assert a.index == b.index and a.values.keys() == b.values.keys()
            for k in a.values:
                assert np.asarray(a.values[k]).dtype == np.asarray(b.values[k]).dtype
                np.testing.assert_array_equal(a.values[k], b.values[k])
        else:
            assert a == b
    assert back[4][0].couplings is kept.couplings
    nothing_stacked = [(Skipped("n/a"), 0.0), (Failed("boom"), 0.1)]  # a batch of only these
    assert unpack(pack(nothing_stacked)) == nothing_stacked


def test_mean_or_nan_is_numpy_mean_bit_for_bit():
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64, np.int8):
        for n in (1, 3, 20, 1000, 4097):
            x = (rng.standard_normal(n) * 10).astype(dtype)
            assert mean_or_nan(x) == float(np.mean(x))
    flags = rng.random(37) < 0.3
    assert mean_or_nan(flags) == float(np.mean(flags))
    assert np.isnan(mean_or_nan(np.zeros(0, dtype=np.float32)))


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_text(errors="replace")
    except OSError:  # it ended meanwhile
        return ""


def _alive(processes: set[tuple[int, int]]) -> list[str]:
    """Names of the (pid, start time) processes still running (zombies count as gone)."""
    from amsweep.pipeline.ray_reaper import process_table

    table, out = process_table(), []
    for pid, started in processes:
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                state = f.read().rsplit(b")", 1)[1].split()[0]
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                name = f.read().replace(b"\0", b" ").decode(errors="replace")[:60]
        except OSError:
            continue
        if table.get(pid, (0, -1))[1] == started and state != b"Z":
            out.append(f"{pid} {name}")
    return out


def test_a_killed_driver_leaves_no_local_ray_processes_behind(tmp_path):
    from amsweep.pipeline.ray_reaper import descendants, process_table

    spec = tmp_path / "kill.toml"
    spec.write_text(
        Path(__file__)
        .with_name("test_faults.py")
        .read_text()
        .split('FAULT_SPEC = """')[1]
        .split('"""')[0]
        .replace("seeds = 4", "seeds = 12")
        .replace("N = [48]", "N = [300]")
        .replace("epochs = 60", "epochs = 1500")
    )
    out = str(tmp_path / "kill.zarr")
    proc = subprocess.Popen(
        [sys.executable, "-m", "amsweep.sweeps.cli", "run", str(spec), "--out", out, "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_for_first_flush(proc, out)
    assert proc.poll() is None, "the sweep ended before the kill"
    time.sleep(2)  # the reaper polls once a second; let it see every Ray process
    table = process_table()
    ray_processes = {
        p
        for p in descendants({proc.pid}, table)
        if p[0] != proc.pid and "ray_reaper" not in Path(f"/proc/{p[0]}/cmdline").read_text(errors="replace")
    }
    assert len(ray_processes) >= 3, "a local Ray run has its GCS, raylet and workers under its driver"
    assert not [p for p in ray_processes if "autoscaler/_private/monitor.py" in _cmdline(p[0])], "Ray starts light"
    assert not [p for p in ray_processes if "dashboard/dashboard.py" in _cmdline(p[0])], "no API server (ray_local)"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20  # Ray's own agents lingered ~60 s before
    while _alive(ray_processes) and time.time() < deadline:
        time.sleep(0.5)
    assert not _alive(ray_processes)


def test_a_private_local_ray_starts_light_and_leaves_the_driver_environment_as_it_was(monkeypatch):
    """ray_local's levers: the pins reach the raylet's environment only while it starts, and this
    Ray still takes ``no_monitor`` (a Ray release without it would start the monitor again)."""
    import ray

    from amsweep.pipeline import ray_local

    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    monkeypatch.delenv("MKL_NUM_THREADS", raising=False)
    with ray_local.pinned_environ({"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}):
        assert (os.environ["OMP_NUM_THREADS"], os.environ["MKL_NUM_THREADS"]) == ("1", "1")
    assert os.environ["OMP_NUM_THREADS"] == "7" and "MKL_NUM_THREADS" not in os.environ
    original = ray._private.parameter.RayParams
    with ray_local.light_params(ray, {"OMP_NUM_THREADS": "1"}) as held:
        assert held["no_monitor"], "this Ray has no RayParams(no_monitor=): a local Ray starts its monitor again"
        assert held["raylet_env"], "this Ray has no RayParams(env_vars=): the pins go through the driver's environment"
        params = ray._private.parameter.RayParams(num_cpus=1, env_vars={"X": "y"})
        assert params.no_monitor is True and params.env_vars == {"X": "y", "OMP_NUM_THREADS": "1"}
        assert os.environ["OMP_NUM_THREADS"] == "7"
    assert ray._private.parameter.RayParams is original
