"""Cube format 3 at 10^5 cells: objects, driver write rate, status read and one-metric table
(plain Zarr readers and the writers issue 26 compares it with: ``benchmarks/reads.py``).

Results are synthetic (every metric of every cell set, no cell computed), so the rows measure
the cube alone. The driver flushes 2,000 results at a time: what a 1,000-cells/s fan-out hands
it every two seconds. Local disk and moto's S3 server on loopback (no network latency: a real
S3 adds ~10-30 ms per request, and a flush makes ~20 requests whatever its size).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from benchmarks._harness import Row
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.outcomes import CellResult
from amsweep.pipeline.metric_table import METRICS

FLUSH = 2000


def sweep(seeds: int) -> spec_mod.Sweep:
    """2 N x 10 loads x 3 rules x seeds tasks, 7 noise levels (the quickstart's)."""
    return spec_mod.from_dict(
        {
            "name": "cube_bench",
            "seeds": seeds,
            "noise": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
            "datasets": {"random": {"N": [32, 64], "alpha": [0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0]}},
            "rules": {"hebb": {}, "plm": {"lr": [0.5, 1.0]}},
        }
    )


def results(s: spec_mod.Sweep) -> list[CellResult]:
    rng = np.random.default_rng(0)
    n_noise = len(s.noise)
    out = []
    for t in s.tasks():
        out.append(
            CellResult(
                t.index,
                {
                    n: (rng.random(n_noise, dtype=np.float32) if m.per_noise else np.float32(rng.random()))
                    for n, m in METRICS.items()
                },
            )
        )
    return out


def write_all(path: str, s: spec_mod.Sweep, rs: list[CellResult]) -> float:
    """Seconds to create the cube and write every result in flushes of FLUSH, as a driver does."""
    from amsweep.storage.cube import Cube

    t0 = time.perf_counter()
    with Cube.create_or_open(path, s) as cube:
        for i in range(0, len(rs), FLUSH):
            cube.write(rs[i : i + FLUSH])
    return time.perf_counter() - t0


def count_objects(path: str) -> int:
    from amsweep.storage.objects import objects_at

    return len(objects_at(path).list())


def status_seconds(path: str) -> float:
    from amsweep.storage.cube import Cube

    t0 = time.perf_counter()
    Cube.open(path).status()
    return time.perf_counter() - t0


def frame_seconds(path: str) -> float:
    from amsweep.storage.query import open_cube, to_frame

    t0 = time.perf_counter()
    to_frame(open_cube(path), "m_train")
    return time.perf_counter() - t0


def run(tiny: bool = False, repeats: int = 3) -> list[Row]:
    s = sweep(seeds=34 if tiny else 1667)
    rs = results(s)
    n = len(rs)
    rows: list[Row] = []
    folder = Path(tempfile.mkdtemp(prefix="amsweep-cube-bench-"))
    try:
        writes, status, frames, objects = [], [], [], 0
        for r in range(repeats):
            path = str(folder / f"c{r}.zarr")
            writes.append(n / write_all(path, s, rs))
            status.append(status_seconds(path))
            frames.append(frame_seconds(path))
            objects = count_objects(path)
        rows += [
            _row(f"cube objects at {n:,} cells", [objects], "<=", 5000, "objects in the cube (local listing)"),
            _row(
                "cube write, local disk (cells/s)",
                writes,
                ">=",
                5000,
                f"{n:,} cells, flushes of {FLUSH}, status + {len(METRICS)} metrics",
            ),
            _row(f"status read, {n:,} cells, local (s)", status, "<=", 0.5, "Cube.open + status()"),
            _row(
                f"one metric as a table, {n:,} cells (s)",
                frames,
                "<=",
                1.0,
                f"to_frame(open_cube, 'm_train'): {n * len(s.noise):,} rows",
            ),
        ]
        rows += _on_moto(s, rs, n, max(1, repeats - 1))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    return rows


def _on_moto(s: spec_mod.Sweep, rs: list[CellResult], n: int, repeats: int) -> list[Row]:
    from benchmarks._moto import moto_server

    writes, status = [], []
    with moto_server(buckets=("bench",)):
        for _ in range(repeats):
            path = f"s3://bench/{uuid.uuid4().hex[:8]}.zarr"
            writes.append(n / write_all(path, s, rs))
            status.append(status_seconds(path))
    return [
        _row("cube write, moto S3 on loopback (cells/s)", writes, ">=", 1000, f"{n:,} cells, flushes of {FLUSH}"),
        _row(f"status read, {n:,} cells, moto S3 (s)", status, "<=", 5.0, "Cube.open + status()"),
    ]


def _row(name: str, values: list[float], op: str, target: float, detail: str) -> Row:
    med = float(np.median(values))
    met = med <= target if op == "<=" else med >= target
    return Row(name, med, min(values), max(values), len(values), f"{op} {target:g}", met, detail)
