"""The driver under a large cluster's load, without the cluster: cells/s absorbed, driver CPU per
cell and memory over 10^6 cells.

A load generator (``LoadExecutor``) stands in for 1,000 virtual cores running 0.1 s cells. It
runs the Ray executor's driver loop without Ray: the ``Batcher`` cuts the pending jobs into the
batches the ``BatchSizer`` asks for (sized for ``workers`` cores), each batch comes back as the
``Packed`` outcomes a worker returns (every metric set, synthetic values, 0.1 s per cell), and
the driver side runs what ``RayExecutor.map_blocks`` runs after ``ray.get``: the sizer's
bookkeeping and the batch as one ``ResultBlock`` (``settle_block``; an older checkout's runner
takes ``map_unordered``'s per-cell pairs, ``unpack`` then ``settle``). ``runner.run`` collects
them and writes a real cube (local disk, or moto's S3 server on loopback) through the flusher.
Not measured: Ray's own ``ray.wait``/``ray.get`` per batch (the task-rate cap keeps those to
~100 a second, ``amsweep.pipeline.batching``).

Batches are offered as fast as the driver takes them (``--rate`` none: the absorbed rate is the
driver's capacity), or at a chosen rate of cells/s. CPU: the process's CPU (collector, flusher,
lease heartbeat) less the generator's own (the workers' side: building each ``Packed``),
measured per thread with ``time.thread_time``. Memory: the process's RSS when 10^5 cells have
come back and at the end. Each measurement runs in a fresh process, so ``--before ROOT`` runs
the same load through another checkout's runner (``/work/wt/base``: main before issue 26) in the
same run, alternated.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator

if TYPE_CHECKING:
    from benchmarks._harness import Row

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
BEFORE = Path(os.environ.get("AMSWEEP_BEFORE", "/work/wt/base"))  # main before issue 26, if checked out


# ---- child: one measured run in a fresh process (works against either checkout's amsweep) ----------------


def _sweep(cells: int) -> Any:
    """One small shape, ``cells`` seeds x 4 (2 loads x 2 rules), 7 noise levels."""
    from amsweep.pipeline import spec as spec_mod

    return spec_mod.from_dict(
        {
            "name": "driver_bench",
            "seeds": max(1, cells // 4),
            "noise": [0.0, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3],
            "datasets": {"random": {"N": [32], "alpha": [0.1, 0.2]}},
            "rules": {"hebb": {}, "plm": {}},
        }
    )


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class LoadExecutor:
    """Executor of synthetic finished batches: the Ray executor's driver loop without Ray."""

    name = "load"

    def __init__(self, workers: int, cell_seconds: float, rate: float | None, mark_at: int) -> None:
        self.workers = workers
        self.cell_seconds = cell_seconds
        self.rate = rate
        self.mark_at = mark_at
        self.generator_cpu = 0.0  # thread CPU spent building Packed outcomes (the workers' side)
        self.fanout_cpu = 0.0  # collector CPU in Batcher.take: pending tasks, their jobs, cutting batches
        self.batches = 0
        self.largest = 0
        self.rss_at_mark: int | None = None
        self.rss_trace: list[int] = []  # RSS at every mark_at cells: flat means no growth with the count
        self.cells = 0

    def capacity(self) -> tuple[float, float, str]:
        return float(2**40), float(self.workers), "the virtual cluster"

    def prepare(self, sweep: Any) -> int:
        return 0

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name, "address": None, "nodes": 1, "cpus": self.workers, "memory_bytes": 0}

    def shutdown(self) -> None:
        pass

    def map_blocks(self, fn: Callable[..., Any], jobs: Iterable[Any], total: int | None = None) -> Iterator[Any]:
        """What ``RayExecutor.map_blocks`` runs after ``ray.get``: each batch as one ResultBlock
        (taken by a runner that knows blocks; an older checkout's runner calls ``map_unordered``)."""
        from amsweep.pipeline import batching

        for batch, packed, sizer in self._batches(jobs, total):
            yield batching.settle_block(batch, packed, sizer)  # type: ignore[attr-defined]

    def map_unordered(
        self, fn: Callable[..., Any], jobs: Iterable[Any], total: int | None = None
    ) -> Iterator[tuple[Any, Any]]:
        """What ``RayExecutor.map_unordered`` runs after ``ray.get``: ``unpack``, then ``settle``."""
        from amsweep.pipeline import batching
        from amsweep.pipeline.packing import unpack

        settle = getattr(batching, "settle", None)
        for batch, packed, sizer in self._batches(jobs, total):
            results = unpack(packed)
            if settle is not None:
                yield from settle(batch, results, sizer)
            else:  # before issue 26: the same loop inline
                sizer.record([(job, seconds) for job, (outcome, seconds) in zip(batch.jobs, results)])
                for job, (outcome, _) in zip(batch.jobs, results):
                    yield job, outcome

    def _batches(self, jobs: Iterable[Any], total: int | None) -> Iterator[tuple[Any, Any, Any]]:
        """(batch, its Packed outcomes, the sizer) as a worker would return them, at the chosen rate."""
        import numpy as np

        from amsweep.pipeline import batching
        from amsweep.pipeline.metric_table import METRICS
        from amsweep.pipeline.packing import Packed

        try:
            sizer = batching.BatchSizer(target_seconds=2.0, workers=self.workers)  # type: ignore[call-arg]
        except TypeError:  # before issue 26: the target ignores the cluster's size
            sizer = batching.BatchSizer(target_seconds=2.0)
        batcher = batching.Batcher(iter(jobs), sizer, total, self.workers)
        n_noise = 7
        rng = np.random.default_rng(0)
        template = {
            k: (rng.random((1, n_noise), dtype=np.float32) if m.per_noise else rng.random(1, dtype=np.float32))
            for k, m in METRICS.items()
        }
        start = time.perf_counter()
        while True:
            c0 = time.thread_time()
            batch = batcher.take()
            self.fanout_cpu += time.thread_time() - c0
            if batch is None:
                return
            n = len(batch.jobs)
            c0 = time.thread_time()  # the worker's side: the Packed it would return
            packed = Packed(
                np.arange(n, dtype=np.int64),
                np.array([j.task.index for j in batch.jobs], dtype=np.int64),
                {k: np.repeat(v, n, axis=0) for k, v in template.items()},
                [],
                np.full(n, self.cell_seconds),
                n,
                n * self.cell_seconds,
            )
            self.generator_cpu += time.thread_time() - c0
            if self.rate is not None:  # offered at a chosen rate: wait for this batch's moment
                due = start + (self.cells + n) / self.rate
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)
            self.batches += 1
            self.largest = max(self.largest, n)
            yield batch, packed, sizer
            self.cells += n
            if self.cells >= self.mark_at * (len(self.rss_trace) + 1):
                self.rss_trace.append(_rss())
                if self.rss_at_mark is None:
                    self.rss_at_mark = self.rss_trace[0]


