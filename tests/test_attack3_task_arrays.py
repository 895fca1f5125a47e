"""Adversarial pass 3: a cube's per-task arrays (``_amsweep/couplings/*.npy``, ``magnetisations``)
damaged or swapped must be refused, never read as the task's values (the shards carry an identity
header and checksums; these objects carried neither).

Found (attack3 at 16f1e2d), fixed by the identity header of storage/task_arrays.py: the couplings
file of another task copied over a task's key, or the file's last 8 bytes zeroed, was returned by
``Cube.couplings`` as that task's couplings (other values, no error), and ``amsweep check`` said
"ok"; a truncated file was a ValueError from ``np.load`` and check still said "ok". The same held
for a restage: a damaged staged ``.npy`` under a good READY was swapped in by ``check --repair``
(the staged arrays are now headed for the new cube id, so ``check`` after the swap names it).
"""

from __future__ import annotations

import copy
import io
import shutil
from pathlib import Path

import numpy as np
import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.errors import CubeError
from amsweep.pipeline.executors import SerialExecutor
from amsweep.storage.check import check, repair
from amsweep.storage.cube import Cube
from amsweep.storage.schema import PENDING
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


@pytest.mark.parametrize("damage", [_swap, _zero_tail, _truncate], ids=["other-task", "zeroed-tail", "truncated"])
def test_a_damaged_or_swapped_task_array_is_refused(stored, tmp_path, damage):
    path = tmp_path / "c.zarr"
    shutil.copytree(stored, path)
    damage(path / "_amsweep" / "couplings" / "0-0-0-0-0.npy")
    cube = Cube.open(str(path))
    assert not check(cube).ok
    with pytest.raises(CubeError):
        cube.couplings(TASK)


def test_repair_removes_a_swapped_task_array_and_the_next_run_writes_it_again(stored, tmp_path):
    path = tmp_path / "c.zarr"
    shutil.copytree(stored, path)
    want = Cube.open(str(stored)).couplings(TASK)
    _swap(path / "_amsweep" / "couplings" / "0-0-0-0-0.npy")
    report = check(Cube.open(str(path)))
    assert [p for p in report.problems if "couplings" in p and "0-0-0-0-1" in p]  # names whose file it holds
    with Cube.open(str(path), mode="r+") as cube:
        repair(cube, report)
    assert Cube.open(str(path)).status()[TASK] == PENDING
    assert not (path / "_amsweep" / "couplings" / "0-0-0-0-0.npy").exists()
    assert check(Cube.open(str(path))).ok
    run(Cube.create_or_open(str(path), spec_mod.from_dict(copy.deepcopy(RAW))), SerialExecutor(), progress=False)
    np.testing.assert_array_equal(Cube.open(str(path)).couplings(TASK), want)  # recomputed, bit for bit


def test_a_task_array_written_before_the_identity_header_is_still_read(stored, tmp_path):
    path = tmp_path / "c.zarr"
    shutil.copytree(stored, path)
    want = Cube.open(str(stored)).couplings(TASK)
    buf = io.BytesIO()
    np.save(buf, want, allow_pickle=False)
    (path / "_amsweep" / "couplings" / "0-0-0-0-0.npy").write_bytes(buf.getvalue())  # plain .npy: unverifiable
    cube = Cube.open(str(path))
    assert check(cube).ok
    np.testing.assert_array_equal(cube.couplings(TASK), want)


def test_a_restage_refuses_a_damaged_task_array_and_changes_nothing(stored, tmp_path):
    path = tmp_path / "c.zarr"
    shutil.copytree(stored, path)
    _zero_tail(path / "_amsweep" / "couplings" / "0-0-0-0-0.npy")
    raw = copy.deepcopy(RAW)
    raw["datasets"]["random"]["alpha"] = [0.05, 0.1]  # a value inserted before: the cube is restaged
    with pytest.raises(CubeError, match="couplings"):
        Cube.create_or_open(str(path), spec_mod.from_dict(raw))
    cube = Cube.open(str(path))
    assert cube.sweep.spec_hash == spec_mod.from_dict(copy.deepcopy(RAW)).spec_hash
    np.testing.assert_array_equal(cube.couplings(OTHER), Cube.open(str(stored)).couplings(OTHER))
