"""Reading cubes: open lazily, select by coordinate values, export tidy tables.

Analysis reads cubes only through this module, so the on-disk layout can change in one place.
Values of tasks that are not done are masked to NaN on the way out: a half-finished sweep
never shows fill values as if they were results.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from pipeline.metrics import METRICS
from storage.layout import DONE


def open_cube(path: str, storage_options: dict | None = None) -> xr.Dataset:
    """The cube as a lazy xarray.Dataset (status and every metric; coordinates loaded).

    Format 2 is read by amsweep's shard reader (``storage.backend``); format 1 through zarr.
    """
    from storage.backend import open_format2
    from storage.cube import Cube

    cube = Cube.open(path, storage_options)
    if cube.format == 2:
        return open_format2(cube)
    ds = xr.open_zarr(path, consolidated=False, zarr_format=3, storage_options=storage_options,
                      chunks=None)
    for name in ("dataset", "rule", "dataset_kind", "rule_kind", "dynamics"):
        if name in ds.coords:
            ds = ds.assign_coords({name: (ds[name].dims, ds[name].values.astype(object))})
    return ds


def parse_where(text: str | None) -> dict[str, list[str]]:
    """'rule=plm|hebb,N=200' -> {'rule': ['plm', 'hebb'], 'N': ['200']}."""
    out: dict[str, list[str]] = {}
    for part in filter(None, (text or "").split(",")):
        if "=" not in part:
            raise ValueError(f"--where item {part!r}: expected KEY=VALUE (several values as A|B)")
        key, value = part.split("=", 1)
        out[key.strip()] = [v.strip() for v in value.split("|")]
    return out


def _typed(coord: xr.DataArray, values: list[str]) -> list[Any]:
    kind = coord.dtype.kind
    if kind in "iu":
        return [int(v) for v in values]
    if kind == "f":
        return [float(v) for v in values]
    return values


def select(ds: xr.Dataset, where: dict[str, list[str]]) -> xr.Dataset:
    """Keep the values named in ``where``, on dimensions or on per-variant coordinates."""
    for key, raw in where.items():
        if key not in ds.coords:
            raise KeyError(f"no coordinate {key!r}; available: {', '.join(sorted(map(str, ds.coords)))}")
        coord = ds[key]
        values = _typed(coord, raw)
        if coord.ndim != 1:
            raise KeyError(f"coordinate {key!r} spans {coord.dims}; select on its dimensions instead")
        dim = coord.dims[0]
        if key == dim:
            missing = [v for v in values if v not in set(coord.values.tolist())]
            if missing:
                raise KeyError(f"{key}: no value(s) {missing}; available: {coord.values.tolist()}")
            ds = ds.sel({dim: values})
        else:
            keep = np.isin(coord.values, values) if kind_is_num(coord) else np.isin(coord.values.astype(str), raw)
            if not keep.any():
                raise KeyError(f"{key}: no value(s) {raw}; available: {sorted(set(coord.values.tolist()))}")
            ds = ds.isel({dim: np.nonzero(keep)[0]})
    return ds


def kind_is_num(coord: xr.DataArray) -> bool:
    return coord.dtype.kind in "iuf"


def done_values(ds: xr.Dataset, metric: str) -> xr.DataArray:
    """A metric with every task that is not done masked to NaN."""
    if metric not in METRICS:
        raise KeyError(f"unknown metric {metric!r}; available: {', '.join(METRICS)}")
    return ds[metric].where(ds["status"] == DONE)


def to_frame(ds: xr.Dataset, metric: str) -> pd.DataFrame:
    """Tidy table of one metric over done tasks: one row per value, every coordinate a column."""
    da = done_values(ds, metric).load()
    frame = da.to_dataframe(name=metric).reset_index()
    for name, coord in ds.coords.items():
        if name not in frame.columns and set(coord.dims) <= set(da.dims):
            frame = frame.merge(coord.to_dataframe().reset_index()[list(coord.dims) + [name]],
                                on=list(coord.dims), how="left")
    return frame.dropna(subset=[metric]).reset_index(drop=True)


def summarize(frame: pd.DataFrame, metric: str, over: str = "seed") -> pd.DataFrame:
    """Mean, standard error and count of a metric across one axis (by default, replicas)."""
    keys = [c for c in frame.columns if c not in (metric, over)]
    g = frame.groupby(keys, dropna=False)[metric]
    out = g.agg(["mean", "sem", "count"]).reset_index()
    return out.rename(columns={"mean": metric, "sem": f"{metric}_sem", "count": "n"})


def load_couplings(path: str, coords: dict[str, Any], storage_options: dict | None = None) -> np.ndarray:
    """Couplings (or memories) of the task at ``coords`` (dataset, N, alpha|P, rule, seed values),
    from a cube whose spec set ``[retrieval] store_couplings = true``."""
    from storage.cube import Cube

    cube = Cube.open(path, storage_options, mode="r")
    s = cube.sweep
    axes = {"dataset": [d.label for d in s.datasets], "N": list(s.N_values),
            s.load_axis: list(s.load_values), "rule": [r.label for r in s.rules], "seed": list(s.seeds)}
    missing = [k for k in axes if k not in coords]
    if missing:
        raise KeyError(f"give a value for {missing}; a task is fixed by {list(axes)}")
    try:
        index = tuple(axes[k].index(coords[k]) for k in axes)
    except ValueError:
        raise KeyError(f"no task at {coords}; axes are {axes}") from None
    return cube.couplings(index)
