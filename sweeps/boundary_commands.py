"""``amsweep boundary`` and ``amsweep refine``: locate phase boundaries, and refine a cube around them.

Kept out of ``cli.py`` (which only registers them) so that the boundary commands and the core
commands can change independently.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from amsweep.pipeline.errors import AmsweepError
from amsweep.sweeps.arguments import (
    add_executor_flags,
    executor_options,
    finite_float,
    positive_int,
    resolve_spec,
    writable_output,
)

if TYPE_CHECKING:  # imported by the commands that print tables, not when `amsweep` registers them
    import pandas as pd

__all__ = ["add_parsers", "cmd_boundary", "cmd_refine", "show_table", "SHOWN", "with_families"]

SHOWN = ["crossing", "ci_low", "ci_high", "bracket_low", "bracket_high", "width", "points", "seeds", "found"]


def _target(args: argparse.Namespace):
    from amsweep.analysis.boundary import target

    return target(args.metric, args.threshold, args.direction, args.class_name)


def show_table(table: pd.DataFrame, csv: str | None) -> None:
    """Print the boundaries (constant descriptive columns dropped); ``csv`` gets every column."""
    import pandas as pd

    keys = [c for c in table.columns if c not in SHOWN]
    order = [c for c in ("family", "rule", "noise", "N", "dataset") if c in keys]
    table = table.sort_values(order, kind="stable") if order else table  # N ascending within a family
    if csv:
        table.to_csv(csv, index=False)
        print(f"wrote {len(table)} rows to {csv}")
    drop = [c for c in keys if table[c].nunique(dropna=False) <= 1 and len(table) > 1]
    with pd.option_context("display.width", 200, "display.max_columns", 30, "display.float_format", "{:.4f}".format):
        print(table.drop(columns=drop).to_string(index=False))


def with_families(table: pd.DataFrame, ds: Any) -> pd.DataFrame:
    """Add the dataset family (datasets that differ only in N and loads) as a column."""
    from amsweep.analysis.boundary import family_labels

    if "dataset" not in table.columns:
        return table
    families = family_labels(ds, table["dataset"].unique().tolist())
    return table.assign(family=table["dataset"].map(families))


def cmd_boundary(args: argparse.Namespace) -> int:
    from amsweep.analysis import boundary, scaling
    from amsweep.storage import query

    for flag in ("csv", "figure", "curves"):
        if getattr(args, flag):
            writable_output(getattr(args, flag), f"--{flag}")
    tgt = _target(args)
    ds = query.select(query.open_cube(args.cube), query.parse_where(",".join(args.where)))
    frame, keys = boundary.curve_frame(ds, tgt, args.along)
    table = with_families(boundary.table_from_frame(frame, keys, tgt, args.along, args.ci), ds)
    print(f"boundary: where the seed mean of {tgt.describe()} along {args.along} ({args.ci:.0%} bootstrap over seeds)")
    show_table(table, args.csv)
    if args.curves:
        from amsweep.analysis.boundary_plot import curves_figure

        print(f"wrote {curves_figure(frame, table, keys, tgt, args.along, args.curves)}")
    if args.extrapolate:
        if args.along == "N" or "N" not in table.columns:
            raise AmsweepError("--extrapolate fits the boundary against N: use --along alpha or P")
        by = ["family"] + [k for k in keys if k not in ("dataset", "N")]
        fits = scaling.extrapolate(table, by, nu=args.nu, ci=args.ci)
        print(f"finite-size fit {args.along}_c(N) = {args.along}_c(inf) + a N^-nu:")
        for key, _, fit in fits:
            print(f"  {', '.join(f'{k}={v}' for k, v in key.items())}: {fit.line(args.reference)}")
        if args.figure:
            print(f"wrote {scaling.scaling_figure(fits, args.figure, args.along, args.reference)}")
    elif args.figure:
        raise AmsweepError("--figure draws the finite-size fit: add --extrapolate (or use --curves)")
    return 0


def _executor(args: argparse.Namespace) -> Any:
    from amsweep.pipeline.executors import EXECUTORS

    return EXECUTORS[args.executor](**executor_options(args))


def cmd_refine(args: argparse.Namespace) -> int:
    from amsweep.pipeline import spec as spec_mod
    from amsweep.sweeps.refine import axis_key, refine
    from amsweep.sweeps.runner import preflight
    from amsweep.storage import query

    if args.csv:
        writable_output(args.csv, "--csv")
    tgt = _target(args)
    base = spec_mod.load(resolve_spec(args.spec))
    axis_key(args.along, base)
    where = query.parse_where(",".join(args.where))
    print(
        f"refine {base.name!r} into {args.out}: {tgt.describe()} along {args.along}, to within {args.tol:g}, "
        f"at most {args.rounds} round(s)",
        flush=True,
    )
    try:
        executor = _executor(args)
    except KeyboardInterrupt:
        print("interrupted while starting: nothing ran; run the same command again to start")
        return 130
    try:
        preflight(base, executor)  # before the cube is made: a refused spec leaves --out as it was
        say = lambda line: print(line, flush=True)
        report = refine(
            base, args.out, tgt, args.along, args.tol, args.rounds, executor, where, args.points, not args.quiet, say
        )
    finally:
        executor.shutdown()
    if report.interrupted:
        print("interrupted: finished results are saved; run the same command again to resume")
        return 130
    show_table(with_families(report.table, query.open_cube(args.out)), args.csv)
    print(
        f"cells: {report.cells} in the cube; a uniform grid of spacing {args.tol:g} over the same ranges: "
        f"{report.uniform} ({report.cells / max(report.uniform, 1):.0%})"
    )
    if not report.converged:
        print(f"not every boundary is located to within {args.tol:g} after {args.rounds} round(s)")
    return 1 if report.failed else 0


def _target_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--metric", default=None, help="metric or derived value (e.g. m_train, gen_gap)")
    p.add_argument("--threshold", type=finite_float, default=None, help="the value whose crossing is the boundary")
    p.add_argument(
        "--class",
        dest="class_name",
        default=None,
        metavar="NAME",
        help="a class change instead: fraction of seeds in NAME (generalizing, memorizing, elsewhere, "
        "no_retrieval) crossing --threshold (default 0.5)",
    )
    p.add_argument("--along", default="alpha", help="axis the boundary is crossed along: alpha, P or N")
    p.add_argument(
        "--direction", default="any", help="any (first crossing), down (falls through) or up (rises through)"
    )
    p.add_argument(
        "--where",
        action="append",
        default=[],
        help="KEY=VALUE[,KEY=VALUE...], several values as A|B; may be repeated: the clauses combine as if "
        "comma-joined (a key given twice is an error)",
    )
    p.add_argument("--csv", default=None, help="write the boundary table to this CSV file")


def add_parsers(sub: Any) -> None:
    """Register ``boundary`` and ``refine`` on the ``amsweep`` sub-command parser."""
    b = sub.add_parser("boundary", help="where a seed-averaged metric crosses a threshold, with bootstrap CIs")
    b.add_argument("cube")
    _target_flags(b)
    b.add_argument("--ci", type=finite_float, default=0.95, help="confidence level of the bootstrap interval")
    b.add_argument("--extrapolate", action="store_true", help="fit alpha_c(N) = alpha_c(inf) + a N^-nu")
    b.add_argument("--nu", type=finite_float, default=None, help="fix nu in the fit (default: fitted)")
    b.add_argument("--reference", type=finite_float, default=None, help="a known alpha_c(inf) to compare with")
    b.add_argument("--figure", default=None, help="PNG of alpha_c(N) and the fit (with --extrapolate)")
    b.add_argument("--curves", default=None, help="PNG of the curves, thresholds and crossings")
    b.set_defaults(fn=cmd_boundary)

    r = sub.add_parser("refine", help="run a sweep, then add loads (or N) where its boundaries lie")
    r.add_argument("spec", help="TOML spec file or bundled sweep name (amsweep specs)")
    r.add_argument("--out", required=True, help="cube path (grown in place; kill-safe, resumable)")
    _target_flags(r)
    r.add_argument("--tol", type=finite_float, required=True, help="locate each boundary to within this")
    r.add_argument("--rounds", type=int, default=8, help="at most this many rounds of added values")
    r.add_argument("--points", type=positive_int, default=1, help="values added per bracket and round")
    add_executor_flags(r)
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(fn=cmd_refine)
