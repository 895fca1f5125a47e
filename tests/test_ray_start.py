"""A private local Ray starts in the background while the driver computes cells itself (issue 26):
the cube equals a serial run's bit for bit whoever computed each cell, a sweep that ends before
Ray is up says it ran in this process only, and a resumed cube's cells run on Ray only.

Each test runs its driver in a subprocess: the session's shared Ray (``ray_local``) would make
the executor join it instead of starting its own.
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import SerialExecutor
from amsweep.storage.cube import Cube
from amsweep.sweeps.runner import run
from tests.conftest import SMALL, assert_same_cube

ROOT = Path(__file__).resolve().parents[1]
MANY = {**copy.deepcopy(SMALL), "seeds": 10}  # 40 cells of 4 shapes
_seen: list[int] = []


def waits_for_ray(job):
    """The real cell; in the driver, every cell after its first waits until Ray is initialised, so
    the driver computes a few cells while Ray starts and Ray's workers the rest, whatever the
    machine's speed (on a worker Ray is always initialised)."""
    import ray

    from amsweep.pipeline.cell import run_cell

    _seen.append(1)
    while len(_seen) > 1 and not ray.is_initialized():
        time.sleep(0.01)
    return run_cell(job)


DRIVER = textwrap.dedent(
    """
    import json, sys
    import ray.cloudpickle
    from amsweep.pipeline import spec as spec_mod
    from amsweep.pipeline.executors import used
    from amsweep.pipeline.ray_executor import RayExecutor
    from amsweep.storage.cube import Cube
    from amsweep.sweeps.runner import run
    from tests import test_ray_start as here

    ray.cloudpickle.register_pickle_by_value(here)
    ex = RayExecutor(workers=2)
    starting = ex.starting
    try:
        report = run(Cube.create_or_open(sys.argv[1], spec_mod.from_dict(here.MANY)), ex, progress=False,
                     cell=here.waits_for_ray)
        out = {"starting": starting, "done": report.done, "local": ex.local_cells, "batches": ex.batches,
               "used": used(ex)}
    finally:
        ex.shutdown()
    print(json.dumps(out))
    """
)


def test_cells_the_driver_computes_while_ray_starts_give_the_serial_cube(tmp_path):
    serial = str(tmp_path / "serial.zarr")
    run(Cube.create_or_open(serial, spec_mod.from_dict(copy.deepcopy(MANY))), SerialExecutor(), progress=False)
    hybrid = str(tmp_path / "hybrid.zarr")
    proc = subprocess.run([sys.executable, "-c", DRIVER, hybrid], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["starting"] and out["done"] == 40, out
    assert out["local"] >= 2 and out["batches"] >= 1, out  # both computed cells
    assert f"{out['local']} cell(s) in this process while Ray started" in out["used"], out
    assert_same_cube(serial, hybrid)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "amsweep.sweeps.cli", "run", *args, "--executor", "ray", "--quiet"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_sweep_that_ends_before_ray_is_up_says_it_ran_here_and_a_resume_runs_on_ray(tmp_path):
    spec = tmp_path / "small.toml"
    spec.write_text(
        'name = "small"\nroot_seed = 11\nseeds = 1\nnoise = [0.0]\nP_test = 6\n'
        "[retrieval]\ntrain_starts = 8\ntest_starts = 6\nrandom_starts = 3\n"
        "[datasets.random]\nN = [32]\nalpha = [0.1]\n[rules.hebb]\n"
    )
    out = str(tmp_path / "c.zarr")
    first = cli(str(spec), "--out", out)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "local Ray starting on this machine in the background" in first.stdout, first.stdout
    # one cell: done here before Ray (seconds to start) is up, and said so
    assert "cells ran in this process only (1 cell(s)): the sweep finished before Ray was up" in first.stdout
    spec.write_text(spec.read_text().replace("seeds = 1", "seeds = 2"))  # extend: the cube has a run record
    second = cli(str(spec), "--out", out)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "1 task(s) to run of 2" in second.stdout, second.stdout
    assert "cells ran on 1 node(s): 127.0.0.1" in second.stdout, second.stdout  # on Ray only
