"""SIGTERM (Slurm's preemption and time limit, ``scancel``, ``ray job stop``) stops a run like Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import SerialExecutor
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE
from amsweep.sweeps.runner import run
from tests.conftest import assert_same_cube
from tests.test_history import BASE


def _records(cube: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(cube, "_amsweep", "runs").glob("*.json"))]


@pytest.mark.parametrize("executor", ["serial", "ray"])
def test_sigterm_flushes_finished_cells_records_interrupted_and_the_resume_is_exact(tmp_path, executor):
    """Before: a serial driver died at once (its record left "running", its buffer lost) and a Ray
    driver exited through Ray's handler (recorded as failed: SystemExit)."""
    spec_path = tmp_path / "s.toml"
    spec_path.write_text(BASE.replace("NS", "300").replace("seeds = 2", "seeds = 8"))
    cube = str(tmp_path / "s.zarr")
    cmd = [sys.executable, "-m", "amsweep.sweeps.cli", "run", str(spec_path), "--out", cube, "--quiet"]
    proc = subprocess.Popen(
        cmd + ["--executor", executor] + (["--workers", "1"] if executor == "ray" else []),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    deadline = time.time() + 300
    while proc.poll() is None and time.time() < deadline:  # until the run's record counts results
        if any(r["done"] > 0 for r in _records(cube)):
            break
        time.sleep(0.05)
    assert proc.poll() is None, "the run ended before the signal"
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 130, out
    assert "interrupted: finished results are saved" in out, out
    [record] = _records(cube)
    assert record["ending"] == "interrupted", record
    done = int((Cube.open(cube).status() == DONE).sum())
    assert record["done"] == done > 0  # the final flush wrote what had finished, and said so
    sweep = spec_mod.load(spec_path)
    assert done < len(list(sweep.tasks()))
    if executor == "ray":
        return  # the resume's exactness does not depend on where the cells ran
    run(Cube.create_or_open(cube, sweep), SerialExecutor(), progress=False)
    reference = str(tmp_path / "straight.zarr")
    run(Cube.create_or_open(reference, sweep), SerialExecutor(), progress=False)
    assert_same_cube(cube, reference)
