"""Fan-out at scale: small cells through local Ray in batches, its overhead, the driver's limits.

Rows (one run, local Ray with 2 workers on this machine):
- small cells (N = 32, Hebb and PLM, 4 noise levels; ~3 ms each with the per-cell thread
  pinning of before, ~1.3-1.7 ms now) end to end through ``runner.run`` and ``RayExecutor``
  with adaptive batches, into a format-2 cube on local disk: cells/s, batches, driver CPU per
  cell and peak RSS;
- Ray's overhead per small cell relative to the cell's own compute: (2 T_ray - T_serial) / T_serial
  per cell, the serial run being the same runner in process;
- Ray 2 workers / serial on ~1 s cells (``sweep_overhead``);
- Ray 2 workers / serial end to end on the 20,000-cell spec: ``amsweep run --executor ray`` and
  ``--executor serial`` as separate commands, alternated, so Python's start, the imports, Ray's start
  and stop and the cube's creation all count (``end_to_end``);
- the driver alone: a 10^6-cell sweep of null cells (a fixed result, no compute) through the
  same path into a cube, so the workers are never the limit: the driver's cells/s and peak RSS.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks import sweep_overhead
from benchmarks._harness import Row, ratio_row
from benchmarks.memory import _reset_peak_rss, _status_kib
from amsweep.sweeps import runner
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.cell import run_cell
from amsweep.pipeline.outcomes import CellResult
from amsweep.pipeline.executors import SerialExecutor
from amsweep.pipeline.spec import CellJob

TARGET_RATE = 1500.0
TARGET_OVERHEAD = 0.05
TARGET_RSS_GIB = 1.0
TARGET_END_TO_END = 1.5
END_TO_END_CELLS = 20_000
WORKERS = 2
LOADS = (0.1, 0.2, 0.3, 0.4, 0.5)


def small_spec(cells: int, name: str = "scale") -> dict[str, Any]:
    """``cells`` small cells: random N = 32 at 5 loads, Hebb and PLM (20 epochs), seeds innermost."""
    return {
        "name": name,
        "root_seed": 9,
        "seeds": max(1, cells // (2 * len(LOADS))),
        "noise": [0.0, 0.1, 0.2, 0.3],
        "P_test": 32,
        "retrieval": {"train_starts": 100, "test_starts": 32, "random_starts": 20},
        "datasets": {"random": {"N": [32], "alpha": list(LOADS)}},
        "rules": {"hebb": {}, "plm": {"epochs": 20}},
    }


_NULL: dict[str, Any] = {}


def null_cell(job: CellJob) -> CellResult:
    """A fixed result (the first real one this worker computed) under the task's index: no compute."""
    if "values" not in _NULL:
        _NULL["values"] = run_cell(job).values
    return CellResult(job.task.index, _NULL["values"])


def children_cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by every live descendant of this process: the local
    Ray's GCS, raylet, agents and workers. With the driver's own, what a run cost the machine,
    whatever else the shared machine was running (wall time is not, CPU time nearly is)."""
    from amsweep.pipeline.ray_reaper import descendants, process_table

    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid, _ in descendants({os.getpid()}, process_table()):
        if pid == os.getpid():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / ticks


def _run(raw: dict[str, Any], executor: Any, root: Path, cell=run_cell) -> dict[str, float]:
    """One sweep into a new cube: wall, driver CPU and Ray's CPU seconds, driver peak RSS, cells done
    (creating the cube is counted: it is part of a run)."""
    from amsweep.storage.cube import Cube

    sweep = spec_mod.from_dict(raw)
    exact = _reset_peak_rss()
    ray0, cpu0, t0 = children_cpu_seconds(), time.process_time(), time.perf_counter()
    with Cube.create_or_open(str(root / f"{raw['name']}-{time.monotonic_ns()}.zarr"), sweep) as cube:
        report = runner.run(cube, executor, progress=False, cell=cell)
    wall, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    ray_cpu = children_cpu_seconds() - ray0
    if report.failed or report.remaining:
        raise RuntimeError(f"sweep {raw['name']} did not complete: {report}")
    return {
        "wall": wall,
        "cpu": cpu,
        "ray_cpu": ray_cpu,
        "rss": 1024 * _status_kib("VmHWM"),
        "rss_exact": exact,
        "cells": report.done,
    }


def spec_toml(raw: dict[str, Any]) -> str:
    """``small_spec``'s dict as the TOML file ``amsweep run`` reads (scalars, lists, two levels of tables)."""

    def value(v: Any) -> str:
        if isinstance(v, str):
            return f'"{v}"'
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return repr(v)

    lines = [f"{k} = {value(v)}" for k, v in raw.items() if not isinstance(v, dict)]
    for table, body in raw.items():
        if not isinstance(body, dict):
            continue
        flat = {k: v for k, v in body.items() if not isinstance(v, dict)}
        if flat:
            lines += [f"[{table}]", *(f"{k} = {value(v)}" for k, v in flat.items())]
        for name, sub in body.items():
            if isinstance(sub, dict):
                lines += [f"[{table}.{name}]", *(f"{k} = {value(v)}" for k, v in sub.items())]
    return "\n".join(lines) + "\n"


