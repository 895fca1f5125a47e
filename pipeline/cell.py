"""One task, start to finish: data, training, retrieval at every noise level, metrics.

``run_cell`` is pure: its result depends only on the task's coordinates and the root seed.
It runs with the BLAS thread count of its task (``resources.cell_threads``: one for all but
large cells), set through ``threads.pin``, the same serially and on Ray, because a thread count
can change floating-point summation order, which would make a result depend on the worker
that computed it.
"""

from __future__ import annotations

import time
from typing import Iterator

import numpy as np

from amsweep.pipeline import basin_bisection
from amsweep.pipeline import metrics as M
from amsweep.pipeline import contracts, registry, threads
from amsweep.pipeline.dynamics._groups import Request, relaxed_in_order
from amsweep.pipeline.errors import PluginError
from amsweep.pipeline.model import Data, Model, NotApplicable
from amsweep.pipeline.outcomes import CellResult
from amsweep.pipeline.params import Params
from amsweep.pipeline.resources import cell_threads, retrieval_batch
from amsweep.pipeline.seeding import stream
from amsweep.pipeline.spec import CellJob, RetrievalOptions, Task

__all__ = ["CellResult", "data_key", "GROUP_SITES", "make_data", "run_cell", "train"]

# States x sites a cell may relax in one call beyond its largest single batch (resources.retrieval_batch):
# 2^18 sites are 2.3 MiB (int8 states, their float32 copy, float32 fields), nothing beside a worker,
# and hold all of a small cell's batches (N = 32: up to 8,192 states), whose per-call overhead
# (~17 us a call, ten calls a cell) is what batching saves.
GROUP_SITES = 2**18


def data_key(task: Task) -> tuple:
    """Coordinates that fix the data: shared by every rule, so rule comparisons are paired.

    Variants are keyed by their first label: one relabelled when a cube grew keeps its streams.
    """
    return (task.dataset.stream_label, task.N, task.P, task.seed)


def make_data(task: Task, root_seed: int) -> Data:
    module = registry.component("datasets", task.dataset.kind)
    return module.make(
        task.N,
        task.P,
        task.dataset.P_test,
        Params(task.dataset.params, f"dataset {task.dataset.kind}"),
        stream(root_seed, "data", *data_key(task)),
    )


def train(task: Task, data: Data, root_seed: int) -> Model:
    module = registry.component("rules", task.rule.kind)
    rng = stream(root_seed, "rule", *data_key(task), task.rule.stream_label)
    params = Params(task.rule.params, f"rule {task.rule.kind}")
    if contracts.takes_meta(module):  # e.g. true_couplings reads meta["true_J"]
        model = module.train(data.train, data.q, params, rng, meta=data.meta)
    else:
        model = module.train(data.train, data.q, params, rng)
    broken = contracts.model_problems(module, model, data.q, data.N)
    if broken:
        raise PluginError(f"rule {task.rule.kind}: {'; '.join(broken)}")
    return model


def run_cell(job: CellJob) -> CellResult:
    """Train once, evaluate every noise level. Raises NotApplicable (the runner records it) where
    the components' declarations say they cannot serve the cell, before any data are made."""
    task, retrieval = job.task, job.retrieval
    reason = contracts.not_applicable(  # imported before pinning: imports may load a BLAS
        registry.component("datasets", task.dataset.kind),
        registry.component("rules", task.rule.kind),
        registry.component("dynamics", task.rule.dynamics),
    )
    if reason is not None:
        raise NotApplicable(reason)
    threads.pin(cell_threads(task, retrieval))
    return _run(task, job.noise, retrieval, job.root_seed)


