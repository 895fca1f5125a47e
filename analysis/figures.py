"""Standard figures of a cube: heatmaps over any two axes and lines against the load, per rule.

Each figure is written twice, as PNG (for the README and reports) and SVG (for papers), from a
table averaged over replicas: heatmaps show the seed mean (or the class decided from the seed
means, ``classify``), line plots show the seed mean with standard-error bars. The functions take
a cube selection and a value name (a stored metric or a derived one, see
``amsweep.analysis.derived``) and refuse to average over an axis that still varies, naming it.
Figures are ``matplotlib.figure.Figure`` objects saved with ``savefig``: no pyplot, so importing
this module selects no backend and keeps no state; they are drawn inside a ``FigureStyle``
context (``analysis/style.py``: the packaged style, the user's style files, the font scale).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import matplotlib
import matplotlib.font_manager
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.axes import Axes
from matplotlib.colors import BoundaryNorm, ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import FuncFormatter

from amsweep.analysis import classify, derived, tables
from amsweep.analysis.labels import axis_label, value_label
from amsweep.analysis.style import DEFAULT_STYLE, FigureStyle
from amsweep.pipeline.errors import NoData, QueryError

__all__ = [
    "add_panel_column",
    "axis_scale",
    "DPI",
    "draw_heatmaps",
    "draw_lines",
    "edges",
    "fixed_text",
    "grid",
    "heatmap_figure",
    "line_figure",
    "LOG_SPAN",
    "MAX_COLUMNS",
    "PANEL",
    "plot_heatmaps",
    "plot_lines",
    "reference_rule",
    "REFERENCE_VALUE",
    "save",
    "save_as",
    "set_scale",
    "title_text",
]

DPI = 150  # the packaged style's savefig.dpi; --dpi overrides it
MAX_COLUMNS = 4
LOG_SPAN = 20.0
PANEL = "panel"
REFERENCE_VALUE = "reference_value"  # column of the reference line in an aggregated table


def save(fig: Figure, out: str | Path, dpi: float = DPI) -> Path:
    """Write ``out`` as .png and .svg; return the PNG path.

    A name such as 'rf_alpha_D=0.1' has no real suffix: '.png' is appended, not substituted.
    """
    out = Path(out)
    png = out.with_suffix(".png") if out.suffix.lower() in (".png", ".svg") else Path(f"{out}.png")
    save_as(fig, png, dpi)
    fig.savefig(png.with_suffix(".svg"))
    return png


def save_as(fig: Figure, path: str | Path, dpi: float = DPI) -> Path:
    """Write one file, its format given by the suffix (a CLI ``-o`` path)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi)
    return path


def fixed_text(frame: pd.DataFrame, ds: xr.Dataset, shown: Sequence[str]) -> str:
    """The cube axes with one value in a table, as 'N=300, dataset=random': what a title must state
    so that a figure cut out of a paper still says which experiment it is (``shown``: axes drawn)."""
    parts = []
    for axis in tables.axes_of(frame, ds):
        if axis in shown or axis == "seed" or axis not in frame.columns:
            continue
        values = frame[axis].dropna().unique()
        if len(values) == 1:
            parts.append(f"{axis}={_fmt(values[0])}")
    return ", ".join(parts)


def title_text(head: str, fixed: str = "", where: str = "") -> str:
    """A figure title: what is shown, the fixed axes and the user's --where selection (a fixed axis
    that the selection names is said once, as selected)."""
    chosen = {part.split("=")[0].strip() for part in where.split(",") if "=" in part}
    fixed = ", ".join(p for p in fixed.split(", ") if p and p.split("=")[0] not in chosen)
    extra = "; ".join(p for p in (fixed, f"where {where}" if where else "") if p)
    return f"{head}\n{extra}" if extra else head


def add_panel_column(frame: pd.DataFrame, panel: str | Sequence[str] | None) -> pd.DataFrame:
    """A single ``panel`` column naming each panel ('mnist, N=196'); one panel if None."""
    frame = frame.copy()
    cols = [panel] if isinstance(panel, str) else list(panel or [])
    if not cols:
        frame[PANEL] = ""
        return frame
    for c in cols:
        if c not in frame.columns:
            raise QueryError(f"no column {c!r} to make panels of; available: {', '.join(map(str, frame.columns))}")

    def name(row: pd.Series) -> str:
        return ", ".join(str(row[c]) if c in ("rule", "dataset") else f"{c}={_fmt(row[c])}" for c in cols)

    frame[PANEL] = frame.apply(name, axis=1) if len(frame) else pd.Series(dtype=str)
    return frame


