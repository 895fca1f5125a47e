"""Plain TAP, adaptive TAP and Monte Carlo on correlated patterns: how far each is from Monte Carlo.

The cube of ``correlated_tap_laptop`` holds, for every (depth, alpha, seed) and temperature, the
thermal overlap m_train of four rules run on the same couplings from the same starts: plain TAP
(``tap``), adaptive TAP (``tap_correlated``) and two independent Glauber runs (``glauber``, the
reference, and ``glauber_rep``). Agreement with Monte Carlo is a comparison in the analysis, as
in ``tap_vs_mc``: |m_train(method) - m_train(glauber)| per seed, next to the distance of the
second Monte Carlo run, which measures the Monte Carlo error (and catches cells where the chains
themselves end in different states). Temperatures are the dynamics' ``temperature`` or 1/``beta``.

A cell where adaptive TAP has no solution from some start (``no_solution_train`` > 0: its response
cap still active when the iteration stopped) is left out of every comparison, for every method:
its m_train averages fewer starts than the Monte Carlo one, and the missing starts are exactly
where the equations fail, so neither the cell's TAP values nor a mean over the remaining starts
measures the equations' accuracy. ``agreement_table`` counts those cells (``no_solution``).
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure
import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.ticker import NullFormatter

from amsweep.analysis import figures, tables

__all__ = [
    "AGREE_ABS",
    "agreement_table",
    "COLOURS",
    "comparison_figure",
    "comparison_frame",
    "FLOOR",
    "METHODS",
    "NO_SOLUTION",
]

REFERENCE, REPLICA = "glauber", "glauber_rep"
METHODS = {"tap": "plain TAP", "tap_correlated": "adaptive TAP", REPLICA: "second Monte Carlo run"}
COLOURS = {"plain TAP": "C3", "adaptive TAP": "C0", "second Monte Carlo run": "0.45"}
FLOOR = 1e-5  # |difference| below this is drawn at the floor of the log axis
AGREE_ABS = 2e-3  # agreement: within max(3 x the Monte Carlo replica distance, this)
NO_SOLUTION = "no_solution_train"  # per-task fraction of starts without a TAP solution (pipeline/metrics.py)


def comparison_frame(ds: xr.Dataset, metric: str = "m_train") -> pd.DataFrame:
    """One row per (depth, alpha, T, seed, method): |metric - metric(reference MC)|, TAP convergence,
    and ``solved``: False for every method in a cell where some TAP start had no solution.

    A cube made before ``no_solution_train`` existed cannot tell: ``solved`` is then NaN there,
    and the comparison keeps those cells as it always did (say so where numbers are quoted).
    """
    checks = [NO_SOLUTION] if NO_SOLUTION in ds.data_vars else []
    frame = tables.tidy(ds, [metric, "converged_train", *checks])
    if not checks:
        frame[NO_SOLUTION] = np.nan
    T = frame["temperature"] if "temperature" in frame.columns else pd.Series(np.nan, index=frame.index)
    if "beta" in frame.columns:
        T = T.fillna(1.0 / frame["beta"])
    if T.isna().any():
        raise ValueError("every rule needs a swept temperature (dynamics parameter temperature or beta)")
    frame = frame.assign(T=T.round(6), entry=frame["rule_entry"])
    if frame["noise"].nunique() > 1:
        frame = frame[frame["noise"] == frame["noise"].min()]
    load = tables.load_axis(ds)
    keys = ["depth", load, "T", "seed"]
    ref = frame[frame["entry"] == REFERENCE].set_index(keys)[metric].rename("reference")
    if ref.empty:
        raise ValueError(f"no rule entry {REFERENCE!r} in this cube: nothing to compare with")
    rows = frame[frame["entry"].isin(list(METHODS))].join(ref, on=keys)
    tap_rows = frame[frame["entry"].isin(["tap", "tap_correlated"])]
    unsolved = (tap_rows[NO_SOLUTION] > 0).groupby([tap_rows[k] for k in keys]).any()
    known = tap_rows[NO_SOLUTION].notna().groupby([tap_rows[k] for k in keys]).all()
    solved = (~unsolved).where(known).rename("solved")
    rows = rows.join(solved, on=keys)
    return pd.DataFrame(
        {
            "depth": rows["depth"].astype(int),
            "alpha": rows[load].astype(float),
            "T": rows["T"],
            "seed": rows["seed"],
            "method": rows["entry"].map(METHODS),
            "difference": (rows[metric] - rows["reference"]).abs(),
            "converged": rows["converged_train"],
            "solved": rows["solved"],
        }
    ).reset_index(drop=True)


def _compared(comp: pd.DataFrame) -> pd.DataFrame:
    """Rows of cells where every TAP start had a solution (or the cube cannot say: NaN)."""
    return comp[comp["solved"].fillna(True).astype(bool)]


def agreement_table(ds: xr.Dataset, metric: str = "m_train") -> pd.DataFrame:
    """Per (depth, T, TAP method): median |difference| over alpha and seeds next to the median
    replica distance, the fraction of cells within max(3 x that cell's replica distance,
    AGREE_ABS) of the reference Monte Carlo, and the mean fraction of starts that converged."""
    everything = comparison_frame(ds, metric)
    comp = _compared(everything)
    keys = ["depth", "alpha", "T", "seed"]
    replica = comp[comp["method"] == METHODS[REPLICA]].set_index(keys)["difference"].rename("mc_error")
    comp = comp.join(replica, on=keys)
    comp["agrees"] = comp["difference"] <= np.maximum(3.0 * comp["mc_error"], AGREE_ABS)
    comp = comp[comp["method"] != METHODS[REPLICA]]  # the replica agrees with itself by definition
    tap_rows = everything[everything["method"] != METHODS[REPLICA]]
    keys3 = ["depth", "T", "method"]
    excluded = (tap_rows["solved"] == False).groupby([tap_rows[k] for k in keys3]).sum()  # noqa: E712
    stats = comp.groupby(keys3).agg(
        median_difference=("difference", "median"),
        median_mc_error=("mc_error", "median"),
        agree_fraction=("agrees", "mean"),
        converged=("converged", "mean"),
        cells=("agrees", "size"),
    )
    # every (depth, T, method) stays, also one whose cells were all left out
    out = excluded.rename("no_solution").to_frame().join(stats, how="left").fillna({"cells": 0})
    out = out.astype({"cells": int, "no_solution": int})
    return out[[*stats.columns, "no_solution"]].reset_index()


def comparison_figure(ds: xr.Dataset, out: str | Path, metric: str = "m_train") -> Path:
    """Grid of temperatures (rows) x depths (columns): |difference| to Monte Carlo against alpha.

    Small points are seeds (hollow where TAP did not converge from every start), lines the median
    over seeds; log axis, values below FLOOR drawn at FLOOR.
    """
    everything = comparison_frame(ds, metric)
    comp = _compared(everything)
    n_out = int((everything.loc[everything["method"] == METHODS["tap"], "solved"] == False).sum())  # noqa: E712
    temps, depths = sorted(comp["T"].unique()), sorted(comp["depth"].unique())
    fig = Figure(figsize=(3.5 * len(depths), 2.7 * len(temps)), layout="constrained")
    axes = fig.subplots(len(temps), len(depths), squeeze=False, sharex=True, sharey=True)
    alphas = np.sort(comp["alpha"].unique())
    offsets = dict(zip(METHODS.values(), (0.94, 1.0, 1.06)))  # spread the methods' points apart
    for r, T in enumerate(temps):
        for c, depth in enumerate(depths):
            ax = axes[r][c]
            part = comp[(comp["T"] == T) & (comp["depth"] == depth)]
            for method, g in part.groupby("method", sort=False):
                y = np.maximum(g["difference"].to_numpy(dtype=float), FLOOR)
                x = g["alpha"].to_numpy(dtype=float) * offsets[method]
                full = g["converged"].to_numpy(dtype=float) >= 1.0
                colour = COLOURS[method]
                if method == METHODS[REPLICA]:
                    full[:] = True  # Monte Carlo has no convergence to report
                ax.scatter(x[full], y[full], s=12, color=colour, alpha=0.6, lw=0)
                ax.scatter(x[~full], y[~full], s=12, facecolors="none", edgecolors=colour, alpha=0.8, lw=0.8)
                med = g.groupby("alpha")["difference"].median().reindex(alphas)
                ax.plot(
                    alphas * offsets[method], np.maximum(med.to_numpy(dtype=float), FLOOR), color=colour, label=method
                )
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3, which="major")
            label = "independent patterns" if depth == 0 else f"depth {depth}"
            ax.set_title(f"{label}, T = {T:g}", fontsize=9)
            if r == len(temps) - 1:
                ax.set_xlabel(r"load $\alpha = P/N$")
            if c == 0:
                ax.set_ylabel(f"|{metric} - Monte Carlo|", fontsize=8)
    ax = axes[0][0]
    ax.set_xticks(alphas, [f"{a:g}" for a in alphas])
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    fig.suptitle(
        "Thermal overlap: distance to Glauber Monte Carlo on the same couplings and starts "
        "(points: seeds, hollow: TAP not converged from every start; lines: median)"
        + (f"\n{n_out} cells left out: adaptive TAP had no solution from some start" if n_out else ""),
        fontsize=9,
    )
    return figures.save(fig, out)
