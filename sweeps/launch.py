"""One way to run a sweep: what ``amsweep run`` and ``amsweep.run`` both call.

``launch`` validates, sizes and connects before the cube is created or opened, so every refusal
(bad spec or plug-in, a cell too large for any node, a cluster that cannot be joined) leaves
``out`` as it was and the corrected call then runs at the same path. It returns a ``RunSummary``,
the data the command line prints; messages meant for a person go to ``say`` (the CLI passes
``print``, the Python API nothing). ``plan`` is the dry run: it reads the cube, if any, and says
what a run would add and compute, creating, changing and starting nothing.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Union

from amsweep.pipeline.errors import AmsweepError, CubeError, SpecError

if TYPE_CHECKING:
    from amsweep.pipeline.spec import Sweep

__all__ = ["launch", "plan", "RunSummary", "SpecLike", "to_sweep"]

SpecLike = Union[str, Path, dict, "Sweep"]
Say = Callable[[str], None]


@dataclass
class RunSummary:
    """What one run (or dry run) did or would do: the figures ``amsweep run`` prints.

    ``to_run`` is the number of tasks pending when the run started (failed ones included unless
    ``retry_failed`` is off); ``tasks`` counts every applicable task of the sweep. ``where`` is the
    executor's ``describe()`` (executor, address, nodes, ...) or ``{}`` where none was started.
    ``added`` (dry runs) maps each task axis to the values a run would add to an existing cube,
    with the number of new tasks at each; ``new_tasks`` is their total.
    """

    sweep: str
    spec_hash: str
    cube: str
    tasks: int
    to_run: int
    done: int = 0
    failed: int = 0
    not_applicable: int = 0
    remaining: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    where: dict[str, Any] = field(default_factory=dict)
    dry_run: bool = False
    creates: bool = False  # dry run: no cube at ``cube`` yet, a run would create it
    added: dict[str, dict[Any, int]] = field(default_factory=dict)
    new_tasks: int = 0
    run: str = ""  # this run's id in the cube's history (``amsweep status --history``); "" if none ran

    @property
    def exit_code(self) -> int:
        """The CLI's exit status: 130 interrupted, 1 some task failed, 0 otherwise."""
        if self.interrupted:
            return 130
        return 1 if self.failed else 0

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def to_sweep(spec: SpecLike) -> "Sweep":
    """A spec file path, a bundled sweep's name, a parsed spec (dict) or a ``Sweep``."""
    from amsweep.pipeline import spec as spec_mod
    from amsweep.sweeps.arguments import resolve_spec

    if isinstance(spec, spec_mod.Sweep):
        return spec
    if isinstance(spec, dict):
        return spec_mod.from_dict(dict(spec))
    if isinstance(spec, (str, Path)):
        return spec_mod.load(resolve_spec(str(spec)))
    raise SpecError(f"spec {spec!r}: expected a path, a bundled sweep name, a dict or a Sweep")


def _count(sweep: "Sweep") -> int:
    return sum(1 for _ in sweep.tasks())


def _quiet(_: str) -> None:
    pass


