"""Adversarial pass 3: a cube's per-task arrays (``_amsweep/couplings/*.npy``, ``magnetisations``)
damaged or swapped must be refused, never read as the task's values (the shards carry an identity
header and checksums; these objects carry neither).

Found (attack3 at 16f1e2d), strict xfails: the couplings file of another task copied over a task's
key, or the file's last 8 bytes zeroed, is returned by ``Cube.couplings`` as that task's couplings
(other values, no error), and ``amsweep check`` says "ok"; a truncated file is a ValueError from
``np.load`` (a traceback, not a one-line CubeError) and check still says "ok". The same holds for
a restage: a damaged staged ``.npy`` under a good READY is swapped in by ``check --repair``.
"""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.errors import CubeError
from amsweep.pipeline.executors import SerialExecutor
from amsweep.storage.check import check
from amsweep.storage.cube import Cube
from amsweep.sweeps.runner import run

RAW = {
    "name": "arrays",
    "root_seed": 3,
    "seeds": [0, 1],
    "noise": [0.0],
    "P_test": 4,
    "retrieval": {"train_starts": 3, "test_starts": 2, "random_starts": 2, "store_couplings": True},
    "datasets": {"random": {"N": [16], "alpha": [0.1]}},
    "rules": {"hebb": {}},
}
TASK, OTHER = (0, 0, 0, 0, 0), (0, 0, 0, 0, 1)


@pytest.fixture(scope="module")
def stored(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("arrays") / "c.zarr"
    run(Cube.create_or_open(str(path), spec_mod.from_dict(copy.deepcopy(RAW))), SerialExecutor(), progress=False)
    cube = Cube.open(str(path))
    assert not np.array_equal(cube.couplings(TASK), cube.couplings(OTHER))  # two seeds: other couplings
    return path


def _swap(f: Path) -> None:
    shutil.copyfile(f.with_name("0-0-0-0-1.npy"), f)


def _zero_tail(f: Path) -> None:
    f.write_bytes(f.read_bytes()[:-8] + bytes(8))


def _truncate(f: Path) -> None:
    f.write_bytes(f.read_bytes()[:40])


@pytest.mark.xfail(strict=True, reason="attack3: task arrays have no identity or checksum")
@pytest.mark.parametrize("damage", [_swap, _zero_tail, _truncate], ids=["other-task", "zeroed-tail", "truncated"])
def test_a_damaged_or_swapped_task_array_is_refused(stored, tmp_path, damage):
    path = tmp_path / "c.zarr"
    shutil.copytree(stored, path)
    damage(path / "_amsweep" / "couplings" / "0-0-0-0-0.npy")
    cube = Cube.open(str(path))
    assert not check(cube).ok
    with pytest.raises(CubeError):
        cube.couplings(TASK)
