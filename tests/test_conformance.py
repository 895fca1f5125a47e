"""One suite over every registered dataset, rule, dynamics and executor (``amsweep.testing``).

Parametrised over what the registry discovers when the tests are collected, so a new component,
built in or on ``AMSWEEP_PLUGIN_PATH``, is tested by existing: its contract, its parameter
defaults, a stable spec hash, a one-cell run, and the family's own checks (data shapes and
alphabet, couplings finite with zero diagonal, relaxation keeping shape and alphabet, same seed
same result). The component checks are the installed kit plug-in authors run; the executor check
is here, as executors are not plug-ins.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from amsweep.pipeline import contracts
from amsweep.pipeline.executors import EXECUTORS
from amsweep.pipeline.datasets import spin_glass
from amsweep.pipeline.outcomes import Failed
from amsweep.testing import component_tests


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """Dataset caches (spin-glass pools) in a folder of this run, not the user's. spin_glass seeds
    its pool with a hash of its own source file, so it cannot declare QUICK there without changing
    every spin-glass cube: its quick setting is given here instead."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMSWEEP_CACHE", str(tmp_path_factory.mktemp("cache")))
        mp.setattr(spin_glass, "QUICK", {"equilibration": 100}, raising=False)
        yield


test_component = component_tests()


@pytest.mark.parametrize("name", sorted(EXECUTORS))
def test_executor(name):
    """The class keeps the Executor interface; the in-process ones are run on three jobs (one
    failing), engines that start a cluster are covered by the sweep tests instead."""
    cls = EXECUTORS[name]
    assert contracts.executor_problems(cls) == []
    assert cls.name == name, f"EXECUTORS[{name!r}].name is {cls.name!r}"
    if cls.OPTIONS:
        return
    ex = cls()
    assert isinstance(ex, contracts.Executor) and isinstance(ex.workers, int)
    memory, cpus, where = ex.capacity()
    assert memory > 0 and cpus > 0 and isinstance(where, str)
    assert ex.prepare(SimpleNamespace(datasets=())) == 0
    got = dict(ex.map_unordered(lambda x: 1 / x, [1, 0, 2], total=3))  # fn(job): one job, one argument
    assert got[1] == 1 and got[2] == 0.5 and isinstance(got[0], Failed)
    ex.shutdown()


def _fake_cell(job):
    """Every declared metric, from the task's index alone; the second seed fails."""
    import numpy as np

    from amsweep.pipeline.metric_table import METRICS
    from amsweep.pipeline.outcomes import CellResult

    if job.task.index[4] == 1:
        raise ValueError("boom")
    n = len(job.noise)
    x = np.float32(sum(job.task.index))
    return CellResult(job.task.index, {k: np.full(n, x) if m.per_noise else x for k, m in METRICS.items()})


@pytest.mark.parametrize("name", sorted(EXECUTORS))
def test_executor_blocks_hold_what_map_unordered_yields(name, small_sweep):
    """``map_blocks`` (optional, issue 26) gives the outcomes ``map_unordered`` gives, a batch at a
    time: every cell once, results by task index, failures by task index. A non-callable one is a
    contract problem."""
    cls = EXECUTORS[name]
    assert contracts.executor_problems(type("Odd", (cls,), {"map_blocks": 3})) != []
    if cls.OPTIONS or contracts.optional(cls, "map_blocks") is None:
        return
    ex = cls()
    jobs = [small_sweep.job(t) for t in small_sweep.tasks()]
    cells = {job.task.index: o for job, o in ex.map_unordered(_fake_cell, jobs, total=len(jobs))}
    blocks = list(contracts.optional(ex, "map_blocks")(_fake_cell, jobs, total=len(jobs)))
    got = {r.index: r for b in blocks for r in b.cell_results()}
    ended = {index: o for b in blocks for index, o in b.ended}
    assert sum(b.size for b in blocks) == len(jobs) == len(got) + len(ended)
    for index, outcome in cells.items():
        if isinstance(outcome, Failed):
            assert isinstance(ended[index], Failed)
        else:
            assert outcome.values.keys() == got[index].values.keys()
    ex.shutdown()


def test_an_executor_without_map_blocks_runs_cell_by_cell(tmp_path, small_sweep):
    """The runner's fallback: an executor with ``map_unordered`` only (no ``map_blocks``) fills
    the cube as any other."""
    from amsweep.pipeline.executors import SerialExecutor
    from amsweep.pipeline.outcomes import guarded
    from amsweep.storage.cube import Cube
    from amsweep.storage.schema import DONE, FAILED
    from amsweep.sweeps.runner import run

    class CellByCell:
        name, workers, OPTIONS = "cells", 1, ()
        capacity, prepare, describe = SerialExecutor.capacity, SerialExecutor.prepare, SerialExecutor.describe

        def map_unordered(self, fn, jobs, total=None):
            return ((job, guarded(fn, job)) for job in jobs)

        def shutdown(self) -> None:
            pass

    assert contracts.optional(CellByCell(), "map_blocks") is None
    with Cube.create_or_open(str(tmp_path / "cells.zarr"), small_sweep) as cube:
        report = run(cube, CellByCell(), progress=False, cell=_fake_cell)
        status = cube.status()
    assert report.done == (status == DONE).sum() > 0 and report.failed == (status == FAILED).sum() > 0
    assert report.remaining == 0 and len(report.errors) == report.failed
