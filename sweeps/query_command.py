"""``amsweep query``: one or several metrics of done tasks as a table, per seed or averaged.

Kept out of ``cli.py`` (which only registers it) so that the query command and the other
commands can change independently.

A float32 metric is written at its own precision: its values, and its mean and standard error over
seeds (computed in float64), as float32, whose CSV text is the shortest that reads back to the same
float32 (``0.132``, not ``0.13199999928474426``): the digits past float32's are not in the data.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

from amsweep.pipeline.errors import AmsweepError, QueryError

if TYPE_CHECKING:  # imported by the query itself, not when `amsweep` registers the command
    from amsweep.storage.cube_view import View
    from amsweep.storage.table import Table

__all__ = ["add_parser", "cmd_query", "csv_compression", "csv_target", "metric_names", "query_table", "write_csv"]

# ``--csv`` compresses by the file's extension (case-insensitive), as pandas' ``to_csv`` did; the
# extensions pandas knew, in its order (a ``.tar.gz`` is a tar, not a gzip): the four the standard
# library writes are supported, the others (zstandard, tar) refused before the cube is read
CSV_COMPRESSIONS = {
    ".tar": None,
    ".tar.gz": None,
    ".tar.bz2": None,
    ".tar.xz": None,
    ".gz": "gzip",
    ".bz2": "bz2",
    ".zip": "zip",
    ".xz": "xz",
    ".zst": None,
}

WHERE_HELP = (
    "KEY=VALUE[,KEY=VALUE...], several values as A|B; may be repeated: the clauses combine as if "
    "comma-joined (a key given twice is an error). KEY: a dimension (dataset, N, alpha or P, rule, seed, "
    "noise), the derived load (P of an alpha cube, alpha of a P cube) or a per-variant coordinate "
    "(lr, rule_kind, rule_clip or its stored name clip, ...)"
)


def metric_names(given: Sequence[str]) -> list[str]:
    """'m_train,m_test' (the flag may be repeated) -> the metrics, each declared and named once."""
    from amsweep.pipeline.metric_table import METRICS

    names = [n.strip() for text in given for n in text.split(",")]
    if not names or not all(names):
        raise QueryError(f"--metric {','.join(given)!r}: expected NAME[,NAME...]; available: {', '.join(METRICS)}")
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        said = ", ".join(map(repr, unknown))
        raise QueryError(f"unknown metric{'s' if len(unknown) > 1 else ''} {said}; available: {', '.join(METRICS)}")
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise QueryError(f"--metric: {', '.join(twice)} given twice")
    return names


def query_table(view: View, metrics: Sequence[str], mean: bool, allow_missing: bool, writing: Any = None) -> Table:
    """One row per done value (or per group of seeds with ``mean``), every coordinate a column.

    With ``mean`` each metric has its mean, ``<metric>_sem`` and its count of seeds: ``n`` for one
    metric, ``<metric>_n`` for several (the counts can differ: a metric NaN where it does not apply
    has none there). Several metrics are joined on their common coordinates, so a per-task metric
    (``fixed_point_fraction``) repeats along the noise of a per-noise one (``m_train``); a lost-value
    count (``allow_missing``) is ``missing``, or ``<metric>_missing`` for several. A float32 metric
    and its standard error are float32 (printed at their own precision).
    """
    import numpy as np

    from amsweep.pipeline.metric_table import METRICS
    from amsweep.storage.cube_view import MISSING, frame
    from amsweep.storage.table import group_stats, outer_merge

    tables = []
    for metric in metrics:
        table = frame(view, metric, allow_missing=allow_missing, writing=writing)
        if mean:
            keys = [c for c in table if c not in (metric, "seed", MISSING)]
            by = [k for k in keys if k in view.index]  # the dimensions: the coordinates follow them
            table = group_stats(table, metric, keys, MISSING if MISSING in table else None, by)
        if len(metrics) > 1:
            renamed = {"n": f"{metric}_n", MISSING: f"{metric}_{MISSING}"}
            table = {renamed.get(c, c): v for c, v in table.items()}
        tables.append(table)
    shared = ("n", MISSING) if len(metrics) == 1 else ()  # one metric's count keeps its plain name
    owned = {
        metric: [c for c in table if c == metric or c.startswith(f"{metric}_") or c in shared]
        for metric, table in zip(metrics, tables)
    }
    result = tables[0]
    for table in tables[1:]:
        on = [c for c in result if c in table]
        result = outer_merge(result, table, on, [c for c in on if c in view.index])
    values = [c for metric in metrics for c in owned[metric]]
    result = {c: result[c] for c in [c for c in result if c not in values] + values}
    if mean:
        # the outer join leaves NaN where a metric has no row (basin_mean where basins are not
        # computed): that is 0 seeds, and a reader must tell it from a gap (attack24)
        for c in [c for c in result if c == "n" or c in {f"{m}_n" for m in metrics}]:
            result[c] = np.nan_to_num(result[c], nan=0).astype(np.int64)
    for metric in metrics:
        for c in (metric, f"{metric}_sem"):
            if c in result:
                result[c] = result[c].astype(METRICS[metric].dtype)
    return result


def csv_target(path: str) -> None:
    """``--csv`` must name a file in an existing, writable folder: a folder or a missing folder
    used to fail with a traceback after the whole cube was read."""
    target = Path(path).expanduser()
    if path.endswith(("/", os.sep)) or target.is_dir():
        raise AmsweepError(
            f"--csv {path}: cannot write there (it is a folder; give a file path such as {target / 'table.csv'})"
        )
    folder = target.absolute().parent
    if not folder.is_dir():
        raise AmsweepError(f"--csv {path}: cannot write there ({folder} is not an existing folder; create it first)")
    if not os.access(folder, os.W_OK):
        raise AmsweepError(f"--csv {path}: cannot write there ({folder} is not writable)")
    csv_compression(path)


def csv_compression(path: str) -> str | None:
    """The compression ``--csv`` applies, from the file's extension (None: plain text); a QueryError
    for an extension pandas compressed by (ec2a2d0's ``to_csv``) that the standard library cannot."""
    for extension, compression in CSV_COMPRESSIONS.items():
        if path.lower().endswith(extension):
            if compression is None:
                supported = ", ".join(e for e, c in CSV_COMPRESSIONS.items() if c)
                raise QueryError(
                    f"--csv {path}: cannot compress to {extension} (supported: {supported}, or no extension "
                    "of these for plain text)"
                )
            return compression
    return None


def write_csv(path: str, text: str) -> None:
    """``text`` into ``path`` (``~`` expanded), compressed by its extension as pandas' ``to_csv``
    did: gzip, bz2 and xz streams, or a zip archive of one member named as the file less ``.zip``."""
    import bz2
    import gzip
    import lzma
    import zipfile

    target = Path(path).expanduser()
    compression = csv_compression(path)
    data = text.encode("utf-8")
    if compression == "zip":
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(target.stem if target.suffix == ".zip" else target.name, data)
        return
    opener: Any = {"gzip": gzip.open, "bz2": bz2.open, "xz": lzma.open}.get(compression or "", open)
    with opener(target, "wb") as out:
        out.write(data)


def cmd_query(args: argparse.Namespace) -> int:
    from amsweep.storage import cube_view, table
    from amsweep.storage.store_errors import store_boundary

    metrics = metric_names(args.metric)
    where = cube_view.parse_where(",".join(args.where))
    if args.csv:
        csv_target(args.csv)
    with store_boundary(args.cube, "reading the cube"):  # an S3 endpoint gone: one line, not a traceback
        view = cube_view.select(cube_view.open_view(args.cube), where)
        frame = query_table(view, metrics, args.mean, args.allow_missing, writing=lambda: _driver_writing(view))
    lost = [c for c in frame if c == cube_view.MISSING or c.endswith(f"_{cube_view.MISSING}")]
    counts = {"n", *(f"{m}_n" for m in metrics)}
    always = {*metrics, *counts, *lost}  # a mean always says how many seeds it is over
    if args.csv:
        try:
            write_csv(args.csv, table.to_csv(frame))
        except OSError as e:
            raise AmsweepError(f"--csv {args.csv}: cannot write ({e.strerror or e})") from None
        print(f"wrote {table.rows(frame)} rows to {args.csv}")
    else:
        shown = {c: v for c, v in frame.items() if c in always or table.nunique(v) > 1}
        print(table.to_text(shown, args.max_rows))
    missing = int(sum(table.nansum(frame[c]) for c in lost))
    if missing:
        print(
            f"amsweep query: {missing} value(s) of done tasks are missing or damaged "
            f"(NaN, counted in the {', '.join(repr(c) for c in lost)} column(s)); "
            "`amsweep check --repair` then `amsweep run` recomputes them",
            file=sys.stderr,
        )
    return 0


def _driver_writing(view: View) -> bool:
    """A live driver's flush writes data before status: results not yet marked done are in flight."""
    from amsweep.storage.check import driver_writing

    return driver_writing(view.cube.objects)


def add_parser(sub: Any) -> None:
    """Register ``amsweep query`` on the ``amsweep`` sub-command parsers."""
    from amsweep.sweeps.arguments import positive_int

    q = sub.add_parser("query", help="print or export metrics of done tasks, per seed or averaged over seeds")
    q.add_argument("cube", help="cube path (directory or s3://bucket/key.zarr)")
    q.add_argument(
        "--metric",
        required=True,
        action="append",
        metavar="NAME[,NAME...]",
        help="metric(s) to show, comma-separated or the flag repeated (m_train,m_test); the metric table "
        "of README.md lists them",
    )
    q.add_argument("--where", action="append", default=[], help=WHERE_HELP)
    q.add_argument(
        "--mean",
        action="store_true",
        help="average over seeds: mean, standard error (<metric>_sem) and number of seeds (n) per group",
    )
    q.add_argument(
        "--csv",
        default=None,
        metavar="FILE",
        help="write all rows and columns to this CSV file (float32 metrics at their own precision; "
        "compressed by a .gz, .bz2, .xz or .zip extension)",
    )
    q.add_argument(
        "--allow-missing",
        action="store_true",
        help="answer even where done tasks lost values: NaN rows counted in a 'missing' column "
        "(default: an error naming the tasks)",
    )
    q.add_argument(
        "--max-rows",
        type=positive_int,
        default=60,
        metavar="K",
        help="rows printed before the table is elided in the middle (default 60; --csv writes every row)",
    )
    q.set_defaults(fn=cmd_query)