def command_seconds(spec: Path, out: Path, executor: str) -> tuple[float, str]:
    """Wall seconds of one ``amsweep run`` in a fresh process (interpreter start to exit), and its output."""
    argv = [sys.executable, "-m", "amsweep.sweeps.cli", "run", str(spec), "--out", str(out), "--executor", executor]
    argv += ["--workers", str(WORKERS), "--quiet"] if executor == "ray" else ["--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=3600)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stdout}{proc.stderr}")
    return wall, proc.stdout


def end_to_end(tiny: bool = False, repeats: int = 2) -> Row:
    """Ray with WORKERS workers / serial, each a whole ``amsweep run`` into a new cube, alternated."""
    cells = 200 if tiny else END_TO_END_CELLS
    load = os.getloadavg()
    t_serial: list[float] = []
    t_ray: list[float] = []
    said = ""
    with tempfile.TemporaryDirectory(prefix="amsweep-e2e-") as tmp:
        spec = Path(tmp) / "e2e.toml"
        spec.write_text(spec_toml(small_spec(cells, "e2e")))
        for r in range(max(1, repeats)):
            pair = [("serial", t_serial), ("ray", t_ray)]
            for executor, times in pair if r % 2 == 0 else pair[::-1]:
                wall, out = command_seconds(spec, Path(tmp) / f"{executor}-{r}.zarr", executor)
                times.append(wall)
                if executor == "ray":
                    said = next((line for line in out.splitlines() if line.startswith("cells ran")), said)
    end_load = os.getloadavg()
    return ratio_row(
        f"{cells:,}-cell spec end to end, Ray {WORKERS} workers / serial",
        t_serial,
        t_ray,
        ">=",
        TARGET_END_TO_END,
        f"`amsweep run --executor ray --workers {WORKERS}` against `--executor serial`, each a fresh process "
        f"(interpreter start, imports, Ray's start and stop, cube creation counted), alternated, "
        f"{len(t_ray)} repeat(s): serial {statistics.median(t_serial):.1f} s, Ray {statistics.median(t_ray):.1f} s "
        f"(medians); the last Ray run said '{said}'; small_spec({cells}), N = 32; load average "
        f"{load[0]:.2f} at start, {end_load[0]:.2f} at end",
    )


