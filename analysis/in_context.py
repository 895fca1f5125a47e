"""Energy minima against the mixture's modes: the in-context model versus KDE at its best bandwidth.

Why its own table: the comparison the in_context sweeps exist for needs two things the standard
figures do not do. The quantity is a distance, (1 - test_best_feature) / 2, the fraction of
sites where an attractor reached from a corrupted held-out point differs from the nearest mode
(the dataset's prototypes travel as ``meta["features"]``). And KDE is shown at its best
bandwidth *per cell* (lowest seed-mean distance among the swept ones): an oracle choice that
uses the answer, against which the in-context model, which chooses nothing, is measured.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
import numpy as np
import pandas as pd
import xarray as xr

from amsweep.analysis.figures import save
from amsweep.storage.query import to_frame

__all__ = ["CELL", "figure", "mode_distances", "start_distance", "STYLE", "summary"]

CELL = ["flip", "N", "P", "noise"]
STYLE = {
    "in_context": ("tab:red", "-", "in-context transformer"),
    "kde (best h)": ("tab:blue", "--", "KDE, best bandwidth per cell (oracle)"),
    "kde (best fixed h)": ("tab:cyan", ":", "KDE, best single bandwidth"),
    "crp_memory": ("tab:green", "-.", "CRP memory"),
}


def mode_distances(ds: xr.Dataset) -> pd.DataFrame:
    """Seed mean and standard error of the distance to the nearest mode, per cell and method.

    Methods: each rule other than kde under its own label; 'kde (best h)', the kde variant of
    lowest mean distance in that cell (its bandwidth in column ``bandwidth``); and 'kde (best
    fixed h)', the one variant of lowest distance averaged over every cell of the cube.
    """
    frame = to_frame(ds, "test_best_feature")
    frame["distance"] = (1.0 - frame["test_best_feature"]) / 2.0
    grouped = frame.groupby([*CELL, "rule", "rule_kind", "bandwidth"], dropna=False)["distance"]
    table = grouped.agg(mean="mean", sem="sem", seeds="count").reset_index()
    kde = table[table["rule_kind"] == "kde"]
    best = kde.loc[kde.groupby(CELL)["mean"].idxmin()].assign(rule="kde (best h)")
    fixed = kde[kde["rule"] == kde.groupby("rule")["mean"].mean().idxmin()].assign(rule="kde (best fixed h)")
    return pd.concat([table[table["rule_kind"] != "kde"], best, fixed], ignore_index=True)


def start_distance(flip: float, noise: float) -> float:
    """Expected distance of a corrupted held-out point from its mode: flip p, then a fraction rho flipped."""
    return flip + noise * (1.0 - 2.0 * flip)


def figure(ds: xr.Dataset, out: str | Path, noise: float = 0.2, P: int = 64) -> Path:
    """Top: distance to the nearest mode against context size at one noise; bottom: against noise at one P."""
    table = mode_distances(ds)
    flips = sorted(table["flip"].unique())
    fig = Figure(figsize=(3.6 * len(flips), 6.4))
    axes = fig.subplots(2, len(flips), squeeze=False, sharey="row")
    tops = [0.0, 0.0]
    for col, flip in enumerate(flips):
        at_flip = table[table["flip"] == flip]
        for row, (x, fixed, value) in enumerate((("P", "noise", noise), ("noise", "P", P))):
            ax = axes[row, col]
            part = at_flip[np.isclose(at_flip[fixed], value)]
            for rule, (colour, dash, label) in STYLE.items():
                line = part[part["rule"] == rule].sort_values(x)
                if len(line):
                    ax.errorbar(
                        line[x], line["mean"], yerr=line["sem"], color=colour, ls=dash, marker="o", ms=3, label=label
                    )
            xs = np.sort(part[x].unique())
            starts = [start_distance(flip, noise if x == "P" else v) for v in xs]
            ax.plot(xs, starts, color="grey", ls=":", label="corrupted start")
            ax.axhline(flip, color="black", lw=0.6, ls=(0, (1, 3)), label="a context point (flip p)")
            tops[row] = max(tops[row], *starts, float((part["mean"] + part["sem"].fillna(0)).max()))
            if x == "P":
                ax.set_xscale("log", base=2)
            ax.set_xlabel("context size P" if x == "P" else "retrieval noise (fraction flipped)")
            ax.set_title(f"flip p = {flip:g}, " + (f"noise = {noise:g}" if x == "P" else f"P = {P}"), fontsize=9)
        axes[0, col].set_ylabel("distance to nearest mode" if col == 0 else "")
        axes[1, col].set_ylabel("distance to nearest mode" if col == 0 else "")
    for row in range(2):
        axes[row, 0].set_ylim(0.0, 1.05 * tops[row])
    axes[0, 0].legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return save(fig, out)


def summary(ds: xr.Dataset, noise: float = 0.2) -> pd.DataFrame:
    """Wide table at one noise: distance per method (columns) and cell, with KDE's best bandwidth."""
    table = mode_distances(ds)
    table = table[np.isclose(table["noise"], noise)]
    wide = table.pivot_table(index=["flip", "P"], columns="rule", values="mean")
    for rule in ("kde (best h)", "kde (best fixed h)"):
        wide[rule.replace("(best", "(h of best")] = table[table["rule"] == rule].set_index(["flip", "P"])["bandwidth"]
    return wide.round(3)
