"""Figures that put a sweep next to theory: retrieval at temperature T, and memory capacity.

- ``temperature_figure``: Hebbian networks retrieved at temperature T by message passing (TAP)
  and by Monte Carlo (Glauber), one heatmap per dynamics over (alpha, T), next to the
  replica-symmetric overlap m(alpha, T) on the same grid, with the line T_M(alpha) above which the
  retrieval state disappears. Every panel shows the thermal overlap (1/N) sum_i xi_i <s_i>: TAP's
  magnetisations, Glauber's time average over its last sweeps (``average_sweeps``), theory's m.
- ``temperature_lines_figure``: the same overlaps against T at a few loads, seed mean and standard
  error per dynamics, with the RS curve m(alpha, T): the quantitative comparison.
- ``capacity_figure``: the largest number of stored patterns that are still retrieved, against
  the dimension N, per rule (a log axis shows exponential growth as a straight line).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr
from matplotlib.figure import Figure

from amsweep.analysis import figures, summary, tables
from amsweep.analysis.labels import axis_label
from amsweep.pipeline.errors import NoData
from amsweep.pipeline.theory.hopfield_rs import T_M, overlap

__all__ = [
    "capacity_figure",
    "capacity_frame",
    "CAPACITY_SUCCESS",
    "dynamics_temperature",
    "MAX_LOAD_PANELS",
    "temperature_figure",
    "temperature_frame",
    "temperature_lines_figure",
    "THEORY",
]

CAPACITY_SUCCESS = 0.9  # a load counts as stored when >= 90% of corrupted starts are retrieved
THEORY = "replica-symmetric theory"
MAX_LOAD_PANELS = 4


def dynamics_temperature(ds: xr.Dataset) -> tuple[str | None, str | None]:
    """The rule-axis coordinates holding the dynamics' temperature and beta, if any.

    A dataset's own sample temperature (the spin glass's) is a coordinate on the dataset axis and
    takes the plain name first, so the dynamics' one is then ``dynamics_temperature``.
    """

    def on_rule(names: tuple[str, str]) -> str | None:
        return next((n for n in names if n in ds.coords and ds[n].dims == ("rule",)), None)

    return on_rule(("temperature", "dynamics_temperature")), on_rule(("beta", "dynamics_beta"))


def temperature_frame(ds: xr.Dataset, metric: str = "m_train") -> pd.DataFrame:
    """Done values with a temperature column T: the dynamics' temperature, or 1 / beta."""
    temperature, beta = dynamics_temperature(ds)
    frame = tables.tidy(ds, [metric])
    T = frame[temperature] if temperature else pd.Series(np.nan, index=frame.index)
    if beta:
        T = T.fillna(1.0 / frame[beta])
    frame = frame.assign(T=T).dropna(subset=["T"])
    if frame.empty:
        raise NoData("no rule of this cube has a temperature (dynamics parameter temperature or beta)")
    return frame


def _temperature_means(ds: xr.Dataset, metric: str) -> tuple[pd.DataFrame, str, float]:
    """Seed means of ``metric`` per (dynamics, T, load) at the smallest noise level, with sem and n."""
    frame = temperature_frame(ds, metric)
    noise = float(frame["noise"].min())
    frame = frame[frame["noise"] == noise]
    load = tables.load_axis(ds)
    tables.check_fixed(frame, ["dynamics", "T", load], tables.axes_of(frame, ds) + ["rule"], over="seed")
    means = (
        frame.groupby(["dynamics", "T", load])[metric]
        .agg(["mean", "sem", "count"])
        .reset_index()
        .rename(columns={"mean": metric})
    )
    return means, load, noise


def temperature_figure(ds: xr.Dataset, out: str | Path, metric: str = "m_train") -> Path:
    """Heatmap of ``metric`` over (alpha, T) per dynamics and the RS overlap, with the line T_M(alpha)."""
    means, load, noise = _temperature_means(ds, metric)
    panels = list(dict.fromkeys(means["dynamics"]))
    if load == "alpha":  # the theory panel: m(alpha, T) on the same grid cells
        grid = means[["T", load]].drop_duplicates()
        theory = grid.assign(
            dynamics=THEORY, **{metric: [overlap(float(a), float(t)) for t, a in zip(grid["T"], grid[load])]}
        )
        means = pd.concat([means, theory], ignore_index=True)
        panels.append(THEORY)
    fig = Figure(figsize=(4.4 * len(panels), 3.8), layout="constrained")
    axes = fig.subplots(1, len(panels), squeeze=False)
    image = None
    loads = np.sort(means[load].unique().astype(float))
    for ax, dyn in zip(axes[0], panels):
        grid = means[means["dynamics"] == dyn].pivot(index="T", columns=load, values=metric)
        xs, ys = grid.columns.to_numpy(dtype=float), grid.index.to_numpy(dtype=float)
        image = ax.pcolormesh(
            figures.edges(xs),
            figures.edges(ys),
            grid.to_numpy(dtype=float),
            shading="flat",
            cmap="viridis",
            vmin=0.0,
            vmax=1.0,
        )
        if load == "alpha":
            fine = np.linspace(0.0, max(loads.max(), 0.14), 200)
            ax.plot(
                fine, [T_M(a) for a in fine], color="white", lw=1.5, ls="--", label=r"$T_M(\alpha)$, replica symmetric"
            )
            ax.legend(loc="upper right", fontsize=8)
        ax.set_xlim(figures.edges(xs)[[0, -1]])
        ax.set_ylim(figures.edges(ys)[[0, -1]])
        ax.set_title(dyn if dyn == THEORY else f"{dyn} (seed mean)")
        ax.set_xlabel(axis_label(load))
        ax.set_ylabel("temperature T")
    assert image is not None, "no panel was drawn"
    fig.colorbar(image, ax=axes[0].tolist(), label=f"thermal overlap {metric} (noise {noise:g})")
    fig.suptitle(
        "Hebbian network at temperature T: thermal overlap by message passing (TAP), Monte Carlo "
        "(Glauber, time average of its last sweeps) and theory",
        fontsize=10,
    )
    return figures.save(fig, out)


