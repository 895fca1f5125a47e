"""What the commands share: argument types, output and spec resolution, and the executor flags.

Apart from ``cli`` so that ``boundary_commands`` (boundary, refine) can use them without importing
``cli``, which registers it: the two imported each other at runtime.
"""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path

from amsweep.pipeline.errors import AmsweepError, SpecError

__all__ = [
    "add_executor_flags",
    "BUNDLED",
    "executor_options",
    "finite_float",
    "positive_int",
    "resolve_spec",
    "usage_error",
    "writable_output",
]

# The bundled spec TOMLs sit beside this module (sweeps/*.toml, installed as amsweep/sweeps/*.toml).
BUNDLED = Path(__file__).resolve().parent


def usage_error(prog: str, message: str) -> str:
    return f"{prog}: error: {message} (see {prog} --help)\n"


def positive_int(text: str) -> int:
    """``--workers 0`` used to mean all CPUs and ``-1`` reached Ray after the cube was made."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected an integer >= 1, got {text!r} (leave the flag out for the default)")
    return value


def finite_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def writable_output(path: str, flag: str) -> None:
    """Refuse an output path that cannot be written before any work (not after a long read)."""
    folder = Path(path).expanduser().absolute().parent
    while not folder.exists() and folder != folder.parent:  # report folders are created
        folder = folder.parent
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise AmsweepError(f"{flag} {path}: cannot write there ({folder} is not a writable folder)")


def resolve_spec(name: str) -> Path:
    """A spec path, or the name of a bundled sweep (``quickstart`` -> sweeps/quickstart.toml)."""
    path = Path(name)
    if path.is_file():
        return path
    bundled = BUNDLED / f"{name.removesuffix('.toml')}.toml"
    if bundled.is_file():
        return bundled
    raise SpecError(f"spec {name!r}: no such file, and no bundled sweep of that name (see `amsweep specs`)")


def executor_options(args: argparse.Namespace) -> dict[str, object]:
    """The executor options given on the command line, refused (before any cube is touched) where
    the chosen executor does not take them: a flag that would be silently ignored is a mistake."""
    from amsweep.pipeline.contracts import EXECUTOR_OPTIONS
    from amsweep.pipeline.executors import EXECUTORS

    cls = EXECUTORS[args.executor]
    given = {name: getattr(args, name) for name in EXECUTOR_OPTIONS if getattr(args, name) is not None}
    for name in given:
        if name not in cls.OPTIONS:
            takers = [k for k, c in EXECUTORS.items() if name in c.OPTIONS]
            raise AmsweepError(
                f"--{name.replace('_', '-')} is not an option of --executor {args.executor}"
                + (f" (it is one of --executor {'|'.join(takers)})" if takers else "")
            )
    return given


# ``amsweep.pipeline.executors.EXECUTORS``' names, written out: importing the executors (Ray's driver side,
# the batcher, data files) to build the parser cost every command ~0.25 s of its start, `amsweep status`
# included (issue 26); tests/test_layers.py checks that the two agree.
EXECUTOR_NAMES = ("ray", "serial")


def add_executor_flags(r: argparse.ArgumentParser) -> None:
    """--executor and its options: one set for every command that runs cells (run, refine)."""
    r.add_argument(
        "--address",
        default=None,
        help="Ray cluster to join: host:port, auto or ray://host:port (default: RAY_ADDRESS, which `ray job "
        "submit` sets; without either, a private Ray on this machine)",
    )
    r.add_argument("--workers", type=positive_int, default=None, help="parallel tasks (default: all CPUs)")
    r.add_argument(
        "--executor",
        choices=EXECUTOR_NAMES,
        default="ray",
        help="where cells run: ray (default: local Ray, or a cluster with --address/RAY_ADDRESS) or serial (in this "
        "process, without Ray: debugging, profiling)",
    )
    r.add_argument(
        "--cells-per-task",
        type=positive_int,
        default=None,
        metavar="K",
        help="cells per Ray task (default: sized from measured cell durations, ~2 s a task)",
    )
