"""Cells as Ray tasks on a laptop or a cluster, in batches sized from measured cell durations.

One Ray task per cell cost 9-15 ms of overhead here, more than a small cell computes (N = 32:
~1 ms), which capped small cells near 100-200 cells/s on 2 cores; batches of ~2 s
(``amsweep.pipeline.batching``) pay it once per batch. Each task asks for the CPUs (BLAS threads) and
the memory its cells need (``amsweep.pipeline.resources``), so a node never runs more large cells than
its RAM holds, and a sweep with a cell no node can hold is refused before anything runs.
Driver-local data files travel once per sweep through the object store (``amsweep.pipeline.datafiles``).
The driver's plug-in folders travel in Ray's runtime environment (``amsweep.pipeline.plugin_shipping``):
a worker imports them from the shipped copy, so they need not exist on any other node.

Where it runs (``where_to_run``): ``--address``, else ``RAY_ADDRESS`` (which Ray's job supervisor sets
for a ``ray job submit`` entrypoint), else a private local Ray, which ``launch`` begins starting on a
background thread (``prestart``) before it imports the cell code, and the executor adopts. Each batch
reports the node it ran on, so ``describe()`` can say which nodes did the work without asking Ray.
"""

from __future__ import annotations

import functools
import json
import os
import socket
import sys
import threading
from typing import Any, Callable, ClassVar, Iterable, Iterator, Mapping

from amsweep.pipeline import datafiles, plugin_shipping, ray_local, registry
from amsweep.pipeline.batching import Batch, Batcher, BatchSizer, run_batch, settle, settle_block
from amsweep.pipeline.errors import AmsweepError
from amsweep.pipeline.outcomes import Failed, ResultBlock, cell_blocks
from amsweep.pipeline.packing import Packed, pack, unpack
from amsweep.pipeline.spec import CellJob

__all__ = ["keep_ray_on_loopback", "LOOPBACK_ONLY", "PINNED_THREADS", "RayExecutor", "where_to_run"]

PINNED_THREADS = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "NUMBA_NUM_THREADS": "1",
}
LOOPBACK_ONLY = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
IN_RAY_JOB = "RAY_JOB_CONFIG_JSON_ENV_VAR"  # Ray's job supervisor sets it (with RAY_ADDRESS) for an entrypoint
GiB = 2**30


def where_to_run(address: str | None, environ: Mapping[str, str] = os.environ) -> tuple[str | None, str]:
    """(the cluster address to join, or None for a private local Ray; where that choice came from).

    A cluster is *configured* when ``--address`` names one (it wins) or ``RAY_ADDRESS`` is set: the
    user exported it, or Ray's job supervisor did for a ``ray job submit`` entrypoint (it also sets
    ``RAY_JOB_CONFIG_JSON_ENV_VAR``, hence "Ray job"). Nothing else counts: the pointer a `ray start`
    leaves in /tmp/ray/ray_current_cluster outlives its cluster (a crash, a killed node), and a bare
    ``ray.init()`` would join it, alive or dead, so without a configured cluster the executor starts
    its own Ray (``address="local"``). ``RAY_ADDRESS=local`` asks for that too. Ray's job docs have
    users export ``RAY_ADDRESS=http://HEAD:8265`` for ``ray job submit``: that is the job server, not
    a cluster a driver can join, so it is refused with what to do instead.
    """
    given, source = (address, "--address") if address else (environ.get("RAY_ADDRESS", "").strip(), "RAY_ADDRESS")
    if given.startswith(("http://", "https://")):
        raise AmsweepError(
            f"{source} {given} is a Ray job server (dashboard) address, not a cluster to join: submit the "
            f"sweep as a job (`ray job submit --address {given} -- amsweep run ...`), or give the cluster's "
            "HOST:6379 with --address"
        )
    if address:
        return address, "--address"
    if given and given != "local":
        return given, "Ray job" if IN_RAY_JOB in environ else "RAY_ADDRESS"
    return None, "local"


PROBE_SECONDS = 5.0  # a TCP connect to a live head answers in milliseconds, even across a WAN


def probe(address: str, source: str) -> None:
    """Refuse a HOST:PORT (or ray://HOST:PORT) where nothing listens, before ``ray.init``.

    Ray's GCS client retries a closed port without end: ``RAY_ADDRESS=HOST:6379`` of a stopped
    cluster said nothing but Ray's warnings for more than 300 s (attack23a), and a ``ray://`` one
    took ~30 s. One TCP connect tells a closed port at once; a port that answers is left to Ray
    (a firewall that drops packets costs ``PROBE_SECONDS``). ``auto`` and other forms are Ray's.
    """
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        return
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_SECONDS).close()
    except OSError as e:
        raise join_error(address, source, ConnectionError(f"nothing answers at {host}:{port}: {e}")) from None