def run(tiny: bool = False, repeats: int = 2) -> list[Row]:
    import ray.cloudpickle

    from amsweep.pipeline.ray_executor import RayExecutor

    ray.cloudpickle.register_pickle_by_value(__import__(__name__, fromlist=["_"]))
    n_ray, n_serial, n_null = (200, 100, 2_000) if tiny else (100_000, 5_000, 1_000_000)
    load = os.getloadavg()
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="amsweep-scale-") as tmp:
        root = Path(tmp)
        _run(small_spec(20, "warm"), SerialExecutor(), root)
        serial = _run(small_spec(n_serial, "serial"), SerialExecutor(), root)
        t0 = time.perf_counter()
        executor = RayExecutor(workers=WORKERS)
        init_s = time.perf_counter() - t0
        try:
            _run(small_spec(2_000 if not tiny else 20, "warm_ray"), executor, root)  # workers import, numba load
            small = _run(small_spec(n_ray, "small"), executor, root)
            small_batches, cell_cpu = executor.batches, executor.cell_cpu_seconds
            null = _run(small_spec(n_null, "null"), executor, root, cell=null_cell)
            null_batches = executor.batches
        finally:
            executor.shutdown()
    per_cell = serial["wall"] / serial["cells"]
    serial_cpu = serial["cpu"] / serial["cells"]
    rate = small["cells"] / small["wall"]
    ray_cpu = (small["cpu"] + small["ray_cpu"]) / small["cells"]  # driver + every Ray process
    compute = cell_cpu / small["cells"]  # CPU the workers spent inside cells, same run
    overhead = (ray_cpu - compute) / compute
    serial_overhead = (ray_cpu - serial_cpu) / serial_cpu
    wall_overhead = (WORKERS * small["wall"] / small["cells"] - per_cell) / per_cell
    driver_cpu = small["cpu"] / small["cells"]
    rss = "" if small["rss_exact"] else " (peak since start, reset not allowed)"
    end_load = os.getloadavg()
    rows.append(
        Row(
            f"small cells through local Ray, {WORKERS} workers: cells/s ({small['cells']:,} cells, N = 32)",
            rate,
            rate,
            rate,
            1,
            f">= {TARGET_RATE:g}",
            rate >= TARGET_RATE,
            f"wall clock, end to end through runner.run and RayExecutor (adaptive batches: {small_batches} Ray "
            f"tasks, {small['cells'] / small_batches:.0f} cells each on average) into a format-2 cube on local "
            f"disk. Wall {small['wall']:.1f} s; CPU of driver + Ray {1e3 * ray_cpu:.2f} ms "
            f"per cell, i.e. {WORKERS / ray_cpu:,.0f} cells/s if the {WORKERS} cores were this run's alone; driver "
            f"CPU {1e6 * driver_cpu:.0f} us per cell; driver peak RSS {small['rss'] / 2**20:.0f} MiB{rss}; cells "
            f"of Hebb and PLM (20 epochs), 4 noise levels, 100/32/20 starts; ray.init {init_s:.1f} s; load "
            f"average {load[0]:.2f} at start, {end_load[0]:.2f} at end (machine shared: other jobs' load takes "
            f"cores from the workers)",
        )
    )
    rows.append(
        Row(
            "Ray overhead per small cell / the cell's compute (CPU time)",
            overhead,
            overhead,
            overhead,
            1,
            f"<= {TARGET_OVERHEAD:g}",
            overhead <= TARGET_OVERHEAD,
            f"same run: (CPU of driver + every Ray process - CPU inside the cells) / CPU inside the cells = "
            f"({1e3 * ray_cpu:.3f} - {1e3 * compute:.3f}) / {1e3 * compute:.3f} ms per cell (CPU time, so other "
            f"jobs on the shared machine do not count). Against a separate serial run ({serial['cells']:,} cells, "
            f"{1e3 * serial_cpu:.3f} ms CPU per cell): {serial_overhead:+.2f}; by wall clock, "
            f"({WORKERS} T_ray - T_serial) / T_serial = {wall_overhead:.2f} "
            f"({1e3 * WORKERS * small['wall'] / small['cells']:.3f} "
            f"ms of the {WORKERS} cores per cell against {1e3 * per_cell:.3f} ms), which also counts the cores "
            f"other jobs took",
        )
    )
    null_rate = null["cells"] / null["wall"]
    rows.append(
        Row(
            f"driver alone: peak RSS (GiB) of a {null['cells']:,}-cell sweep of null cells",
            null["rss"] / 2**30,
            null["rss"] / 2**30,
            null["rss"] / 2**30,
            1,
            f"<= {TARGET_RSS_GIB:g}",
            null["rss"] / 2**30 <= TARGET_RSS_GIB,
            f"null cells (a fixed result, no compute) through the same runner and RayExecutor into a cube, so the "
            f"driver is the limit: {null_rate:,.0f} cells/s, "
            f"driver CPU {1e6 * null['cpu'] / null['cells']:.0f} us per cell, "
            f"{null_batches} Ray tasks; pending cells generated lazily, status grid in memory (1 byte a cell)",
        )
    )
    rows.append(end_to_end(tiny, repeats))
    if not tiny:  # the tiny path of sweep_overhead has its own smoke test
        rows.extend(sweep_overhead.run(tiny=tiny, repeats=repeats))
    return rows
