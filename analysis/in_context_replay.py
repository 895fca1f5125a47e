"""Replays the held-out retrievals of an in_context sweep to score them against each start's own mode.

Why a replay: the cube holds ``test_best_feature`` (distance to the *nearest* mode), which does
not see attractors collapsing onto one mode; the stricter score, the fraction of held-out starts
that end on the mode of their own component, needs the starts' labels, which the cube does not
keep. Until the cell records it (a ``test_own_mode`` metric), this recomputes the cell's test
retrievals exactly: same data, model, corrupted starts and dynamics, from the same streams (the
train starts are drawn first, as in ``amsweep.pipeline.cell``, to advance the stream). It is the
one analysis module that imports the pipeline, and it is meant to go once the metric exists.
"""

from __future__ import annotations

import pandas as pd
from threadpoolctl import threadpool_limits

from amsweep.pipeline import cell, registry
from amsweep.pipeline import metrics as M
from amsweep.pipeline.rules.in_context import distance_to_modes, own_mode_fraction
from amsweep.pipeline.seeding import stream
from amsweep.pipeline.spec import Sweep, Task

__all__ = ["own_mode_summary", "replay"]


def replay(sweep: Sweep, noise: float) -> pd.DataFrame:
    """Per task of a context_mixture dataset: distance to the nearest mode and own-mode fraction at one noise."""
    with threadpool_limits(1):  # the cell's thread count: near-ties resolve as they did there
        return pd.DataFrame([row for task in sweep.tasks() if (row := _replay_task(sweep, task, noise))])


def _replay_task(sweep: Sweep, task: Task, noise: float) -> dict | None:
    """One task's test retrievals at ``noise``, scored; None for a task of another dataset kind."""
    if task.dataset.kind != "context_mixture":
        return None
    data = cell.make_data(task, sweep.root_seed)
    model = cell.train(task, data, sweep.root_seed)
    dynamics = registry.component("dynamics", task.rule.dynamics)
    key = cell.data_key(task)
    starts_rng = stream(sweep.root_seed, "starts", *key, noise)
    M.corrupt(data.train[: min(task.P, sweep.retrieval["train_starts"])], noise, 2, starts_rng)
    n_test = min(data.test.shape[0], sweep.retrieval["test_starts"])
    starts = M.corrupt(data.test[:n_test], noise, 2, starts_rng)
    dyn_rng = stream(sweep.root_seed, "dynamics", *key, task.rule.stream_label)
    final = dynamics.relax(model, starts, task.rule.dynamics_params, dyn_rng).final
    modes = data.meta["prototypes"]
    return {
        "flip": task.dataset.params["flip"],
        "N": task.N,
        "P": task.P,
        "rule": task.rule.label,
        "seed": task.seed,
        "distance": float(distance_to_modes(final, modes).mean()),
        "own_mode": own_mode_fraction(final, modes, data.meta["test_labels"][:n_test]),
    }


def own_mode_summary(frame: pd.DataFrame) -> pd.DataFrame:
    """Seed-mean own-mode fraction per (flip, P) and rule, with KDE's best bandwidth per cell as a column."""
    table = frame.groupby(["flip", "P", "rule"])["own_mode"].mean().unstack("rule")
    kde = [c for c in table.columns if c.startswith("kde")]
    if kde:
        table["kde (best h)"] = table[kde].max(axis=1)
    return table.round(3)
