"""Phase diagram of one value over two axes (``amsweep phase``), drawn by the standard figure path.

A phase figure has one heatmap per panel (the value averaged over replicas, on two chosen axes;
panels by rule unless ``col`` / ``row`` name other dimensions, e.g. one column per N) and, at the
end of each row of panels, the value against the x axis at one y value, every panel of the row
as one line with standard-error bars: the heatmaps show where each rule (or N) works, the line
panel compares them. The table comes from ``derived.value_frame`` and ``derived.aggregate`` and
the panels are drawn by ``figures.draw_heatmaps`` and ``figures.draw_lines``, so a phase figure
and a report figure of the same value show the same numbers (any axis left varying is refused,
not averaged over). The x and y scales (log or linear) are decided once from the axis values and
used by heatmaps and line panels alike: a load at the same place in both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from amsweep.analysis import derived, figures
from amsweep.analysis.labels import axis_label, value_label
from amsweep.analysis.meaningful import without_meaningless_tests
from amsweep.analysis.style import DEFAULT_STYLE, FigureStyle
from amsweep.pipeline.errors import QueryError

__all__ = ["phase_figure", "phase_plot"]

_RANK = "_panel_rank"
_HUE = "_hue"


def phase_figure(
    ds: xr.Dataset,
    metric: str = "m_train",
    x: str = "alpha",
    y: str = "noise",
    out: str | Path = "phase.png",
    at: float | None = None,
    col: str | None = None,
    row: str | None = None,
    look: FigureStyle = DEFAULT_STYLE,
    where: str = "",
) -> Path:
    """Write the phase figure of ``metric`` over (x, y) to ``out`` (PNG or SVG by its suffix).

    A test-derived metric has no values for datasets whose test examples mean nothing
    (``analysis.meaningful``): a cube of random patterns alone has no m_test to draw (NoData).
    """
    with look.context():
        fig = phase_plot(ds, metric, x, y, at, col, row, look, where)
        return figures.save_as(fig, out, look.save_dpi())


def _facets(frame: pd.DataFrame, x: str, y: str, col: str | None, row: str | None) -> tuple[str | None, str | None]:
    """The panel dimensions: as given; the rule goes to a free one when it varies (panels by rule
    was the only layout before --col/--row existed)."""
    for flag, dim in (("--col", col), ("--row", row)):
        if dim is not None and dim not in frame.columns:
            raise QueryError(f"{flag} {dim!r}: no such coordinate; available: {', '.join(map(str, frame.columns))}")
        if dim is not None and dim in (x, y):
            raise QueryError(f"{flag} {dim!r} is already the {'x' if dim == x else 'y'} axis")
        if dim is not None and frame[dim].isna().any():
            # NaN != NaN: a panel keyed by it cannot be found again (attack24: KeyError for hebb's rule_clip)
            lacking = sorted(map(str, frame.loc[frame[dim].isna(), "rule"].unique())) if "rule" in frame else []
            raise QueryError(
                f"{flag} {dim!r}: no value for some cells{' (rule ' + ', '.join(lacking) + ')' if lacking else ''}; "
                f"keep only cells with one, e.g. --where rule=..."
            )
    if col is not None and col == row:
        raise QueryError(f"--col and --row are both {col!r}")
    if (
        "rule" in frame.columns
        and "rule" not in (x, y, col, row)
        and (frame["rule"].nunique() > 1 or (col is None and row is None))
    ):
        if col is None:
            col = "rule"
        elif row is None:
            row = "rule"
    return col, row


def _name(dim: str | None, value: Any) -> str:
    if dim is None:
        return ""
    return str(value) if dim in ("rule", "dataset") else f"{dim}={figures._fmt(value)}"


def phase_plot(
    ds: xr.Dataset,
    metric: str = "m_train",
    x: str = "alpha",
    y: str = "noise",
    at: float | None = None,
    col: str | None = None,
    row: str | None = None,
    look: FigureStyle = DEFAULT_STYLE,
    where: str = "",
) -> Figure:
    """The phase figure as a matplotlib Figure (draw inside ``look.context()`` for its style)."""
    ds = without_meaningless_tests(ds)
    frame = derived.nonempty(derived.value_frame(ds, metric), metric)
    for k in (x, y):
        if k not in frame.columns:
            raise QueryError(f"no coordinate {k!r}; available: {', '.join(c for c in frame.columns if c != metric)}")
    col, row = _facets(frame, x, y, col, row)
    if "N" in frame.columns and "N" not in (x, y, col, row) and frame["N"].nunique() > 1:
        # P (or a panel by P) on a cube of several N would draw N=30 and N=40 cells as one curve of
        # load, N in no title (attack24): one N per figure, or N as a panel dimension.
        ns = ", ".join(figures._fmt(v) for v in sorted(frame["N"].unique()))
        raise QueryError(
            f"the selection mixes N = {ns}; pick one with --where N=... or make N a panel "
            "(amsweep phase: --where, --x/--y or --col/--row)"
        )
    col_vals = sorted(frame[col].unique().tolist()) if col else [None]
    row_vals = sorted(frame[row].unique().tolist()) if row else [None]
    order = {(r, c): i for i, (r, c) in enumerate((r, c) for r in row_vals for c in col_vals)}
    frame[figures.PANEL] = [
        ", ".join(p for p in (_name(row, r), _name(col, c)) if p)
        for r, c in zip(frame[row] if row else [None] * len(frame), frame[col] if col else [None] * len(frame))
    ]
    facet_dims = [d for d in (row, col) if d]
    try:
        table = derived.aggregate(frame, ds, metric, [figures.PANEL, *facet_dims, y, x])
    except QueryError as e:
        raise QueryError(f"{e} (amsweep phase: --where, --x/--y or --col/--row)") from None
    keys = zip(table[row] if row else [None] * len(table), table[col] if col else [None] * len(table))
    table[_RANK] = [order[k] for k in keys]
    table = table.sort_values([_RANK, y, x], kind="stable").reset_index(drop=True)
    categorical = metric in derived.CATEGORICAL
    # from the selection's grid, not the cells with a value: an undetermined class column must not
    # turn a log axis linear
    scales = tuple(figures.axis_scale(ds[k].values if k in ds.coords else table[k].unique()) for k in (x, y))
    lines = 0 if categorical else 1  # a class has no mean to draw as a line
    present = list(dict.fromkeys(table[_RANK]))
    if row is None:
        fig, flat = figures.grid(len(present) + lines, 4.2, 3.8)
        heat_axes, line_axes = list(flat[: len(present)]), list(flat[len(present) : len(present) + lines])
    else:
        ncols = len(col_vals) + lines
        fig = Figure(figsize=(4.2 * ncols, 3.8 * len(row_vals)), layout="constrained")
        axes = fig.subplots(len(row_vals), ncols, squeeze=False)
        heat_axes = [axes[order[k] // len(col_vals), order[k] % len(col_vals)] for k in order if order[k] in present]
        for i in order.values():
            if i not in present:
                axes[i // len(col_vals), i % len(col_vals)].set_visible(False)
        line_axes = [axes[r, -1] for r in range(len(row_vals))] if lines else []
    look.apply_size(fig)
    figures.draw_heatmaps(fig, heat_axes, table, metric, x, y, categorical, look=look, scales=(scales[0], scales[1]))
    if lines:
        _line_panels(table, metric, x, y, at, col, row, row_vals, line_axes, heat_axes, scales[0])
    fixed = figures.fixed_text(frame, ds, [x, y, *facet_dims])
    fig.suptitle(figures.title_text(f"{ds.attrs.get('title', '')}: {value_label(metric)}", fixed, where))
    return fig


def _line_panels(
    table: pd.DataFrame,
    metric: str,
    x: str,
    y: str,
    at: float | None,
    col: str | None,
    row: str | None,
    row_vals: list[Any],
    line_axes: list[Axes],
    heat_axes: list[Axes],
    xscale: str,
) -> None:
    """Per row of panels: the value against x at one y, one line per panel of the row."""
    ys = np.sort(table[y].unique())
    numeric = ys.dtype.kind in "iuf"
    target = at if at is not None and numeric else ys[len(ys) // 2]
    at_y = ys[np.argmin(np.abs(ys.astype(float) - float(target)))] if numeric else target
    if numeric:
        for ax in heat_axes:
            ax.axhline(at_y, color="white", lw=0.8, ls=":")
    table = table.copy()
    table[_HUE] = [_name(col, v) for v in table[col]] if col else ""
    colors = {h: f"C{i % 10}" for i, h in enumerate(dict.fromkeys(table[_HUE]))}
    for ax, r in zip(line_axes, row_vals):
        part = table[(table[y] == at_y) & ((table[row] == r) if row else True)]
        figures.draw_lines(ax, part, [metric], x, _HUE, colors, xscale == "log")
        ax.set_xlabel(axis_label(x))
        ax.set_ylabel(value_label(metric))
        at_text = f"{y} = {at_y:g}" if numeric else f"{y} = {at_y}"
        ax.set_title(", ".join(p for p in (_name(row, r), at_text) if p))
        if col:
            ax.legend()
        ax.grid(True)
