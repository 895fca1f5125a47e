"""Attacks on issue 21's integrity claims (item 3) that the product does not withstand.

1. An older version of one of the cube's own data shards (a torn ``cp -r``/rsync of a live cube, a
   one-object restore from a backup or an S3 version, a stale replica): same cube id, same key,
   so its identity header is valid. A flush writes the whole shard, with NaN inner chunks for the
   shard's tasks still pending, so the old version holds *present* NaN chunks for the tasks done
   after it while the status shard says they are done; m_train is not declared ``always`` finite
   (metrics.py), so a present NaN is taken for a legitimate value. ``check`` says ok, ``query`` prints the
   selection without those rows (``--mean``'s n silently smaller) and the next run does not
   recompute them: the cube stays different from an uninterrupted run with no finding anywhere.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


from amsweep.pipeline.cell import run_cell
from amsweep.storage.check import check
from amsweep.storage.cube import Cube
from amsweep.storage.layout import DONE

CLI = [sys.executable, "-m", "amsweep.pipeline.cli"]
SHARD = "m_train/c/0/0/0/0/0/0"


def _results(sweep):
    return [run_cell(t, sweep.noise, sweep.retrieval, sweep.root_seed) for t in sweep.tasks()]


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
