"""Tidy tables from a cube selection: one row per (task, noise), every metric and coordinate a column.

Derived quantities (basins, classes) combine per-noise metrics, per-task metrics and
coordinates that live on different axes of the cube; in one long table they are ordinary
columns, and averaging over replicas is an ordinary group-by. Cubes are read only through
``amsweep.storage.query``, so only done tasks ever appear.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd
import xarray as xr

from amsweep.pipeline.errors import NoData, QueryError
from amsweep.pipeline.metric_table import METRICS
from amsweep.storage import query
from amsweep.storage.schema import DONE, STATUS_NAMES
from amsweep.storage.table import mean_sem_count

# The cube's axes as storage.query defines them, re-exported for the analysis modules.
from amsweep.storage.query import load_axis as load_axis
from amsweep.storage.query import task_dims as task_dims

__all__ = [
    "axes_of",
    "check_fixed",
    "component_table",
    "coordinate_frames",
    "has_data",
    "nearest",
    "restrict",
    "seed_mode",
    "seed_stats",
    "status_counts",
    "tidy",
]


def status_counts(ds: xr.Dataset) -> dict[str, int]:
    """Tasks per state, over the whole selection."""
    status = np.asarray(ds["status"].values)
    return {name: int(np.sum(status == code)) for code, name in STATUS_NAMES.items()}


def component_table(ds: xr.Dataset) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per dataset label and per rule label: kind, spec entry and dynamics, from the spec.

    Taken from the stored spec rather than the cube's coordinates so that rule and dataset
    families are known even where a coordinate is missing (a spec entry with a single variant).
    """
    spec = query.stored_spec(ds)
    datasets = pd.DataFrame(
        [{"dataset": d["label"], "dataset_kind": d["kind"], "dataset_entry": d["entry"]} for d in spec["datasets"]]
    )
    rules = pd.DataFrame(
        [
            {"rule": r["label"], "rule_kind": r["kind"], "rule_entry": r["entry"], "dynamics": r["dynamics"]}
            for r in spec["rules"]
        ]
    )
    return datasets, rules


def coordinate_frames(ds: xr.Dataset, dims: Sequence[str]) -> list[pd.DataFrame]:
    """Non-dimension coordinates living on a subset of ``dims`` (P, alpha_D, lr, ...), one table each."""
    frames = []
    for name, coord in ds.coords.items():
        if name in ds.dims or not coord.dims or not set(coord.dims) <= set(dims):
            continue
        bare = xr.DataArray(coord.variable, coords={d: ds[d].values for d in coord.dims}, name=name)
        frames.append(bare.to_series().reset_index())
    return frames


def _attach(frame: pd.DataFrame, ds: xr.Dataset) -> pd.DataFrame:
    """Add coordinate columns and component columns to a table keyed by dimensions."""
    for coords in coordinate_frames(ds, [c for c in frame.columns if c in ds.dims]):
        name = coords.columns[-1]
        if name not in frame.columns:
            frame = frame.merge(coords, on=list(coords.columns[:-1]), how="left")
    datasets, rules = component_table(ds)
    for extra, key in ((datasets, "dataset"), (rules, "rule")):
        if key in frame.columns:
            new = [c for c in extra.columns if c == key or c not in frame.columns]
            frame = frame.merge(extra[new], on=key, how="left")
    return frame


def has_data(ds: xr.Dataset, metric: str) -> bool:
    """True when some done task holds a finite value of ``metric``.

    A metric declared ``always`` has a value wherever a task is done (``storage.check``
    verifies it), so only its presence and the status grid are read.
    """
    if metric not in ds.data_vars:
        return False
    if METRICS[metric].always:
        return bool((np.asarray(ds["status"].values) == DONE).any())
    return bool(np.isfinite(query.done_values(ds, metric).values).any())


def tidy(ds: xr.Dataset, metrics: Sequence[str]) -> pd.DataFrame:
    """One table of several metrics over done tasks.

    Per-noise metrics give one row per (task, noise); per-task metrics are repeated on every
    noise row of their task (or give one row per task if no per-noise metric is asked for).
    """
    unknown = [m for m in metrics if m not in METRICS]
    if unknown:
        raise QueryError(f"unknown metric(s) {unknown}; available: {', '.join(METRICS)}")
    absent = [m for m in metrics if m not in ds.data_vars]
    if absent:  # a cube made before the metric existed holds no variable of it
        raise NoData(f"this cube holds no variable {absent} (made before the metric existed)")
    if not metrics:
        raise ValueError("tidy() needs at least one metric")
    order = sorted(metrics, key=lambda m: not METRICS[m].per_noise)  # per-noise first
    out: pd.DataFrame | None = None
    for m in order:
        keys = list(ds[m].dims)
        part = query.to_frame(ds, m)[keys + [m]]
        if out is None:
            out = part
        else:
            on = [k for k in keys if k in out.columns]
            out = out.merge(part, on=on, how="outer")
    assert out is not None  # metrics is not empty
    return _attach(out.reset_index(drop=True), ds)


