"""Shared fixtures: spec builders and one local Ray session per test run (starting Ray is slow)."""

from __future__ import annotations

import os

# Local Ray listens on loopback only (see amsweep.pipeline.ray_executor.keep_ray_on_loopback); Ray reads this
# switch when first imported, and test collection imports it, so it is set before anything else.
os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")

import copy
import json
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import SerialExecutor
from amsweep.pipeline.metric_table import METRICS

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


def require_shared(path: Path) -> Path:
    """A full real data file from ../shared/data: CI always has it, so there its absence fails;
    on a clone without ../shared the test is skipped (the bundled-subset tests still run)."""
    if path.exists():
        return path
    if os.environ.get("CI"):
        pytest.fail(f"real data missing at {path}: CI runs with ../shared beside the clone")
    pytest.skip(
        f"full data set not found at {path} (../shared/data beside the clone); "
        "the tests on the bundled subset ran, CI runs these on the full files"
    )


SMALL: dict[str, Any] = {
    "name": "tiny",
    "root_seed": 11,
    "seeds": 2,
    "noise": [0.0, 0.15],
    "P_test": 6,
    "retrieval": {"train_starts": 8, "test_starts": 6, "random_starts": 3},
    "datasets": {"random": {"N": [48], "alpha": [0.05, 0.3]}},
    "rules": {"hebb": {}, "plm": {"epochs": 30, "lr": 5.0}},
}


@pytest.fixture
def small_raw() -> dict[str, Any]:
    """A spec dict that runs in well under a second serially; tests mutate their own copy."""
    return copy.deepcopy(SMALL)


@pytest.fixture
def small_sweep(small_raw) -> spec_mod.Sweep:
    return spec_mod.from_dict(small_raw)


@pytest.fixture(scope="session")
def ray_local():
    """A local Ray with 2 CPUs shared by every test that needs one."""
    import ray

    from amsweep.pipeline.ray_executor import PINNED_THREADS

    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        logging_level="ERROR",
        runtime_env={"env_vars": dict(PINNED_THREADS)},
    )
    yield ray
    ray.shutdown()


class StopAfter(SerialExecutor):
    """Serial executor that presses Ctrl-C after k finished cells, as a user would."""

    def __init__(self, k: int) -> None:
        self.k = k

    def map_unordered(self, fn, jobs, total=None):
        for i, item in enumerate(super().map_unordered(fn, jobs, total)):
            if i == self.k:
                raise KeyboardInterrupt
            yield item


def wait_for_first_flush(proc: subprocess.Popen, cube: str, timeout: float = 120.0) -> None:
    """Poll the cube's run record until the driver has written its first results (or ended):
    the moment the fault tests interrupt it, whatever the machine's speed."""
    deadline = time.time() + timeout
    while proc.poll() is None and time.time() < deadline:
        if latest_run_done(cube) > 0:
            return
        time.sleep(0.1)


def latest_run_done(cube: str) -> int:
    """Cells done so far by the cube's latest run (0 before its first flush): its history record."""
    records = sorted(Path(cube, "_amsweep", "runs").glob("*.json"))
    return json.loads(records[-1].read_text())["done"] if records else 0


def cube_values(path: str) -> dict[str, np.ndarray]:
    """Every deterministic variable of a cube, loaded (timings excluded: wall time is not a result)."""
    from amsweep.storage.query import open_cube

    ds = open_cube(path)
    names = ["status"] + [n for n, m in METRICS.items() if m.deterministic and n in ds]
    return {n: ds[n].values for n in names}


def assert_same_cube(a: str, b: str) -> None:
    va, vb = cube_values(a), cube_values(b)
    assert va.keys() == vb.keys(), f"the cubes hold different variables: {sorted(va.keys() ^ vb.keys())}"
    for name in va:
        np.testing.assert_array_equal(va[name], vb[name], err_msg=f"variable {name} differs")


@pytest.fixture(autouse=True)
def one_blas_thread():
    """One BLAS thread in every test, as in production cells (and threaded BLAS on a shared
    2-core CI machine is slower, not faster)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture
def tiny_disk(tmp_path):
    """A 4 MiB tmpfs: a real filesystem that really fills up (mounting one needs root, which CI has)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    made = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if made.returncode != 0:
        pytest.skip(f"a full disk is a small tmpfs, which needs root: {made.stderr.strip()}")
    yield mount
    subprocess.run(["umount", str(mount)], check=True)


def assert_cube_has(path: str, want: dict[str, np.ndarray]) -> None:
    """:func:`assert_same_cube` against a reference's :func:`cube_values` loaded once: the kill-at-every-write
    loops compare dozens of cubes with one reference, and reloading it each time was half their comparing."""
    got = cube_values(path)
    assert got.keys() == want.keys(), f"the cubes hold different variables: {sorted(got.keys() ^ want.keys())}"
    for name in got:
        np.testing.assert_array_equal(got[name], want[name], err_msg=f"variable {name} differs")


@pytest.fixture(scope="session")
def straight_heavy(tmp_path_factory) -> tuple[spec_mod.Sweep, str]:
    """tests.test_faults.HEAVY_SPEC run serially without interruption, once per test run: what every
    interrupted and resumed heavy run must equal. Three tests computed it each (~20 s apiece, loaded)."""
    from amsweep.storage.cube import Cube
    from amsweep.sweeps.runner import run
    from tests.test_faults import HEAVY_SPEC

    folder = tmp_path_factory.mktemp("straight_heavy")
    spec = folder / "heavy.toml"
    spec.write_text(HEAVY_SPEC)
    sweep = spec_mod.load(spec)
    path = str(folder / "straight.zarr")
    run(Cube.create_or_open(path, sweep), SerialExecutor(), progress=False)
    return sweep, path
