"""Plain TAP, adaptive TAP and Monte Carlo on correlated patterns, site by site, from the cube.

A ``correlated_tap_laptop`` cube made with ``[retrieval] store_magnetisations = true`` keeps, per
task, the thermal state <s_i> of every training start (``query.magnetisations_by_task``). For
each cell (depth, alpha, T, seed) and start b (training pattern b, at the lowest noise level)
this module compares the four rules run from that start on the same couplings:

    mse(method) = (1/N) sum_i (m_i^method - m_i^MC)^2,   MC = the reference run ``glauber``

for plain TAP (``tap``) and adaptive TAP (``tap_correlated``), and the same quantity between the
two independent Monte Carlo runs (``glauber_rep`` against ``glauber``), the Monte Carlo error.
If each run's <s_i> carries independent noise of variance sigma_i^2, an unbiased method has
E mse = mean_i sigma_i^2 and the two runs E mse = 2 mean_i sigma_i^2: a method "within the Monte
Carlo error" has mse <= mse(MC, MC), half of it when unbiased.

Only starts where both Monte Carlo runs end in the same state are compared: the overlaps with
the start's own pattern, q = (1/N) xi^b . <s>, of the two runs differ by at most
``STATE_AGREE``. Elsewhere (a chain that left the retrieval state, or two chains in different
feature states) the site difference measures which state a chain chose, not the equations. The
patterns are remade from the cube's spec (``cell.make_data``: the same streams as the run).
A start is "in the retrieval phase" when the mean of the two Monte Carlo overlaps is at least
``RETRIEVED``.

Only starts where both TAPs have a solution are compared (``solved``): adaptive TAP stores a NaN
row for a start where its response cap was still active when the iteration stopped (no solution
of its equations near the start, ``no_solution_train``). Both Monte Carlo chains can sit in one
state there (depth 1, alpha 0.1, T 0.6), so ``same_state`` alone does not exclude them; the capped
iterate is no solution of the equations, however close to Monte Carlo it happens to stop (1-40
sigma^2 measured): a failure of the equations, not of state selection. ``site_table`` counts
these starts (``no_solution``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import NullFormatter

from amsweep.analysis import figures
from amsweep.pipeline.cell import make_data
from amsweep.storage import query

__all__ = ["COLOURS", "FLOOR", "METHODS", "RETRIEVED", "site_figure", "site_frame", "site_table", "STATE_AGREE"]

REFERENCE, REPLICA = "glauber", "glauber_rep"
METHODS = {"tap": "plain TAP", "tap_correlated": "adaptive TAP", REPLICA: "Monte Carlo error"}
COLOURS = {"plain TAP": "C3", "adaptive TAP": "C0", "Monte Carlo error": "0.45"}
STATE_AGREE = 0.02  # |q(glauber) - q(glauber_rep)| at most this: both chains in one state
RETRIEVED = 0.5  # mean Monte Carlo overlap with the start's pattern: the start is retrieved
FLOOR = 1e-7  # mse below this is drawn at the floor of the log axis


def _temperature(params: dict) -> float:
    if "temperature" in params:
        return round(float(params["temperature"]), 6)
    if "beta" in params:
        return round(1.0 / float(params["beta"]), 6)
    raise ValueError("every rule needs a temperature (dynamics parameter temperature or beta)")


def site_frame(path: str, storage_options: dict | None = None) -> pd.DataFrame:
    """One row per (depth, alpha, T, seed, start): the overlaps q of both Monte Carlo runs and
    of both TAPs with the start's pattern, mse of plain TAP, adaptive TAP and the second Monte
    Carlo run against the reference run, and whether the start is compared (``same_state``)."""
    states: dict[tuple, dict[str, np.ndarray]] = {}
    patterns: dict[tuple, np.ndarray] = {}
    root_seed = query.stored_spec(query.open_cube(path, storage_options))["root_seed"]
    for task, m in query.magnetisations_by_task(path, storage_options):
        if task.rule.entry not in (REFERENCE, *METHODS):
            continue
        data_id = (task.dataset.label, task.N, task.load, task.seed)
        if data_id not in patterns:
            patterns[data_id] = make_data(task, root_seed).train[: m.shape[1]].astype(np.float64)
        cell = (int(task.dataset.params.get("depth", 0)), float(task.load), _temperature(task.rule.dynamics_params))
        states.setdefault((*cell, task.seed, data_id), {})[task.rule.entry] = m[0].astype(np.float64)
    rows = []
    for (depth, alpha, T, seed, data_id), by in sorted(states.items(), key=lambda kv: kv[0][:4]):
        if REFERENCE not in by or not all(k in by for k in METHODS):
            continue
        xi, ref = patterns[data_id], by[REFERENCE]
        q = {k: np.einsum("bi,bi->b", xi, v) / xi.shape[1] for k, v in by.items()}
        mse = {k: np.mean((by[k] - ref) ** 2, axis=1) for k in METHODS}
        for b in range(ref.shape[0]):
            rows.append(
                {
                    "depth": depth,
                    "alpha": alpha,
                    "T": T,
                    "seed": seed,
                    "start": b,
                    "q_mc": q[REFERENCE][b],
                    "q_rep": q[REPLICA][b],
                    "q_plain": q["tap"][b],
                    "q_adaptive": q["tap_correlated"][b],
                    **{f"mse_{k}": mse[k][b] for k in METHODS},
                }
            )
    frame = pd.DataFrame(rows)
    if frame.empty:
        raise ValueError(f"{path}: no task with stored magnetisations of {REFERENCE} and {sorted(METHODS)}")
    frame["same_state"] = (frame["q_mc"] - frame["q_rep"]).abs() <= STATE_AGREE
    frame["solved"] = frame[["q_plain", "q_adaptive"]].notna().all(axis=1)
    frame["compared"] = frame["same_state"] & frame["solved"]
    frame["retrieved"] = 0.5 * (frame["q_mc"] + frame["q_rep"]) >= RETRIEVED
    return frame


def site_table(frame: pd.DataFrame, by: tuple[str, ...] = ("depth", "T")) -> pd.DataFrame:
    """Per group, over the compared starts (``compared``: one Monte Carlo state, both TAPs solved):
    median mse of plain TAP, adaptive TAP and the Monte Carlo error, the fraction of starts where
    each TAP is within the Monte Carlo error (mse <= mse(MC, MC)), how many starts were compared
    out of all, and how many were left out because a TAP had no solution there (``no_solution``)."""
    kept = frame[frame["compared"]]
    out = kept.groupby(list(by)).agg(
        plain=("mse_tap", "median"),
        adaptive=("mse_tap_correlated", "median"),
        mc_error=(f"mse_{REPLICA}", "median"),
        compared=("compared", "size"),
    )
    within = kept.assign(
        plain_within=kept["mse_tap"] <= kept[f"mse_{REPLICA}"],
        adaptive_within=kept["mse_tap_correlated"] <= kept[f"mse_{REPLICA}"],
    )
    out = out.join(within.groupby(list(by))[["plain_within", "adaptive_within"]].mean())
    counts = frame.groupby(list(by)).size().rename("starts").to_frame()
    counts["no_solution"] = (~frame["solved"]).groupby([frame[k] for k in by]).sum()
    out = counts.join(out, how="left").fillna({"compared": 0})  # a group where nothing was compared stays
    out = out.astype({"compared": int})[[*out.columns.drop(["starts", "no_solution"]), "starts", "no_solution"]]
    return out.reset_index()


def site_figure(frame: pd.DataFrame, out: str | Path) -> Path:
    """Temperatures (rows) x depths (columns): per-site mse against alpha over the compared starts.

    Lines are medians over all compared starts of an alpha, small points medians per seed; log
    axes, values below FLOOR drawn at FLOOR. Starts without a TAP solution are not drawn.
    """
    kept = frame[frame["compared"]]
    temps, depths = sorted(frame["T"].unique()), sorted(frame["depth"].unique())
    alphas = np.sort(frame["alpha"].unique())
    fig = Figure(figsize=(3.5 * len(depths), 2.7 * len(temps)), layout="constrained")
    axes = fig.subplots(len(temps), len(depths), squeeze=False, sharex=True, sharey=True)
    offsets = dict(zip(METHODS, (0.94, 1.0, 1.06)))
    for r, T in enumerate(temps):
        for c, depth in enumerate(depths):
            ax = axes[r][c]
            part = kept[(kept["T"] == T) & (kept["depth"] == depth)]
            for entry, name in METHODS.items():
                col = f"mse_{entry}"
                seeds = part.groupby(["alpha", "seed"])[col].median().reset_index()
                ax.scatter(
                    seeds["alpha"] * offsets[entry],
                    np.maximum(seeds[col], FLOOR),
                    s=10,
                    color=COLOURS[name],
                    alpha=0.5,
                    lw=0,
                )
                med = part.groupby("alpha")[col].median().reindex(alphas).to_numpy(dtype=float)
                ls = "--" if entry == REPLICA else "-"
                ax.plot(alphas * offsets[entry], np.maximum(med, FLOOR), ls, color=COLOURS[name], label=name)
            n_all = int(((frame["T"] == T) & (frame["depth"] == depth)).sum())
            label = "independent patterns" if depth == 0 else f"depth {depth}"
            ax.set_title(f"{label}, T = {T:g} ({len(part)}/{n_all} starts)", fontsize=8)
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.grid(alpha=0.3, which="major")
            if r == len(temps) - 1:
                ax.set_xlabel(r"load $\alpha = P/N$")
            if c == 0:
                ax.set_ylabel(r"$\frac{1}{N}\sum_i (m_i - m_i^{MC})^2$", fontsize=9)
    axes[0][0].set_xticks(alphas, [f"{a:g}" for a in alphas])
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=len(labels), fontsize=8)
    fig.suptitle(
        "Per-site distance to Glauber Monte Carlo, starts where both Monte Carlo runs end in one state\n"
        f"(|q - q'| <= {STATE_AGREE:g}) and both TAPs have a solution ({int((~frame['solved']).sum())} starts without "
        "one left out); lines: median over starts, points: median per seed",
        fontsize=9,
    )
    return figures.save(fig, out)
