"""Tables of the clustering memories' sweeps: components recovered, token clusters, capacities.

The cube holds every metric, the model-level ones of ``amsweep.pipeline.memory_metrics``
(components recovered, clusters, steps to form them) included, and (with ``[retrieval]
store_couplings = true``) each task's memories. The tables also recompute those metrics from
the stored memories and by rerunning ``cell.make_data`` / ``cell.train`` for the cube's own tasks
(the same random streams, so the same data and models the workers had; the rerun memories must
equal the stored ones): an independent check of what the cube says.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from amsweep.pipeline import cell, memory_metrics
from amsweep.pipeline import spec as spec_mod
from amsweep.storage import query

__all__ = ["attention_table", "capacity", "CAPACITY_LEVEL", "elbo_table", "metric_frame"]

CAPACITY_LEVEL = 0.9


def _sweep(ds) -> spec_mod.Sweep:
    return spec_mod.from_canonical(query.stored_spec(ds))


def _done_tasks(path: str) -> tuple[spec_mod.Sweep, list[tuple[spec_mod.Task, dict[str, Any]]]]:
    """The cube's sweep and its done tasks with their coordinates (as load_couplings wants them)."""
    ds = query.open_cube(path)
    sweep = _sweep(ds)
    status = ds["status"].values
    load = sweep.load_axis
    out = []
    for task in sweep.tasks():
        if status[task.index] != 1:  # storage.schema.DONE
            continue
        coords = {"dataset": task.dataset.label, "N": task.N, load: task.load, "rule": task.rule.label}
        out.append((task, {**coords, "seed": task.seed}))
    return sweep, out


def _same_memories(stored: np.ndarray, model_memories: np.ndarray | None, where: dict) -> None:
    """The rerun is only a stand-in for the cube's model if it reproduces its memories bit for bit."""
    if model_memories is None or not np.array_equal(stored, model_memories):
        raise AssertionError(f"rerun memories differ from the cube's at {where}: not the same streams or code")


def metric_frame(path: str, metric: str, noise: float | None = None) -> pd.DataFrame:
    """One stored metric per task (seed kept), at one noise level for per-noise metrics."""
    frame = query.to_frame(query.open_cube(path), metric)
    if noise is not None and "noise" in frame.columns:
        frame = frame[np.isclose(frame["noise"], noise)].drop(columns="noise")
    return frame


def elbo_table(path: str, verify: int = 4) -> pd.DataFrame:
    """Per done task: components recovered by its stored memories, with the stored metrics.

    Prototypes come from ``cell.make_data`` of the task (data only: cheap); the first ``verify``
    tasks are also retrained to check the rerun model is the stored one.
    """
    sweep, tasks = _done_tasks(path)
    rows = []
    for i, (task, coords) in enumerate(tasks):
        data = cell.make_data(task, sweep.root_seed)
        stored = query.load_couplings(path, coords)
        if i < verify:
            _same_memories(stored, cell.train(task, data, sweep.root_seed).memories, coords)
        recovered, found = memory_metrics.recovered_components(stored, data.meta["prototypes"])
        rows.append(
            {
                **coords,
                "P": task.P,
                "per_component": task.dataset.params.get("per_component"),
                "components": int(data.meta["n_components"]),
                "memories": int(stored.shape[0]),
                "recovered_components": recovered,
                "components_found": found,
                "components_as_oracle": memory_metrics.as_oracle(stored, data),
            }
        )
    frame = pd.DataFrame(rows)
    keys = ["dataset", "N", "P", "rule", "seed"]
    for metric, noise in (("m_train", 0.1), ("success_train", 0.1), ("test_best_feature", 0.1)):
        stored_metric = metric_frame(path, metric, noise)[keys + [metric]]
        frame = frame.merge(stored_metric, on=keys, how="left")
    return frame


def attention_table(path: str, retrain: bool = True) -> pd.DataFrame:
    """Per done task: clusters of the stored final tokens, and (retrain) the steps to form them.

    ``clusters_stored`` counts the cube's float32 tokens at the rule's eps; ``n_clusters`` and
    ``cluster_steps`` come from rerunning ``cell.train`` on the task (float64, the same run).
    """
    sweep, tasks = _done_tasks(path)
    rows = []
    for task, coords in tasks:
        stored = query.load_couplings(path, coords)
        params = task.rule.params
        row: dict[str, Any] = {
            **coords,
            "d": task.N,
            "n": task.P,
            "beta": float(params["beta"]),
            "update": "residual" if params["residual"] else "attention",
            "max_steps": int(params["max_steps"]),
            "clusters_stored": memory_metrics.token_clusters(stored, float(params["eps"])),
        }
        if retrain:
            data = cell.make_data(task, sweep.root_seed)
            model = cell.train(task, data, sweep.root_seed)
            _same_memories(stored, model.memories, coords)
            extra = memory_metrics.model_metrics(model, data)
            row.update({k: float(extra[k]) for k in ("n_clusters", "cluster_steps", "clusters_converged")})
        rows.append(row)
    return pd.DataFrame(rows)


def capacity(frame: pd.DataFrame, metric: str, by: list[str], level: float = CAPACITY_LEVEL) -> pd.DataFrame:
    """Per group, the largest P such that the seed-mean ``metric`` is >= level at every P' <= P.

    0 when the smallest P already fails; the grid's largest P when none fails (a lower bound).
    """
    mean = frame.groupby([*by, "P"], as_index=False)[metric].mean().sort_values("P")
    out = []
    for key, group in mean.groupby(by):
        ok = group[metric].to_numpy() >= level
        first_bad = int(np.argmin(ok)) if not ok.all() else ok.size
        cap = int(group["P"].to_numpy()[first_bad - 1]) if first_bad > 0 else 0
        key = key if isinstance(key, tuple) else (key,)
        out.append({**dict(zip(by, key)), f"capacity_{metric}": cap, "grid_end": bool(ok.all())})
    return pd.DataFrame(out)
