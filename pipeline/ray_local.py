"""A private local Ray started light: workers that Ray prestarts do the work, no autoscaler monitor.

Measured on this project's 2-core VM (Ray 2.60, ``/tmp/rayh`` scripts of issue 26, load 4-6):

- Thread pins given as the job's ``runtime_env`` ``env_vars`` make every task need workers started
  for that runtime env: the workers Ray prestarts at ``ray.init`` (one per CPU, ~0.5 s of CPU each)
  were never used and killed, and the first two tasks came back 3.1-3.7 s after ``ray.init`` against
  0.9-2.1 s with the pins in the environment the raylet (and so every worker it forks) inherits.
- The autoscaler monitor, useless on a private fixed-size node, costs ~0.5 s of CPU while Ray
  starts, and ``ray.shutdown()`` waited ~1 s for it to exit on SIGTERM: 1.41 s with it, 0.35 s without.

- Third pass (issue 26, Ray 2.60, load 0.6-1.0, ``ray.init`` + 2 tasks + ``ray.shutdown`` alternated):
  with ``include_dashboard=False`` Ray still starts its API server (``dashboard.py``, the usage-stats
  module alone) and ``ray.init`` polls until it is up: 0.8-1.0 s of ``ray.init``, 0.66 s of CPU. The
  raylet registers with the GCS (and ``ray.init`` returns) only once the dashboard agent has opened
  its gRPC and HTTP servers (metrics export, job endpoints); started ``--minimal`` (what Ray does
  where the dashboard's dependencies are missing) the agent opens neither and reports them unused at
  once. Both off: ``ray.init`` 1.6-2.6 s against 2.5-3.5 s. Neither serves a private node: no
  dashboard, no job submission, no metrics scrape; runtime environments (the plug-ins' py_modules)
  have their own agent, workers' output its log monitor.

The pins go to the raylet as ``RayParams.env_vars`` (its environment overrides), and every worker
and agent the raylet forks inherits them, while the driver's own environment is never touched;
where a Ray release lacks that field they go through this process's environment while ``ray.init``
runs (``pinned_environ``). ``RayParams.no_monitor`` is a Ray internal (``ray start --no-monitor``'s):
where a Ray release lacks it, the node starts with its monitor, as before. ``Node.start_api_server`` and
``get_dashboard_dependency_error`` are Ray internals too: where a release lacks them, the node starts
with its API server or full agent, as before (``light_node`` says which levers held).

``Starting`` runs ``init`` on a background thread, so the node comes up while the driver imports
its cell code and reads the spec and the cube (``amsweep.pipeline.ray_executor.prestart``). The
thread stays alive until ``release``: Ray starts its GCS and raylet with PR_SET_PDEATHSIG, which
the kernel fires when the *thread* that forked them ends (issue 26's first pass measured "Failed to
connect to GCS" after a starter thread returned).
"""

from __future__ import annotations

import contextlib
import inspect
import os
import signal
import threading
from typing import Any, Iterator, Mapping

__all__ = ["init", "light_node", "light_params", "pinned_environ", "Starting"]


