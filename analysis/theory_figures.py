"""Figures that put a sweep next to theory: retrieval at temperature T, and memory capacity.

- ``temperature_figure``: Hebbian networks retrieved at temperature T by message passing (TAP)
  and by Monte Carlo (Glauber), one heatmap per dynamics over (alpha, T), with the
  replica-symmetric line T_M(alpha) above which the retrieval state disappears.
- ``capacity_figure``: the largest number of stored patterns that are still retrieved, against
  the dimension N, per rule (a log axis shows exponential growth as a straight line).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import xarray as xr  # noqa: E402

from analysis import figures, summary, tables  # noqa: E402
from analysis.labels import axis_label, value_label  # noqa: E402
from pipeline.theory.hopfield_rs import T_M  # noqa: E402

CAPACITY_SUCCESS = 0.9  # a load counts as stored when >= 90% of corrupted starts are retrieved


def temperature_frame(ds: xr.Dataset, metric: str = "m_train") -> pd.DataFrame:
    """Done values with a temperature column T: the dynamics' ``temperature``, or 1 / ``beta``."""
    frame = tables.tidy(ds, [metric])
    T = frame["temperature"] if "temperature" in frame.columns else pd.Series(np.nan, index=frame.index)
    if "beta" in frame.columns:
        T = T.fillna(1.0 / frame["beta"])
    frame = frame.assign(T=T).dropna(subset=["T"])
    if frame.empty:
        raise ValueError("no rule of this cube has a temperature (dynamics parameter temperature or beta)")
    return frame


def temperature_figure(ds: xr.Dataset, out: str | Path, metric: str = "m_train") -> Path:
    """Heatmap of ``metric`` over (alpha, T) per dynamics, with the RS retrieval line T_M(alpha)."""
    frame = temperature_frame(ds, metric)
    noise = float(frame["noise"].min())
    frame = frame[frame["noise"] == noise]
    load = tables.load_axis(ds)
    tables.check_fixed(frame, ["dynamics", "T", load], tables.axes_of(frame, ds) + ["rule"], over="seed")
    means = frame.groupby(["dynamics", "T", load])[metric].mean().reset_index()
    panels = list(dict.fromkeys(means["dynamics"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.6 * len(panels), 3.8), squeeze=False,
                             constrained_layout=True)
    image = None
    loads = np.sort(means[load].unique().astype(float))
    for ax, dyn in zip(axes[0], panels):
        grid = means[means["dynamics"] == dyn].pivot(index="T", columns=load, values=metric)
        xs, ys = grid.columns.to_numpy(dtype=float), grid.index.to_numpy(dtype=float)
        image = ax.pcolormesh(figures.edges(xs), figures.edges(ys), grid.to_numpy(dtype=float),
                              shading="flat", cmap="viridis", vmin=0.0, vmax=1.0)
        if load == "alpha":
            fine = np.linspace(0.0, max(loads.max(), 0.14), 200)
            ax.plot(fine, [T_M(a) for a in fine], color="white", lw=1.5, ls="--",
                    label=r"$T_M(\alpha)$, replica symmetric")
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xlim(figures.edges(xs)[[0, -1]])
        ax.set_ylim(figures.edges(ys)[[0, -1]])
        ax.set_title(dyn)
        ax.set_xlabel(axis_label(load))
        ax.set_ylabel("temperature T")
    fig.colorbar(image, ax=axes[0].tolist(), label=f"{value_label(metric)} (noise {noise:g})")
    fig.suptitle("Hebbian network at temperature T: retrieval by message passing and by Monte Carlo",
                 fontsize=10)
    return figures.save(fig, out)


def capacity_frame(ds: xr.Dataset, metric: str = "success_train") -> pd.DataFrame:
    """Per (rule, N, seed): the largest P retrieved at every P up to it (mean over noise levels' min)."""
    if tables.load_axis(ds) != "P":
        raise ValueError("a capacity figure needs a sweep over P (the load axis of this cube is alpha)")
    frame = tables.tidy(ds, [metric])
    noise = float(frame["noise"].max())
    frame = frame[frame["noise"] == noise]
    rows = []
    for (rule, N, seed), g in frame.groupby(["rule", "N", "seed"]):
        rows.append({"rule": rule, "N": N, "seed": seed, "noise": noise,
                     "capacity": summary.capacity(g["P"].to_numpy(), g[metric].to_numpy() >= CAPACITY_SUCCESS)})
    return pd.DataFrame(rows)


def capacity_figure(ds: xr.Dataset, out: str | Path, metric: str = "success_train") -> Path:
    """Capacity against N per rule, mean and spread over seeds, log y axis."""
    cap = capacity_frame(ds, metric)
    if cap["N"].nunique() < 2:
        raise ValueError("a capacity figure needs at least two values of N")
    fig, ax = plt.subplots(figsize=(5.2, 3.8), constrained_layout=True)
    p_max = float(ds["P"].max())
    for rule, g in cap.groupby("rule", sort=False):
        stats = g.groupby("N")["capacity"].agg(["mean", "min", "max"]).reset_index()
        ax.errorbar(stats["N"], stats["mean"], yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
                    marker="o", ms=4, capsize=3, label=rule)
    ax.axhline(p_max, color="grey", lw=0.8, ls=":", label=f"largest P of the grid ({p_max:g})")
    ax.set_yscale("log", base=2)
    ax.set_xlabel(axis_label("N"))
    ax.set_ylabel(f"capacity: largest P with >= {CAPACITY_SUCCESS:.0%} retrieved")
    ax.set_title(f"from starts with noise {cap['noise'].iloc[0]:g}; bars: seed range", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figures.save(fig, out)
