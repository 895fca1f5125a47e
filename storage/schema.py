"""The cube's schema: dimensions, coordinates, variables and status codes derived from a Sweep.

One function turns a validated sweep into the list of arrays a cube holds, so that creating a
cube and checking an existing one against a spec use the same definition. (Named ``layout``
before: a word the shard geometry, ``shards.ShardGeometry``, also used.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from amsweep.pipeline.metric_table import METRICS
from amsweep.pipeline.spec import Sweep

__all__ = [
    "ArraySpec",
    "AXIS_ATTRS",
    "coordinates",
    "FORMAT_VERSION",
    "not_applicable_mask",
    "READABLE_FORMATS",
    "SENTINEL",
    "STATUS_NAMES",
    "task_dims",
    "task_dims_of",
    "variables",
]

PENDING, DONE, FAILED, NOT_APPLICABLE = 0, 1, 2, 3
STATUS_NAMES = {PENDING: "pending", DONE: "done", FAILED: "failed", NOT_APPLICABLE: "not applicable"}
FORMAT_VERSION = 3
# Format 1 (one object per task per variable) and format 2 (one-task inner chunks, no identity
# header) are read, never written: `amsweep upgrade` converts them.
READABLE_FORMATS = (1, 2, 3)
# Written last of a flush's data (after every other variable, before error records and status):
# a task whose sentinel is finite had all its variables written, so lost status can be rebuilt.
SENTINEL = "retrieval_seconds"

# CF attributes of the dimension coordinates: every coordinate and variable has both.
AXIS_ATTRS = {
    "dataset": ("dataset variant (kind and parameters)", ""),
    "N": ("number of neurons", "1"),
    "alpha": ("load: training examples per neuron, P / N", "1"),
    "P": ("number of training examples", "1"),
    "rule": ("learning rule variant (rule, parameters and retrieval dynamics)", ""),
    "seed": ("replica seed", "1"),
    "noise": ("fraction of the start state's sites changed before retrieval", "1"),
}


def task_dims(sweep: Sweep) -> tuple[str, ...]:
    return task_dims_of(sweep.load_axis)


def task_dims_of(load_axis: str) -> tuple[str, ...]:
    """The axes that identify a task (a training run), in cube order; noise is evaluated per task."""
    return ("dataset", "N", load_axis, "rule", "seed")


@dataclass(frozen=True)
class ArraySpec:
    """One zarr array of the cube, in xarray's vocabulary."""

    name: str
    dims: tuple[str, ...]
    dtype: Any
    values: np.ndarray | None = None  # coordinates carry values; variables start empty
    fill: Any = None
    attrs: dict[str, Any] = field(default_factory=dict)

    @property
    def data(self) -> np.ndarray:
        """A coordinate's values (a variable has none: asking for them is a bug)."""
        if self.values is None:
            raise TypeError(f"{self.name} is a variable: it has no values until written")
        return self.values

    @property
    def per_noise(self) -> bool:
        return self.dims[-1] == "noise"


def _cf(long_name: str, units: str = "1") -> dict[str, str]:
    return {"long_name": long_name, "units": units}


def _variant_coords(prefix: str, dim: str, variants: list[dict[str, Any]], fixed: set[str]) -> list[ArraySpec]:
    """Parameters that differ between variants become coordinates along the variant axis."""
    names: dict[str, None] = {}
    for v in variants:
        names.update(dict.fromkeys(v))
    out = []
    for name in names:
        values = [v.get(name) for v in variants]
        if len({repr(x) for x in values if x is not None}) < 2:
            continue  # the same wherever it is defined: nothing to plot against
        coord = name if name not in fixed else f"{prefix}_{name}"
        present = [x for x in values if x is not None]
        if all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in present):
            arr = np.array([np.nan if x is None else float(x) for x in values], dtype=np.float64)
        else:
            arr = np.array(["" if x is None else str(x) for x in values], dtype=object)
        out.append(
            ArraySpec(
                coord,
                (dim,),
                arr.dtype if arr.dtype != object else str,
                arr,
                attrs=_cf(f"parameter {name!r} of the {prefix} variant", "1" if arr.dtype != object else ""),
            )
        )
        fixed.add(coord)
    return out