@contextlib.contextmanager
def pinned_environ(pins: Mapping[str, str]) -> Iterator[None]:
    """``pins`` in this process's environment while the raylet is started, restored after, so the
    driver's own settings are untouched and every worker the raylet forks starts pinned."""
    saved = {name: os.environ.get(name) for name in pins}
    os.environ.update(pins)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def light_params(ray: Any, pins: Mapping[str, str] | None = None) -> Iterator[dict[str, bool]]:
    """While open, the node ``ray.init`` starts has no autoscaler monitor, and its raylet (so every
    worker and agent it forks) gets ``pins`` as ``RayParams.env_vars`` (the raylet's own environment
    overrides) instead of through this process's environment; yields which of the two held
    (``{"no_monitor": ..., "raylet_env": ...}``: False where this Ray's ``RayParams`` lacks the field).

    Why not ``os.environ``: with Ray started on a background thread (``Starting``) the pins sat in
    the driver's environment for the ~2 s of ``ray.init`` while its main thread imported the cell
    code, and SciPy's OpenBLAS, loaded then, kept 1 thread in the driver for good (attack26c)."""
    parameter = getattr(getattr(ray, "_private", None), "parameter", None)
    original = getattr(parameter, "RayParams", None)
    try:
        fields = inspect.signature(original).parameters if original is not None else {}
    except (TypeError, ValueError):
        fields = {}
    held = {"no_monitor": "no_monitor" in fields, "raylet_env": bool(pins) and "env_vars" in fields}
    if parameter is None or not any(held.values()):
        yield held
        return
    extra = dict(pins or {})

    class Light(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            if held["no_monitor"]:
                self.no_monitor = True
            if held["raylet_env"]:
                self.env_vars = {**(getattr(self, "env_vars", None) or {}), **extra}

    parameter.RayParams = Light
    try:
        yield held
    finally:
        parameter.RayParams = original


@contextlib.contextmanager
def light_node(ray: Any) -> Iterator[dict[str, bool]]:
    """While open, the head node ``ray.init`` starts has no API server and a minimal dashboard
    agent; yields which of the two could be arranged (``{"no_api_server": ..., "minimal_agent": ...}``)."""
    utils: Any = getattr(getattr(ray, "_private", None), "utils", None)
    node_cls: Any = getattr(getattr(getattr(ray, "_private", None), "node", None), "Node", None)
    api = getattr(node_cls, "start_api_server", None)
    deps = getattr(utils, "get_dashboard_dependency_error", None)
    held = {"no_api_server": callable(api), "minimal_agent": callable(deps)}

    def no_api_server(self: Any, *args: Any, **kwargs: Any) -> None:
        return None  # its only module with include_dashboard=False is usage stats

    def minimal(*args: Any, **kwargs: Any) -> str:
        return "amsweep: a private local node needs no dashboard"

    if held["no_api_server"]:
        node_cls.start_api_server = no_api_server
    if held["minimal_agent"]:
        utils.get_dashboard_dependency_error = minimal
    try:
        yield held
    finally:
        if held["no_api_server"]:
            node_cls.start_api_server = api
        if held["minimal_agent"]:
            utils.get_dashboard_dependency_error = deps


def init(ray: Any, kwargs: dict[str, Any], pins: Mapping[str, str]) -> bool:
    """``ray.init(**kwargs)`` for a private local Ray with the thread ``pins`` in every worker's
    environment (not in ``runtime_env``: see the module note), without the autoscaler monitor,
    the API server and the dashboard agent's full modules where this Ray allows, and with its
    reaper (``amsweep.pipeline.ray_reaper``) watching from before it starts; whether the monitor
    could be left out."""
    from amsweep.pipeline import ray_reaper

    ray_reaper.start(os.getpid())  # before Ray forks anything: a driver killed mid-start too
    with light_params(ray, pins) as held, light_node(ray):
        with contextlib.nullcontext() if held["raylet_env"] else pinned_environ(pins):
            ray.init(**kwargs)
    return held["no_monitor"]


class Starting:
    """``init`` on a background thread, started at once; ``result`` waits for it (and raises what it
    raised), ``release`` lets the thread end once the node is shut down (see the module note).

    The pins reach the raylet as its own environment overrides (``light_params``), so the driver's
    main thread, importing its cell code meanwhile, never sees them.

    Ctrl-C and SIGTERM (when Python handles them) are held back until ``result``: an interrupt raised
    in the main thread inside importlib's module-lock bookkeeping leaves the global import lock
    held, and this thread, which imports inside ``ray.init``, then waited for it forever (a Ctrl-C at
    0.6 s into ``amsweep run`` hung the run; the lead's review). ``result`` restores the handlers and
    delivers a held signal at once, once ``ray.init`` has returned (~1.6 s at most here).
    """

    def __init__(self, kwargs: dict[str, Any], pins: Mapping[str, str]) -> None:
        self.kwargs = dict(kwargs)
        self._pins = dict(pins)
        self._done = threading.Event()
        self._imported = threading.Event()
        self._release = threading.Event()
        self._light = False
        self._error: BaseException | None = None
        self._held: list[int] = []  # signals that arrived while Ray started
        self._handlers = self._hold_signals()
        self._thread = threading.Thread(target=self._run, name="amsweep-ray-start", daemon=True)
        self._thread.start()

    def _hold_signals(self) -> dict[int, Any]:
        """Replace the Python handlers of SIGINT and SIGTERM with one that notes the signal; the
        handlers replaced (none outside the main thread, where no signal handler runs)."""
        if threading.current_thread() is not threading.main_thread():
            return {}
        saved: dict[int, Any] = {}
        for sig in (signal.SIGINT, signal.SIGTERM):
            handler = signal.getsignal(sig)
            if callable(handler):  # SIG_DFL / SIG_IGN raise nothing in Python: nothing to hold
                saved[sig] = signal.signal(sig, lambda signum, frame: self._held.append(signum))
        return saved

    def _deliver_signals(self) -> None:
        """Put the held handlers back and raise what arrived meanwhile, now that no import is shared."""
        handlers, self._handlers = self._handlers, {}
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
        held, self._held = self._held, []
        for sig in dict.fromkeys(held):
            signal.raise_signal(sig)

    def _run(self) -> None:
        try:
            import ray

            self._imported.set()
            self._light = init(ray, self.kwargs, self._pins)
        except BaseException as e:  # handed to the caller of result(), in its thread
            self._error = e
        finally:
            self._imported.set()  # a failed import too: nobody waits for it in vain
            self._done.set()
        self._release.wait()

    def imported(self) -> None:
        """Wait until the thread has imported Ray (or failed to start)."""
        self._imported.wait()

    def result(self) -> bool:
        """Wait until ``ray.init`` has returned; whether the node started without its monitor (a
        Ctrl-C that came meanwhile is raised here, as ``KeyboardInterrupt``)."""
        self._done.wait()
        self._deliver_signals()
        if self._error is not None:
            raise self._error
        return self._light

    @property
    def started(self) -> bool:
        """Whether ``ray.init`` has returned without an error (a Ray to shut down)."""
        return self._done.is_set() and self._error is None

    def release(self) -> None:
        self._release.set()