def temperature_lines_figure(
    ds: xr.Dataset, out: str | Path, metric: str = "m_train", loads: list[float] | None = None
) -> Path:
    """``metric`` against T at a few loads: each dynamics (seed mean +- sem) and the RS curve m(alpha, T)."""
    means, load, noise = _temperature_means(ds, metric)
    if load != "alpha":
        raise NoData("the RS comparison needs a load axis alpha (this cube's is P)")
    available = np.sort(means[load].unique().astype(float))
    if loads is None:
        loads = [
            available[i]
            for i in np.unique(
                np.linspace(0, len(available) - 1, min(MAX_LOAD_PANELS, len(available))).round().astype(int)
            )
        ]
    fig = Figure(figsize=(3.6 * len(loads), 3.4), layout="constrained")
    axes = fig.subplots(1, len(loads), squeeze=False, sharey=True)
    T_grid = np.sort(means["T"].unique().astype(float))
    fine = np.linspace(max(T_grid.min() * 0.8, 1e-3), T_grid.max(), 120)
    for ax, a in zip(axes[0], loads):
        part = means[np.isclose(means[load].astype(float), a)]
        for k, (dyn, g) in enumerate(part.groupby("dynamics", sort=False)):
            g = g.sort_values("T")
            ax.errorbar(
                g["T"],
                g[metric],
                yerr=g["sem"].fillna(0.0),
                marker="os^"[k % 3],
                ms=4,
                lw=0,
                elinewidth=1,
                capsize=2,
                color=f"C{k}",
                label=dyn,
            )
        m_rs = np.array([overlap(a, t) for t in fine])
        ax.plot(fine, np.where(m_rs > 0, m_rs, np.nan), color="black", lw=1.2, label="RS retrieval state m(alpha, T)")
        ax.plot(fine, np.where(m_rs > 0, np.nan, 0.0), color="black", lw=1.2)
        ax.axvline(T_M(a), color="grey", ls=":", lw=1, label=r"$T_M(\alpha)$")
        ax.set_title(rf"$\alpha$ = {a:g}", fontsize=9)
        ax.set_xlabel("temperature T")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"thermal overlap {metric} (noise {noise:g})", fontsize=8)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    fig.suptitle(
        "Thermal overlap against T: TAP, time-averaged Monte Carlo and the replica-symmetric solution", fontsize=10
    )
    return figures.save(fig, out)


def capacity_frame(ds: xr.Dataset, metric: str = "success_train") -> pd.DataFrame:
    """Per (rule, N, seed): the largest P retrieved at every P up to it (mean over noise levels' min)."""
    if tables.load_axis(ds) != "P":
        raise NoData("a capacity figure needs a sweep over P (the load axis of this cube is alpha)")
    frame = tables.tidy(ds, [metric])
    noise = float(frame["noise"].max())
    frame = frame[frame["noise"] == noise]
    rows = []
    for (rule, N, seed), g in frame.groupby(["rule", "N", "seed"]):
        rows.append(
            {
                "rule": rule,
                "N": N,
                "seed": seed,
                "noise": noise,
                "capacity": summary.capacity(g["P"].to_numpy(), g[metric].to_numpy() >= CAPACITY_SUCCESS),
            }
        )
    return pd.DataFrame(rows)


def capacity_figure(ds: xr.Dataset, out: str | Path, metric: str = "success_train") -> Path:
    """Capacity against N per rule, mean and spread over seeds, log y axis."""
    cap = capacity_frame(ds, metric)
    if cap["N"].nunique() < 2:
        raise NoData("a capacity figure needs at least two values of N")
    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.subplots()
    p_max = float(ds["P"].max())
    for rule, g in cap.groupby("rule", sort=False):
        stats = g.groupby("N")["capacity"].agg(["mean", "min", "max"]).reset_index()
        ax.errorbar(
            stats["N"],
            stats["mean"],
            yerr=[stats["mean"] - stats["min"], stats["max"] - stats["mean"]],
            marker="o",
            ms=4,
            capsize=3,
            label=rule,
        )
    ax.axhline(p_max, color="grey", lw=0.8, ls=":", label=f"largest P of the grid ({p_max:g})")
    ax.set_yscale("log", base=2)
    ax.set_xlabel(axis_label("N"))
    ax.set_ylabel(f"capacity: largest P with >= {CAPACITY_SUCCESS:.0%} retrieved")
    ax.set_title(f"from starts with noise {cap['noise'].iloc[0]:g}; bars: seed range", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return figures.save(fig, out)
