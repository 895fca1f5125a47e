"""Key numbers of a cube, per (dataset, N, rule): capacities, basins, the memorization crossover.

A figure shows a trend; a report also needs the numbers a reader quotes. Each is defined from
seed means on the load grid (so it is resolved only to the grid's spacing), and each is a run
from the smallest load: a capacity is the largest load up to which *every* load of the grid
passes, so a lucky point past the collapse does not count. Retrieval is judged at a small
corruption (REFERENCE_NOISE), which tests attraction and not only stability; generalization at
the cleanest starts (the smallest noise level, normally 0), which asks whether unseen examples
themselves sit near attractors.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from amsweep.analysis import basins, classify, tables
from amsweep.pipeline.metric_table import SUCCESS_OVERLAP

__all__ = ["basin_table", "capacity", "clean_noise", "GROUP", "key_numbers", "REFERENCE_NOISE", "reference_noise"]

REFERENCE_NOISE = 0.1
GROUP = ["dataset", "N", "rule"]


def reference_noise(ds: xr.Dataset) -> float:
    """The cube's noise level closest to REFERENCE_NOISE (retrieval numbers)."""
    return tables.nearest(ds["noise"].values, REFERENCE_NOISE)


def clean_noise(ds: xr.Dataset) -> float:
    """The cube's smallest noise level (generalization numbers)."""
    return float(np.min(ds["noise"].values))


def capacity(loads: np.ndarray, ok: np.ndarray) -> float:
    """Largest load such that ``ok`` holds at it and at every smaller load; NaN if the first fails."""
    order = np.argsort(loads)
    run = np.cumprod(np.asarray(ok, dtype=bool)[order]).astype(bool)
    return float(np.asarray(loads, dtype=float)[order][run].max()) if run.any() else float("nan")


def _means(ds: xr.Dataset, metrics: list[str], noise: float) -> pd.DataFrame:
    load = tables.load_axis(ds)
    frame = tables.restrict(tables.tidy(ds, metrics), {"noise": noise})
    means = frame.groupby(GROUP + [load], dropna=False)[metrics].mean()
    means["tasks"] = frame.groupby(GROUP + [load], dropna=False)["seed"].count()
    return means.reset_index()


def key_numbers(ds: xr.Dataset, noise: float | None = None, gen_noise: float | None = None) -> pd.DataFrame:
    """One row per (dataset, N, rule) with done data; see the report for the column meanings."""
    load = tables.load_axis(ds)
    noise = reference_noise(ds) if noise is None else noise
    gen_noise = clean_noise(ds) if gen_noise is None else gen_noise
    present = {
        m
        for m in ("m_train", "m_test", "test_best_train", "fixed_point_fraction", "coupling_similarity")
        if tables.has_data(ds, m)
    }
    if "m_train" not in present:
        return pd.DataFrame(columns=GROUP)
    retrieval = _means(ds, sorted(present & {"m_train", "fixed_point_fraction"}), noise)
    general = _means(ds, sorted(present & {"m_train", "m_test", "test_best_train", "coupling_similarity"}), gen_noise)
    classes = tables.seed_mode(tables.restrict(classify.class_frame(ds), {"noise": gen_noise}), "class", GROUP + [load])
    rows = []
    for group, part in retrieval.groupby(GROUP, dropna=False, sort=False):
        loads = part[load].to_numpy(dtype=float)
        row = dict(zip(GROUP, group))
        row["tasks"] = int(part["tasks"].sum())
        row[f"{load}_retrieval"] = capacity(loads, part["m_train"].to_numpy() >= SUCCESS_OVERLAP)
        if "fixed_point_fraction" in part:
            row[f"{load}_fixed_points"] = capacity(loads, part["fixed_point_fraction"].to_numpy() >= SUCCESS_OVERLAP)
        mine = (general[GROUP] == pd.Series(row)[GROUP]).all(axis=1)
        g = general[mine].sort_values(load)
        c = classes[(classes[GROUP] == pd.Series(row)[GROUP]).all(axis=1)]
        gen = c[c["class"] == classify.GENERALIZING][load]
        row[f"{load}_generalizing"] = float(gen.min()) if len(gen) else float("nan")
        if len(g):
            last = g.iloc[-1]
            row[f"max_{load}"] = float(last[load])
            for m in ("m_train", "m_test", "test_best_train", "coupling_similarity"):
                if m in g:
                    row[f"{m}@max"] = float(last[m])
            at_max = c[np.isclose(c[load].to_numpy(dtype=float), float(last[load]))]["class"]
            row["class@max"] = classify.class_label(float(at_max.iloc[0])) if len(at_max) else "undetermined"
        rows.append(row)
    return pd.DataFrame(rows)


def basin_table(ds: xr.Dataset, max_columns: int = 10, interpolate: bool = True) -> pd.DataFrame:
    """Basin size (mean +- sem over seeds) with one row per (dataset, N, rule), one column per load.

    At most ``max_columns`` loads, evenly spread over the grid, so that the table stays readable.
    Interpolated by default: on a grid of noise levels the plain estimate puts rules whose
    basins differ by less than a grid step at the same value.
    """
    load = tables.load_axis(ds)
    summary = basins.basin_summary(ds, interpolate=interpolate)
    if summary.empty:
        return pd.DataFrame(columns=GROUP)
    loads = np.sort(summary[load].unique())
    if len(loads) > max_columns:
        loads = loads[np.unique(np.linspace(0, len(loads) - 1, max_columns).round().astype(int))]
    summary = summary[summary[load].isin(loads)]
    summary = summary.assign(
        cell=[
            f"{m:.2f} ± {s:.2f}" if np.isfinite(s) else f"{m:.2f}"
            for m, s in zip(summary["basin"], summary["basin_sem"])
        ]
    )
    wide = summary.pivot_table(index=GROUP, columns=load, values="cell", aggfunc="first", sort=False)
    wide.columns = [f"{load}={v:g}" for v in wide.columns]
    return wide.reset_index()
