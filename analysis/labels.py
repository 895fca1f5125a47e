"""Axis and value labels with units, shared by every figure and by the report.

One table of axis labels keeps the figures of all experiments speaking the same language: a load
axis reads the same whether it is a heatmap axis, a line-plot axis or a report column. Value
labels come from the declarations of the values themselves.
"""

from __future__ import annotations

from amsweep.analysis.derived import DERIVED
from amsweep.pipeline.metric_table import METRICS

__all__ = ["AXES", "axis_label", "value_label"]

AXES: dict[str, str] = {
    "alpha": r"load $\alpha = P/N$",
    "P": "P (training examples)",
    "N": "N (neurons)",
    "noise": r"noise $\rho$ (fraction of sites flipped)",  # m_in = 1 - 2 rho: docs/experiments.md
    "alpha_D": r"feature density $\alpha_D = D/N$ (features per neuron)",
    "L": "L (nonzero features per example)",
    "temperature": "sample temperature T (units of J)",
    "seed": "seed (replica)",
    "bias": "pattern magnetization b",
    "lr": "learning rate",
    "epochs": "training epochs",
    "lam": r"PLM inverse temperature $\lambda$",
}


def axis_label(name: str) -> str:
    """Label of a coordinate used as an axis; unknown coordinates are shown by name."""
    return AXES.get(name, name)


def value_label(name: str) -> str:
    """Label of a plotted value as its declaration gives it (``pipeline/metric_table.py`` for stored
    metrics, ``analysis/derived.py`` for derived values), with units where it has them."""
    if name in METRICS:
        metric = METRICS[name]
        return f"{metric.label} ({metric.units})" if metric.units else metric.label
    if name in DERIVED:
        return DERIVED[name].label
    return name
