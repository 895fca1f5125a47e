"""Figure of the curves a boundary is read from: the seed mean against the axis, one line per N.

Every grid point is drawn as a marker, so a refined cube shows where its points went (dense
inside the brackets, sparse elsewhere); the threshold is a dotted line and each crossing a
marker on it with its bootstrap interval.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from matplotlib.figure import Figure
import numpy as np
import pandas as pd

from amsweep.analysis.boundary import Target
from amsweep.analysis.labels import axis_label, value_label

__all__ = ["curves_figure"]


def _panels(table: pd.DataFrame, keys: Sequence[str], line: str) -> list[str]:
    """Keys that split panels: those that vary, but the one drawn as lines (and dataset, which
    a per-N family varies along with N)."""
    return [k for k in keys if k not in (line, "dataset") and table[k].nunique(dropna=False) > 1]


def curves_figure(
    frame: pd.DataFrame,
    table: pd.DataFrame,
    keys: Sequence[str],
    tgt: Target,
    along: str,
    out: str | Path,
    line: str = "N",
    max_panels: int = 6,
) -> Path:
    """Seed mean +- standard error against ``along``; lines by ``line``, panels by other keys."""
    frame = frame.copy()
    table = table.copy()
    if "family" in table.columns and "dataset" in frame.columns:
        frame["family"] = frame["dataset"].map(dict(zip(table["dataset"], table["family"])))
        keys = ["family", *keys]
    panels = _panels(table, keys, line)
    panel_values = list(table.groupby(panels, sort=True).groups) if panels else [()]
    panel_values = panel_values[:max_panels]
    fig = Figure(figsize=(4.4 * len(panel_values), 3.6), layout="constrained")
    axes = fig.subplots(1, len(panel_values), squeeze=False)
    for ax, pv in zip(axes[0], panel_values):
        pv = pv if isinstance(pv, tuple) else (pv,)
        sel_f, sel_t = frame, table
        for k, v in zip(panels, pv):
            sel_f, sel_t = sel_f[sel_f[k] == v], sel_t[sel_t[k] == v]
        for i, (lv, g) in enumerate(sel_f.groupby(line, sort=True)):
            stats = g.groupby(along)[tgt.column].agg(["mean", "sem"]).reset_index().sort_values(along)
            color = f"C{i % 10}"
            ax.errorbar(stats[along], stats["mean"], yerr=stats["sem"].fillna(0.0), fmt=".-", ms=4, lw=0.8, color=color)
            ax.plot([], [], ".-", color=color, label=f"{line} = {lv} ({len(stats)} points)")
            for _, row in sel_t[sel_t[line] == lv].iterrows():
                if np.isfinite(row["crossing"]):
                    lo, hi = row["crossing"] - row["ci_low"], row["ci_high"] - row["crossing"]
                    ax.errorbar([row["crossing"]], [tgt.threshold], xerr=[[lo], [hi]], fmt="x", color=color, capsize=3)
        ax.axhline(tgt.threshold, color="k", ls=":", lw=0.8)
        ax.set_xlabel(axis_label(along))
        ax.set_ylabel(value_label(tgt.value) if tgt.class_name is None else f"fraction of seeds {tgt.class_name}")
        ax.set_title(", ".join(str(v) for v in pv) if pv else tgt.describe(), fontsize=9)
        ax.legend(fontsize=7)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