def child(config: dict[str, Any]) -> dict[str, Any]:
    """One run: create the cube, feed every cell through runner.run, report the figures."""
    import numpy as np

    from amsweep.storage.cube import Cube
    from amsweep.sweeps import runner

    sweep = _sweep(config["cells"])
    cells = int(np.prod(sweep.shape))
    executor = LoadExecutor(config["workers"], config["cell_seconds"], config["rate"], config["mark_at"])
    with Cube.create_or_open(config["url"], sweep) as cube:
        rss0 = _rss()
        w0, p0, t0 = time.perf_counter(), time.process_time(), time.thread_time()
        report = runner.run(cube, executor, progress=False)
        wall, process, thread = time.perf_counter() - w0, time.process_time() - p0, time.thread_time() - t0
    assert report.done == cells, (report.done, cells)
    return {
        "cells": cells,
        "wall": wall,
        "cells_per_s": cells / wall,
        "driver_cpu_us": (process - executor.generator_cpu) / cells * 1e6,
        "collector_cpu_us": (thread - executor.generator_cpu) / cells * 1e6,
        "collector_cpu_us_per_batch": (thread - executor.generator_cpu) / executor.batches * 1e6,
        "fanout_cpu_us_per_batch": executor.fanout_cpu / executor.batches * 1e6,
        "generator_cpu_us": executor.generator_cpu / cells * 1e6,
        "batches": executor.batches,
        "largest_batch": executor.largest,
        "tasks_per_s_at_full_load": config["workers"] / (executor.largest * config["cell_seconds"]),
        "rss_start": rss0,
        "rss_mark": executor.rss_at_mark,
        "rss_end": _rss(),
        "rss_trace": executor.rss_trace,
    }


# ---- parent: the table ------------------------------------------------------------------------------------


