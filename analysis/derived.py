"""One entry point for every plottable value: a stored metric or a quantity derived from metrics.

Figures and the report ask for a value by name and get a tidy table back, without caring
whether it is read from the cube (m_train), computed per task from the noise axis (basin) or
per (task, noise) from several metrics (class, gen_gap). Stored metrics are declared in
``pipeline/metric_table.py``; derived values are declared here, with the metrics they need, so that
whether a cube can show a value is a check on the declarations, not a guess.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import pandas as pd
import xarray as xr

from amsweep.analysis import basins, classify, tables
from amsweep.pipeline.errors import NoData, QueryError
from amsweep.pipeline.metric_table import METRICS

__all__ = [
    "aggregate",
    "CATEGORICAL",
    "DERIVED",
    "Derived",
    "missing",
    "needs",
    "nonempty",
    "per_noise",
    "value_frame",
    "value_names",
]


@dataclass(frozen=True)
class Derived:
    """A value computed from stored metrics: its table, label and the metrics it reads."""

    frame: Callable[[xr.Dataset], pd.DataFrame]
    label: str
    needs: tuple[str, ...]
    per_noise: bool
    categorical: bool = False


_CLASS = ("m_train", "m_test", "test_best_train")

DERIVED: dict[str, Derived] = {
    "basin": Derived(
        lambda ds: basins.basin_frame(ds, "m_train"), r"basin size $1 - m_{in}^*$ (0 to 1)", ("m_train",), False
    ),
    "basin_interp": Derived(
        lambda ds: basins.basin_frame(ds, "m_train", interpolate=True, name="basin_interp"),
        r"basin size $1 - m_{in}^*$ (interpolated)",
        ("m_train",),
        False,
    ),
    "basin_test": Derived(
        lambda ds: basins.basin_frame(ds, "m_test", name="basin_test"),
        r"test-start basin size $1 - m_{in}^*$",
        ("m_test",),
        False,
    ),
    # The grid's counterpart of the bisection median (basin_q50): the noise at which half the
    # training starts are still retrieved, interpolated between grid levels.
    "basin_median_grid": Derived(
        lambda ds: basins.basin_frame(ds, "success_train", threshold=0.5, interpolate=True, name="basin_median_grid"),
        r"median basin $1 - m_{in}^*$, noise grid",
        ("success_train",),
        False,
    ),
    "class": Derived(
        lambda ds: classify.class_frame(ds), "memorization / generalization class", _CLASS, True, categorical=True
    ),
    "gen_gap": Derived(
        lambda ds: classify.class_frame(ds), r"$m_{test}$ - best overlap with a training example", _CLASS, True
    ),
}
CATEGORICAL = {name for name, d in DERIVED.items() if d.categorical}


def value_names() -> list[str]:
    return [*METRICS, *DERIVED]


def _known(value: str) -> None:
    if value not in METRICS and value not in DERIVED:
        raise QueryError(f"unknown value {value!r}; available: {', '.join(value_names())}")


def needs(value: str) -> tuple[str, ...]:
    """The stored metrics a value is read or computed from."""
    _known(value)
    return (value,) if value in METRICS else DERIVED[value].needs


def missing(ds: xr.Dataset, values: Sequence[str]) -> list[str]:
    """The metrics among those ``values`` need that have no done, finite value in the selection."""
    wanted = dict.fromkeys(m for v in values for m in needs(v))
    return [m for m in wanted if not tables.has_data(ds, m)]


def value_frame(ds: xr.Dataset, value: str) -> pd.DataFrame:
    """Tidy table (one row per task, or per task and noise) holding column ``value``."""
    _known(value)
    frame = DERIVED[value].frame(ds) if value in DERIVED else tables.tidy(ds, [value])
    return frame.dropna(subset=[value]).reset_index(drop=True)


def nonempty(frame: pd.DataFrame, value: str | Sequence[str]) -> pd.DataFrame:
    """The frame, or ``NoData`` when the selection holds no done value: the declared reason a
    figure is not drawn (the report lists it), as opposed to a failure."""
    if frame.empty:
        raise NoData(f"no done task has a value of {value!r} in this selection")
    return frame


def per_noise(value: str) -> bool:
    """Whether the value has a noise axis (needs a noise level fixed or used as an axis)."""
    _known(value)
    return METRICS[value].per_noise if value in METRICS else DERIVED[value].per_noise


def aggregate(frame: pd.DataFrame, ds: xr.Dataset, value: str, keys: list[str]) -> pd.DataFrame:
    """Average over replicas (mean, sem, n), or majority class for a categorical value.

    Every other cube axis must be constant within each group: averaging over N or noise
    silently would mix different experiments.
    """
    tables.check_fixed(frame, keys, tables.axes_of(frame, ds))
    if value in CATEGORICAL:
        return tables.seed_mode(frame, value, keys)
    return tables.seed_stats(frame, value, keys)
