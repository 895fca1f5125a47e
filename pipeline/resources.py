"""What one cell asks of a node: memory (bytes) and CPUs (BLAS threads), from its task alone.

Both are functions of the task, never of the machine: the thread count must be, because it can
change floating-point sums (a cell's values may depend only on its coordinates and seed), and
the memory ask must be, so that a sweep is refused before it starts when no node can hold one
of its cells, rather than OOM-killed in hour three.

Memory model, calibrated by ``benchmarks/memory.py`` (RESULTS.md): a PLM cell's numpy peak is
3.77 x its couplings plus patterns as float32 (J + X) in the dual form, 2.84 x in the primal
form (PLM is the largest rule measured; the others are assumed to hold no more).
``WORKING_SET`` rounds the worst up to 4, on the learning arrays and on the retrieval batch
(states, float32 fields, overlaps with the training set). A rule that knows its own peak declares
``memory_bytes(N, P, q, params)`` (``contracts.OPTIONAL``; PLM does, with the figures above), which
then replaces the couplings-plus-patterns term. ``MARGIN`` (1.5) covers numba's
allocations, which tracemalloc does not see (peak RSS growth was 1.16-1.23 x the traced peak).
``WORKER_BASE`` is the resident size of a Ray worker running small cells (VmRSS 220 MiB
measured here, rounded up to 256 MiB), since the node's RAM holds that too.
"""

from __future__ import annotations

import math
import os
from typing import Iterable

import numpy as np

from amsweep.pipeline import contracts, registry
from amsweep.pipeline.errors import PluginError
from amsweep.pipeline.params import Params, SpecError
from amsweep.pipeline.spec import RetrievalOptions, Sweep, Task

__all__ = [
    "cell_memory",
    "cell_threads",
    "check_fits",
    "describe",
    "GiB",
    "learning_memory",
    "LARGE_FLOPS",
    "LARGE_THREADS",
    "machine_memory",
    "MARGIN",
    "ResourceError",
    "retrieval_batch",
    "shapes",
    "states",
    "WORKER_BASE",
    "WORKING_SET",
]

GiB = 2**30
WORKING_SET = 4.0
MARGIN = 1.5
WORKER_BASE = 256 * 2**20

# Above this many multiply-adds in a cell's largest products (N^2 (P + B), B the retrieval
# batch: N = 2000 with P = B = 500, a cell of seconds to minutes) the cell runs with
# LARGE_THREADS BLAS threads and asks Ray for as many CPUs. Measured on this shared 2-core
# machine (benchmarks/threads_per_cell.py, RESULTS.md "Threads per cell"): a second OpenBLAS
# thread made whole PLM cells of N = 400-1600 (P = N / 2) 2-7x slower in all but one of 8
# measurements, and SGEMM (N x N @ N x N/2) only 1.03-1.25x faster for N = 500-3000: with
# other jobs holding the cores, the second thread mostly waits. So the threshold sits above
# every size measured: only cells dominated by GEMMs of >= 2000^2 x 1000 ask for two CPUs.
# Re-measure on a quiet node before lowering it. A thread count changes float32 GEMM results
# (1 vs 2 threads gave different bits at every SGEMM size measured), hence k depends on the
# task only.
LARGE_THREADS = 2
LARGE_FLOPS = 2000**2 * (500 + 500)


class ResourceError(SpecError):
    """A cell needs more than any node offers: refused before the sweep starts."""


def states(task: Task) -> int:
    """Potts states of the task's data (21 for proteins), 2 for Ising data."""
    return int(contracts.optional(registry.component("datasets", task.dataset.kind), "Q"))


def retrieval_batch(task: Task, retrieval: RetrievalOptions | None) -> int:
    """Largest batch of states relaxed at once: the fixed-point check relaxes all P patterns."""
    starts = (retrieval.train_starts, retrieval.random_starts) if retrieval is not None else (0, 0)
    return max(task.P, task.dataset.P_test, *starts)


