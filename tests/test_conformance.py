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
