"""One entry point for every plottable value: a stored metric or a quantity derived from metrics.

Figures and the report ask for a value by name and get a tidy table back, without caring
whether it is read from the cube (m_train), computed per task from the noise axis (basin) or
per (task, noise) from several metrics (class, gen_gap).
"""

from __future__ import annotations

from typing import Callable

import pandas as pd
import xarray as xr

from amsweep.analysis import basins, classify, tables
from amsweep.pipeline.metrics import METRICS

DERIVED: dict[str, Callable[[xr.Dataset], pd.DataFrame]] = {
    "basin": lambda ds: basins.basin_frame(ds, "m_train"),
    "basin_interp": lambda ds: basins.basin_frame(ds, "m_train", interpolate=True, name="basin_interp"),
    "basin_test": lambda ds: basins.basin_frame(ds, "m_test", name="basin_test"),
    # The grid's counterpart of the bisection median (basin_q50): the noise at which half the
    # training starts are still retrieved, interpolated between grid levels.
    "basin_median_grid": lambda ds: basins.basin_frame(
        ds, "success_train", threshold=0.5, interpolate=True, name="basin_median_grid"
    ),
    "class": lambda ds: classify.class_frame(ds),
    "gen_gap": lambda ds: classify.class_frame(ds),
}
CATEGORICAL = {"class"}


def value_names() -> list[str]:
    return [*METRICS, *DERIVED]


def value_frame(ds: xr.Dataset, value: str) -> pd.DataFrame:
    """Tidy table (one row per task, or per task and noise) holding column ``value``."""
    if value in DERIVED:
        frame = DERIVED[value](ds)
    elif value in METRICS:
        frame = tables.tidy(ds, [value])
    else:
        raise KeyError(f"unknown value {value!r}; available: {', '.join(value_names())}")
    return frame.dropna(subset=[value]).reset_index(drop=True)


def per_noise(value: str) -> bool:
    """Whether the value has a noise axis (needs a noise level fixed or used as an axis)."""
    if value in ("basin", "basin_interp", "basin_test", "basin_median_grid"):
        return False
    if value in DERIVED:
        return True
    return METRICS[value].per_noise


def aggregate(frame: pd.DataFrame, ds: xr.Dataset, value: str, keys: list[str]) -> pd.DataFrame:
    """Average over replicas (mean, sem, n), or majority class for a categorical value.

    Every other cube axis must be constant within each group: averaging over N or noise
    silently would mix different experiments.
    """
    tables.check_fixed(frame, keys, tables.axes_of(frame, ds))
    if value in CATEGORICAL:
        return tables.seed_mode(frame, value, keys)
    return tables.seed_stats(frame, value, keys)
