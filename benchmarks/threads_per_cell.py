"""Threads per cell: whole PLM cells and SGEMMs with 1 and 2 OpenBLAS threads.

The basis of ``amsweep.pipeline.resources.LARGE_FLOPS``: the size above which a cell runs BLAS with
``LARGE_THREADS`` threads and asks Ray for as many CPUs. Each row is 1-thread time / 2-thread
time (> 1: the second thread helps), from interleaved repeats, and says whether the two thread
counts gave the same bits (they need not: the count is a function of the cell for that reason).
"""

from __future__ import annotations

import numpy as np
from threadpoolctl import threadpool_limits

from benchmarks._harness import Row, interleaved, ratio_row
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.cell import _run


def _cell(N: int, epochs: int):
    raw = {
        "name": "threads",
        "root_seed": 3,
        "seeds": 1,
        "noise": [0.1, 0.2],
        "P_test": 100,
        "retrieval": {"train_starts": 100, "test_starts": 100, "random_starts": 20},
        "datasets": {"random": {"N": [N], "alpha": [0.5]}},
        "rules": {"plm": {"epochs": epochs}},
    }
    sweep = spec_mod.from_dict(raw)
    task = next(sweep.tasks())
    return lambda: _run(task, sweep.noise, sweep.retrieval, sweep.root_seed)


def _with(threads: int, fn):
    def timed():
        with threadpool_limits(limits=threads):
            return fn()

    return timed


def run(tiny: bool = False, repeats: int = 3) -> list[Row]:
    rows = []
    for N in (64,) if tiny else (800, 1600):
        cell = _cell(N, 2 if tiny else 60)
        times = interleaved({"1": _with(1, cell), "2": _with(2, cell)}, repeats)
        rows.append(
            ratio_row(
                f"PLM cell, 1 thread / 2 threads, N = {N}, P = {N // 2}",
                times["1"],
                times["2"],
                ">=",
                None,
                f"whole cell (60 epochs, 2 noise levels, 100/100/20 starts); "
                f"1 thread {min(times['1']):.2f} s, 2 threads {min(times['2']):.2f} s",
            )
        )
    rng = np.random.default_rng(0)
    for N in (128,) if tiny else (1000, 3000):
        A = rng.standard_normal((N, N)).astype(np.float32)
        B = rng.standard_normal((N, N // 2)).astype(np.float32)
        times = interleaved({"1": _with(1, lambda: A @ B), "2": _with(2, lambda: A @ B)}, 2 * repeats)
        same = np.array_equal(_with(1, lambda: A @ B)(), _with(2, lambda: A @ B)())
        rows.append(
            ratio_row(
                f"SGEMM {N} x {N} @ {N} x {N // 2}, 1 thread / 2 threads",
                times["1"],
                times["2"],
                ">=",
                None,
                f"1 thread {1e3 * min(times['1']):.1f} ms, 2 threads "
                f"{1e3 * min(times['2']):.1f} ms; same bits with 1 and 2 threads: {same}",
            )
        )
    return rows
