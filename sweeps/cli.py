"""The ``amsweep`` command and its sub-commands (``amsweep --help`` lists every one registered).

Every sub-command validates its input fully before touching a cube, and prints a mistake in
that input (an ``AmsweepError`` or a usage error) as one line, ``amsweep CMD: error: ...``, with
exit code 2. Anything else is a bug: its traceback is shown, with a line asking to report it.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

from amsweep.pipeline.errors import AmsweepError
from amsweep.sweeps.termination import sigterm_as_interrupt
from amsweep.sweeps.arguments import (
    BUNDLED,
    add_executor_flags,
    executor_options,
    finite_float,
    usage_error,
    writable_output,
)

if TYPE_CHECKING:
    from amsweep.analysis.style import FigureStyle

__all__ = ["BUNDLED", "main"]

DESCRIPTION = "Parameter sweeps of associative-memory experiments, from a laptop to a Ray cluster; commands"


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error printed as one line like every other amsweep error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, usage_error(self.prog, message))


def cmd_run(args: argparse.Namespace) -> int:
    """Everything but the printing is ``amsweep.sweeps.launch`` (one way to run, shared with
    ``amsweep.run``): validate, size and connect before the cube is created or opened, so a
    refusal leaves ``--out`` as it was and the corrected command then runs at the same path."""
    from amsweep.sweeps.launch import launch, plan, to_sweep

    options = executor_options(args)
    sweep = to_sweep(args.spec)
    if args.dry_run:
        plan(
            sweep,
            args.out,
            retry_failed=not args.no_retry_failed,
            say=print,
            allow_changed_plugins=args.allow_changed_plugins,
        )
        return 0
    summary = launch(
        sweep,
        args.out,
        args.executor,
        options,
        retry_failed=not args.no_retry_failed,
        progress=not args.quiet,
        say=lambda line: print(line, flush=True),  # each line out before Ray stops, not buffered past it
        allow_changed_plugins=args.allow_changed_plugins,
    )
    return summary.exit_code


def cmd_status(args: argparse.Namespace) -> int:
    import json

    from amsweep.storage.status import render_history, render_status, status_data
    from amsweep.storage.store_errors import store_boundary

    with store_boundary(args.cube, "reading the cube"):  # an S3 endpoint gone: one line, as run and query say it
        data = status_data(args.cube)
    if args.json:
        print(json.dumps(data, indent=1, default=str))
    elif args.history:
        print(render_history(args.cube, data=data))
    else:
        print(render_status(args.cube, show_errors=args.errors, data=data))
    return 0


def cmd_phase(args: argparse.Namespace) -> int:
    from amsweep.analysis.phase import phase_figure
    from amsweep.storage import query

    look = _figure_style(args)
    writable_output(args.output, "-o")
    where = ",".join(args.where)
    ds = query.select(query.open_cube(args.cube), query.parse_where(where))
    path = phase_figure(
        ds, args.metric, args.x, args.y, args.output, args.at, col=args.col, row=args.row, look=look, where=where
    )
    print(f"wrote {path}")
    return 0


def _figure_style(args: argparse.Namespace) -> FigureStyle:
    """Checked before the cube is opened; matplotlib is imported only by the commands that draw."""
    from amsweep.analysis.style import FigureStyle, parse_size

    return FigureStyle(
        cmap=args.cmap,
        vmin=args.vmin,
        vmax=args.vmax,
        size=parse_size(args.size) if args.size else None,
        dpi=args.dpi,
        font_scale=args.font_scale,
        style=tuple(args.style),
    )


def add_figure_flags(p: argparse.ArgumentParser) -> None:
    """Panels and looks of ``phase`` and ``report`` (analysis/style.py, analysis/amsweep.mplstyle)."""
    p.add_argument("--col", metavar="DIM", default=None, help="one column of panels per value of DIM (e.g. N)")
    p.add_argument("--row", metavar="DIM", default=None, help="one row of panels per value of DIM")
    p.add_argument("--cmap", default=None, help="matplotlib colour map of the heatmaps (default viridis)")
    p.add_argument("--vmin", type=finite_float, default=None, help="lower colour limit (default: the data's minimum)")
    p.add_argument("--vmax", type=finite_float, default=None, help="upper colour limit (default: the data's maximum)")
    p.add_argument("--size", metavar="W,H", default=None, help="figure size in inches (default: from the panels)")
    p.add_argument("--dpi", type=finite_float, default=None, help="PNG resolution (default 150)")
    p.add_argument("--font-scale", type=finite_float, default=1.0, help="multiply every font size (default 1: >= 9 pt)")
    p.add_argument(
        "--style",
        action="append",
        default=[],
        metavar="FILE",
        help="matplotlib style file (or style name) applied after amsweep's own; may be repeated",
    )


def cmd_check(args: argparse.Namespace) -> int:
    from amsweep.storage import backup
    from amsweep.storage.check import restore_root
    from amsweep.storage.cube import Cube
    from amsweep.storage.objects import objects_at
    from amsweep.storage.zarr_documents import DamagedArray

    restored = None
    if args.repair:
        from amsweep.storage import restage

        settled = restage.settle(args.cube, objects_at(args.cube))  # a rewrite left half-way: finish or drop it
        if settled:
            print(f"repaired: {settled}")
        restored = restore_root(args.cube)
    else:
        why = backup.problem(objects_at(args.cube))
        if why:  # the cube cannot be opened, but one command brings it back
            print(f"{args.cube}: 1 problem(s)\n  {why}")
            return 1
    try:
        with Cube.open(args.cube, mode="r+" if args.repair else "r") as cube:
            return _check(cube, args, restored)
    except DamagedArray as e:  # damage that check diagnoses, not bad input: a report line per damaged entry
        from amsweep.storage.check import damaged_entries

        lines = damaged_entries(args.cube) or [str(e)]
        print(f"{args.cube}: {len(lines)} problem(s)")
        for line in lines:
            print(f"  {line}")
        print("  (`amsweep check --repair` cannot rebuild an array's entry)")
        return 1


def _check(cube, args: argparse.Namespace, restored: str | None = None) -> int:
    from amsweep.storage.check import check, repair

    report = check(cube)
    for note in report.notes:
        print(f"{args.cube}: note: {note}")
    if report.ok and not restored and not (args.repair and (report.temporaries or report.stage)):
        print(f"{args.cube}: ok (spec {cube.sweep.spec_hash}; status agrees with data)")
        return 0
    if not report.ok:
        print(f"{args.cube}: {len(report.problems)} problem(s)")
    for line in report.problems[:50]:
        print(f"  {line}")
    if len(report.problems) > 50:
        print(f"  ... {len(report.problems) - 50} more")
    if not args.repair:
        print("run `amsweep check --repair` to fix what can be fixed (damaged tasks go back to pending)")
        return 1
    repair(cube, report)
    for action in ([restored] if restored else []) + report.actions:
        print(f"repaired: {action}")
    after = check(cube)  # never claim a fix that was not made: say what remains
    if after.ok:
        print(f"{args.cube}: re-checked: ok (spec {cube.sweep.spec_hash})")
        return 0
    print(f"{args.cube}: re-checked: {len(after.problems)} problem(s) remain")
    for line in after.problems[:50]:
        print(f"  {line}")
    return 1


def cmd_upgrade(args: argparse.Namespace) -> int:
    from amsweep.storage.schema import FORMAT_VERSION
    from amsweep.storage.upgrade import upgrade

    report = upgrade(args.cube)
    print(
        f"{args.cube}: upgraded to format {FORMAT_VERSION} ({report.done} done task(s) of {report.tasks}, "
        f"{report.verified_values} values verified equal to the format-{report.source_format} cube"
        + (f"; {report.moved} task(s) moved to put the axes in canonical order" if report.moved else "")
        + (f"; {report.damaged} damaged task(s) set to pending" if report.damaged else "")
        + ")"
    )
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from amsweep.analysis.report import write_report

    look = _figure_style(args)
    writable_output(str(Path(args.output) / "report.md"), "-o")
    if args.html:
        from amsweep.sweeps.serve import need_view_extra

        need_view_extra("report --html")
    path = write_report(args.cube, args.output, look=look, col=args.col, row=args.row, html=args.html)
    print(f"wrote {path}" + (f" and {path.with_name('report.html')}" if args.html else ""))
    return 0


def cmd_specs(args: argparse.Namespace) -> int:
    """The bundled sweeps with their files (a spec to copy and edit), or one of them printed."""
    from amsweep.pipeline import spec as spec_mod

    if args.show:
        path = BUNDLED / f"{args.show.removesuffix('.toml')}.toml"
        if not path.is_file():
            names = ", ".join(p.stem for p in sorted(BUNDLED.glob("*.toml")))
            raise AmsweepError(f"--show {args.show}: no bundled sweep of that name (bundled: {names})")
        sys.stdout.write(path.read_text())
        return 0
    for path in sorted(BUNDLED.glob("*.toml")):
        sweep = spec_mod.load(path)
        n = sum(1 for _ in sweep.tasks())
        print(f"{path.stem:28s} {n:6d} tasks  {sweep.description}\n{'':28s} {path}")
    print("\n`amsweep specs --show NAME > my.toml` prints one to start from; `amsweep run NAME` runs it as it is")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = Parser(prog="amsweep", description=DESCRIPTION)
    sub = p.add_subparsers(dest="command", required=True)

    r = sub.add_parser("run", help="run (or resume) a sweep into a cube")
    r.add_argument("spec", help="TOML spec file or bundled sweep name (amsweep specs)")
    r.add_argument("--out", required=True, help="cube path (directory or s3://bucket/key.zarr)")
    add_executor_flags(r)
    r.add_argument("--no-retry-failed", action="store_true", help="leave failed tasks failed")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.add_argument(
        "--dry-run",
        action="store_true",
        help="say what would run (a new cube, or the values and tasks an extension adds), create and change "
        "nothing, start no executor",
    )
    r.add_argument(
        "--allow-changed-plugins",
        action="store_true",
        help="resume a cube although a plug-in's code changed since it was written (the new hash is recorded)",
    )
    r.set_defaults(fn=cmd_run)

    s = sub.add_parser("status", help="counts by state, failures, throughput")
    s.add_argument("cube", help="cube path (directory or s3://bucket/key.zarr)")
    s.add_argument(
        "--errors", action="store_true", help="every distinct error (identical failures grouped) with its full text"
    )
    s.add_argument("--history", action="store_true", help="list the cube's runs (one line each) and their totals")
    s.add_argument(
        "--json", action="store_true", help="print the status (counts, writer, runs, grouped failures) as JSON"
    )
    s.set_defaults(fn=cmd_status)

    from amsweep.sweeps.query_command import add_parser as add_query  # query

    add_query(sub)

    ph = sub.add_parser(
        "phase", help="phase diagram of a metric over two axes, one panel per rule (or per --col/--row value)"
    )
    ph.add_argument("cube")
    ph.add_argument("--metric", default="m_train")
    ph.add_argument("--x", default="alpha", help="horizontal axis (a dimension or coordinate)")
    ph.add_argument("--y", default="noise", help="vertical axis (a dimension or coordinate)")
    ph.add_argument("--at", type=finite_float, default=None, help="y value for the line-plot panel")
    ph.add_argument(
        "--where",
        action="append",
        default=[],
        help="KEY=VALUE[,KEY=VALUE...], several values as A|B; may be repeated: the clauses combine as if "
        "comma-joined (a key given twice is an error)",
    )
    ph.add_argument("-o", "--output", default="phase.png", help="PNG or SVG path")
    add_figure_flags(ph)
    ph.set_defaults(fn=cmd_phase)

    c = sub.add_parser("check", help="verify a cube's integrity (status versus data, spec hash)")
    c.add_argument("cube", help="cube path (directory or s3://bucket/key.zarr)")
    c.add_argument(
        "--repair",
        action="store_true",
        help="fix what can be fixed: restore the root document, rebuild lost status from intact data, "
        "rewrite damaged documents and coordinates, set damaged tasks back to pending",
    )
    c.set_defaults(fn=cmd_check)

    u = sub.add_parser(
        "upgrade", help="convert an older cube to the current format and axis order in place (kill-safe, verified)"
    )
    u.add_argument("cube", help="cube path (directory or s3://bucket/key.zarr)")
    u.set_defaults(fn=cmd_upgrade)

    rp = sub.add_parser("report", help="every standard figure of a cube plus a Markdown summary")
    rp.add_argument("cube")
    rp.add_argument("-o", "--output", default="report", help="output folder")
    add_figure_flags(rp)
    rp.add_argument(
        "--html",
        action="store_true",
        help="also report.html: the views of `amsweep serve`, interactive, self-contained",
    )
    rp.set_defaults(fn=cmd_report)

    sp = sub.add_parser("specs", help="list the bundled sweeps and their files, or print one")
    sp.add_argument("--show", metavar="NAME", default=None, help="print bundled sweep NAME's spec (TOML)")
    sp.set_defaults(fn=cmd_specs)

    from amsweep.sweeps.boundary_commands import add_parsers  # boundary, refine

    add_parsers(sub)
    from amsweep.sweeps.slurm import add_parsers as add_slurm  # slurm: sbatch a sweep on Ray over Slurm nodes

    add_slurm(sub)
    from amsweep.sweeps.serve import add_parsers as add_serve  # serve: a live web page of a cube (Panel, lazy)

    add_serve(sub)
    p.description = f"{DESCRIPTION}: {', '.join(sub.choices)}."  # every registered command, however added
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one sub-command; the exit status is 0 (ok), 1 (failed tasks or a bug), 2 (bad input)."""
    try:
        args, unknown = build_parser().parse_known_args(argv)
    except SystemExit as e:  # usage error (already printed) or --help
        return e.code if isinstance(e.code, int) else 2
    if unknown:  # said by the sub-command, not by `amsweep` (argparse's default)
        sys.stderr.write(usage_error(f"amsweep {args.command}", f"unrecognized arguments: {' '.join(unknown)}"))
        return 2
    try:
        with sigterm_as_interrupt():  # `kill`, Slurm, `ray job stop`: as Ctrl-C for the whole command
            return args.fn(args)
    except KeyboardInterrupt:  # a command that does not handle it itself (a run says what it saved)
        print(f"amsweep {args.command}: interrupted", file=sys.stderr)
        return 130
    except AmsweepError as e:
        print(f"amsweep {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # the reader went away (`amsweep query ... | head`): not a bug
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1
    except Exception:
        traceback.print_exc()
        print(
            f"amsweep {args.command}: this is a bug in amsweep, not a mistake in the input; please "
            "report it with the traceback above and the command that caused it",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    sys.exit(main())
