"""Faults: a driver killed at random moments, damaged chunks, read-only paths. Nothing is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import SerialExecutor
from amsweep.sweeps.runner import run
from amsweep.storage.check import check, repair
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE, PENDING
from amsweep.storage.zarr_documents import CREATING
from tests import cube_damage
from tests.conftest import StopAfter, assert_same_cube, wait_for_first_flush

FAULT_SPEC = """
name = "faults"
root_seed = 5
seeds = 4
noise = [0.0, 0.2]
P_test = 6
[retrieval]
train_starts = 8
test_starts = 6
random_starts = 3
[datasets.random]
N = [48]
alpha = [0.1, 0.3, 0.5]
[rules.hebb]
[rules.plm]
epochs = 60
"""


# 72 tasks, half of them PLM at N = 400 (~0.15 s each): after the first flush seconds of work
# remain, so a signal or a full disk lands mid-sweep even on a fast machine.
HEAVY_SPEC = (
    FAULT_SPEC.replace("seeds = 4", "seeds = 12")
    .replace("N = [48]", "N = [400]")
    .replace("epochs = 60", "epochs = 1000")
)


def amsweep(*args: str, **kw) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "amsweep.sweeps.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        **kw,
    )


def test_driver_killed_at_random_moments_then_resumed_equals_straight_run(tmp_path):
    """SIGKILL the driver (no chance to flush) at random times, three times, then finish."""
    spec_path = tmp_path / "faults.toml"
    spec_path.write_text(FAULT_SPEC)
    sweep = spec_mod.load(spec_path)
    straight = str(tmp_path / "straight.zarr")
    run(Cube.create_or_open(straight, sweep), SerialExecutor(), progress=False)
    killed = str(tmp_path / "killed.zarr")
    rng = np.random.default_rng()  # kill points differ on every CI run, by design
    progress = []
    for _ in range(3):
        proc = amsweep("run", str(spec_path), "--out", killed, "--executor", "serial", "--quiet")
        time.sleep(float(rng.uniform(1.0, 4.0)))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        root = Path(killed, "zarr.json")
        if root.exists() and CREATING in json.loads(root.read_text()).get("attributes", {}):
            progress.append(0)  # killed while creating the cube: the template the next run rebuilds
        elif root.exists():
            progress.append(int((Cube.open(killed).status() == DONE).sum()))
    final = amsweep("run", str(spec_path), "--out", killed, "--executor", "serial", "--quiet")
    out, _ = final.communicate(timeout=300)
    assert final.returncode == 0, out
    assert progress == sorted(progress), f"done counts went backwards: {progress}"
    assert check(Cube.open(killed)).ok
    assert_same_cube(straight, killed)


def test_damaged_chunk_is_found_repaired_and_recomputed(tmp_path, small_sweep):
    path = str(tmp_path / "dmg.zarr")
    run(Cube.create_or_open(path, small_sweep), SerialExecutor(), progress=False)
    reference = str(tmp_path / "ref.zarr")
    run(Cube.create_or_open(reference, small_sweep), SerialExecutor(), progress=False)
    file, offset, length = cube_damage.chunk_span(path, "m_train", (0, 0, 1, 1, 0))
    data = bytearray(file.read_bytes())
    data[offset : offset + length] = b"garbage!" * (length // 8) + b"?" * (length % 8)
    file.write_bytes(bytes(data))
    report = check(Cube.open(path))
    assert not report.ok
    assert any("m_train fails its checksum" in p and "'rule': 'plm'" in p for p in report.problems)
    # Format 3: garbage in an inner chunk damages its every task (here the tiny cube's one chunk).
    everything = [tuple(int(i) for i in x) for x in np.ndindex(*small_sweep.shape)]
    assert sorted(report.damaged) == everything
    assert repair(Cube.open(path), report) == len(everything)
    assert Cube.open(path).status()[0, 0, 1, 1, 0] == PENDING
    again = run(Cube.create_or_open(path, small_sweep), SerialExecutor(), progress=False)
    assert again.done == len(everything)
    assert check(Cube.open(path)).ok
    assert_same_cube(path, reference)


def test_cli_check_and_status_on_a_healthy_cube(tmp_path):
    out = str(tmp_path / "smoke.zarr")
    proc = amsweep("run", "smoke", "--out", out, "--executor", "serial", "--quiet")
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, text
    proc = amsweep("check", out)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0 and ": ok" in text, text
    proc = amsweep("status", out)
    text, _ = proc.communicate(timeout=120)
    assert "done 8, pending 0, failed 0" in text, text


def _freeze(path: Path, on: bool) -> None:
    """Make a tree read-only even for root (immutable attribute); chmod for other users."""
    if os.geteuid() == 0:
        subprocess.run(["chattr", "-R", "+i" if on else "-i", str(path)], check=True)
    else:
        for p in [path, *path.rglob("*")]:
            p.chmod((0o555 if p.is_dir() else 0o444) if on else (0o755 if p.is_dir() else 0o644))


def test_read_only_cube_gives_a_clear_error_before_work_and_keeps_results(tmp_path):
    spec_path = tmp_path / "faults.toml"
    spec_path.write_text(FAULT_SPEC)
    sweep = spec_mod.load(spec_path)
    path = tmp_path / "ro.zarr"
    run(Cube.create_or_open(str(path), sweep), StopAfter(4), progress=False, flush_every=1)
    before = Cube.open(str(path)).status().copy()
    _freeze(path, True)
    try:
        proc = amsweep("run", str(spec_path), "--out", str(path), "--executor", "serial")
        text, _ = proc.communicate(timeout=120)
    finally:
        _freeze(path, False)
    assert proc.returncode == 2, text
    assert "cannot write to the cube" in text and "Traceback" not in text
    np.testing.assert_array_equal(Cube.open(str(path)).status(), before)
    assert (before == DONE).sum() == 4


def test_cli_errors_are_one_clear_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(FAULT_SPEC.replace("epochs = 60", "epochs = -3"))
    proc = amsweep("run", str(bad), "--out", str(tmp_path / "x.zarr"))
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2
    assert "rules.plm: parameter 'epochs' = -3 is out of range" in text
    assert "Traceback" not in text
    assert not (tmp_path / "x.zarr").exists()  # nothing written for an invalid spec


def test_ctrl_c_on_a_ray_run_stops_cleanly_and_resumes(tmp_path, straight_heavy):
    """SIGINT (what Ctrl-C sends) during a local-Ray run: finished results are flushed, the
    command says how to resume and exits 130, and the resumed cube equals a serial run."""
    spec_path = tmp_path / "ctrl_c.toml"
    spec_path.write_text(HEAVY_SPEC)
    out = str(tmp_path / "ctrl_c.zarr")
    # Default SIGINT disposition in the child: a shell that starts pytest in the background (`&`,
    # nohup) makes it ignore SIGINT, children inherit that, and Python then installs no handler.
    proc = subprocess.Popen(
        [sys.executable, "-m", "amsweep.sweeps.cli", "run", str(spec_path), "--out", out, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wait_for_first_flush(proc, out)
    assert proc.poll() is None, "the sweep ended before Ctrl-C"
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, text
    assert "task(s) to run" in text
    assert "interrupted: finished results are saved" in text, text
    sweep = spec_mod.load(spec_path)
    done = int((Cube.open(out).status() == DONE).sum())
    assert done < len(list(sweep.tasks()))
    resume = subprocess.run(
        [
            sys.executable,
            "-m",
            "amsweep.sweeps.cli",
            "run",
            str(spec_path),
            "--out",
            out,
            "--executor",
            "serial",
            "--quiet",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert resume.returncode == 0, resume.stdout + resume.stderr
    assert f"{len(list(sweep.tasks())) - done} task(s) to run" in resume.stdout
    assert sweep.spec_hash == straight_heavy[0].spec_hash
    assert_same_cube(out, straight_heavy[1])


def fill_up(folder: Path) -> Path:
    """Write a file until the filesystem has no space left."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as f:  # unbuffered: no unwritten rest for close() to fail on
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return filler