def job_runtime_env(environ: Mapping[str, str] = os.environ) -> dict[str, Any]:
    """The runtime environment of the Ray job this driver is the entrypoint of ({} outside one).

    ``ray.init`` merges it with the one it is given and refuses a field, or an environment variable,
    set in both (attack23a: a job setting OMP_NUM_THREADS, or shipping its own py_modules, was
    refused as "cannot join"), so the executor leaves out what the job already sets.
    """
    try:
        config = json.loads(environ.get(IN_RAY_JOB, "") or "{}")
    except ValueError:
        return {}  # Ray reads it too, and says what is wrong with it
    env = config.get("runtime_env") if isinstance(config, dict) else None
    return env if isinstance(env, dict) else {}


def init_runtime_env(job_env: Mapping[str, Any], py_modules: list[str]) -> dict[str, Any]:
    """What ``ray.init`` is given: the pinned threads, and the plug-in packages, less what the job's
    runtime env ``job_env`` already sets (its values win; ``threads.pin`` still pins each cell).
    Where the job ships its own py_modules, the plug-ins go with each task instead (``Shipper``)."""
    job_vars = job_env.get("env_vars") or {}
    env: dict[str, Any] = {"env_vars": {k: v for k, v in PINNED_THREADS.items() if k not in job_vars}}
    if py_modules and "py_modules" not in job_env:
        env["py_modules"] = py_modules
    return env


def _auth_failure(e: BaseException) -> bool:
    """Whether joining failed on token authentication: Ray 2.60 raises ``AuthenticationError`` when
    RAY_AUTH_MODE=token has no token, and a ``ConnectionError`` whose cause names InvalidAuthToken
    when the head requires a token this driver lacks or gets wrong."""
    seen: BaseException | None = e
    for _ in range(8):  # the chain ConnectionError <- RuntimeError <- AuthenticationError, in text
        if seen is None:
            return False
        text = f"{type(seen).__name__}: {seen}"
        if "AuthenticationError" in text or "InvalidAuthToken" in text:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def join_error(address: str, source: str, e: BaseException) -> AmsweepError:
    """The one line a failed join earns, naming the address as the user gave it; for token
    authentication, exactly what to set."""
    given = {"--address": f"--address {address}", "RAY_ADDRESS": f"RAY_ADDRESS={address}"}
    where = given.get(source, f"the {source}'s cluster at {address}")
    if _auth_failure(e):
        return AmsweepError(
            f"{where}: the cluster requires token authentication and this driver has no matching token: set "
            "RAY_AUTH_MODE=token and give it the head's token, as RAY_AUTH_TOKEN=<token> or the file "
            "~/.ray/auth_token (or RAY_AUTH_TOKEN_PATH) copied from the head (`ray get-auth-token` there "
            "prints it); nothing ran"
        )
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    return AmsweepError(f"{where}: cannot join that Ray cluster ({type(e).__name__}: {first}); nothing ran")


def _run_batch_on_node(fn: Callable[..., Any], jobs: list[CellJob], setup: Callable) -> tuple[str, Any]:
    """Worker side: a batch's packed outcomes with the id of the node that ran it (a local lookup,
    no round trip), so the driver knows which nodes did the work."""
    import ray

    return ray.get_runtime_context().get_node_id(), run_batch(fn, jobs, setup)


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


def _ray_get(ref: Any) -> Any:
    import ray

    return ray.get(ref)


def _worker_setup(jobs: list[CellJob], plugin_path: str, localize: Callable | None) -> list[CellJob]:
    """Worker side, before a batch: discover the driver's plug-ins from their shipped copies (a cell
    names its components by kind, so a worker must find the same modules), then point datasets at
    shipped files."""
    registry.use_plugin_path(plugin_shipping.worker_path(plugin_path))
    return localize(jobs) if localize is not None else jobs


# every ray.init of the executor: no dashboard (a driver has no use for it), errors only, workers' output shown
INIT_ARGS: dict[str, Any] = {"include_dashboard": False, "logging_level": "ERROR", "log_to_driver": True}


