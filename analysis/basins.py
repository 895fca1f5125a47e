"""Basin size read off the noise axis (docs/science.md#metrics).

A start at noise rho has initial overlap m_in = 1 - 2 rho with its example. The basin is
1 - m_in*, with m_in* the smallest initial overlap from which the mean final overlap is still
>= 0.99, i.e. basin = 2 rho* with rho* the largest retrieved noise level. Retrieval is required
at every smaller noise level too (a contiguous run from the cleanest starts): a success at
large noise after a failure at small noise is a fluke of the finite sample, not a basin.

The estimate lives on the noise grid, so it is a lower bound: the true rho* lies between the
last retrieved level and the next one. ``interpolate=True`` places it at the linear crossing of
the threshold between those two levels instead. A rule that retrieves at every level of the
grid has a basin of at least 2 max(noise) (censored at the grid's end); one that fails at the
smallest level has basin 0.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from amsweep.analysis import tables
from amsweep.pipeline.metric_table import SUCCESS_OVERLAP

__all__ = ["basin_frame", "basin_size", "basin_summary"]


def basin_size(
    noise: np.ndarray, m: np.ndarray, threshold: float = SUCCESS_OVERLAP, interpolate: bool = False
) -> np.ndarray:
    """Basin size 1 - m_in* for each row of ``m`` (..., n_noise), the mean final overlap per noise.

    Rows holding any NaN give NaN (a task whose curve is incomplete has no defined basin).
    """
    noise = np.asarray(noise, dtype=float)
    m = np.asarray(m, dtype=float)
    if m.shape[-1] != noise.size:
        raise ValueError(f"m has {m.shape[-1]} noise levels, noise grid has {noise.size}")
    if np.any((noise < 0) | (noise > 0.5)):
        raise ValueError("noise levels must lie in [0, 0.5] (initial overlap 1 - 2 rho in [0, 1])")
    order = np.argsort(noise)
    noise, m = noise[order], m[..., order]
    ok = m >= threshold
    run = np.cumprod(ok, axis=-1).astype(bool)  # retrieved at this level and every smaller one
    n_ok = run.sum(axis=-1)
    last = np.clip(n_ok - 1, 0, noise.size - 1)
    rho = np.where(n_ok > 0, noise[last], 0.0)
    if interpolate and noise.size > 1:
        nxt = np.clip(n_ok, 0, noise.size - 1)
        m_a = np.take_along_axis(m, last[..., None], axis=-1)[..., 0]
        m_b = np.take_along_axis(m, nxt[..., None], axis=-1)[..., 0]
        inside = (n_ok > 0) & (n_ok < noise.size)
        with np.errstate(divide="ignore", invalid="ignore"):
            frac = np.clip((m_a - threshold) / (m_a - m_b), 0.0, 1.0)
        rho = np.where(inside, noise[last] + frac * (noise[nxt] - noise[last]), rho)
    out = 2.0 * rho
    return np.where(np.isnan(m).any(axis=-1), np.nan, out)


def basin_frame(
    ds: xr.Dataset,
    metric: str = "m_train",
    threshold: float = SUCCESS_OVERLAP,
    interpolate: bool = False,
    name: str = "basin",
) -> pd.DataFrame:
    """Basin size per done task (one row per task, every coordinate a column)."""
    frame = tables.tidy(ds, [metric])
    keys = tables.task_dims(ds)
    if frame.empty:
        return pd.DataFrame(columns=[*keys, name])
    wide = frame.set_index(keys + ["noise"])[metric].unstack("noise")
    wide = wide.reindex(columns=np.sort(ds["noise"].values))
    basin = basin_size(wide.columns.to_numpy(dtype=float), wide.to_numpy(dtype=float), threshold, interpolate)
    out = wide.index.to_frame(index=False)
    out[name] = basin
    out = out.dropna(subset=[name])
    rest = frame.drop(columns=["noise", metric]).drop_duplicates(subset=keys)
    return out.merge(rest, on=keys, how="left").reset_index(drop=True)


def basin_summary(ds: xr.Dataset, keys: list[str] | None = None, **kwargs) -> pd.DataFrame:
    """Mean and standard error over seeds of the per-task basin size, per (dataset, N, load, rule)."""
    frame = basin_frame(ds, **kwargs)
    name = kwargs.get("name", "basin")
    keys = keys or [k for k in tables.task_dims(ds) if k != "seed"]
    tables.check_fixed(frame, keys, tables.axes_of(frame, ds))
    return tables.seed_stats(frame, name, keys)