def test_full_disk_gives_a_clear_error_keeps_done_results_and_resumes(tmp_path, tiny_disk, straight_heavy):
    spec_path = tmp_path / "faults.toml"
    spec_path.write_text(HEAVY_SPEC)
    sweep = spec_mod.load(spec_path)
    path = tiny_disk / "full.zarr"
    proc = amsweep("run", str(spec_path), "--out", str(path), "--executor", "serial", "--quiet")
    wait_for_first_flush(proc, str(path))
    assert proc.poll() is None, "the sweep ended before the disk filled up"
    filler = fill_up(tiny_disk)
    text, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2, text
    assert "writing results failed" in text and "No space left" in text and "Traceback" not in text
    filler.unlink()
    status = Cube.open(str(path)).status()
    done = int((status == DONE).sum())
    total = len(list(sweep.tasks()))
    assert 0 < done < total  # the first flush landed, a later one hit the full disk
    assert check(Cube.open(str(path))).ok  # what is marked done is on disk, whole
    moved = tmp_path / "moved.zarr"
    subprocess.run(["cp", "-r", str(path), str(moved)], check=True)
    resumed = run(Cube.create_or_open(str(moved), sweep), SerialExecutor(), progress=False)
    assert resumed.done == total - done
    assert sweep.spec_hash == straight_heavy[0].spec_hash
    assert_same_cube(str(moved), straight_heavy[1])


def crash_one_cell(job):
    """Kills its worker process (as a segfault would) for one cell; the others are real cells."""
    from amsweep.pipeline.cell import run_cell

    if job.task.index == (0, 0, 1, 1, 2):
        os._exit(1)
    return run_cell(job)


def test_a_cell_that_keeps_killing_its_worker_fails_alone(tmp_path, ray_local):
    import ray.cloudpickle

    from amsweep.pipeline.executors import RayExecutor

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    spec_path = tmp_path / "faults.toml"
    spec_path.write_text(FAULT_SPEC)
    sweep = spec_mod.load(spec_path)
    path = str(tmp_path / "crash.zarr")
    report = run(Cube.create_or_open(path, sweep), RayExecutor(max_retries=1), progress=False, cell=crash_one_cell)
    assert report.failed == 1 and report.done == 23, report
    failures = Cube.open(path).failures()
    assert [tuple(f["index"]) for f in failures] == [(0, 0, 1, 1, 2)]
    assert "died" in failures[0]["error"].lower() or "crash" in failures[0]["error"].lower(), failures
    again = run(Cube.create_or_open(path, sweep), SerialExecutor(), progress=False)
    assert again.done == 1 and (Cube.open(path).status() == DONE).all()