def launch(
    sweep: "Sweep",
    out: str,
    executor: str = "ray",
    options: dict[str, Any] | None = None,
    retry_failed: bool = True,
    progress: bool = False,
    storage_options: dict | None = None,
    say: Say = _quiet,
    allow_changed_plugins: bool = False,
    command: str | None = None,
) -> RunSummary:
    """Run (or resume, or extend) ``sweep`` into the cube at ``out`` with the named executor.

    Once the executor is up, ``say`` hears where the sweep runs (local Ray, or a cluster and its
    size), and after the run which nodes ran cells. The code hashes of the sweep's plug-ins are
    recorded in the cube; resuming it with changed plug-in code is refused unless
    ``allow_changed_plugins``. ``command`` is what the run record names as its command (None: argv)."""
    from amsweep.pipeline import registry

    check_out(out)
    options = dict(options or {})
    check_options(executor, options)
    registry.reload_changed()  # this process imported a plug-in whose file changed since: run the code we hash
    total = _count(sweep)
    finished = _nothing_to_do(sweep, out, retry_failed, storage_options, total, say)
    if finished is not None:
        return finished
    with _early_local_ray(executor, options):
        # the cell code's imports, while the prestarted Ray comes up
        from amsweep.pipeline.executors import EXECUTORS, where
        from amsweep.sweeps.runner import preflight
        from amsweep.storage.cube import Cube

        try:
            ex = EXECUTORS[executor](**options)
        except KeyboardInterrupt:
            say("interrupted while starting: nothing ran; run the same command again to start")
            return RunSummary(sweep.name, sweep.spec_hash, out, total, 0, interrupted=True)
        try:
            say(where(ex))
            preflight(sweep, ex)
            cube = Cube.create_or_open(
                out,
                sweep,
                storage_options,
                plugins=registry.sweep_code_hashes(sweep),  # recorded; a changed one refuses a resume
                allow_changed_plugins=allow_changed_plugins,
            )
            try:
                _refuse_shared(cube, out)
                return _run_on(cube, sweep, ex, out, retry_failed, progress, say, command)
            except AmsweepError:
                release_quietly(cube)
                raise
            finally:
                cube.release()
        finally:
            ex.shutdown()


@contextlib.contextmanager
def _early_local_ray(executor: str, options: dict[str, Any]) -> Iterator[None]:
    """For the ray executor, a private local Ray comes up on a background thread while this one
    imports the cell code (~0.4 s: numba, the kernels' modules), and RayExecutor adopts it (issue 26,
    third pass); one nobody adopted (an error, or a Ctrl-C in prestart's own wait: attack26c) is
    stopped on the way out."""
    from amsweep.pipeline import ray_executor

    try:
        if executor == "ray":
            ray_executor.prestart(options)
        yield
    finally:
        ray_executor.abandon_prestart()


def check_out(out: object) -> None:
    """Refuse a missing ``out``: ``str(None)`` made a cube in ./None, and "" one spread over the
    current folder itself (``amsweep.run(spec, out=os.environ.get("CUBE"))`` with CUBE unset)."""
    if not isinstance(out, (str, Path)) or not str(out).strip():
        raise AmsweepError(f"out {out!r}: expected the path or URL of the cube (nothing was written)")


def check_counts(options: dict[str, Any]) -> None:
    """``workers`` / ``cells_per_task`` as the CLI's positive_int takes them: a whole number >= 1
    (the Ray executor reads workers=0 as "all CPUs", which nobody asking for 0 meant)."""
    for name in ("workers", "cells_per_task"):
        value = options.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise AmsweepError(f"{name}={value!r}: expected a positive whole number")


def _refuse_shared(cube, out: str) -> None:
    """One run per cube in this process too: the lease is shared within a process (one process may
    open a cube twice), so a second amsweep.run from another thread would otherwise run the same
    pending tasks as the first (measured: 147 of 320 tasks computed twice)."""
    held = getattr(cube, "lease", None)
    if held is not None and held.users_in_process > 1:
        raise CubeError(
            f"{out} is in use by another run (or a cube opened for writing) in this process; wait for it "
            "to finish or release it, then run again (nothing was changed)"
        )


def check_options(executor: str, options: dict[str, Any]) -> None:
    """Refuse an unknown executor, or an option it does not take (silently ignored, it would be a
    mistake found only after the run), before anything starts."""
    from amsweep.pipeline.executors import EXECUTORS

    if executor not in EXECUTORS:
        raise AmsweepError(f"executor {executor!r}: expected one of {', '.join(sorted(EXECUTORS))}")
    check_counts(options)
    for name in options:
        if name not in EXECUTORS[executor].OPTIONS:
            takers = [k for k, c in EXECUTORS.items() if name in c.OPTIONS]
            raise AmsweepError(
                f"{name} is not an option of executor {executor!r}"
                + (f" (it is one of executor {' or '.join(map(repr, takers))})" if takers else "")
            )


