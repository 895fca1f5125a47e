"""Sweep overhead: the same grid of ~1-second cells through Ray on 2 workers and serially.

Everything goes through the real path: spec -> cube on disk -> ``amsweep.sweeps.runner.run`` with
``SerialExecutor`` or ``RayExecutor`` (cells in batches sized from measured durations, threads
pinned, results written by the driver). The cell is a PLM task on random patterns whose epoch count is calibrated here
so that one cell takes about a second. Reported alongside the speed-up: Ray's start-up, the
latency of the first tasks on fresh workers (the numba cache on disk is warm: this process
compiled or loaded every kernel before), and the per-task overhead measured on a grid of
trivially small cells, (2 T_ray - T_serial) / n, the worker time each cell costs beyond its
computation (batches amortise Ray's per-task cost over their cells).
"""

from __future__ import annotations

import copy
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._harness import Row, ratio_row
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.cell import run_cell
from amsweep.pipeline.executors import RayExecutor, SerialExecutor
from amsweep.pipeline.ray_executor import PINNED_THREADS, keep_ray_on_loopback
from amsweep.sweeps import runner
from amsweep.storage.cube import Cube

TARGET = 1.8
WORKERS = 2


def grid(epochs: int, cells: int, N: int, name: str) -> dict[str, Any]:
    """A spec of ``cells`` PLM tasks (one per seed) on random patterns at alpha = 1."""
    return {
        "name": name,
        "root_seed": 7,
        "seeds": cells,
        "noise": [0.1],
        "P_test": 20,
        "retrieval": {"train_starts": 50, "test_starts": 20, "random_starts": 5},
        "datasets": {"random": {"N": [N], "alpha": [1.0]}},
        "rules": {"plm": {"epochs": epochs, "lr": 1.0}},
    }


def _cell_seconds(raw: dict[str, Any]) -> float:
    sweep = spec_mod.from_dict(raw)
    task = next(sweep.tasks())
    t0 = time.perf_counter()
    run_cell(sweep.job(task))
    return time.perf_counter() - t0


def calibrate(N: int, seconds: float) -> int:
    """Epochs that make one cell last about ``seconds`` (cost = fixed part + epochs x per-epoch)."""
    e0 = 50
    short = min(_cell_seconds(grid(e0, 1, N, "calibrate")) for _ in range(2))
    long = min(_cell_seconds(grid(2 * e0, 1, N, "calibrate")) for _ in range(2))
    per_epoch = max((long - short) / e0, 1e-6)
    return max(1, round((seconds - (short - e0 * per_epoch)) / per_epoch))


def start_local_ray() -> bool:
    """A private local Ray with WORKERS CPUs, as RayExecutor would start it; False if one is up.

    address='local': a bare ray.init() joins any cluster already started on this machine
    (its address is in /tmp/ray/ray_current_cluster), which RayExecutor then refuses.
    """
    import ray

    if ray.is_initialized():
        return False
    keep_ray_on_loopback(None)
    ray.init(
        address="local",
        num_cpus=WORKERS,
        runtime_env={"env_vars": dict(PINNED_THREADS)},
        include_dashboard=False,
        logging_level="ERROR",
    )
    return True


def timed_run(raw: dict[str, Any], executor: Any, root: Path) -> float:
    """Wall seconds of ``run`` on a fresh cube; every cell must come back done."""
    path = root / f"{raw['name']}-{time.monotonic_ns()}.zarr"
    cube = Cube.create_or_open(str(path), spec_mod.from_dict(copy.deepcopy(raw)))
    t0 = time.perf_counter()
    report = runner.run(cube, executor, progress=False)
    wall = time.perf_counter() - t0
    if report.done != raw["seeds"] or report.failed:
        raise RuntimeError(f"sweep {raw['name']} did not complete: {report}")
    return wall


def run(tiny: bool = False, repeats: int = 2) -> list[Row]:
    N, cells, cell_s, trivial = (32, 4, 0.0, 8) if tiny else (400, 12, 1.0, 40)
    epochs = 5 if tiny else calibrate(N, cell_s)
    work = grid(epochs, cells, N, "overhead_grid")
    light = grid(1, trivial, 16, "overhead_trivial")
    with tempfile.TemporaryDirectory(prefix="amsweep-bench-") as tmp:
        root = Path(tmp)
        serial = SerialExecutor()
        timed_run(grid(1, 1, 16, "warm_serial"), serial, root)
        t0 = time.perf_counter()
        owns = start_local_ray()
        ray = RayExecutor(workers=WORKERS)
        init_s = time.perf_counter() - t0
        try:
            first_s = timed_run(grid(1, WORKERS, 16, "first_tasks"), ray, root)
            t_serial, t_ray = [], []
            for r in range(repeats):
                pair = [("serial", serial), ("ray", ray)]
                for label, ex in pair if r % 2 == 0 else pair[::-1]:
                    (t_serial if label == "serial" else t_ray).append(timed_run(work, ex, root))
            light_serial = timed_run(light, serial, root)
            light_ray = timed_run(light, ray, root)
        finally:
            ray.shutdown()
            if owns:
                import ray as ray_module

                ray_module.shutdown()
    overhead_ms = 1e3 * (WORKERS * light_ray - light_serial) / trivial
    per_cell = min(t_serial) / cells
    return [
        ratio_row(
            f"sweep speed-up, Ray {WORKERS} workers / serial, {cells} cells of ~{cell_s:g} s",
            t_serial,
            t_ray,
            ">=",
            TARGET,
            f"PLM N = P = {N}, {epochs} epochs, real runner and cube on disk; serial "
            f"{min(t_serial):.1f} s ({per_cell:.2f} s per cell), Ray {min(t_ray):.1f} s; per-cell overhead "
            f"{overhead_ms:.0f} ms (grid of {trivial} trivial cells: serial {light_serial:.2f} s, Ray "
            f"{light_ray:.2f} s); first {WORKERS} tasks on fresh workers {1e3 * first_s:.0f} ms wall (numba cache "
            f"warm); ray.init {init_s:.1f} s ({'started here' if owns else 'already running'})",
        )
    ]
