"""One suite over every registered dataset, rule, dynamics and executor (``tests/conformance.py``).

Parametrised over what the registry discovers when the tests are collected, so a new component,
built in or on ``AMSWEEP_PLUGIN_PATH``, is tested by existing: its contract, its parameter
defaults, a stable spec hash, a one-cell run, and the family's own checks (data shapes and
alphabet, couplings finite with zero diagonal, relaxation keeping shape and alphabet, same seed
same result).
"""

from __future__ import annotations

import pytest

from amsweep.pipeline import registry
from amsweep.pipeline.executors import EXECUTORS
from tests import conformance

CASES = [
    pytest.param(family, kind, check, id=f"{family}-{kind}-{name.removeprefix('check_')}")
    for family in registry.FAMILIES
    for kind in registry.kinds(family)
    for name, check in conformance.checks(family)
]


@pytest.fixture(autouse=True, scope="module")
def private_cache(tmp_path_factory):
    """Dataset caches (spin-glass pools) in a folder of this run, not the user's."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AMSWEEP_CACHE", str(tmp_path_factory.mktemp("cache")))
        yield


@pytest.mark.parametrize("family, kind, check", CASES)
def test_component(family, kind, check):
    check(kind)


@pytest.mark.parametrize("name", sorted(EXECUTORS))
def test_executor(name):
    conformance.check_executor(name)