def coordinates(sweep: Sweep) -> list[ArraySpec]:
    """Dimension coordinates, then per-variant coordinates, then the derived P (or alpha) grid."""
    load = np.array(sweep.load_values, dtype=np.float64 if sweep.load_axis == "alpha" else np.int64)
    dims = [
        ArraySpec("dataset", ("dataset",), str, np.array([d.label for d in sweep.datasets], dtype=object)),
        ArraySpec("N", ("N",), np.int64, np.array(sweep.N_values, dtype=np.int64)),
        ArraySpec(sweep.load_axis, (sweep.load_axis,), load.dtype, load),
        ArraySpec("rule", ("rule",), str, np.array([r.label for r in sweep.rules], dtype=object)),
        ArraySpec("seed", ("seed",), np.int64, np.array(sweep.seeds, dtype=np.int64)),
        ArraySpec("noise", ("noise",), np.float64, np.array(sweep.noise, dtype=np.float64)),
    ]
    dims = [ArraySpec(a.name, a.dims, a.dtype, a.values, attrs=_cf(*AXIS_ATTRS[a.name])) for a in dims]
    taken = {a.name for a in dims} | set(METRICS) | {"status", "P", "alpha"}
    extra = [
        ArraySpec(
            "dataset_kind",
            ("dataset",),
            str,
            np.array([d.kind for d in sweep.datasets], dtype=object),
            attrs=_cf("dataset generator", ""),
        ),
        ArraySpec(
            "rule_kind",
            ("rule",),
            str,
            np.array([r.kind for r in sweep.rules], dtype=object),
            attrs=_cf("learning rule", ""),
        ),
        ArraySpec(
            "dynamics",
            ("rule",),
            str,
            np.array([r.dynamics for r in sweep.rules], dtype=object),
            attrs=_cf("retrieval dynamics", ""),
        ),
    ]
    taken |= {a.name for a in extra}
    extra += _variant_coords("dataset", "dataset", [d.params for d in sweep.datasets], taken)
    extra += _variant_coords("rule", "rule", [r.params for r in sweep.rules], taken)
    extra += _variant_coords("dynamics", "rule", [r.dynamics_params for r in sweep.rules], taken)
    Ns = np.array(sweep.N_values)
    if sweep.load_axis == "alpha":
        grid = np.array([[sweep.P_of(int(n), float(a)) for a in load] for n in Ns], dtype=np.int64)
        extra.append(ArraySpec("P", ("N", "alpha"), np.int64, grid, attrs=_cf(*AXIS_ATTRS["P"])))
    else:
        grid = load[None, :].astype(np.float64) / Ns[:, None]
        extra.append(ArraySpec("alpha", ("N", "P"), np.float64, grid, attrs=_cf(*AXIS_ATTRS["alpha"])))
    return dims + extra


def variables(sweep: Sweep, coord_names: list[str]) -> list[ArraySpec]:
    """The status array and one array per metric, all chunked one task per chunk."""
    tdims = task_dims(sweep)
    non_dim = [c for c in coord_names if c not in tdims and c != "noise"]
    common = {"coordinates": " ".join(non_dim)}
    out = [
        ArraySpec(
            "status",
            tdims,
            np.int8,
            fill=PENDING,
            attrs={
                **common,
                **_cf("task state"),
                "description": "0 pending, 1 done, 2 failed, 3 not applicable",
                "flag_values": list(STATUS_NAMES),
                "flag_meanings": " ".join(s.replace(" ", "_") for s in STATUS_NAMES.values()),
            },
        )
    ]
    for name, m in METRICS.items():  # dims, dtype and attributes as pipeline/metric_table.py declares them
        out.append(
            ArraySpec(
                name,
                m.dims(tdims),
                m.dtype,
                fill=np.nan,
                attrs={**common, "long_name": m.description, "description": m.description, "units": m.units or "1"},
            )
        )
    return out


def not_applicable_mask(sweep: Sweep) -> np.ndarray:
    """True on task-grid cells that no task covers (an N or load a dataset does not list).

    Applicability depends on (dataset, N, load) only (``Sweep.tasks`` takes every rule and seed of
    a listed pair), so the mask is set per pair over whole rule x seed blocks: walking every task
    took 0.3 s at 10^5 tasks, and resume, status and query all ask for it."""
    mask = np.ones(sweep.shape, dtype=bool)
    n_index = {N: i for i, N in enumerate(sweep.N_values)}
    load_index = {load: i for i, load in enumerate(sweep.load_values)}
    for i_d, d in enumerate(sweep.datasets):
        rows = [n_index[N] for N in d.N]
        cols = [load_index[load] for load in d.load]
        mask[i_d][np.ix_(rows, cols)] = False  # a view of dataset i_d's (N, load, rule, seed) block
    return mask