def release_quietly(cube) -> None:
    """Release the cube's lease after a refusal or a failed store; if the store is gone, say
    nothing more than the error does (the lease then expires by itself, and a resume on this
    machine takes it over at once)."""
    import logging

    from amsweep.storage import lease

    muted = logging.getLogger(lease.__name__)
    was = muted.disabled
    muted.disabled = True
    try:
        cube.release()
    finally:
        muted.disabled = was


def _nothing_to_do(
    sweep: "Sweep", out: str, retry_failed: bool, storage_options: dict | None, total: int, say: Say
) -> RunSummary | None:
    """A summary, without starting an executor, where ``out`` holds this very spec's cube with no
    task left to run; None for anything else (no cube, another spec, an older format), which is
    for ``Cube.create_or_open`` to create, grow or refuse once the executor is connected."""
    from amsweep.pipeline.metric_table import METRICS
    from amsweep.storage.cube import Cube
    from amsweep.storage.schema import FORMAT_VERSION
    from amsweep.storage.store_errors import store_boundary

    with store_boundary(out, "reading the cube"):
        try:
            cube = Cube.open(out, storage_options)
        except AmsweepError:
            return None
        if cube.sweep.spec_hash != sweep.spec_hash or cube.format != FORMAT_VERSION:
            return None
        if any(name not in cube.arrays for name in ("status", *METRICS)):
            return None  # a metric new to this amsweep: opening for writing adds its variable
        if cube.count_pending(retry_failed=retry_failed):
            return None
        _say_todo(cube, sweep, out, retry_failed, total, say)
    return RunSummary(sweep.name, cube.sweep.spec_hash, out, total, 0)


def _say_todo(cube, sweep: "Sweep", out: str, retry_failed: bool, total: int, say: Say) -> int:
    """Say how many tasks this run has to do (and why none, if none); that count."""
    todo = cube.count_pending(retry_failed=retry_failed)
    say(f"sweep {sweep.name!r} (spec {cube.sweep.spec_hash}): {todo} task(s) to run of {total}; cube {out}")
    if todo == 0:
        failed = cube.count_pending(retry_failed=True)
        if failed:
            say(
                f"nothing to do: {failed} failed task(s) left failed (--no-retry-failed), every other "
                "task is done or not applicable (see `amsweep status --errors`)"
            )
        else:
            say("nothing to do: every task is done (see `amsweep status`)")
    return todo


def _where(executor) -> dict[str, Any]:
    describe = getattr(executor, "describe", None)
    if describe is not None:
        return dict(describe())
    return {"executor": executor.name, "workers": executor.workers}


def _run_on(
    cube, sweep: "Sweep", executor, out: str, retry_failed: bool, progress: bool, say: Say, command: str | None = None
) -> RunSummary:
    from amsweep.pipeline.executors import used
    from amsweep.sweeps.runner import run

    total = _count(cube.sweep)
    todo = _say_todo(cube, sweep, out, retry_failed, total, say)
    summary = RunSummary(sweep.name, cube.sweep.spec_hash, out, total, todo)
    if todo == 0:
        summary.where = _where(executor)
        return summary

    def started(line: str) -> None:
        # "no data file to ship" tells nobody anything; "shipped N" says when a driver-local copy
        # may go. Written above a progress bar (tqdm.write), never into it.
        if line.startswith("shipped") and say is not _quiet:
            from tqdm import tqdm

            tqdm.write(line) if progress else say(line)

    report = run(cube, executor, retry_failed=retry_failed, progress=progress, on_start=started, command=command)
    summary.where = _where(executor)
    for name in ("done", "failed", "not_applicable", "remaining", "seconds", "interrupted", "errors", "run"):
        setattr(summary, name, getattr(report, name))
    say(
        f"done {report.done}, failed {report.failed}, not applicable {report.not_applicable}, "
        f"remaining {report.remaining} in {report.seconds:.1f} s"
    )
    for line in report.errors[:5]:
        say(f"  failure: {line}")
    say(used(executor))
    if report.interrupted:
        say("interrupted: finished results are saved; run the same command again to resume")
    return summary


