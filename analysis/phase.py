"""Phase diagrams of memorization versus generalization, read from a cube through ``storage``.

A phase figure has one heatmap per rule (metric averaged over replicas, on two chosen axes)
and a last panel with the metric against the x axis at one y value, all rules together with
standard-error bars: the heatmaps show where each rule works, the line panel compares rules.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402

from amsweep.pipeline.errors import QueryError  # noqa: E402
from amsweep.pipeline.metrics import METRICS  # noqa: E402
from amsweep.analysis.figures import edges  # noqa: E402
from amsweep.analysis.labels import axis_label  # noqa: E402
from amsweep.storage import query  # noqa: E402


def aggregate(ds: xr.Dataset, metric: str, keys: list[str]) -> pd.DataFrame:
    """Mean and standard error of a metric over replicas, grouped by ``keys``.

    Any other coordinate that still varies would be silently averaged over, so it is an error:
    the caller narrows the cube with ``--where`` first.
    """
    frame = query.to_frame(ds, metric)
    if frame.empty:
        raise QueryError(f"no done task has a value of {metric!r} in this selection")
    for k in keys:
        if k not in frame.columns:
            raise QueryError(f"no coordinate {k!r}; available: {', '.join(c for c in frame.columns if c != metric)}")
    dims_left = [d for d in ds[metric].dims if d not in keys and d != "seed"]
    varying = [d for d in dims_left if frame[d].nunique() > 1]
    dependent = {d for k in keys for d in ds[k].dims if k in ds.coords}
    varying = [d for d in varying if d not in dependent]
    if varying:
        options = "; ".join(f"{d}: {sorted(frame[d].unique().tolist())[:6]}" for d in varying)
        raise QueryError(
            f"the selection still varies along {varying} ({options}); "
            f"pick values with --where, e.g. --where {varying[0]}=..."
        )
    g = frame.groupby(keys)[metric]
    return g.agg(["mean", "sem", "count"]).reset_index()


def phase_figure(
    ds: xr.Dataset,
    metric: str = "m_train",
    x: str = "alpha",
    y: str = "noise",
    out: str | Path = "phase.png",
    at: float | None = None,
) -> Path:
    """Write the phase figure of ``metric`` over (x, y), one heatmap per rule plus a line panel."""
    table = aggregate(ds, metric, ["rule", y, x])
    rules = list(dict.fromkeys(table["rule"]))
    ys = np.sort(table[y].unique())
    at_y = ys[np.argmin(np.abs(ys - (at if at is not None else ys[len(ys) // 2])))]
    ncols = len(rules) + 1
    fig, axes = plt.subplots(1, ncols, figsize=(4.2 * ncols, 3.8), constrained_layout=True)
    description = METRICS[metric].description if metric in METRICS else metric
    vmin, vmax = float(np.nanmin(table["mean"])), float(np.nanmax(table["mean"]))
    image = None
    for ax, rule in zip(axes, rules):
        grid = table[table["rule"] == rule].pivot(index=y, columns=x, values="mean")
        xs, yv = grid.columns.to_numpy(dtype=float), grid.index.to_numpy(dtype=float)
        image = ax.pcolormesh(
            edges(xs), edges(yv), grid.to_numpy(dtype=float), shading="flat", cmap="viridis", vmin=vmin, vmax=vmax
        )
        ax.set_title(rule)
        ax.set_xlabel(axis_label(x))
        ax.set_ylabel(axis_label(y))
        ax.axhline(at_y, color="white", lw=0.8, ls=":")
    fig.colorbar(image, ax=axes[: len(rules)], label=f"{metric}: mean over seeds", shrink=0.9)
    ax = axes[-1]
    for rule in rules:
        line = table[(table["rule"] == rule) & (table[y] == at_y)].sort_values(x)
        ax.errorbar(line[x], line["mean"], yerr=line["sem"].fillna(0.0), marker="o", ms=3, capsize=2, label=rule)
    ax.set_xlabel(axis_label(x))
    ax.set_ylabel(metric)
    ax.set_title(f"{y} = {at_y:g}")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.suptitle(f"{ds.attrs.get('title', '')}: {description}", fontsize=10)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    return out
