"""One task, start to finish: data, training, retrieval at every noise level, metrics.

``run_cell`` is pure: its result depends only on the task's coordinates and the root seed.
It runs with the BLAS thread count of its task (``resources.cell_threads``: one for all but
large cells), set through ``threads.pin``, the same serially and on Ray, because a thread count
can change floating-point summation order, which would make a result depend on the worker
that computed it.
"""

from __future__ import annotations

import time
import numpy as np

from amsweep.pipeline import basin_bisection
from amsweep.pipeline import metrics as M
from amsweep.pipeline import contracts, registry, threads
from amsweep.pipeline.errors import PluginError
from amsweep.pipeline.model import Data, Model, NotApplicable
from amsweep.pipeline.outcomes import CellResult
from amsweep.pipeline.params import Params
from amsweep.pipeline.resources import cell_threads
from amsweep.pipeline.seeding import stream
from amsweep.pipeline.spec import CellJob, RetrievalOptions, Task

__all__ = ["CellResult", "data_key", "make_data", "run_cell", "train"]


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
    result: a cell's values for a spec and seed never change.
    """
    data = make_data(task, root_seed)
    t0 = time.perf_counter()
    model = train(task, data, root_seed)
    train_seconds = time.perf_counter() - t0

    dynamics = registry.component("dynamics", task.rule.dynamics)
    dyn_rng = stream(root_seed, "dynamics", *data_key(task), task.rule.stream_label)
    dyn_params = Params(task.rule.dynamics_params, f"dynamics {task.rule.dynamics}")

    def relax(states: np.ndarray):
        return dynamics.relax(model, states, dyn_params, dyn_rng)

    q, key = data.q, data_key(task)
    train_starts = data.train[: min(task.P, retrieval.train_starts)]
    test_starts = data.test[: min(data.test.shape[0], retrieval.test_starts)]

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
    after_one_sweep = fixed_dynamics.relax(model, data.train, one_sweep, dyn_rng).final
    series: dict[str, list[float]] = {name: [] for name, m in M.METRICS.items() if m.per_noise}
    flips = contracts.optional(dynamics, "flip_count")  # a protocol may count its flips its own way
    thermal: list[np.ndarray] | None = [] if retrieval.store_magnetisations else None
    for rho in noise:
        start_rng = stream(root_seed, "starts", *key, rho)
        r = relax(M.corrupt(train_starts, rho, q, start_rng, flips))
        if thermal is not None:  # reads the relaxation only: no draw, no other value changes
            thermal.append(np.asarray(M.thermal_state(r), dtype=np.float32))
        per_level = M.evaluate(M.TRAIN, M.Starts(r, data, train_starts))
        if test_starts.shape[0]:
            r = relax(M.corrupt(test_starts, rho, q, start_rng, flips))
            per_level.update(M.evaluate(M.TEST, M.Starts(r, data, test_starts)))
        else:
            per_level.update(M.undefined(M.TEST))
        for name, value in per_level.items():
            series[name].append(value)
    r = relax(M.random_states(retrieval.random_starts, task.N, q, stream(root_seed, "random", *key)))
    scalars = M.evaluate(M.RANDOM, M.Starts(r, data))
    scalars.update(M.evaluate(M.CELL, M.CellInputs(data, model, after_one_sweep)))
    retrieval_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()  # own streams: the metrics above are the same with or without it
    basin_rng = stream(root_seed, "basin", *key)  # data coordinates only: paired across rules
    basin_dyn = stream(root_seed, "basin_dynamics", *key, task.rule.stream_label)
    basin = basin_bisection.cell_basins(
        data.train,
        lambda S: dynamics.relax(model, S, dyn_params, basin_dyn).final,
        retrieval,
        q,
        basin_rng,
    )
    scalars.update(M.evaluate(M.BASINS, basin))  # NaN when the bisection is off
    scalars.update(M.evaluate(M.TIMINGS, M.Timings(train_seconds, retrieval_seconds, time.perf_counter() - t0)))
    kept = None
    if retrieval.store_couplings:
        kept = model.J if model.J is not None else model.memories
    kept_m = None if thermal is None else np.stack(thermal).reshape(len(noise), train_starts.shape[0], -1)
    return CellResult(task.index, M.result_values(scalars, series), kept, kept_m)