# ---- dry run -----------------------------------------------------------------------------------
def _identity(variant: dict[str, Any]) -> str:
    """What keys a variant's random streams: its first label (kept when it is renamed)."""
    return str(variant.get("stream") or variant["label"])


def _task_keys(sweep: "Sweep") -> dict[tuple, dict[str, Any]]:
    """Each applicable task by its identity (variants by stream), with its axis values."""
    out = {}
    for t in sweep.tasks():
        key = (t.dataset.stream or t.dataset.label, t.N, t.load, t.rule.stream or t.rule.label, t.seed)
        out[key] = {"dataset": t.dataset.label, "N": t.N, sweep.load_axis: t.load, "rule": t.rule.label, "seed": t.seed}
    return out


def plan(
    sweep: "Sweep",
    out: str,
    retry_failed: bool = True,
    storage_options: dict | None = None,
    say: Say = _quiet,
    allow_changed_plugins: bool = False,
) -> RunSummary:
    """What a run of ``sweep`` into ``out`` would do, read only: a new cube and its size, or the
    values an extension adds (with the new tasks at each) and the tasks left pending. What the run
    would refuse (another spec, changed plug-in code, a cube a live driver holds) raises the run's
    own error. Nothing is created or changed, nothing started."""
    from amsweep.pipeline import registry
    from amsweep.pipeline.spec import from_canonical
    from amsweep.storage import backup, extend, plugin_record, zarr_documents
    from amsweep.storage.cube import Cube, _foreign_objects
    from amsweep.storage.objects import objects_at
    from amsweep.storage.schema import FORMAT_VERSION
    from amsweep.storage.store_errors import no_bucket_message, store_boundary

    check_out(out)
    registry.reload_changed()
    total = _count(sweep)
    with store_boundary(out, "reading the cube"):
        objects = objects_at(out, storage_options)
        doc = backup.read_root(objects, out)
        attrs = (doc or {}).get("attributes") or {}
        if doc is None or (attrs.get(zarr_documents.CREATING) and "amsweep_spec" not in attrs):
            if doc is None and _foreign_objects(objects):  # the run's own test: a lone lease is free
                raise CubeError(f"{out}: exists and is not a Zarr v3 group; a run would refuse to touch it")
            bucket = _missing_bucket(objects, out)
            if bucket is not None:
                raise CubeError(no_bucket_message(out, bucket))
            _refuse_held(objects, out)
            summary = RunSummary(sweep.name, sweep.spec_hash, out, total, total, remaining=total, dry_run=True)
            summary.creates, summary.new_tasks = True, total
            summary.added = {name: {v: 0 for v in values} for name, values in sweep.axes.items()}
            for coords in _task_keys(sweep).values():
                for name, value in coords.items():
                    summary.added[name][value] += 1
            _say_plan(summary, sweep, say)
            return summary
        cube = Cube.open(out, storage_options)
        if cube.format != FORMAT_VERSION:
            raise CubeError(
                f"{out}: cube format {cube.format} can be read but not written by this amsweep; "
                f"`amsweep upgrade {out}` converts it"
            )
        pending = cube.count_pending(retry_failed=retry_failed)
        merged = cube.sweep
        if cube.sweep.spec_hash != sweep.spec_hash:
            cube._refuse_other_spec(sweep)  # the very refusal a run would give
            merged = from_canonical(extend.merge(cube.sweep.canonical, sweep.canonical)[0])
        hashes = registry.sweep_code_hashes(sweep)
        plugin_record.changed_plugins(out, cube.attrs, hashes, allow_changed_plugins)  # the run's refusal too
        _refuse_held(objects, out)
    before = _task_keys(cube.sweep)
    new = {k: v for k, v in _task_keys(merged).items() if k not in before}
    total = len(before) + len(new)
    summary = RunSummary(
        sweep.name, merged.spec_hash, out, total, pending + len(new), remaining=pending + len(new), dry_run=True
    )
    summary.new_tasks = len(new)
    counts: dict[str, Counter] = {}
    for coords in new.values():
        for name, value in coords.items():
            counts.setdefault(name, Counter())[value] += 1
    old_ids = {family: {_identity(v) for v in cube.sweep.canonical[family]} for family in ("datasets", "rules")}
    merged_by = {family: {v["label"]: v for v in merged.canonical[family]} for family in ("datasets", "rules")}
    for name, counter in counts.items():
        if name in ("dataset", "rule"):  # a variant renamed because a parameter is now swept is not new
            family = name + "s"
            added = [v for v in counter if _identity(merged_by[family][v]) not in old_ids[family]]
        else:
            added = [v for v in counter if v not in cube.sweep.axes.get(name, [])]
        if added:
            summary.added[name] = {v: counter[v] for v in added}
    _say_plan(summary, sweep, say, pending)
    return summary


