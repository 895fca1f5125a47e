"""Where cells run: in this process, or as Ray tasks on a laptop or a cluster.

Every executor keeps the ``amsweep.pipeline.contracts.Executor`` interface: it takes the job list
and yields ``(job, outcome)`` pairs as they finish, so the driver loop, the cube writes and resume
do not care where the numbers were computed. An outcome is a CellResult, a ``Skipped`` (the cell
is not applicable) or a ``Failed``. ``map_blocks`` (optional, ``contracts.OPTIONAL``) yields the same
outcomes a finished batch at a time as a ``ResultBlock``: the runner's result path. Each says
what one cell may use (``capacity``: the runner refuses a sweep with a cell that does not fit)
and gets the sweep before its cells (``prepare``: Ray ships driver-local data files).
``EXECUTORS`` is what ``amsweep run --executor`` picks from: another engine is one class here (or
in its own module) and one entry; its constructor imports its engine, as ``RayExecutor`` imports
Ray, so that choosing an executor costs nothing until used.
"""

from __future__ import annotations

import socket
from typing import Any, Callable, ClassVar, Iterable, Iterator

from amsweep.pipeline.contracts import Executor
from amsweep.pipeline.outcomes import Failed, ResultBlock, Skipped, cell_blocks, guarded
from amsweep.pipeline.ray_executor import RayExecutor
from amsweep.pipeline.resources import machine_memory
from amsweep.pipeline.spec import CellJob

__all__ = ["EXECUTORS", "Executor", "Failed", "Skipped", "guarded", "SerialExecutor", "RayExecutor", "where", "used"]

GiB = 2**30


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

    def describe(self) -> dict[str, Any]:
        """Where cells run: this process on this machine (the keys every executor's describe has)."""
        return {
            "executor": self.name,
            "address": None,
            "nodes": 1,
            "cpus": 1,
            "memory_bytes": machine_memory(),
            "nodes_used": [socket.gethostname()],
        }

    def map_unordered(
        self, fn: Callable[..., Any], jobs: Iterable[CellJob], total: int | None = None
    ) -> Iterator[tuple[CellJob, Any]]:
        for job in jobs:
            yield job, guarded(fn, job)

    def map_blocks(
        self, fn: Callable[..., Any], jobs: Iterable[CellJob], total: int | None = None
    ) -> Iterator[ResultBlock]:
        """``map_unordered``'s outcomes (a subclass's included), each cell its own block: a cell
        here costs a millisecond or more, so nothing is gained by holding finished cells back."""
        yield from cell_blocks(self.map_unordered(fn, jobs, total))

    def shutdown(self) -> None:
        """Nothing to release: cells ran in this process."""


EXECUTORS: dict[str, type[Executor]] = {"serial": SerialExecutor, "ray": RayExecutor}


def where(executor: Any) -> str:
    """One line saying where a sweep runs, from ``executor.describe()`` (an executor without it: its name)."""
    describe = getattr(executor, "describe", None)
    if describe is None:
        return f"cells run on the {executor.name} executor"
    d = describe()
    memory = f"{d['memory_bytes'] / GiB:.1f} GiB"
    if d["executor"] == "serial":
        return f"cells run one at a time in this process, on this machine ({memory})"
    size = f"{d['cpus']} CPU(s), {memory}"
    if d["address"] is None:
        return f"local Ray on this machine: {size}"
    return f"Ray cluster at {d['address']} (from {d.get('source', '--address')}): {d['nodes']} node(s), {size}"


def used(executor: Any) -> str:
    """One line naming the nodes that ran cells, from ``executor.describe()["nodes_used"]``."""
    describe = getattr(executor, "describe", None)
    if describe is None:
        return f"cells ran on the {executor.name} executor"
    nodes = describe()["nodes_used"]
    return f"cells ran on {len(nodes)} node(s)" + (f": {', '.join(nodes)}" if nodes else "")
