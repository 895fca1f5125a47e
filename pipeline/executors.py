"""Where cells run: in this process, or as Ray tasks on a laptop or a cluster.

Both executors take the same job list and yield ``(job, outcome)`` pairs as they finish, so the
driver loop, the cube writes and resume do not care where the numbers were computed.
An outcome is a CellResult, a ``Skipped`` (the cell is not applicable) or a ``Failed``.
``RayExecutor`` (``amsweep.pipeline.ray_executor``) sends cells in batches. Both say what one cell may
use (``capacity``: the runner refuses a sweep with a cell that does not fit) and get the sweep
before its cells (``prepare``: Ray ships driver-local data files).
"""

from __future__ import annotations

import os
from typing import Any, Callable, Iterable, Iterator

from amsweep.pipeline.outcomes import Failed, Skipped, guarded
from amsweep.pipeline.resources import machine_memory

__all__ = [
    "Failed",
    "Skipped",
    "guarded",
    "SerialExecutor",
    "RayExecutor",  # noqa: F822
    "PINNED_THREADS",
    "keep_ray_on_loopback",
]  # (RayExecutor: module __getattr__ below, imported on first use)

PINNED_THREADS = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}


LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def keep_ray_on_loopback(address: str | None) -> None:
    """A Ray started here, or reached on this machine's loopback, listens on 127.0.0.1 only.

    By default Ray binds the machine's network address, and its token authentication is off:
    anyone on the network could submit code. A laptop sweep needs no network, so local Ray
    is kept on loopback (Ray's switch for single-machine clusters); a user's explicit setting
    of the variable wins. Ray reads it when first imported, so call this before importing ray.
    """
    host = (address or "").split("://")[-1].rsplit(":", 1)[0]
    if address is None or host in ("127.0.0.1", "localhost"):
        os.environ.setdefault(LOOPBACK_ONLY, "0")


class SerialExecutor:
    """Runs cells one after another in this process: tests, debugging, profiling."""

    name = "serial"
    workers = 1

    def capacity(self) -> tuple[float, float, str]:
        """(memory bytes, CPUs, what offers them) a cell may use: this machine's memory; a cell
        with more BLAS threads than cores still runs (slower), so CPUs are not limited."""
        return float(machine_memory()), float("inf"), "this machine"

    def prepare(self, sweep: Any) -> None:
        """Nothing to ship: cells run here, next to the data."""

    def map_unordered(
        self, fn: Callable[..., Any], jobs: Iterable[tuple], total: int | None = None
    ) -> Iterator[tuple[tuple, Any]]:
        for job in jobs:
            yield job, guarded(fn, *job)

    def shutdown(self) -> None:
        """Nothing to release: cells ran in this process."""


def __getattr__(name: str) -> Any:
    """``RayExecutor`` lives in amsweep.pipeline.ray_executor; imported on first use (Ray is slow to import)."""
    if name == "RayExecutor":
        from amsweep.pipeline.ray_executor import RayExecutor

        return RayExecutor
    raise AttributeError(name)
