"""Phase boundaries: where a seed-averaged value crosses a threshold along one axis.

For every combination of the other axes (dataset, N, rule, noise; the load when the axis is N),
the crossing of the seed mean through the threshold is interpolated linearly between the two
grid points that bracket it, and a confidence interval comes from a bootstrap over seeds (the
replicas are the only independent noise a cube has). The bootstrap RNG has a fixed seed, so the
same cube always gives the same table. A class change (memorizing -> generalizing) is the same
computation on the fraction of seeds in that class, with threshold 1/2 (a majority of replicas).

Cubes are read only through ``amsweep.storage.query`` (via ``analysis.derived``), so only done
tasks count: a cube being refined can be read at any moment.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import xarray as xr

from amsweep.analysis import classify, derived, tables
from amsweep.pipeline.errors import QueryError
from amsweep.storage import query

__all__ = [
    "BOOTSTRAP",
    "bootstrap_crossings",
    "BOOTSTRAP_SEED",
    "boundary_table",
    "CLASS_CODES",
    "curve_frame",
    "DIRECTIONS",
    "family_labels",
    "first_crossing",
    "group_keys",
    "one_boundary",
    "table_from_frame",
    "Target",
    "target",
]

BOOTSTRAP = 1000  # resamples: the 2.5% and 97.5% quantiles rest on 25 resamples each
BOOTSTRAP_SEED = 20260  # fixed: the same cube gives the same interval, run after run
DIRECTIONS = ("any", "down", "up")
CLASS_CODES = {
    "no_retrieval": classify.NO_RETRIEVAL,
    "elsewhere": classify.ELSEWHERE,
    "memorizing": classify.MEMORIZING,
    "generalizing": classify.GENERALIZING,
}


@dataclass(frozen=True)
class Target:
    """What crosses what: a value (metric, derived value or class fraction) and its threshold."""

    value: str
    threshold: float
    direction: str = "any"
    class_name: str | None = None  # set: the value is the fraction of seeds in this class

    @property
    def column(self) -> str:
        return f"frac_{self.class_name}" if self.class_name else self.value

    def describe(self) -> str:
        what = f"fraction of seeds {self.class_name}" if self.class_name else self.value
        arrow = {"down": "falls through", "up": "rises through", "any": "crosses"}[self.direction]
        return f"{what} {arrow} {self.threshold:g}"


def target(
    metric: str | None, threshold: float | None, direction: str = "any", class_name: str | None = None
) -> Target:
    """Validate a boundary request: a metric with a threshold, or a class (threshold 1/2 by default)."""
    if direction not in DIRECTIONS:
        raise QueryError(f"--direction {direction}: expected one of {', '.join(DIRECTIONS)}")
    if class_name is not None:
        if class_name not in CLASS_CODES:
            raise QueryError(f"--class {class_name}: expected one of {', '.join(CLASS_CODES)}")
        return Target("class", 0.5 if threshold is None else threshold, direction, class_name)
    if metric is None or threshold is None:
        raise QueryError("give --metric and --threshold (or --class NAME for a class change)")
    if metric not in derived.value_names():
        raise QueryError(f"unknown metric {metric!r}; available: {', '.join(derived.value_names())}")
    if metric in derived.CATEGORICAL:
        raise QueryError(f"{metric!r} is categorical: use --class NAME (one of {', '.join(CLASS_CODES)})")
    return Target(metric, threshold, direction)


def group_keys(frame: pd.DataFrame, ds: xr.Dataset, along: str) -> list[str]:
    """The axes a boundary is computed for: every cube axis present but ``along`` and seed."""
    return [d for d in tables.axes_of(frame, ds) if d not in (along, "seed")]


def curve_frame(ds: xr.Dataset, tgt: Target, along: str) -> tuple[pd.DataFrame, list[str]]:
    """Tidy rows (keys, along, seed, value) of done tasks, and the group keys."""
    if along not in ("alpha", "P", "N"):
        raise QueryError(f"--along {along}: expected alpha, P or N")
    if along in ("alpha", "P") and along not in ds.dims:
        raise QueryError(f"--along {along}: this cube's load axis is {tables.load_axis(ds)!r}")
    try:
        frame = derived.value_frame(ds, tgt.value)
    except KeyError as e:
        raise QueryError(str(e.args[0])) from None
    if tgt.class_name is not None:
        code = CLASS_CODES[tgt.class_name]
        # each replica's own class: the boundary is where the fraction of seeds in the class crosses
        # the threshold (bootstrapped over seeds), not the cell's class map (one class for all seeds)
        frame[tgt.column] = (frame["class_seed"] == code).astype(float)
    if frame.empty:
        raise QueryError(f"no done task has a value of {tgt.value!r} in this selection")
    keys = group_keys(frame, ds, along)
    return frame[keys + [along, "seed", tgt.column]].copy(), keys


def first_crossing(x: np.ndarray, y: np.ndarray, threshold: float, direction: str) -> tuple[int, float]:
    """(i, x*) of the first crossing between x[i] and x[i+1] of sorted x, or (-1, nan).

    A point exactly at the threshold counts as below it, so a curve touching the threshold
    from above crosses there (x* = that point).
    """
    ok = np.isfinite(y)
    idx = np.nonzero(ok)[0]
    xs, ys = x[ok], y[ok]
    above = ys > threshold
    change = above[:-1] != above[1:]
    if direction == "down":
        change &= above[:-1]
    elif direction == "up":
        change &= ~above[:-1]
    hits = np.nonzero(change)[0]
    if hits.size == 0:
        return -1, float("nan")
    i = int(hits[0])
    x0, x1, y0, y1 = xs[i], xs[i + 1], ys[i], ys[i + 1]
    return int(idx[i]), float(x0 + (threshold - y0) * (x1 - x0) / (y1 - y0))


def _beyond(y: np.ndarray, threshold: float, direction: str) -> float:
    """Where a resampled curve with no crossing puts its boundary: past the right end (+inf)
    if it never left the side it starts on in the requested direction, else past the left end."""
    finite = y[np.isfinite(y)]
    if finite.size == 0:
        return float("nan")
    above = bool(finite[0] > threshold)
    starts_before = above if direction == "down" else (not above if direction == "up" else True)
    return float("inf") if starts_before else float("-inf")


def bootstrap_crossings(
    x: np.ndarray, values: np.ndarray, threshold: float, direction: str, n: int = BOOTSTRAP
) -> np.ndarray:
    """Crossings of the mean over seeds resampled with replacement (rows of ``values`` are seeds).

    A resample without a crossing counts as +-inf (beyond the grid's end), so an interval that
    reaches past the grid says so instead of shrinking to the resamples that happened to cross.
    """
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    seeds = values.shape[0]
    picks = rng.integers(0, seeds, size=(n, seeds))
    out = np.empty(n)
    means = _nanmean(values[picks], axis=1)  # (n, len(x))
    for b in range(n):
        i, xc = first_crossing(x, means[b], threshold, direction)
        out[b] = xc if i >= 0 else _beyond(means[b], threshold, direction)
    return out


def _nanmean(values: np.ndarray, axis: int) -> np.ndarray:
    """Mean over seeds present; NaN without numpy's 'mean of empty slice' warning (a point whose
    seeds are not done yet, or a resample that missed them)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, axis=axis)