def _missing_bucket(objects, out: str) -> str | None:
    """The bucket of an S3 cube path if S3 says it does not exist (NoSuchBucket, as the run tells
    it: ``store_errors.missing_bucket``), else None. Not s3fs's ``exists(bucket)``: False for any
    failed HeadBucket, so a policy that only allows objects under a prefix read as "no bucket"."""
    from amsweep.storage.store_errors import missing_bucket

    if not getattr(objects, "s3", False):
        return None
    try:
        objects.fs.ls(objects.base, refresh=True)  # a ListObjectsV2 under the cube: what a run needs
    except Exception as e:
        return missing_bucket(e)
    return None


def _refuse_held(objects, out: str) -> None:
    """Raise what the run would (``LeaseHeld``) where a live driver holds the cube: its heartbeat is
    fresh and, on this machine, its process alive (this process too: a second run here is refused)."""
    from amsweep.storage import history, lease

    holder = lease.holder_of(objects)
    if holder is None:
        return
    age = history.heartbeat_age(holder)
    here = holder.get("host") == lease.HOST and holder.get("machine") == lease.MACHINE
    if age > lease.stale_seconds() or (here and not lease._alive(holder.get("pid"), holder.get("pid_start"))):
        return  # a run takes it over
    raise lease.LeaseHeld(
        f"{out} is in use by another driver: {holder.get('holder')} (`{holder.get('command')}`, last heartbeat "
        f"{age:.0f} s ago); a run now would be refused (nothing was created or changed)"
    )


def _say_plan(summary: RunSummary, sweep: "Sweep", say: Say, pending: int = 0) -> None:
    if summary.creates:
        say(
            f"dry run: no cube at {summary.cube}; a run would create it for sweep {sweep.name!r} "
            f"(spec {sweep.spec_hash})"
        )
        for name, values in summary.added.items():
            say(f"  {name}: {', '.join(f'{v} ({n} tasks)' for v, n in values.items())}")
        say(f"  {summary.tasks} task(s) to run")
    else:
        verb = "extends" if summary.new_tasks or summary.added else "matches"
        say(f"dry run: sweep {sweep.name!r} (spec {sweep.spec_hash}) {verb} the cube at {summary.cube}")
        for name, values in summary.added.items():
            say(f"  adds {name}: {', '.join(f'{v} (+{n} tasks)' for v, n in values.items())}")
        if summary.new_tasks:
            say(f"  {summary.new_tasks} new task(s), {pending} pending in the cube")
        say(f"  {summary.to_run} task(s) to run of {summary.tasks}")
    say("nothing was created or changed, and no executor was started")
