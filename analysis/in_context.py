"""Energy minima against the mixture's modes: the in-context model versus KDE at its best bandwidth.

Why its own table: the comparison the in_context sweeps exist for needs what the standard figures
do not do. The cell records two scores of the attractors reached from corrupted held-out points
(``pipeline/memory_metrics.py``): ``test_mode_distance``, the fraction of sites where an attractor
differs from the nearest mode (lower is better), and ``test_own_mode``, the fraction of starts
that end exactly on their own component's mode (higher is better; it sees attractors collapsing
onto one mode, which the distance does not). KDE is shown at its best bandwidth *per cell* (best
seed mean among the swept ones): an oracle choice that uses the answer, against which the
in-context model, which chooses nothing, is measured; and at the one bandwidth best over the
whole cube.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
import numpy as np
import pandas as pd
import xarray as xr

from amsweep.analysis.figures import save
from amsweep.storage.query import to_frame

__all__ = [
    "CELL",
    "figure",
    "method_table",
    "mode_distances",
    "own_modes",
    "SCORES",
    "start_distance",
    "STYLE",
    "summary",
]

CELL = ["flip", "N", "P", "noise"]
SCORES = {  # metric -> (short name, whether larger is better)
    "test_mode_distance": ("distance to nearest mode", False),
    "test_own_mode": ("fraction on their own mode", True),
}
STYLE = {
    "in_context": ("tab:red", "-", "in-context transformer"),
    "kde (best h)": ("tab:blue", "--", "KDE, best bandwidth per cell (oracle)"),
    "kde (best fixed h)": ("tab:cyan", ":", "KDE, best single bandwidth"),
    "crp_memory": ("tab:green", "-.", "CRP memory"),
}


def method_table(ds: xr.Dataset, metric: str) -> pd.DataFrame:
    """Seed mean and standard error of ``metric`` (one of ``SCORES``), per cell and method.

    Methods: each rule other than kde under its own label; 'kde (best h)', the kde variant of best
    mean in that cell (its bandwidth in column ``bandwidth``); and 'kde (best fixed h)', the one
    variant of best mean averaged over every cell of the cube. Best is judged on ``metric`` itself.
    """
    larger = SCORES[metric][1]
    frame = to_frame(ds, metric)
    grouped = frame.groupby([*CELL, "rule", "rule_kind", "bandwidth"], dropna=False)[metric]
    table = grouped.agg(mean="mean", sem="sem", seeds="count").reset_index()
    kde = table[table["rule_kind"] == "kde"]
    per_cell = kde.groupby(CELL)["mean"]
    best = kde.loc[per_cell.idxmax() if larger else per_cell.idxmin()].assign(rule="kde (best h)")
    overall = kde.groupby("rule")["mean"].mean()
    fixed = kde[kde["rule"] == (overall.idxmax() if larger else overall.idxmin())].assign(rule="kde (best fixed h)")
    return pd.concat([table[table["rule_kind"] != "kde"], best, fixed], ignore_index=True)


def mode_distances(ds: xr.Dataset) -> pd.DataFrame:
    """``method_table`` of the distance to the nearest mode (``test_mode_distance``)."""
    return method_table(ds, "test_mode_distance")


def own_modes(ds: xr.Dataset) -> pd.DataFrame:
    """``method_table`` of the fraction of starts ending on their own mode (``test_own_mode``)."""
    return method_table(ds, "test_own_mode")


def start_distance(flip: float, noise: float) -> float:
    """Expected distance of a corrupted held-out point from its mode: flip p, then a fraction rho flipped."""
    return flip + noise * (1.0 - 2.0 * flip)


def figure(ds: xr.Dataset, out: str | Path, noise: float = 0.2, P: int = 64) -> Path:
    """Distance to the nearest mode against context size at one noise (top) and against noise at
    one P (middle); fraction of starts ending on their own mode against context size (bottom)."""
    tables = {"test_mode_distance": mode_distances(ds), "test_own_mode": own_modes(ds)}
    rows: list[tuple[str, str, str, float]] = [
        ("test_mode_distance", "P", "noise", noise),
        ("test_mode_distance", "noise", "P", P),
        ("test_own_mode", "P", "noise", noise),
    ]
    flips = sorted(tables["test_mode_distance"]["flip"].unique())
    fig = Figure(figsize=(3.6 * len(flips), 9.2))
    axes = fig.subplots(len(rows), len(flips), squeeze=False, sharey="row")
    tops = [0.0] * len(rows)
    for col, flip in enumerate(flips):
        for row, (metric, x, fixed, value) in enumerate(rows):
            ax, at_flip = axes[row, col], tables[metric][np.isclose(tables[metric]["flip"], flip)]
            part = at_flip[np.isclose(at_flip[fixed], value)]
            for rule, (colour, dash, label) in STYLE.items():
                line = part[part["rule"] == rule].sort_values(x)
                if len(line):
                    ax.errorbar(
                        line[x], line["mean"], yerr=line["sem"], color=colour, ls=dash, marker="o", ms=3, label=label
                    )
            tops[row] = max(tops[row], float((part["mean"] + part["sem"].fillna(0)).max()))
            if metric == "test_mode_distance":
                xs = np.sort(part[x].unique())
                starts = [start_distance(flip, noise if x == "P" else v) for v in xs]
                ax.plot(xs, starts, color="grey", ls=":", label="corrupted start")
                ax.axhline(flip, color="black", lw=0.6, ls=(0, (1, 3)), label="a context point (flip p)")
                tops[row] = max(tops[row], *starts)
            if x == "P":
                ax.set_xscale("log", base=2)
            ax.set_xlabel("context size P" if x == "P" else "retrieval noise (fraction flipped)")
            ax.set_title(f"flip p = {flip:g}, " + (f"noise = {value:g}" if x == "P" else f"P = {value}"), fontsize=9)
            ax.set_ylabel(SCORES[metric][0] if col == 0 else "")
    for row, (metric, *_) in enumerate(rows):
        axes[row, 0].set_ylim(0.0, 1.02 if metric == "test_own_mode" else 1.05 * tops[row])
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save(fig, out)


def summary(ds: xr.Dataset, noise: float = 0.2, metric: str = "test_mode_distance") -> pd.DataFrame:
    """Wide table at one noise: ``metric`` per method (columns) and cell, with KDE's best bandwidths."""
    table = method_table(ds, metric)
    table = table[np.isclose(table["noise"], noise)]
    wide = table.pivot_table(index=["flip", "P"], columns="rule", values="mean")
    for rule in ("kde (best h)", "kde (best fixed h)"):
        wide[rule.replace("(best", "(h of best")] = table[table["rule"] == rule].set_index(["flip", "P"])["bandwidth"]
    return wide.round(3)