def one_boundary(group: pd.DataFrame, tgt: Target, along: str, ci: float, resamples: int) -> dict[str, object]:
    """Crossing, bootstrap interval and bracket of one group's curve."""
    table = group.pivot_table(index="seed", columns=along, values=tgt.column, aggfunc="mean", dropna=False)
    table = table.reindex(sorted(table.columns), axis=1)
    x = table.columns.to_numpy(dtype=float)
    values = table.to_numpy(dtype=float)
    mean = _nanmean(values, axis=0)
    i, xc = first_crossing(x, mean, tgt.threshold, tgt.direction)
    ok = np.nonzero(np.isfinite(mean))[0]
    row: dict[str, object] = {
        "crossing": xc,
        "ci_low": np.nan,
        "ci_high": np.nan,
        "bracket_low": np.nan,
        "bracket_high": np.nan,
        "width": np.nan,
        "points": int(ok.size),
        "seeds": int(np.isfinite(values).sum(axis=0).min()) if values.size else 0,
        "found": "yes",
    }
    if i < 0:
        edge = _beyond(mean, tgt.threshold, tgt.direction)
        row["found"] = (
            "no data" if np.isnan(edge) else "beyond the last point" if edge > 0 else "before the first point"
        )
        return row
    j = ok[np.searchsorted(ok, i) + 1]
    row.update(bracket_low=float(x[i]), bracket_high=float(x[j]), width=float(x[j] - x[i]))
    if resamples > 0:  # refine decides on brackets alone and skips the bootstrap
        boots = bootstrap_crossings(x, values, tgt.threshold, tgt.direction, resamples)
        tail = (1.0 - ci) / 2.0
        row["ci_low"], row["ci_high"] = (float(v) for v in np.quantile(boots, [tail, 1.0 - tail], method="nearest"))
    return row


def boundary_table(
    ds: xr.Dataset, tgt: Target, along: str = "alpha", ci: float = 0.95, resamples: int = BOOTSTRAP
) -> pd.DataFrame:
    """One row per group: crossing, CI over seeds, bracketing grid points, bracket width."""
    frame, keys = curve_frame(ds, tgt, along)
    return table_from_frame(frame, keys, tgt, along, ci, resamples)


def table_from_frame(
    frame: pd.DataFrame, keys: Sequence[str], tgt: Target, along: str, ci: float = 0.95, resamples: int = BOOTSTRAP
) -> pd.DataFrame:
    """``boundary_table`` on an already-read frame (refine restricts it to chosen grid values)."""
    rows = []
    groups = frame.groupby(list(keys), sort=True, dropna=False) if keys else [((), frame)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        rows.append({**dict(zip(keys, key)), **one_boundary(group, tgt, along, ci, resamples)})
    columns = list(keys) + ["crossing", "ci_low", "ci_high", "bracket_low", "bracket_high", "width"]
    return pd.DataFrame(rows, columns=columns + ["points", "seeds", "found"])


def family_labels(ds: xr.Dataset, datasets: Sequence[str]) -> dict[str, str]:
    """Dataset label -> family label: datasets equal in kind, parameters and P_test (they differ
    only in N and loads: one entry per N, so refine adds loads per N) form one family, which
    the finite-size fit runs over. A family is named by its kind and the parameters that tell it
    from other families of that kind."""
    spec = query.stored_spec(ds)
    content = {
        d["label"]: (d["kind"], tuple(sorted((k, repr(v)) for k, v in d["params"].items())), d["P_test"])
        for d in spec["datasets"]
        if d["label"] in set(datasets)
    }
    out = {}
    for label, (kind, params, p_test) in content.items():
        others = {c for c in content.values() if c[0] == kind}
        differ = [k for k, v in params if any(dict(o[1]).get(k) != v for o in others)]
        if len({o[2] for o in others}) > 1:
            differ.append("P_test")
        shown = dict(params) | {"P_test": str(p_test)}
        out[label] = kind + (f"[{','.join(f'{k}={shown[k]}' for k in differ)}]" if differ else "")
    return out