def _fmt(v: Any) -> str:
    return f"{v:g}" if isinstance(v, (float, np.floating)) else str(v)


def grid(
    n: int, width: float, height: float, min_width: float = 0.0, ncols: int | None = None
) -> tuple[Figure, np.ndarray]:
    """A figure of n panels in balanced rows of at most MAX_COLUMNS (or rows of ``ncols``: one
    column per value of a --col dimension); unused axes hidden."""
    if ncols is None:
        nrows = int(np.ceil(n / MAX_COLUMNS))
        ncols = int(np.ceil(n / nrows))  # balanced rows: 6 panels as 2 x 3, not 4 + 2
    else:
        nrows = int(np.ceil(n / ncols))
    fig = Figure(figsize=(max(width * ncols, min_width), height * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, axes.ravel()


def _positions(values: np.ndarray) -> tuple[np.ndarray, list[str] | None]:
    """Numeric axis values as they are; anything else as 0..k-1 with tick labels."""
    if values.dtype.kind in "iuf":
        return values.astype(float), None
    return np.arange(len(values), dtype=float), [str(v) for v in values]


def _log_scale(values: np.ndarray) -> bool:
    """A positive numeric grid spanning more than LOG_SPAN (alpha 0.05..30) is shown on a log axis."""
    values = np.asarray(values)
    if values.dtype.kind not in "iuf" or len(values) < 3:
        return False
    v = values.astype(float)
    return bool(np.all(v > 0) and v.max() / v.min() >= LOG_SPAN)


def axis_scale(values: Sequence[Any] | np.ndarray) -> str:
    """'log' or 'linear' for an axis, decided once from all its values, so that the heatmaps and the
    line panels of one figure (and of one report) put the same load at the same place."""
    return "log" if _log_scale(np.unique(np.asarray(values))) else "linear"


def set_scale(ax: Axes, which: str, scale: str) -> None:
    """Log axes show the grid's own numbers (0.05, 0.1, 1), not powers of ten."""
    axis = ax.xaxis if which == "x" else ax.yaxis
    (ax.set_xscale if which == "x" else ax.set_yscale)(scale)
    if scale == "log":
        axis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:.0e}"[0] in "25" else ""))


def _cell_edges(centres: np.ndarray, log: bool) -> np.ndarray:
    return np.exp(edges(np.log(centres))) if log else edges(centres)


def edges(centres: np.ndarray) -> np.ndarray:
    """Cell edges for pcolormesh from (possibly uneven) cell centres."""
    if len(centres) == 1:
        half = 0.5 * abs(centres[0]) if centres[0] else 0.5
        return np.array([centres[0] - half, centres[0] + half])
    mid = (centres[1:] + centres[:-1]) / 2
    return np.concatenate([[2 * centres[0] - mid[0]], mid, [2 * centres[-1] - mid[-1]]])


def plot_heatmaps(
    table: pd.DataFrame,
    value: str,
    x: str,
    y: str,
    out: str | Path,
    title: str = "",
    categorical: bool = False,
    look: FigureStyle = DEFAULT_STYLE,
    ncols: int | None = None,
) -> Path:
    """One heatmap per panel of an aggregated table (columns panel, x, y, value), in the table's order."""
    with look.context():
        panels = list(dict.fromkeys(table[PANEL]))
        fig, axes = grid(len(panels), 4.2, 3.6, ncols=ncols)
        look.apply_size(fig)
        draw_heatmaps(fig, axes[: len(panels)], table, value, x, y, categorical, look=look)
        fig.suptitle(title)
        return save(fig, out, look.save_dpi())


def draw_heatmaps(
    fig: Figure,
    axes: Iterable[Axes],
    table: pd.DataFrame,
    value: str,
    x: str,
    y: str,
    categorical: bool = False,
    look: FigureStyle = DEFAULT_STYLE,
    scales: tuple[str, str] | None = None,
    colorbar_axes: Sequence[Axes] | None = None,
) -> None:
    """A heatmap of each panel of an aggregated table on its axes, one shared colour scale.

    ``scales`` = (x scale, y scale) when the caller has decided them for other panels too (the
    line panels of a phase figure); by default each is decided from the table's values.
    """
    panels, axes = list(dict.fromkeys(table[PANEL])), list(axes)
    style: dict[str, Any]
    if categorical:
        codes = sorted(classify.CLASS_NAMES)
        cmap = ListedColormap([classify.CLASS_COLORS[c] for c in codes])
        norm = BoundaryNorm(np.arange(len(codes) + 1) - 0.5, cmap.N)
        style = {"cmap": cmap, "norm": norm}
    else:
        finite = table[value].to_numpy(dtype=float)
        style = look.colour_limits(float(np.nanmin(finite)), float(np.nanmax(finite)))
    xs_all, ys_all = np.sort(table[x].unique()), np.sort(table[y].unique())
    xscale, yscale = scales or (axis_scale(xs_all), axis_scale(ys_all))
    for ax, name in zip(axes, panels):
        cells = (
            table[table[PANEL] == name].pivot(index=y, columns=x, values=value).reindex(index=ys_all, columns=xs_all)
        )
        xp, xt = _positions(cells.columns.to_numpy())
        yp, yt = _positions(cells.index.to_numpy())
        xlog, ylog = xscale == "log" and xt is None, yscale == "log" and yt is None
        image = ax.pcolormesh(
            _cell_edges(xp, xlog),
            _cell_edges(yp, ylog),
            np.ma.masked_invalid(cells.to_numpy(dtype=float)),
            shading="flat",
            **style,
        )
        if xlog:
            set_scale(ax, "x", "log")
        if ylog:
            set_scale(ax, "y", "log")
        if xt is not None:
            ax.set_xticks(xp, xt, rotation=45, ha="right")
        if yt is not None:
            ax.set_yticks(yp, yt)
        ax.set_title(name)
        ax.set_xlabel(axis_label(x))
        ax.set_ylabel(axis_label(y))
    if categorical:
        handles = [Patch(color=classify.CLASS_COLORS[c], label=classify.CLASS_NAMES[c]) for c in codes]
        names = [classify.CLASS_NAMES[c] for c in codes]
        fig.legend(handles=handles, loc="outside lower center", ncols=_legend_columns(fig, names))
    elif panels:
        fig.colorbar(
            image, ax=list(colorbar_axes or axes), label=f"{value_label(value)}\n(seed mean)", shrink=0.9, pad=0.01
        )


def plot_lines(
    table: pd.DataFrame,
    values: Sequence[str],
    x: str,
    hue: str,
    out: str | Path,
    title: str = "",
    ylabel: str | None = None,
    reference: pd.DataFrame | None = None,
    reference_label: str = "",
    look: FigureStyle = DEFAULT_STYLE,
) -> Path:
    """Lines of one or more values against x, one colour per hue, one panel per panel value.

    ``reference`` (columns panel, x, ``reference_label`` value and its _sem, as aggregated) is drawn
    per panel as a black dashed line with a grey standard-error band, under the label given.
    """
    with look.context():
        panels = list(dict.fromkeys(table[PANEL]))
        colors = {h: f"C{i % 10}" for i, h in enumerate(dict.fromkeys(table[hue]))}
        fig, axes = grid(len(panels), 4.2, 3.6, min_width=6.0)
        look.apply_size(fig)
        xscale = axis_scale(table[x].unique())
        for ax, name in zip(axes, panels):
            draw_lines(ax, table[table[PANEL] == name], values, x, hue, colors, xscale == "log")
            if reference is not None:
                _reference_line(ax, reference[reference[PANEL] == name].sort_values(x), x, reference_label)
            ax.set_title(name)
            ax.set_xlabel(axis_label(x))
            ax.set_ylabel(ylabel or value_label(values[0]))
            ax.grid(True)
        handles, labels = axes[0].get_legend_handles_labels()
        for ax in axes[1 : len(panels)]:
            for h, lab in zip(*ax.get_legend_handles_labels()):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        if handles:
            fig.legend(handles, labels, loc="outside lower center", ncols=_legend_columns(fig, labels))
        fig.suptitle(title)
        return save(fig, out, look.save_dpi())


def draw_lines(
    ax: Axes,
    part: pd.DataFrame,
    values: Sequence[str],
    x: str,
    hue: str,
    colors: dict[Any, str],
    xlog: bool = False,
) -> None:
    """Seed mean +- standard error of each value against x, one colour per hue, one dash per value."""
    dashes = ["-", "--", ":", "-."]
    if xlog:
        set_scale(ax, "x", "log")
    for k, v in enumerate(values):
        for h, color in colors.items():
            line = part[(part[hue] == h) & part[v].notna()].sort_values(x)
            if line.empty:
                continue
            ax.errorbar(
                line[x],
                line[v],
                yerr=line[f"{v}_sem"].fillna(0.0),
                color=color,
                ls=dashes[k % len(dashes)],
                marker="o",
                label=str(h) if len(values) == 1 else f"{h}: {v}",
            )


def _reference_line(ax: Axes, line: pd.DataFrame, x: str, label: str) -> None:
    """The reference rule's value (first column after panel/x) as a dashed black line with its sem band."""
    if line.empty:
        return
    value = REFERENCE_VALUE
    xs, ys = line[x].to_numpy(dtype=float), line[value].to_numpy(dtype=float)
    err = line[f"{value}_sem"].fillna(0.0).to_numpy(dtype=float)
    ax.fill_between(xs, ys - err, ys + err, color="grey", alpha=0.25, lw=0)
    ax.plot(xs, ys, color="black", ls="--", lw=1.5, label=label)


def reference_rule(ds: xr.Dataset) -> str | None:
    """The label of a rule of kind ``true_couplings`` (retrieval with the data's own couplings), if any."""
    if "rule_kind" not in ds.coords:
        return None
    kinds = dict(zip(ds["rule"].values.tolist(), ds["rule_kind"].values.tolist()))
    return next((r for r, k in kinds.items() if k == "true_couplings"), None)


def _legend_columns(fig: Figure, labels: list[str]) -> int:
    """As many columns as fit the figure's width (a character ~0.55 of the legend's font size, plus the handle)."""
    size = matplotlib.font_manager.FontProperties(size=matplotlib.rcParams["legend.fontsize"]).get_size_in_points()
    column = 0.55 * size / 72 * max(len(lab) for lab in labels) + 0.8
    fit = int(fig.get_size_inches()[0] // column)
    return max(1, min(len(labels), fit, 4))


def heatmap_figure(
    ds: xr.Dataset,
    value: str,
    x: str,
    y: str,
    out: str | Path,
    panel: str | Sequence[str] | None = "rule",
    at: dict[str, Any] | None = None,
    title: str | None = None,
    look: FigureStyle = DEFAULT_STYLE,
    where: str = "",
    grid_columns: bool = False,
) -> Path:
    """Heatmap of ``value`` (metric, basin, class, gen_gap) over columns x and y, one per panel.

    ``grid_columns`` with two panel columns (row, col): one column of panels per value of the second.

    ``at`` fixes other columns (e.g. {"noise": 0.1, "N": 200}); any axis left varying that is
    not x, y or a panel is an error, so nothing is averaged over silently except seeds. The
    default title names every axis with one value in the selection and ``where`` (the user's
    --where text, for a selection made before).
    """
    frame = derived.nonempty(add_panel_column(tables.restrict(derived.value_frame(ds, value), at), panel), value)
    table = derived.aggregate(frame, ds, value, [PANEL, y, x])
    panels = [panel] if isinstance(panel, str) else list(panel or [])
    # panels in the order of their values (N=50 before N=100), not of their names
    order = {name: i for i, name in enumerate(dict.fromkeys(frame.sort_values(panels, kind="stable")[PANEL]))}
    table = table.iloc[np.argsort(table[PANEL].map(order).to_numpy(), kind="stable")]
    fixed = fixed_text(frame, ds, [x, y, *panels])
    default = title_text(f"{ds.attrs.get('title', '')}: {value_label(value)}", fixed, where)
    return plot_heatmaps(
        table,
        value,
        x,
        y,
        out,
        title if title is not None else default,
        categorical=value in derived.CATEGORICAL,
        look=look,
        ncols=int(frame[panels[-1]].nunique()) if grid_columns and len(panels) == 2 else None,
    )


def line_figure(
    ds: xr.Dataset,
    values: str | Sequence[str],
    out: str | Path,
    x: str | None = None,
    hue: str = "rule",
    panel: str | Sequence[str] | None = None,
    at: dict[str, Any] | None = None,
    title: str | None = None,
    hue_name: Callable[[Any], str] | None = None,
    reference: tuple[str, str] | None = None,
    look: FigureStyle = DEFAULT_STYLE,
    where: str = "",
) -> Path:
    """Seed mean +- standard error of one or more values against x (default: the load axis).

    ``hue_name`` maps hue values to the names drawn (one colour and legend entry per name), so
    that variants shown in different panels can share a colour ('hebb' and 'hebb_paper' in the
    panels of two retrieval protocols); names must stay distinct within a panel.
    ``reference`` = (hue value, value), e.g. ("true_couplings", "m_test"): that hue is not drawn
    as a line of its own; its ``value`` is drawn in every panel as the dashed reference line
    (the overlap the true couplings give, which learned couplings approach).
    """
    values = [values] if isinstance(values, str) else list(values)
    ref_table = None
    if reference is not None:
        ref_hue, ref_value = reference
        frame = add_panel_column(tables.restrict(derived.value_frame(ds, ref_value), at), panel)
        frame = frame[frame[hue] == ref_hue]
        if frame.empty:
            raise NoData(f"no done task of {hue} {ref_hue!r} has a value of {ref_value!r} in this selection")
        ref_table = derived.aggregate(frame, ds, ref_value, [PANEL, hue, x or tables.load_axis(ds)])
        ref_table = ref_table.rename(columns={ref_value: REFERENCE_VALUE, f"{ref_value}_sem": f"{REFERENCE_VALUE}_sem"})
        ds = ds.sel(rule=[r for r in ds["rule"].values.tolist() if r != ref_hue]) if hue == "rule" else ds
    if derived.CATEGORICAL & set(values):
        raise ValueError(f"{sorted(derived.CATEGORICAL & set(values))} is categorical: show it as a heatmap")
    x = x or tables.load_axis(ds)
    table = None
    fixed = ""
    for v in values:
        frame = add_panel_column(tables.restrict(derived.value_frame(ds, v), at), panel)
        if frame.empty:
            continue
        panels = [panel] if isinstance(panel, str) else list(panel or [])
        fixed = fixed or fixed_text(frame, ds, [x, hue, *panels])
        if hue_name is not None:
            frame[hue] = frame[hue].map(hue_name)
        part = derived.aggregate(frame, ds, v, [PANEL, hue, x]).drop(columns=["n"])
        table = part if table is None else table.merge(part, on=[PANEL, hue, x], how="outer")
    if table is None:
        raise NoData(f"no done task has a value of {values} in this selection")
    for v in values:
        if v not in table.columns:
            table[v], table[f"{v}_sem"] = np.nan, np.nan
    what = value_label(values[0]) if len(values) == 1 else " and ".join(values)
    default = title_text(f"{ds.attrs.get('title', '')}: {what}", fixed, where)
    styles = ["solid", "dashed", "dotted", "dash-dot"]
    ylabel = (
        value_label(values[0])
        if len(values) == 1
        else ("basin size (" if all(v.startswith("basin") for v in values) else "overlap (")
        + ", ".join(f"{styles[k % 4]}: {v}" for k, v in enumerate(values))
        + ")"
    )
    if ref_table is not None:
        assert reference is not None  # ref_table is drawn from it
        if hue != "rule":
            table = table[table[hue] != reference[0]]
        label = f"reference: {reference[0]}, {reference[1]}"
        return plot_lines(
            table,
            values,
            x,
            hue,
            out,
            title if title is not None else default,
            ylabel,
            reference=ref_table,
            reference_label=label,
            look=look,
        )
    return plot_lines(table, values, x, hue, out, title if title is not None else default, ylabel, look=look)