def _run(task: Task, noise: tuple[float, ...], retrieval: RetrievalOptions, root_seed: int) -> CellResult:
    """Prepare the starts each metric group needs, relax them, and let ``metrics`` measure.

    The order of the random draws (data, training, fixed points, then per noise level the
    training and test starts, then random starts; basins on their own streams) is part of the
    result: a cell's values for a spec and seed never change. The starts come from their own
    streams, so they are made lazily, batch by batch, while ``relaxed_in_order`` relaxes them in
    this order (several batches a call where the dynamics allows, ``dynamics/_groups.py``).
    """
    data = make_data(task, root_seed)
    t0 = time.perf_counter()
    model = train(task, data, root_seed)
    train_seconds = time.perf_counter() - t0

    dynamics = registry.component("dynamics", task.rule.dynamics)
    dyn_rng = stream(root_seed, "dynamics", *data_key(task), task.rule.stream_label)
    dyn_params = Params(task.rule.dynamics_params, f"dynamics {task.rule.dynamics}")
    q, key = data.q, data_key(task)
    train_starts = data.train[: min(task.P, retrieval.train_starts)]
    test_starts = data.test[: min(data.test.shape[0], retrieval.test_starts)]
    plan = M.plan()  # the table's metrics by group, read once per cell

    t0 = time.perf_counter()
    # A fixed point is a state one sweep leaves unchanged; a thermal dynamics (Glauber) moves
    # every state sometimes, so its fixed points are those of its zero-temperature limit.
    if contracts.optional(dynamics, "STOCHASTIC"):
        fixed_dynamics, one_sweep = (
            registry.component("dynamics", "asynchronous"),
            Params({"max_sweeps": 1}, "dynamics asynchronous"),
        )
    else:
        fixed_dynamics, one_sweep = dynamics, Params({**dyn_params, "max_sweeps": 1}, f"dynamics {task.rule.dynamics}")
    flips = contracts.optional(dynamics, "flip_count")  # a protocol may count its flips its own way

    def requests() -> Iterator[Request]:
        """Every batch in the order the dynamics draws for it: (metric group, dynamics, states, params);
        a group's batches come in noise order, so their values append to ``series`` in that order."""
        yield M.CELL, fixed_dynamics, data.train, one_sweep
        for rho in noise:
            start_rng = stream(root_seed, "starts", *key, rho)
            yield M.TRAIN, dynamics, M.corrupt(train_starts, rho, q, start_rng, flips), dyn_params
            if test_starts.shape[0]:
                yield M.TEST, dynamics, M.corrupt(test_starts, rho, q, start_rng, flips), dyn_params
        states = M.random_states(retrieval.random_starts, task.N, q, stream(root_seed, "random", *key))
        yield M.RANDOM, dynamics, states, dyn_params

    origin = {M.TRAIN: train_starts, M.TEST: test_starts, M.RANDOM: None}
    series: dict[str, list[float]] = {name: [] for group in M.PER_NOISE for name, _ in plan[group]}
    thermal: list[np.ndarray] | None = [] if retrieval.store_magnetisations else None
    scalars: dict[str, float] = {}
    max_rows = max(retrieval_batch(task, retrieval), GROUP_SITES // task.N)
    for group, r in relaxed_in_order(requests(), model, dyn_rng, max_rows):
        if group == M.CELL:
            after_one_sweep = r.final
            continue
        if group == M.TRAIN and thermal is not None:  # reads the relaxation only: no draw, no other value changes
            thermal.append(np.asarray(M.thermal_state(r), dtype=np.float32))
        values = M.evaluate(group, M.Starts(r, data, origin[group]), plan)
        if group == M.RANDOM:
            scalars.update(values)
            continue
        if group == M.TRAIN and not test_starts.shape[0]:
            values.update(M.undefined(M.TEST, plan))
        for name, value in values.items():
            series[name].append(value)
    scalars.update(M.evaluate(M.CELL, M.CellInputs(data, model, after_one_sweep), plan))
    retrieval_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()  # own streams: the metrics above are the same with or without it
    basin = np.zeros(0)  # what cell_basins gives when the basins are off, without opening their streams
    if retrieval.basin_examples > 0:
        basin_rng = stream(root_seed, "basin", *key)  # data coordinates only: paired across rules
        basin_dyn = stream(root_seed, "basin_dynamics", *key, task.rule.stream_label)
        basin = basin_bisection.cell_basins(
            data.train,
            lambda S: dynamics.relax(model, S, dyn_params, basin_dyn).final,
            retrieval,
            q,
            basin_rng,
        )
    scalars.update(M.evaluate(M.BASINS, basin, plan))  # NaN when the bisection is off
    timings = M.Timings(train_seconds, retrieval_seconds, time.perf_counter() - t0)
    scalars.update(M.evaluate(M.TIMINGS, timings, plan))
    kept = None
    if retrieval.store_couplings:
        kept = model.J if model.J is not None else model.memories
    kept_m = None if thermal is None else np.stack(thermal).reshape(len(noise), train_starts.shape[0], -1)
    return CellResult(task.index, M.result_values(scalars, series), kept, kept_m)
