"""Attacks on issue 21's integrity claims (item 3) that the product does not withstand.

1. An older version of one of the cube's own data shards (a torn ``cp -r``/rsync of a live cube, a
   one-object restore from a backup or an S3 version, a stale replica): same cube id, same key,
   so its identity header is valid. A flush writes the whole shard, with NaN inner chunks for the
   shard's tasks still pending, so the old version holds *present* NaN chunks for the tasks done
   after it while the status shard says they are done; m_train is not declared ``always`` finite
   (metrics.py), so a present NaN is taken for a legitimate value. ``check`` says ok, ``query`` prints the
   selection without those rows (``--mean``'s n silently smaller) and the next run does not
   recompute them: the cube stays different from an uninterrupted run with no finding anywhere.
2. Staged garbage left by a kill during a committed restage's cleanup (second test).
3. A torn copy of a whole data block: check finds it, query prints without the rows (third test).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


from amsweep.pipeline.cell import run_cell
from amsweep.storage.check import check
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE

CLI = [sys.executable, "-m", "amsweep.sweeps.cli"]
SHARD = "m_train/c/0/0/0/0/0/0"


def _results(sweep):
    return [run_cell(sweep.job(t)) for t in sweep.tasks()]


def test_an_older_version_of_a_data_shard_is_found(tmp_path, small_sweep):
    url = str(tmp_path / "cube.zarr")
    results = _results(small_sweep)
    half = len(results) // 2
    with Cube.create_or_open(url, small_sweep) as cube:
        cube.write(results[:half])
    old = (Path(url) / SHARD).read_bytes()  # the shard as a copy taken now would hold it
    with Cube.open(url, mode="r+") as cube:
        cube.write(results[half:])
        assert (cube.status() == DONE).all()
    assert (Path(url) / SHARD).read_bytes() != old
    (Path(url) / SHARD).write_bytes(old)  # one object rolled back

    cube = Cube.open(url)
    assert (cube.status() == DONE).all()  # the status shard still says every task is done
    report = check(cube)
    assert not report.ok, "check: ok, though m_train of the tasks done after the old shard is gone"

    out = subprocess.run([*CLI, "query", url, "--metric", "m_train"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, f"query printed {len(out.stdout.splitlines())} rows and exited 0"


def test_a_kill_while_a_committed_restage_removes_its_stage_leaves_no_garbage(tmp_path, small_raw):
    """2. A mid-axis extension killed after its commit, while it removes the staged copy
    (``restage.finish``: READY deleted first, then each staged object): the next ``run`` says
    nothing to do, ``check`` says ok, ``check --repair`` removes nothing, and the staged copy
    (a full second copy of the cube, 43 objects / 1 MB for a 96-task cube) stays under
    ``_amsweep/stage/`` until some later restage happens to clear it. Expected: the next run or
    ``check --repair`` removes it (or ``check`` names it)."""
    import copy

    from amsweep.pipeline import spec as spec_mod
    from tests.test_cube_crash import killed_at_write, serial, written_keys

    before = spec_mod.from_dict(small_raw)
    grown_raw = copy.deepcopy(small_raw)
    grown_raw["datasets"]["random"]["alpha"] = [0.05, 0.1, 0.3]  # 0.1 lands mid-axis: a restage
    grown = spec_mod.from_dict(grown_raw)
    url = str(tmp_path / "cube.zarr")

    def setup() -> None:
        import shutil

        shutil.rmtree(url, ignore_errors=True)
        serial(url, before)

    keys = written_keys(None, lambda: serial(url, grown), setup)
    cleanup = [i for i, k in enumerate(keys) if k.startswith("_amsweep/stage/") and i > keys.index("zarr.json")]
    assert cleanup, "no staged object removed after the commit"
    k = cleanup[len(cleanup) // 2] + 1  # killed halfway through removing the staged copy
    assert killed_at_write(k, lambda: serial(url, grown), setup) == -9
    serial(url, grown)  # the next run: finds nothing to do
    out = subprocess.run([*CLI, "check", "--repair", url], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    left = [p for p in (Path(url) / "_amsweep" / "stage").rglob("*") if p.is_file()]
    assert not left, f"{len(left)} staged object(s) left after the run and check --repair, e.g. {left[0]}"


def test_a_torn_copy_of_a_data_block_makes_query_refuse(tmp_path, small_sweep):
    """3. The torn-copy version of 1: every data shard of the block is the older one (status newer).
    ``check`` finds it (the always-finite metrics are NaN), but ``query --metric m_train`` (and
    ``--mean``) answers with exit 0, the tasks done after the old shards dropped from its rows
    without a note: it only looks at the queried metric, and m_train may legitimately be NaN."""
    import shutil

    url = str(tmp_path / "cube.zarr")
    results = _results(small_sweep)
    half = len(results) // 2
    with Cube.create_or_open(url, small_sweep) as cube:
        cube.write(results[:half])
    old = tmp_path / "old.zarr"
    shutil.copytree(url, old)  # a copy taken while the driver was half way
    with Cube.open(url, mode="r+") as cube:
        cube.write(results[half:])
    for p in old.rglob("*"):
        rel = p.relative_to(old)
        if p.is_file() and "/c/" in f"/{rel}" and rel.parts[0] not in ("status", "_amsweep") and len(rel.parts) > 4:
            shutil.copy(p, Path(url) / rel)  # every data shard as the copy had it; status as now

    cube = Cube.open(url)
    assert (cube.status() == DONE).all()
    assert not check(cube).ok  # check finds it
    out = subprocess.run([*CLI, "query", url, "--metric", "m_train"], capture_output=True, text=True, timeout=300)
    assert out.returncode == 2, f"query printed {len(out.stdout.splitlines())} rows and exited 0"
