"""Phase diagram of one value over two axes (``amsweep phase``), drawn by the standard figure path.

A phase figure has one heatmap per rule (the value averaged over replicas, on two chosen axes)
and a last panel with the value against the x axis at one y value, all rules together with
standard-error bars: the heatmaps show where each rule works, the line panel compares rules.
The table comes from ``derived.value_frame`` and ``derived.aggregate`` and the panels are drawn by
``figures.draw_heatmaps`` and ``figures.draw_lines``, so a phase figure and a report figure of the
same value show the same numbers (any axis left varying is refused, not averaged over).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from amsweep.analysis import derived, figures
from amsweep.analysis.meaningful import without_meaningless_tests
from amsweep.analysis.labels import axis_label, value_label
from amsweep.pipeline.errors import QueryError

__all__ = ["phase_figure"]


def phase_figure(
    ds: xr.Dataset,
    metric: str = "m_train",
    x: str = "alpha",
    y: str = "noise",
    out: str | Path = "phase.png",
    at: float | None = None,
) -> Path:
    """Write the phase figure of ``metric`` over (x, y) to ``out`` (PNG or SVG by its suffix).

    A test-derived metric has no values for datasets whose test examples mean nothing
    (``analysis.meaningful``): a cube of random patterns alone has no m_test to draw (NoData).
    """
    ds = without_meaningless_tests(ds)
    frame = figures.add_panel_column(derived.value_frame(ds, metric), "rule")
    frame = derived.nonempty(frame, metric)
    for k in (x, y):
        if k not in frame.columns:
            raise QueryError(f"no coordinate {k!r}; available: {', '.join(c for c in frame.columns if c != metric)}")
    table = derived.aggregate(frame, ds, metric, [figures.PANEL, y, x])
    rules = list(dict.fromkeys(table[figures.PANEL]))
    categorical = metric in derived.CATEGORICAL
    fig, axes = figures.grid(len(rules) + (0 if categorical else 1), 4.2, 3.8)
    figures.draw_heatmaps(fig, axes[: len(rules)], table, metric, x, y, categorical)
    if not categorical:  # a class has no mean to draw as a line
        ys = np.sort(table[y].unique())
        numeric = ys.dtype.kind in "iuf"
        target = at if at is not None and numeric else ys[len(ys) // 2]
        at_y = ys[np.argmin(np.abs(ys.astype(float) - float(target)))] if numeric else target
        if numeric:
            for ax in axes[: len(rules)]:
                ax.axhline(at_y, color="white", lw=0.8, ls=":")
        ax = axes[len(rules)]
        colors = {r: f"C{i % 10}" for i, r in enumerate(rules)}
        figures.draw_lines(ax, table[table[y] == at_y], [metric], x, figures.PANEL, colors)
        ax.set_xlabel(axis_label(x), fontsize=8)
        ax.set_ylabel(value_label(metric), fontsize=8)
        ax.set_title(f"{y} = {at_y:g}" if numeric else f"{y} = {at_y}", fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{ds.attrs.get('title', '')}: {value_label(metric)}", fontsize=10)
    return figures.save_as(fig, out)