def local_init_args(workers: int | None, runtime_env: dict[str, Any]) -> tuple[dict[str, Any], dict[str, str]]:
    """(``ray.init`` keyword arguments, thread pins for the raylet's environment) of a private local
    Ray: ``address="local"``, always a fresh Ray on this machine, never a cluster that `ray start`
    left behind (``ray.init()`` would otherwise join it, alive or dead); the pins go in the raylet's
    environment instead of ``runtime_env`` (``ray_local``: Ray's prestarted workers then serve)."""
    env = dict(runtime_env)
    pins = env.pop("env_vars")
    kwargs: dict[str, Any] = {**INIT_ARGS, "address": "local", "num_cpus": workers or os.cpu_count() or 1}
    if env:
        kwargs["runtime_env"] = env
    return kwargs, pins


# (the launching thread, workers) -> a private local Ray being started: a run in another thread of this
# process never adopts (and later shuts down) this one's
_prestarted: dict[tuple[int, int | None], ray_local.Starting] = {}


def prestart(options: Mapping[str, Any]) -> bool:
    """Begin starting, on a background thread, the private local Ray that ``RayExecutor(**options)``
    would start, so that it comes up while the driver imports its cell code, reads the spec and
    counts its tasks; whether it did. Only in the plain case: no cluster configured, no Ray running
    in this process, no plug-in folders to upload (their staging stays with ``RayExecutor``); the
    executor then adopts it (``abandon_prestart`` stops one nobody adopted)."""
    workers = options.get("workers")
    try:
        address, _ = where_to_run(options.get("address"))
        if address is not None or _prestarted or IN_RAY_JOB in os.environ or registry.plugin_path():
            return False
    except AmsweepError:
        return False  # RayExecutor says what is wrong
    ray = sys.modules.get("ray")  # not imported here: the thread imports it while this one goes on
    if ray is not None and ray.is_initialized():
        return False
    keep_ray_on_loopback(None)
    kwargs, pins = local_init_args(workers, init_runtime_env({}, []))
    _prestarted[(threading.get_ident(), workers)] = starting = ray_local.Starting(kwargs, pins)
    # this thread waits while that one imports Ray (~0.25 s): importing the cell code meanwhile, the two
    # took turns on the GIL and ray.init began ~0.3 s later (0.85-0.90 s against 0.55-0.59 s from start)
    starting.imported()
    return True


def _take_prestarted(address: str | None, workers: int | None) -> ray_local.Starting | None:
    """The prestarted Ray an executor for (``address``, ``workers``) adopts, or None."""
    return _prestarted.pop((threading.get_ident(), workers), None) if address is None else None


def abandon_prestart() -> None:
    """Stop the Ray this thread prestarted if no executor adopted it (the run ended before it needed one)."""
    for key in [k for k in _prestarted if k[0] == threading.get_ident()]:
        _stop(_prestarted.pop(key))


def _stop(starting: ray_local.Starting) -> None:
    """Wait for ``starting``'s ``ray.init`` to return, shut the Ray it started down, end its thread;
    then raise a Ctrl-C that arrived while it started (``Starting`` holds it back until then)."""
    interrupted: KeyboardInterrupt | None = None
    try:
        starting.result()
    except KeyboardInterrupt as e:
        interrupted = e
    except BaseException:
        pass  # it did not start: nothing to stop
    try:
        if starting.started:
            import ray

            ray.shutdown()
    finally:
        starting.release()
    if interrupted is not None:
        raise interrupted


