"""Interactive views of a cube (HoloViews on Bokeh), shared by ``amsweep serve`` and ``report --html``.

The numbers come from the same path as the PNG figures (``derived.value_frame`` then
``derived.aggregate``: seed means and standard errors, the majority class for ``class``), so a
live page, an HTML report and ``amsweep phase`` of the same selection show the same values. Only
the drawing differs: Bokeh plots with hover (mean, s.e., number of seeds) instead of matplotlib.

A view is described by a ``Choice`` (value, axes, panels, fixed values of every other varying
axis, colour scale). ``choices`` lists what a cube offers from its grid, not from its done cells,
so the page's menus do not change while cells land. HoloViews is imported here and not by the
command-line module: ``import amsweep.sweeps.cli`` stays free of it (it costs ~1.5 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import holoviews as hv
from bokeh.models import FixedTicker
import numpy as np
import pandas as pd
import xarray as xr

from amsweep.analysis import classify, derived, tables
from amsweep.analysis.figures import PANEL, add_panel_column
from amsweep.analysis.meaningful import without_meaningless_tests
from amsweep.pipeline.errors import NoData, QueryError

__all__ = [
    "Choice",
    "axis_values",
    "class_legend",
    "dataset_coords",
    "default_choice",
    "fix_others",
    "fmt",
    "heatmaps",
    "lines",
    "offered_values",
    "phase_layout",
    "phase_table",
    "progress_markdown",
]

hv.extension("bokeh", logo=False)

WIDTH, HEIGHT = 330, 280  # one heatmap panel, in screen pixels: four fit a laptop screen's width
# The values a reader looks at first (the phase diagram, the class map, basins), then the rest as declared.
PREFERRED = ("m_train", "m_test", "class", "gen_gap", "retrieved_fraction", "basin", "success_train")
CMAPS = ["viridis", "magma", "cividis", "RdBu_r", "coolwarm", "gray"]


@dataclass(frozen=True)
class Choice:
    """What one view shows: ``value`` over (``x``, ``y``), one panel per value of ``panel`` ('' =
    one panel), the other varying axes fixed at ``where``; the line view at y = ``at``."""

    value: str = "m_train"
    x: str = "alpha"
    y: str = "noise"
    panel: str = "rule"
    where: dict[str, Any] = field(default_factory=dict)
    at: Any = None
    cmap: str = "viridis"
    clim: tuple[float, float] | None = None  # None: from the data shown


def dataset_coords(ds: xr.Dataset) -> frozenset[str]:
    """Numeric per-dataset coordinates (alpha_D, T, ...): a dataset label fixes them."""
    return frozenset(
        str(n) for n, c in ds.coords.items() if n not in ds.dims and c.dims == ("dataset",) and c.dtype.kind in "iuf"
    )


def axis_values(ds: xr.Dataset) -> dict[str, list]:
    """Every axis with more than one value in the grid (seeds are averaged over, never an axis):
    the cube's task dimensions and noise, and numeric per-dataset coordinates (alpha_D, T, ...)."""
    out: dict[str, list] = {}
    for dim in [*tables.task_dims(ds), "noise"]:
        if dim != "seed" and dim in ds.coords and ds[dim].size > 1:
            out[dim] = ds[dim].values.tolist()
    for name, coord in ds.coords.items():
        if name in ds.dims or coord.dims != ("dataset",) or coord.dtype.kind not in "iuf":
            continue
        values = sorted({float(v) for v in coord.values.tolist() if np.isfinite(v)})
        if len(values) > 1:
            out[str(name)] = values
    return out


def offered_values(ds: xr.Dataset) -> list[str]:
    """Values a menu offers: stored metrics the cube holds and derived values whose inputs it holds
    (whether done cells have them yet is not asked: a running sweep gains them)."""
    stored = set(ds.data_vars)
    names = [v for v in derived.value_names() if all(m in stored for m in derived.needs(v))]
    first = [v for v in PREFERRED if v in names]
    return first + [v for v in names if v not in first and not v.endswith("_seconds")]


def default_choice(ds: xr.Dataset, value: str = "m_train") -> Choice:
    """The load axis against noise (against the next axis for a per-task value), a panel per rule,
    every other axis at its first grid value."""
    axes = axis_values(ds)
    if not derived.per_noise(value):  # one value per task (basin, fixed points): noise is no axis of it
        axes = {a: v for a, v in axes.items() if a != "noise"}
    load = tables.load_axis(ds)
    x = load if load in axes else next(iter(axes), load)
    y = "noise" if "noise" in axes and x != "noise" else next((a for a in axes if a != x), "noise")
    panel = "rule" if "rule" in axes and "rule" not in (x, y) else ""
    return fix_others(Choice(value=value, x=x, y=y, panel=panel), axes, dataset_coords(ds))


