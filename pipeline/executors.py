"""Where cells run: in this process, or as Ray tasks on a laptop or a cluster.

Both executors take the same job list and yield ``(job, outcome)`` pairs as they finish, so the
driver loop, the cube writes and resume do not care where the numbers were computed.
An outcome is a CellResult, a ``Skipped`` (the cell is not applicable) or a ``Failed``.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

from pipeline.model import NotApplicable

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


@dataclass(frozen=True)
class Failed:
    """A cell raised; the traceback text is kept for `amsweep status` and the side log."""

    error: str


@dataclass(frozen=True)
class Skipped:
    """A cell the rule, dynamics or dataset cannot serve (recorded as not applicable)."""

    reason: str


def guarded(fn: Callable[..., Any], *args: Any) -> Any:
    """Run a cell and turn its exceptions into values, so one bad cell cannot stop a sweep."""
    try:
        return fn(*args)
    except NotApplicable as e:
        return Skipped(str(e))
    except Exception:
        return Failed(traceback.format_exc(limit=8))


class SerialExecutor:
    """Runs cells one after another in this process: tests, debugging, profiling."""

    name = "serial"
    workers = 1

    def map_unordered(self, fn: Callable[..., Any], jobs: Iterable[tuple]) -> Iterator[tuple[tuple, Any]]:
        for job in jobs:
            yield job, guarded(fn, *job)

    def shutdown(self) -> None:
        """Nothing to release: cells ran in this process."""


class RayExecutor:
    """One Ray task per cell, one CPU each, with a bounded number in flight.

    Local ``ray.init()`` when ``address`` is None (a laptop), else joins a running cluster
    (``auto`` or ``ray://host:port``). Numba and BLAS threads are pinned to one per task through
    the runtime environment; tasks whose worker dies are retried by Ray (``max_retries``).
    """

    name = "ray"

    def __init__(self, address: str | None = None, workers: int | None = None,
                 in_flight_per_worker: int = 2, max_retries: int = 2) -> None:
        keep_ray_on_loopback(address)  # before Ray is imported: it reads the switch at import
        import ray

        self._ray = ray
        self._owns_ray = not ray.is_initialized()
        if self._owns_ray:
            kwargs: dict[str, Any] = {
                "runtime_env": {"env_vars": dict(PINNED_THREADS)},
                "include_dashboard": False,
                "logging_level": "ERROR",
                "log_to_driver": True,
            }
            if address is None:
                # "local": always a fresh Ray on this machine, never a cluster that `ray start`
                # left behind (ray.init() would otherwise join it, alive or dead).
                kwargs["address"] = "local"
                kwargs["num_cpus"] = workers or os.cpu_count() or 1
            else:
                kwargs["address"] = address
            ray.init(**kwargs)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or cpus
        self.max_in_flight = max(1, self.workers * in_flight_per_worker)
        self.max_retries = max_retries

    def map_unordered(self, fn: Callable[..., Any], jobs: Iterable[tuple]) -> Iterator[tuple[tuple, Any]]:
        """Yield outcomes as they finish; tasks still in flight when the caller stops are left to
        ``shutdown``, which ends them with the driver's job.

        No ``ray.cancel`` here: a cancel racing with a task's completion reply aborts the driver
        inside Ray ("Tried to complete task that was not pending"), which turned Ctrl-C into a
        crash before the finished results were flushed.
        """
        ray = self._ray
        remote = ray.remote(num_cpus=1, max_retries=self.max_retries, retry_exceptions=False)(guarded)
        pending: dict[Any, tuple] = {}
        jobs = iter(jobs)
        while True:
            while len(pending) < self.max_in_flight:
                job = next(jobs, None)
                if job is None:
                    break
                pending[remote.remote(fn, *job)] = job
            if not pending:
                return
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                job = pending.pop(ref)
                try:
                    outcome = ray.get(ref)
                except Exception as e:  # worker crashed past its retries, or the node died
                    outcome = Failed(f"{type(e).__name__}: {e}")
                yield job, outcome

    def shutdown(self) -> None:
        """Disconnect from the Ray this executor started or joined: tasks still running end with
        the driver's job (Ray kills the job's workers), and a local Ray stops with its workers.
        A Ray session the caller had already opened is theirs to end."""
        if self._owns_ray:
            self._ray.shutdown()