class RayExecutor:
    """Batches of cells as Ray tasks, a bounded number of CPUs' worth in flight.

    Joins the cluster ``where_to_run`` finds (``--address``: host:port, ``auto`` or ``ray://host:port``;
    else ``RAY_ADDRESS``, as inside ``ray job submit``), else starts a private local Ray, light
    (``ray_local``). Numba and BLAS threads are pinned to one per CPU through the runtime environment
    (a private Ray: the raylet's environment) and per cell by ``threads.pin``. A batch whose worker
    dies is retried by Ray (``max_retries``); one lost past its retries is split and its cells are
    retried one per task, so a cell that kills its worker fails alone.
    """

    name = "ray"
    OPTIONS: ClassVar[tuple[str, ...]] = ("address", "workers", "cells_per_task")

    def __init__(
        self,
        address: str | None = None,
        workers: int | None = None,
        in_flight_per_worker: int = 2,
        max_retries: int = 2,
        cells_per_task: int | None = None,
        target_seconds: float = 2.0,
    ) -> None:
        address, self.source = where_to_run(address)
        self.address = address
        keep_ray_on_loopback(address)  # before Ray is imported: it reads the switch at import
        import ray

        self._ray = ray
        self._starting = _take_prestarted(address, workers)
        self._owns_ray = self._starting is not None or not ray.is_initialized()
        job_env = job_runtime_env() if self._owns_ray else {}
        job_modules = job_env.get("py_modules") or []
        self._plugins = plugin_shipping.Shipper(inherited=[str(m) for m in job_modules])
        if self._starting is not None:
            try:
                self._starting.result()  # its errors are a local Ray's: raised as they are (below too)
            except BaseException:  # Ctrl-C while it starts too: stop what it started, then stop
                _stop(self._starting)
                raise
        elif self._owns_ray:
            if address is not None:
                probe(address, self.source)
            # the job's own py_modules: ours go with each task (for_batches); else uploaded by ray.init, once
            modules = [] if job_modules else self._plugins.job_modules(registry.plugin_path())
            runtime_env = init_runtime_env(job_env, modules)
            kwargs: dict[str, Any] = {**INIT_ARGS, "runtime_env": runtime_env}
            if address is None:
                kwargs, pins = local_init_args(workers, runtime_env)
            else:
                kwargs["address"] = address
            try:
                if address is None:
                    ray_local.init(ray, kwargs, pins)
                else:
                    ray.init(**kwargs)
            except Exception as e:  # ConnectionError, TimeoutError, ValueError, ray's AuthenticationError
                too_large = plugin_shipping.too_large(e, registry.plugin_path())
                if too_large is not None:
                    ray.shutdown()  # the local Ray it had started, if any
                    raise too_large from None
                if address is None:
                    raise  # a local Ray that cannot start is not the user's input: a bug or the machine
                raise join_error(address, self.source, e) from None
            finally:
                self._plugins.uploaded()
        if address == "auto" and ray._private.worker._global_node is not None:
            self.address = ray._private.worker._global_node.gcs_address  # the cluster "auto" found
        self._nodes: dict[str, dict[str, Any]] = {}  # node id -> ray.nodes() entry, refreshed on news
        self._used: set[str] = set()  # ids of the nodes that ran at least one batch
        self._refresh_nodes()
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.workers = workers or cpus
        self.max_in_flight = max(1, self.workers * in_flight_per_worker)
        self.max_retries = max_retries
        self.cells_per_task = cells_per_task
        self.target_seconds = target_seconds
        self._shipped: dict[str, datafiles.Shipped] = {}
        self.batches = 0  # Ray tasks submitted by the last map_unordered (benchmarks report it)
        self.cell_cpu_seconds = 0.0  # CPU the workers spent inside cells in it (overhead accounting)

    def _refresh_nodes(self) -> None:
        self._nodes = {n["NodeID"]: n for n in self._ray.nodes()}

    def _label(self, node_id: str) -> str:
        """A node's IP, with its id's head where several nodes share one IP (nodes of one machine)."""
        node = self._nodes.get(node_id)
        if node is None:
            return node_id[:12]
        ip = str(node.get("NodeManagerAddress", "?"))
        shared = sum(1 for n in self._nodes.values() if n.get("NodeManagerAddress") == ip) > 1
        return f"{ip}/{node_id[:8]}" if shared else ip

    def describe(self) -> dict[str, Any]:
        """Where this executor runs, JSON-safe: the Ray it started or joined, its live nodes, CPUs and
        task memory (from the node table read at start and on a batch from a node not seen before, so
        a call costs no Ray round trip), and ``nodes_used``, the nodes that ran a batch so far."""
        alive = [n for n in self._nodes.values() if n.get("Alive")]
        return {
            "executor": self.name,
            "address": self.address,
            "source": self.source,
            "nodes": len(alive),
            "cpus": int(sum(n["Resources"].get("CPU", 0.0) for n in alive)),
            "memory_bytes": int(sum(n["Resources"].get("memory", 0.0) for n in alive)),
            "nodes_used": sorted(self._label(i) for i in list(self._used)),  # list: the flusher thread reads it
        }

    def capacity(self) -> tuple[float, float, str]:
        """(memory bytes, CPUs, what offers them) of the largest live node, from Ray's resources."""
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        memory = max((n["Resources"].get("memory", 0.0) for n in nodes), default=0.0)
        cpus = max((n["Resources"].get("CPU", 0.0) for n in nodes), default=0.0)
        return memory, cpus, "the largest node"

    def prepare(self, sweep: Any) -> int:
        """Ship the sweep's driver-local data files to the object store; how many were shipped."""
        self._shipped = datafiles.ship(sweep, self._ray.put)
        return len({ref for s in self._shipped.values() for _, ref in s.files})

    def map_unordered(
        self, fn: Callable[..., Any], jobs: Iterable[CellJob], total: int | None = None
    ) -> Iterator[tuple[CellJob, Any]]:
        """Yield (job, outcome) as batches finish (``map_blocks`` cell by cell)."""
        sizer = self._sizer()
        for batch, packed in self._finished(fn, jobs, total, sizer):
            yield from settle(batch, unpack(packed), sizer)

    def map_blocks(
        self, fn: Callable[..., Any], jobs: Iterable[CellJob], total: int | None = None
    ) -> Iterator[ResultBlock]:
        """Yield each batch as one ResultBlock as it finishes (the runner's path: no per-cell object).
        A subclass that overrides ``map_unordered`` (the plug-in pattern) gets its cells through that
        override, one block each: batches straight from ``_finished`` would bypass it unseen."""
        if type(self).map_unordered is not RayExecutor.map_unordered:
            yield from cell_blocks(self.map_unordered(fn, jobs, total))
            return
        sizer = self._sizer()
        for batch, packed in self._finished(fn, jobs, total, sizer):
            yield settle_block(batch, packed, sizer)

    def _sizer(self) -> BatchSizer:
        return BatchSizer(target_seconds=self.target_seconds, fixed=self.cells_per_task, workers=self.workers)

    def _finished(
        self, fn: Callable[..., Any], jobs: Iterable[CellJob], total: int | None, sizer: BatchSizer
    ) -> Iterator[tuple[Batch, Packed]]:
        """Yield (batch, its packed outcomes) as batches finish; ``total`` (jobs to come) lets the last
        batches shrink so the tail spreads over every worker. Batches still in flight when the caller
        stops are left to ``shutdown``, which ends them with the driver's job.

        No ``ray.cancel`` here: a cancel racing with a task's completion reply aborts the driver
        inside Ray ("Tried to complete task that was not pending"), which turned Ctrl-C into a
        crash before the finished results were flushed.
        """
        ray = self._ray
        plugins, task_env = self._plugins.for_batches(registry.plugin_path())  # shipped names, not paths
        options = {"runtime_env": task_env} if task_env else {}
        remote = ray.remote(max_retries=self.max_retries, retry_exceptions=False, **options)(_run_batch_on_node)
        localize = functools.partial(datafiles.localize, shipped=self._shipped, get=_ray_get) if self._shipped else None
        setup = functools.partial(_worker_setup, plugin_path=plugins, localize=localize)
        batcher = Batcher(iter(jobs), sizer, total, self.workers)
        pending: dict[Any, Batch] = {}
        cpus_in_flight = 0
        self.batches = 0
        self.cell_cpu_seconds = 0.0
        while True:
            while cpus_in_flight < self.max_in_flight:
                batch = batcher.take()
                if batch is None:
                    break
                ref = remote.options(num_cpus=batch.cpus, memory=batch.memory).remote(fn, batch.jobs, setup)
                pending[ref] = batch
                cpus_in_flight += batch.cpus
                self.batches += 1
            if not pending:
                return
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                batch = pending.pop(ref)
                cpus_in_flight -= batch.cpus
                try:
                    node, packed = ray.get(ref)
                    self._note_node(node)
                    self.cell_cpu_seconds += packed.cpu_seconds
                except Exception as e:  # the worker died past its retries, or the node did
                    if len(batch.jobs) > 1:
                        batcher.retry(batch.jobs)  # one cell per task: the culprit fails alone
                        continue
                    packed = pack([(Failed(f"{type(e).__name__}: {e}"), 0.0)])
                yield batch, packed

    def _note_node(self, node: str) -> None:
        if node not in self._used:
            self._used.add(node)
            if node not in self._nodes:
                self._refresh_nodes()  # a node that joined since: one Ray call per new node

    def shutdown(self) -> None:
        """Disconnect from the Ray this executor started or joined: tasks still running end with
        the driver's job (Ray kills the job's workers), and a local Ray stops with its workers.
        A Ray session the caller had already opened is theirs to end."""
        if self._owns_ray:
            self._ray.shutdown()
        if self._starting is not None:
            self._starting.release()