def measure(
    root: Path, config: dict[str, Any], env: dict[str, str] | None = None, fresh: bool = True
) -> dict[str, Any]:
    """``child(config)`` in a fresh process importing amsweep from ``root`` (``fresh`` False: in this
    process, this checkout: the ``--tiny`` path, a check of the code path in seconds, not a figure)."""
    if not fresh:
        return child(config)
    environ = {**os.environ, **(env or {}), "PYTHONPATH": str(root)}
    proc = subprocess.run(
        [sys.executable, str(HERE), json.dumps(config)], env=environ, capture_output=True, text=True, timeout=3600
    )
    if proc.returncode != 0:
        raise RuntimeError(f"driver benchmark child failed ({root}):\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _load() -> str:
    return "load %.2f" % os.getloadavg()[0]


def run(tiny: bool = False, repeats: int = 3) -> list[Row]:
    workers, cell = (20 if tiny else 1000), 0.1  # tiny: 2,000 cells would be one-cell tail batches on 1,000
    n = 2_000 if tiny else 100_000
    n_moto = 2_000 if tiny else 50_000
    big = 1_000_000
    last: list[dict[str, Any]] = []  # the latest measurement of this checkout (tiny: its RSS row)
    rows: list[Row] = []
    before = BEFORE if (BEFORE / "sweeps" / "runner.py").exists() and not tiny else None
    runs = 1 if tiny else repeats

    def config(url: str, cells: int, mark_at: int) -> dict[str, Any]:
        return {"url": url, "cells": cells, "workers": workers, "cell_seconds": cell, "rate": None, "mark_at": mark_at}

    def compare(where: str, url_of: Callable[[], str], env: dict[str, str] | None, target: float, n: int) -> None:
        after: list[dict[str, Any]] = []
        old: list[dict[str, Any]] = []
        for r in range(runs):
            order = [(ROOT, after), (before, old)] if r % 2 == 0 else [(before, old), (ROOT, after)]
            for root, sink in order:
                if root is not None:
                    sink.append(measure(root, config(url_of(), n, n // 10), env, fresh=not tiny))
        last[:] = after[-1:]
        rate = [m["cells_per_s"] for m in after]
        cpu = [m["driver_cpu_us"] for m in after]
        collector = [m["collector_cpu_us"] for m in after]
        detail = (
            f"{n:,} cells, {workers} virtual cores x {cell} s cells, batches up to {after[0]['largest_batch']} cells "
            f"({after[0]['batches']} batches; {after[0]['tasks_per_s_at_full_load']:.0f} tasks/s at full load); "
            f"collector thread {statistics.median(collector):.1f} us/cell, "
            f"{statistics.median(m['collector_cpu_us_per_batch'] for m in after) / 1e3:.2f} ms/batch, of which "
            f"{statistics.median(m['fanout_cpu_us_per_batch'] for m in after) / 1e3:.2f} ms fan-out (Batcher.take: "
            f"pending tasks, jobs, cutting) and the rest result handling; {_load()}"
        )
        if old:
            old_rate = statistics.median(m["cells_per_s"] for m in old)
            old_cpu = statistics.median(m["driver_cpu_us"] for m in old)
            old_batch = statistics.median(m["collector_cpu_us_per_batch"] for m in old) / 1e3
            old_fanout = statistics.median(m.get("fanout_cpu_us_per_batch", 0.0) for m in old) / 1e3
            detail += (
                f"; before (main, same run, alternated): {old_rate:,.0f} cells/s, {old_cpu:.1f} us/cell driver CPU, "
                f"collector {old_batch:.2f} ms/batch ({old_fanout:.2f} fan-out), "
                f"{old[0]['batches']} batches; after/before cells/s {statistics.median(rate) / old_rate:.2f}x, "
                f"CPU/cell {statistics.median(cpu) / old_cpu:.2f}x"
            )
        rows.append(_row(f"driver absorbs, {where} (cells/s)", rate, ">=", target, detail))
        rows.append(
            _row(f"driver CPU per cell, {where} (us)", cpu, "<=", 50.0, f"process CPU less the generator; {_load()}")
        )

    with tempfile.TemporaryDirectory(prefix="driver_bench_") as tmp:
        compare("local cube", lambda: str(Path(tmp, uuid.uuid4().hex[:8] + ".zarr")), None, 10_000, n)
        flat = measure(ROOT, config(str(Path(tmp, "big.zarr")), big, big // 10)) if not tiny else last[0]
        trace = flat["rss_trace"] or [flat["rss_end"]]
        half = max(1, len(trace) // 2)
        growth = max(trace[half:] or trace) / max(trace[:half])
        rows.append(
            _row(
                f"driver peak RSS, 2nd half / 1st half of {flat['cells']:,} cells, local",
                [growth],
                "<=",
                1.25,
                "RSS (MiB) every "
                + f"{flat['cells'] // 10:,} cells: "
                + ", ".join(f"{r / 2**20:.0f}" for r in trace)
                + f"; {flat['rss_end'] / 2**20:.0f} at the end ({flat['cells_per_s']:,.0f} cells/s, "
                f"{flat['driver_cpu_us']:.1f} us/cell); {_load()}",
            )
        )
    from benchmarks._moto import moto_server

    with moto_server(buckets=("drv",)) as env:
        compare("moto S3", lambda: f"s3://drv/{uuid.uuid4().hex[:8]}.zarr", env, 5_000, n_moto)
    return rows


def _row(name: str, values: list[float], op: str, target: float, detail: str) -> Row:
    from benchmarks._harness import Row

    med = float(statistics.median(values))
    met = med <= target if op == "<=" else med >= target
    return Row(name, med, min(values), max(values), len(values), f"{op} {target:g}", met, detail)


if __name__ == "__main__":
    print(json.dumps(child(json.loads(sys.argv[1]))))