def fix_others(choice: Choice, axes: dict[str, list], coords: frozenset[str] = frozenset()) -> Choice:
    """Keep ``where`` to the axes that are neither x, y nor panel, filling missing ones with a value
    (the middle noise level, else the first): an average over a varying axis is refused.
    ``coords`` (``dataset_coords``) follow the dataset: fixing the dataset fixes them, and with one
    of them drawn the dataset is left free (fixing both could select nothing)."""
    if choice.panel in (choice.x, choice.y):  # panels by an axis already drawn: one panel
        choice = replace(choice, panel="")
    used = {choice.x, choice.y, choice.panel}
    skip = used | ({"dataset"} if used & coords else coords if "dataset" in axes else set())
    where = {}
    for name, values in axes.items():
        if name in skip:
            continue
        if name in choice.where and choice.where[name] in values:
            where[name] = choice.where[name]
        else:
            where[name] = values[len(values) // 2] if name == "noise" else values[0]
    ys = axes.get(choice.y, [])
    at = choice.at if choice.at in ys else (ys[len(ys) // 2] if ys else None)
    return replace(choice, where=where, at=at)


def phase_table(ds: xr.Dataset, choice: Choice) -> pd.DataFrame:
    """Seed-aggregated table of the chosen value per (panel, y, x): reads that value's metrics only.

    ``NoData`` when no done cell has a value in the selection yet (a page shows it as text)."""
    ds = without_meaningless_tests(ds)
    frame = derived.value_frame(ds, choice.value)
    for k in (choice.x, choice.y):
        if k not in frame.columns:
            raise QueryError(f"no coordinate {k!r} for {choice.value}")
    where = {k: v for k, v in choice.where.items() if k in frame.columns}
    frame = derived.nonempty(tables.restrict(frame, where), choice.value)
    frame = add_panel_column(frame, choice.panel or None)
    return derived.aggregate(frame, ds, choice.value, [PANEL, choice.y, choice.x])


def _clim(table: pd.DataFrame, choice: Choice) -> tuple[float, float]:
    if choice.value in derived.CATEGORICAL:
        codes = sorted(classify.CLASS_NAMES)
        return (codes[0] - 0.5, codes[-1] + 0.5)
    if choice.clim is not None:
        return choice.clim
    v = table[choice.value].to_numpy(dtype=float)
    lo, hi = float(np.nanmin(v)), float(np.nanmax(v))
    return (lo, hi if hi > lo else lo + 1e-9)


def fmt(v: Any) -> str:
    """A grid value as a label: 0.1, not 0.1000000001."""
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


def _key(v: Any) -> tuple:
    return (0, float(v), "") if isinstance(v, (int, float, np.number)) else (1, 0.0, str(v))


def heatmaps(table: pd.DataFrame, choice: Choice, title: str = "", grid: dict[str, list] | None = None) -> hv.Layout:
    """One heatmap per panel, one shared colour scale; hover gives the mean, its s.e. and n seeds.
    ``grid`` (``axis_values``): the axes span the whole grid, so a running sweep's cells fill in
    blank places of a fixed diagram instead of the diagram growing."""
    value, categorical = choice.value, choice.value in derived.CATEGORICAL
    extra = ["agree", "n"] if categorical else [f"{value}_sem", "n"]
    cmap = [classify.CLASS_COLORS[c] for c in sorted(classify.CLASS_NAMES)] if categorical else choice.cmap
    lo, hi = _clim(table, choice)
    # grid values as equally spaced categories, in grid order (a numeric axis left gaps on an uneven grid)
    order = {
        a: [fmt(v) for v in sorted((grid or {}).get(a) or table[a].unique(), key=_key)] for a in (choice.x, choice.y)
    }
    plots = []
    for name in dict.fromkeys(table[PANEL]):
        sub = table[table[PANEL] == name]
        data = sub[[choice.x, choice.y, value, *[c for c in extra if c in sub.columns]]].copy()
        data[choice.x], data[choice.y] = data[choice.x].map(fmt), data[choice.y].map(fmt)
        hm = hv.HeatMap(data, kdims=[choice.x, choice.y], vdims=[value, *data.columns[3:]])
        hm = hm.redim.values(**{choice.x: order[choice.x], choice.y: order[choice.y]})
        label = " · ".join(p for p in (title, str(name)) if p)
        if categorical:  # the colour bar names the classes
            codes = sorted(classify.CLASS_NAMES)
            names = {c: classify.CLASS_NAMES[c].split(";")[0] for c in codes}
            hm = hm.opts(colorbar_opts={"ticker": FixedTicker(ticks=codes), "major_label_overrides": names})
        plots.append(
            hm.opts(
                cmap=cmap,
                clim=(lo, hi),
                colorbar=True,
                tools=["hover"],
                width=WIDTH,
                height=HEIGHT,
                title=label,
                xrotation=45,
                clipping_colors={"NaN": "white"},
            )
        )
    return hv.Layout(plots).cols(4)


def lines(table: pd.DataFrame, choice: Choice) -> hv.Overlay:
    """The value against x at y = ``choice.at``, one curve per panel with standard-error bars."""
    if choice.value in derived.CATEGORICAL:
        raise NoData("a class has no mean to draw as a line")
    value, sem = choice.value, f"{choice.value}_sem"
    rows = tables.restrict(table, {choice.y: choice.at}) if choice.at is not None else table
    overlay = []
    for name in dict.fromkeys(rows[PANEL]):
        sub = rows[rows[PANEL] == name].sort_values(choice.x)
        label = str(name) or value
        overlay.append(hv.Curve(sub, choice.x, value, label=label).opts(tools=["hover"]))
        overlay.append(hv.Scatter(sub, choice.x, value, label=label).opts(size=5))
        err = sub[[choice.x, value, sem]].fillna({sem: 0.0})
        overlay.append(hv.ErrorBars(err, choice.x, [value, sem], label=label))
    title = f"{value} at {choice.y} = {choice.at}"
    return hv.Overlay(overlay).opts(
        width=WIDTH + 120, height=HEIGHT, title=title, legend_position="right", padding=0.05, show_grid=True
    )


def phase_layout(
    table: pd.DataFrame, choice: Choice, title: str = "", grid: dict[str, list] | None = None
) -> hv.Layout:
    """Heatmaps, then the line view (not for a class): one layout whose plots do not share axes
    (a heatmap's categorical x axis linked to the line view's numeric one drew empty heatmaps)."""
    plots = list(heatmaps(table, choice, title, grid))
    ncols = min(len(plots), 4)  # the heatmaps side by side, the line view below them
    if choice.value not in derived.CATEGORICAL:
        try:
            plots.append(lines(table, choice))
        except NoData:  # nothing done yet at that y value: the heatmaps alone
            pass
    return hv.Layout(plots).opts(shared_axes=False).cols(ncols)


def class_legend() -> str:
    """Markdown: the class colours and how a class is decided (classify's thresholds)."""
    swatches = " ".join(
        f'<span style="background:{classify.CLASS_COLORS[c]};padding:0 8px">&nbsp;</span> {classify.CLASS_NAMES[c]}'
        for c in sorted(classify.CLASS_NAMES)
    )
    return f"{swatches}<br>Decided per cell by analysis/classify.py; the majority over seeds is shown."


def progress_markdown(data: dict[str, Any]) -> str:
    """Markdown of ``storage.status.status_data``: progress by state, throughput and ETA, per-node
    activity where the run history records it, failures grouped by message."""
    import datetime as dt

    c = data["counts"]
    applicable = max(int(data["applicable"]), 1)
    lines_ = [
        f"**{data['sweep']}**  (spec `{data['spec_hash']}`)",
        f'done <span class="amsweep-done">{c["done"]}</span> of {data["applicable"]} applicable '
        f"({100.0 * c['done'] / applicable:.1f}%) · pending {c['pending']} · failed {c['failed']} · "
        f"not applicable {c['not_applicable']}",
    ]
    w = data.get("writer")
    if w:
        state = "live" if w["live"] else "stale"
        lines_.append(f"writer: {w['holder'] or '?'} ({state}, heartbeat {w['heartbeat_age_seconds']} s ago)")
    else:
        lines_.append("writer: none (no driver holds the cube)")
    t = data.get("throughput")
    if t:
        lines_.append(
            f"throughput: {t['tasks_per_minute']:.1f} tasks/min ({t['done']} in {t['seconds']:.0f} s, "
            f"{t['executor'] or '?'}); ETA {dt.timedelta(seconds=int(t['eta_seconds']))}"
        )
    nodes: dict[str, int] = {}
    for r in data.get("runs", []):  # a run records the nodes it used (Ray) or else the host it ran on
        used = (r.get("cluster") or {}).get("nodes_used") or ([r["host"]] if r.get("host") else [])
        for node in map(str, used):
            nodes[node] = nodes.get(node, 0) + int(r.get("done") or 0)
    if nodes:
        lines_.append(
            "nodes (cells done by the runs that used each, from the run history): "
            + ", ".join(f"{k} {n}" for k, n in nodes.items())
        )
    f = data["failures"]
    if f["count"]:
        groups = []
        for g in f["groups"][:10]:
            example = " ".join(f"{k}={v}" for k, v in (g["examples"][0] if g["examples"] else {}).items())
            groups.append(f"- {g['count']} × `{g['error']}` (e.g. {example})")
        lines_ += [f"**failures: {f['count']}** in {len(f['groups'])} distinct error(s)", "\n".join(groups)]
    return "\n\n".join(lines_)