def learning_memory(task: Task, q: int) -> float:
    """Bytes of data and training at their peak: the rule's ``memory_bytes`` where it declares
    one, else the PLM-calibrated estimate (couplings plus patterns as float32, x WORKING_SET)."""
    width = task.N * (q if q > 2 else 1)  # one-hot width of a Potts state
    test_data = WORKING_SET * 4 * task.dataset.P_test * width
    declared = contracts.optional(registry.component("rules", task.rule.kind), "memory_bytes")
    if declared is None:
        return WORKING_SET * 4 * (width * width + task.P * width) + test_data
    call = f"rule {task.rule.kind}: memory_bytes(N={task.N}, P={task.P}, q={q}, params)"
    try:
        peak = declared(task.N, task.P, q, Params(task.rule.params, f"rule {task.rule.kind}"))
    except Exception as e:  # the plug-in's own code: a refused plug-in, not a bug of amsweep
        raise PluginError(f"{call} raised {type(e).__name__}: {e}") from None
    if isinstance(peak, bool) or not isinstance(peak, (int, float, np.integer, np.floating)) or not peak >= 0:
        raise PluginError(f"{call} returned {peak!r}; it must be a number of bytes >= 0")
    if not math.isfinite(peak):
        raise PluginError(f"{call} returned {peak!r}; it must be a finite number of bytes")
    return int(peak) + test_data


def cell_memory(task: Task, retrieval: RetrievalOptions) -> int:
    """Bytes a cell may hold at its peak, worker process included (see the module docstring)."""
    q = states(task)
    width = task.N * (q if q > 2 else 1)
    B = retrieval_batch(task, retrieval)
    recall = B * task.N * (1 + 4) + 4 * B * (task.P + task.dataset.P_test) + 4 * B * width
    return int(WORKER_BASE + MARGIN * (learning_memory(task, q) + WORKING_SET * recall))


def cell_threads(task: Task, retrieval: RetrievalOptions | None = None) -> int:
    """BLAS threads (and Ray CPUs) of a cell: 1, or LARGE_THREADS above LARGE_FLOPS."""
    B = retrieval_batch(task, retrieval)
    return LARGE_THREADS if task.N * task.N * (task.P + B) >= LARGE_FLOPS else 1


def shapes(sweep: Sweep) -> Iterable[Task]:
    """One task per (dataset, N, load, rule): the seeds of a shape need the same resources."""
    return sweep.tasks(first_seed_only=True)  # not every task filtered: 10^5 tasks cost the driver ~0.4 s


def describe(task: Task) -> str:
    return f"dataset {task.dataset.label}, N = {task.N}, P = {task.P}, rule {task.rule.label}"


def check_fits(sweep: Sweep, memory: float, cpus: float, where: str = "the largest node") -> None:
    """Raise ResourceError naming the largest cell if it needs more memory or CPUs than ``where``
    offers (``memory`` in bytes, ``cpus`` count); called before anything is submitted."""
    worst = max(shapes(sweep), key=lambda t: cell_memory(t, sweep.retrieval), default=None)
    if worst is not None and cell_memory(worst, sweep.retrieval) > memory:
        need = cell_memory(worst, sweep.retrieval)
        raise ResourceError(
            f"a cell of {describe(worst)} needs {need / GiB:.1f} GiB; {where} offers "
            f"{memory / GiB:.1f} GiB. Use smaller N or P, or a node with more memory."
        )
    widest = max(shapes(sweep), key=lambda t: cell_threads(t, sweep.retrieval), default=None)
    if widest is not None and cell_threads(widest, sweep.retrieval) > cpus:
        raise ResourceError(
            f"a cell of {describe(widest)} runs with {cell_threads(widest, sweep.retrieval)} "
            f"BLAS threads (CPUs); {where} offers {cpus:g}"
        )


def machine_memory() -> int:
    """Physical memory of this machine in bytes (serial runs are held to it)."""
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
