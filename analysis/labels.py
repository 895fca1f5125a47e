"""Axis and value labels with units, shared by every figure and by the report.

One table of labels keeps the figures of all experiments speaking the same language: a load
axis reads the same whether it is a heatmap axis, a line-plot axis or a report column.
"""

from __future__ import annotations

from amsweep.pipeline.metrics import METRICS

AXES: dict[str, str] = {
    "alpha": r"load $\alpha = P/N$ (patterns per neuron)",
    "P": "P (training examples)",
    "N": "N (neurons)",
    "noise": r"noise $\rho$ (fraction of sites flipped; $m_{in} = 1-2\rho$)",
    "alpha_D": r"feature density $\alpha_D = D/N$ (features per neuron)",
    "L": "L (nonzero features per example)",
    "temperature": "sample temperature T (units of J)",
    "seed": "seed (replica)",
    "bias": "pattern magnetization b",
    "lr": "learning rate",
    "epochs": "training epochs",
    "lam": r"PLM inverse temperature $\lambda$",
}

VALUES: dict[str, str] = {
    "m_train": r"final overlap from training starts $m_{train}$",
    "m_test": r"final overlap from test starts $m_{test}$",
    "test_best_train": "test starts: best overlap of attractor with a training example",
    "test_best_feature": "test starts: best |overlap| of attractor with a feature",
    "success_train": "fraction of training starts retrieved (overlap >= 0.99)",
    "fixed_point_fraction": "fraction of training examples that are fixed points",
    "coupling_similarity": "cosine(learned J, true J)",
    "random_best_train": "random starts: best overlap with a training example",
    "random_best_test": "random starts: best overlap with a test example",
    "basin": r"basin size $1 - m_{in}^*$ (0 to 1)",
    "basin_interp": r"basin size $1 - m_{in}^*$ (interpolated)",
    "basin_test": r"test-start basin size $1 - m_{in}^*$",
    "basin_median_grid": r"median basin $1 - m_{in}^*$, noise grid",
    "basin_mean": r"basin $2k^*/N$, bisection (mean)",
    "basin_q10": r"basin $2k^*/N$, bisection (10% quantile)",
    "basin_q50": r"basin $2k^*/N$, bisection (median)",
    "basin_q90": r"basin $2k^*/N$, bisection (90% quantile)",
    "gen_gap": r"$m_{test}$ - best overlap with a training example",
    "class": "memorization / generalization class",
}


def axis_label(name: str) -> str:
    """Label of a coordinate used as an axis; unknown coordinates are shown by name."""
    return AXES.get(name, name)


def value_label(name: str) -> str:
    """Label of a plotted value, with units for timings (overlaps and fractions are unitless)."""
    if name in VALUES:
        return VALUES[name]
    metric = METRICS.get(name)
    if metric is None:
        return name
    return f"{name} ({metric.units})" if metric.units else name
