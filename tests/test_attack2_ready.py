"""Adversarial pass 2 (issue 21): a restage's READY marker, damaged or left by a stale driver.

Found by the attack (attack2 at 422e4eb), strict xfails for the lead to fix:

- A READY that is not valid JSON, or lacks its ``root``: ``status``/``check``/``query`` say "run the
  same `amsweep run` again to finish it", and ``run`` and ``upgrade`` then end in a traceback
  (JSONDecodeError / KeyError 'root') with "this is a bug in amsweep"; ``check --repair`` refuses
  too, so no command gets the cube back (storage/restage.py ``resume``/``finish``, storage/upgrade.py
  ``upgrade``: ``json.loads`` of READY unguarded).
- On S3 (moto), a driver frozen at its READY put (inside the conditional PUT, after its proof) and
  taken over: the new holder finishes the same extension and removes its stage; the frozen driver's
  create-if-absent of READY then lands (READY is absent again). The finished cube is then refused by
  ``status``, ``check``, ``query`` and ``check --repair`` ("run again to finish it"), while ``run``
  says "READY lists 80 staged object(s) that are missing ... remove READY by hand" (on S3: with
  another tool). No data are lost, but nothing in amsweep gets the cube back. The test below makes
  the same state on local disk (READY of a finished restage written back).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from amsweep.pipeline.errors import CubeError
from amsweep.pipeline.executors import SerialExecutor
from amsweep.storage import restage, upgrade
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE
from amsweep.storage.objects import objects_at
from amsweep.sweeps.cli import main
from amsweep.sweeps.runner import run
from tests.conftest import assert_same_cube
from tests.test_axis_order import SMALL_BASE, small_grown, sweep


def _staged(tmp_path: Path) -> Path:
    """A finished cube of SMALL_BASE with a verified restage to small_grown() staged (READY written)."""
    path = tmp_path / "cube.zarr"
    run(Cube.create_or_open(str(path), sweep(SMALL_BASE)), SerialExecutor(), progress=False)
    cube = Cube.open(str(path))
    cube.acquire()
    restage.restage(cube, sweep(small_grown()), {})
    cube.release()
    return path


@pytest.mark.parametrize("damage", [lambda b: b[:50], lambda b: b"{}"], ids=["truncated", "empty-object"])
def test_a_damaged_ready_is_a_one_line_error_for_run_and_upgrade(tmp_path, damage):
    path = _staged(tmp_path)
    ready = path / restage.READY
    ready.write_bytes(damage(ready.read_bytes()))
    with pytest.raises(CubeError):
        Cube.create_or_open(str(path), sweep(small_grown()))
    with pytest.raises(CubeError):
        upgrade.upgrade(str(path))


def test_check_repair_recovers_a_finished_cube_from_a_stale_ready(tmp_path, capsys):
    path = _staged(tmp_path)
    stale = (path / restage.READY).read_bytes()
    restage.resume(str(path), objects_at(str(path)))  # the new holder finishes the same extension
    assert not (path / restage.READY).exists()
    finished = tmp_path / "finished.zarr"
    shutil.copytree(path, finished)
    (path / restage.READY).parent.mkdir(parents=True, exist_ok=True)
    (path / restage.READY).write_bytes(stale)  # the frozen driver's late create-if-absent lands
    assert main(["check", "--repair", str(path)]) == 0, capsys.readouterr().err
    cube = Cube.open(str(path))
    assert (cube.status() == DONE).sum() == (Cube.open(str(finished)).status() == DONE).sum() > 0
    assert_same_cube(str(path), str(finished))


def test_a_ready_over_another_restages_staged_copy_loses_no_finished_work(tmp_path, capsys):
    """On S3 (moto, reproduced with three drivers): A (extension adding alpha 0.1) freezes at its
    READY put; B takes over with another extension (adding 0.15 instead: the same positions, so the
    same staged keys), stages it and dies before its READY; A's READY then lands over B's staged
    copy. The next run finishes A's READY with B's objects: every shard names B's cube id under
    A's root, so every done task is lost (check: unreadable shards, a missing status shard;
    --repair sets them all pending), and the run that did it says "nothing was changed".
    Here the same state on local disk: READY of one restage over the staged copy of another."""
    import copy

    path = _staged(tmp_path)  # stage (and READY) for small_grown(): alpha gains 0.1
    ready_a = (path / restage.READY).read_bytes()
    other = copy.deepcopy(small_grown())
    other["datasets"]["random"]["alpha"] = [0.05, 0.15, 0.2, 0.4]  # 0.15 instead of 0.1: the same keys
    (path / restage.READY).unlink()
    before = tmp_path / "before.zarr"
    shutil.copytree(path, before, ignore=shutil.ignore_patterns("stage"))
    cube = Cube.open(str(path))
    cube.acquire()
    restage.restage(cube, sweep(other), {})  # B stages its extension ...
    cube.release()
    (path / restage.READY).write_bytes(ready_a)  # ... and A's late READY replaces B's (B never swaps)
    done_before = Cube.open(str(before)).status() == DONE
    try:
        cube = Cube.create_or_open(str(path), sweep(small_grown()))  # the next run of A's spec
        cube.release()
    except CubeError:
        pass  # refusing is fine, as long as nothing was lost
    assert not (path / restage.READY).exists() or main(["check", str(path)]) != 0
    after = Cube.open(str(before if (path / restage.READY).exists() else path))
    from amsweep.storage.check import check

    assert check(after).ok
    assert (after.status() == DONE).sum() >= done_before.sum() > 0
