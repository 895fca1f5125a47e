"""SIGTERM (Slurm's preemption and time limit, ``scancel``, ``ray job stop``) stops a run like Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path


from amsweep.pipeline import spec as spec_mod
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE
from tests.test_history import BASE


def _records(cube: str) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(Path(cube, "_amsweep", "runs").glob("*.json"))]


def test_sigterm_stops_a_ray_driver_as_ctrl_c_does(tmp_path):
    """Ray's driver installs its own SIGTERM handler (sys.exit) in ``ray.init``; the run's handler
    must win while cells run. Before, the driver aborted (exit -6) with its record "running". The
    serial driver: tests/test_attack23a_sigterm.py."""
    executor = "ray"
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
