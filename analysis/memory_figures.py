"""Figures of the clustering memories' sweeps, drawn from the tables of ``amsweep.analysis.memories``.

``python -m amsweep.analysis.memory_figures ELBO_CUBE ATTENTION_CUBE OUT_DIR`` draws all of them
and prints the numbers the docs quote (capacities, cluster counts against beta).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.cm import ScalarMappable
from matplotlib.figure import Figure
import numpy as np
import pandas as pd
from matplotlib.colors import LogNorm

from amsweep.analysis import memories
from amsweep.analysis.figures import save

__all__ = ["attention_phase_figure", "attention_time_figure", "elbo_figure", "main", "N_STYLE", "RULE_STYLE"]

RULE_STYLE = {
    "elbo_memory": ("ELBO mixture (EM)", "tab:red"),
    "crp_memory": ("CRP", "tab:blue"),
    "kde_wide": ("KDE h = 0.3", "tab:green"),
    "kde_narrow": ("KDE h = 0.1", "tab:gray"),
}
N_STYLE = {64: "--", 128: "-"}


def _lines(ax: Axes, frame: pd.DataFrame, x: str, y: str) -> None:
    """Seed means of y against x, one colour per rule, one dash per N."""
    for (rule, N), g in frame.groupby(["rule", "N"]):
        label, colour = RULE_STYLE.get(rule, (rule, None))
        mean = g.groupby(x)[y].mean()
        ax.plot(mean.index, mean.values, N_STYLE.get(N, ":"), color=colour, marker="o", ms=3, label=f"{label}, N={N}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel(x)
    ax.grid(alpha=0.3)


def elbo_figure(frame: pd.DataFrame, out: str | Path) -> Path:
    """Clusters of 8 examples (top) and one example per component (bottom): what each memory keeps."""
    fig = Figure(figsize=(15, 8))
    axes = fig.subplots(2, 3, sharex=True)
    frame = frame.assign(C=frame["components"])
    panels = [
        (8, "components_found", "prototypes found (best memory overlap >= 0.95)"),
        (8, "test_best_feature", "test cue (10% noise) -> prototype overlap"),
        (8, "success_train", "training example retrieved (10% noise)"),
        (8, "components_as_oracle", "as good as the true-label means"),
        (1, "success_train", "training example retrieved (10% noise)"),
        (1, "memories", "memories kept (K)"),
    ]
    for ax, (per, metric, title) in zip(axes.ravel(), panels):
        _lines(ax, frame[frame["per_component"] == per], "P", metric)
        ax.set_title(f"{per} example{'s' if per > 1 else ''} per component: {title}", fontsize=9)
        ax.tick_params(labelbottom=True)
    axes[1, 2].set_yscale("log", base=2)
    axes[0, 0].legend(fontsize=7, ncol=2)
    fig.suptitle("Mixture of noisy prototypes (10% flips), C = P / examples per component; 2 seeds")
    fig.tight_layout()
    return save(fig, out)


def _heatmap(ax: Axes, table: pd.DataFrame, vmax: float, title: str) -> ScalarMappable:
    """Mean cluster counts over (row, beta), log colour, the count written in each cell."""
    image = ax.imshow(table.values, origin="lower", aspect="auto", cmap="viridis", norm=LogNorm(1, vmax))
    ax.set_xticks(range(table.shape[1]), [f"{b:g}" for b in table.columns])
    ax.set_yticks(range(table.shape[0]), [str(v) for v in table.index])
    for (i, j), v in np.ndenumerate(table.values):
        ax.text(j, i, f"{v:.3g}", ha="center", va="center", fontsize=7, color="w" if v < vmax**0.5 else "k")
    ax.set_xlabel("beta")
    ax.set_ylabel(table.index.name)
    ax.set_title(title, fontsize=9)
    return image


def attention_phase_figure(frame: pd.DataFrame, out: str | Path, d: int = 16, n: int = 64) -> Path:
    """Clusters against (beta, n) at fixed d and against (beta, d) at fixed n, per update and depth."""
    runs = [(u, s) for u, s in (("residual", 100), ("residual", 1000), ("attention", 1000))]
    fig = Figure(figsize=(12, 3.8 * len(runs)), layout="constrained")
    axes = fig.subplots(len(runs), 2)
    vmax = float(frame["n"].max())
    image = None
    for row, (update, steps) in enumerate(runs):
        g = frame[(frame["update"] == update) & (frame["max_steps"] == steps)]
        name = "x <- Norm(x + A)" if update == "residual" else "x <- Norm(A)"
        by_n = g[g["d"] == d].pivot_table(index="n", columns="beta", values="n_clusters", aggfunc="mean")
        by_d = g[g["n"] == n].pivot_table(index="d", columns="beta", values="n_clusters", aggfunc="mean")
        image = _heatmap(axes[row, 0], by_n, vmax, f"{name}, {steps} steps: clusters at d = {d}")
        _heatmap(axes[row, 1], by_d, vmax, f"{name}, {steps} steps: clusters of n = {n} tokens")
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.6, label="clusters (mean of 2 seeds)")
    fig.suptitle("Normalisation + self-attention on the sphere: single-linkage clusters at 1e-3 rad")
    return save(fig, out)


def attention_time_figure(frame: pd.DataFrame, out: str | Path, n: int = 64) -> Path:
    """Steps until the count took its final value, against beta per d: slowest near the transition."""
    fig = Figure(figsize=(15, 4))
    axes = fig.subplots(1, 3, sharey=True)
    for ax, (update, steps) in zip(axes, (("residual", 100), ("residual", 1000), ("attention", 1000))):
        g = frame[(frame["update"] == update) & (frame["max_steps"] == steps) & (frame["n"] == n)]
        for d, gd in g.groupby("d"):
            mean = gd.groupby("beta")[["cluster_steps", "clusters_converged"]].mean()
            line = ax.plot(mean.index, mean["cluster_steps"] + 1, marker="o", ms=3, label=f"d = {d}")[0]
            stuck = mean[mean["clusters_converged"] < 0.5]
            ax.plot(stuck.index, stuck["cluster_steps"] + 1, "x", color=line.get_color(), ms=8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("beta")
        ax.set_title(f"{update}, {steps} steps, n = {n}", fontsize=9)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("1 + steps to form the final clusters")
    axes[0].legend(fontsize=7)
    fig.suptitle("Time to form the clusters (x: most runs still moving at the last step)")
    fig.tight_layout()
    return save(fig, out)


def main(argv: list[str] | None = None) -> int:
    """Tables from both cubes, the three figures, and the numbers quoted in docs/experiments.md."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("elbo_cube")
    parser.add_argument("attention_cube")
    parser.add_argument("out_dir")
    args = parser.parse_args(argv)
    out = Path(args.out_dir)
    elbo = memories.elbo_table(args.elbo_cube)
    print(elbo_figure(elbo, out / "elbo_memory"))
    pd.set_option("display.width", 200)
    for metric, level in (
        ("components_found", 0.9),
        ("components_as_oracle", 0.99),
        ("test_best_feature", 0.95),
        ("success_train", 0.9),
    ):
        cap = memories.capacity(elbo, metric, ["per_component", "N", "rule"], level)
        print(cap.pivot_table(index=["per_component", "N"], columns="rule", values=f"capacity_{metric}"))
    attention = memories.attention_table(args.attention_cube)
    print("stored counts equal rerun counts:", bool((attention["clusters_stored"] == attention["n_clusters"]).all()))
    print(attention_phase_figure(attention, out / "attention_sphere_phase"))
    print(attention_time_figure(attention, out / "attention_sphere_time"))
    print(attention.pivot_table(index=["update", "max_steps", "d"], columns="beta", values="n_clusters").round(1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
