"""BLAS thread count of the running cell, set once and kept, not re-set for every cell.

A cell's thread count is a function of the cell (``amsweep.pipeline.resources.cell_threads``), never of
the machine, and it is the same serially and on Ray, because a thread count can change the
order of floating-point sums. Setting it used to cost more than a small cell: threadpoolctl's
``threadpool_limits`` inspects every loaded library on each call (1.24 ms measured on this
2-core machine, against ~1.1 ms of compute for an N = 32 Hebb cell). ``pin`` calls it only when
the count changes or a module was imported since (a BLAS library is loaded only by an import,
so a grown ``sys.modules`` is the cheap sign that a new library may need pinning): once per
worker for a sweep of small cells.

A library loaded in the middle of a cell would run that cell with its default thread count (all
cores): numba's ``np.dot`` loads SciPy's OpenBLAS (a second copy, beside NumPy's) at its first
call, and the MNIST loader imports scipy.ndimage. So the first pin imports scipy.linalg, and
``run_cell`` imports the cell's components before pinning (a test caught the first cell of a
serial run computing part of its BLAS work with 2 threads).
"""

from __future__ import annotations

import importlib
import sys

from threadpoolctl import threadpool_limits

__all__ = ["pin", "PRELOAD"]

PRELOAD = ("scipy.linalg",)  # the BLAS numba's compiled code calls, loaded lazily otherwise

_pinned: tuple[int, int] | None = None  # (threads, len(sys.modules)) at the last pin


def pin(threads: int) -> None:
    """Limit every loaded BLAS/OpenMP pool to ``threads`` (a no-op when nothing changed)."""
    global _pinned
    state = (threads, len(sys.modules))
    if _pinned == state:
        return
    for name in PRELOAD:
        importlib.import_module(name)
    threadpool_limits(limits=threads)  # global: stays until the next pin
    _pinned = (threads, len(sys.modules))
