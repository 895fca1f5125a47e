"""The Python API: ``amsweep.run`` starts, resumes or extends a sweep and ``amsweep.open`` reads a
cube, so a notebook does what the command line does, with the figures as data.

``run`` is the same code path as ``amsweep run`` (``amsweep.sweeps.launch``): the same validation
before any cube is touched, the same refusals (raised as ``AmsweepError``), the same resume.
Everything heavy (Ray, numba, zarr) is imported when called, not when ``amsweep`` is imported.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from amsweep.sweeps.launch import RunSummary, SpecLike

if TYPE_CHECKING:
    import xarray

__all__ = ["open", "run", "RunSummary"]


def run(
    spec: SpecLike,
    out: str,
    *,
    executor: str = "ray",
    address: str | None = None,
    workers: int | None = None,
    cells_per_task: int | None = None,
    retry_failed: bool = True,
    progress: bool = False,
    dry_run: bool = False,
    storage_options: dict | None = None,
    verbose: bool = False,
    allow_changed_plugins: bool = False,
) -> RunSummary:
    """Run every task of ``spec`` not yet done into the cube at ``out`` and say what was done.

    ``spec``: a TOML path, a bundled sweep's name (``amsweep specs``), a parsed spec (dict) or a
    ``Sweep``. ``executor``: "ray" (a local Ray, or the cluster at ``address`` / ``RAY_ADDRESS``) or
    "serial" (this process). ``dry_run``: say what would run, create and start nothing.
    ``verbose``: print what ``amsweep run`` prints. Ctrl-C returns a summary with
    ``interrupted=True`` (finished results are saved; call again to resume).
    ``allow_changed_plugins``: resume a cube whose plug-in code changed (refused otherwise).
    """
    from amsweep.pipeline import registry
    from amsweep.sweeps.launch import check_options, check_out, launch, plan, to_sweep

    check_out(out)  # None would become ./None
    given = {"address": address, "workers": workers, "cells_per_task": cells_per_task}
    options: dict[str, Any] = {k: v for k, v in given.items() if v is not None}
    check_options(executor, options)  # what the CLI refuses, refused for a dry run too
    registry.reload_changed()  # the spec is read with the plug-in code as it is now
    sweep = to_sweep(spec)
    say = print if verbose else (lambda _: None)
    if dry_run:
        return plan(sweep, str(out), retry_failed, storage_options, say, allow_changed_plugins)
    return launch(
        sweep,
        str(out),
        executor,
        options,
        retry_failed,
        progress,
        storage_options,
        say,
        allow_changed_plugins=allow_changed_plugins,
        command=_call(spec, out, executor, options),
    )


def _call(spec: SpecLike, out: str, executor: str, options: dict[str, Any]) -> str:
    """What the run record names as the command: this call, not the host process's argv (a
    notebook kernel's launcher line says nothing of the run)."""
    shown = str(spec) if isinstance(spec, (str, Path)) else f"<{type(spec).__name__}>"
    args = [repr(shown), f"out={str(out)!r}", f"executor={executor!r}"]
    args += [f"{k}={v!r}" for k, v in options.items()]
    return f"amsweep.run({', '.join(args)})"


def open(cube: str, storage_options: dict | None = None) -> "xarray.Dataset":  # noqa: A001 (amsweep.open)
    """The cube as a lazy ``xarray.Dataset``: what ``xr.open_dataset(cube, engine="amsweep")``
    and ``amsweep query`` read (status and every metric, coordinates loaded; dask, a chunk per shard)."""
    from amsweep.storage.backend import shard_chunked
    from amsweep.storage.query import open_cube

    return shard_chunked(open_cube(str(cube), storage_options))
