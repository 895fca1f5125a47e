"""Where cells run: in this process, or as Ray tasks on a laptop or a cluster.

Every executor keeps the ``amsweep.pipeline.contracts.Executor`` interface: it takes the job list
and yields ``(job, outcome)`` pairs as they finish, so the driver loop, the cube writes and resume
do not care where the numbers were computed. An outcome is a CellResult, a ``Skipped`` (the cell
is not applicable) or a ``Failed``. Each says what one cell may use (``capacity``: the runner
refuses a sweep with a cell that does not fit) and gets the sweep before its cells (``prepare``:
Ray ships driver-local data files). ``EXECUTORS`` is what ``amsweep run --executor`` picks from:
another engine is one class here (or in its own module) and one entry; its constructor imports
its engine, as ``RayExecutor`` imports Ray, so that choosing an executor costs nothing until used.
"""

from __future__ import annotations

from typing import Any, Callable, ClassVar, Iterable, Iterator

from amsweep.pipeline.contracts import Executor
from amsweep.pipeline.outcomes import Failed, Skipped, guarded
from amsweep.pipeline.ray_executor import RayExecutor
from amsweep.pipeline.resources import machine_memory
from amsweep.pipeline.spec import CellJob

__all__ = ["EXECUTORS", "Executor", "Failed", "Skipped", "guarded", "SerialExecutor", "RayExecutor"]


class SerialExecutor:
    """Runs cells one after another in this process: tests, debugging, profiling."""

    name = "serial"
    workers = 1
    OPTIONS: ClassVar[tuple[str, ...]] = ()

    def capacity(self) -> tuple[float, float, str]:
        """(memory bytes, CPUs, what offers them) a cell may use: this machine's memory; a cell
        with more BLAS threads than cores still runs (slower), so CPUs are not limited."""
        return float(machine_memory()), float("inf"), "this machine"

    def prepare(self, sweep: Any) -> int:
        """Nothing to ship: cells run here, next to the data."""
        return 0

    def map_unordered(
        self, fn: Callable[..., Any], jobs: Iterable[CellJob], total: int | None = None
    ) -> Iterator[tuple[CellJob, Any]]:
        for job in jobs:
            yield job, guarded(fn, job)

    def shutdown(self) -> None:
        """Nothing to release: cells ran in this process."""


EXECUTORS: dict[str, type[Executor]] = {"serial": SerialExecutor, "ray": RayExecutor}