def axes_of(frame: pd.DataFrame, ds: xr.Dataset) -> list[str]:
    """The cube dimensions present as columns of a table (task dims and noise)."""
    return [d for d in task_dims(ds) + ["noise"] if d in frame.columns]


def check_fixed(frame: pd.DataFrame, keys: Sequence[str], axes: Sequence[str], over: str = "seed") -> None:
    """Refuse to average silently over an axis that still varies within a group of ``keys``.

    An axis that is a function of the keys (the dataset axis when alpha_D is a key) is fine:
    it is constant inside each group.
    """
    keys = list(keys)
    for axis in axes:
        if axis in keys or axis == over or axis not in frame.columns:
            continue
        counts = frame.groupby(keys, dropna=False)[axis].nunique() if keys else pd.Series([frame[axis].nunique()])
        if len(counts) and int(counts.max()) > 1:
            values = sorted(frame[axis].dropna().unique().tolist(), key=str)[:8]
            raise QueryError(
                f"the selection still varies along {axis!r} ({values}); select one value "
                f"(query.select or --where {axis}=...) or make it an axis or a panel"
            )


def seed_stats(frame: pd.DataFrame, value: str, keys: Sequence[str], over: str = "seed") -> pd.DataFrame:
    """Mean, standard error (ddof 1) and count ``n`` of ``value`` across replicas, per group of keys,
    in float64 (``storage.table.mean_sem_count``, which ``amsweep query`` shares);
    a ``missing`` column (lost values of done tasks, from ``query.to_frame(allow_missing=True)``)
    is summed per group, so a mean over fewer seeds says so."""
    keys = [k for k in keys if k != query.MISSING]
    data = frame.dropna(subset=[value])
    groups = data.groupby(list(keys), dropna=False)
    out = groups[value].size().rename("n").reset_index()  # the keys of each group, in group order
    mean, sem, count = mean_sem_count(data[value].to_numpy(), groups.ngroup().to_numpy(), len(out))
    out = out.assign(**{value: mean, f"{value}_sem": sem, "n": count})[[*keys, value, f"{value}_sem", "n"]]
    if query.MISSING in frame.columns:
        lost = frame.groupby(list(keys), dropna=False)[query.MISSING].sum().reset_index()
        out = lost.merge(out, on=list(keys), how="left").fillna({"n": 0}).astype({"n": int})
        out = out[[c for c in out.columns if c != query.MISSING] + [query.MISSING]]
    return out


def seed_mode(frame: pd.DataFrame, value: str, keys: Sequence[str]) -> pd.DataFrame:
    """Most frequent value of a categorical column across replicas; ties go to the lower code.

    The lower code is the weaker capability (no retrieval < ... < generalizing), so a tie never
    claims more than half of the replicas show. ``agree`` is the fraction of replicas in the mode.
    """
    data = frame.dropna(subset=[value])

    def mode(x: pd.Series) -> pd.Series:
        counts = x.value_counts()
        top = counts[counts == counts.max()].index.min()
        return pd.Series({value: float(top), "agree": float(counts.max() / counts.sum()), "n": int(counts.sum())})

    rows = [
        {**dict(zip(keys, k if isinstance(k, tuple) else (k,))), **mode(g[value]).to_dict()}
        for k, g in data.groupby(list(keys), dropna=False)
    ]
    return pd.DataFrame(rows, columns=list(keys) + [value, "agree", "n"])


def nearest(values: Sequence[float] | np.ndarray, target: float) -> float:
    """The grid value closest to ``target`` (ties: the smaller)."""
    arr = np.sort(np.asarray(values, dtype=float))
    return float(arr[np.argmin(np.abs(arr - target))])


def restrict(frame: pd.DataFrame, at: dict[str, Any] | None) -> pd.DataFrame:
    """Rows whose columns equal the given values (floats compared with a relative tolerance)."""
    for key, value in (at or {}).items():
        if key not in frame.columns:
            raise QueryError(f"no column {key!r} to fix; available: {', '.join(map(str, frame.columns))}")
        col = frame[key]
        if col.dtype.kind in "iuf" and isinstance(value, (int, float)):
            keep = np.isclose(col.to_numpy(dtype=float), float(value), rtol=1e-9, atol=1e-12)
        else:
            keep = col.astype(str) == str(value)
        if not keep.any():  # the table holds done values only: none at this value
            raise NoData(
                f"{key} = {value!r} not in this table; values: {sorted(col.dropna().unique().tolist(), key=str)[:10]}"
            )
        frame = frame[keep]
    return frame
