"""Attack on "query must never print a wrong number silently": ``--where`` given twice.

``amsweep query CUBE --metric m_train --where seed=0 --where alpha=0.05`` answers for
alpha = 0.05 and *every* seed: argparse keeps only the last ``--where`` (action "store"), so the
first condition is dropped without a word and the rows (and ``--mean``'s means) cover a wider
selection than asked. Expected: the conditions combine (as ``seed=0,alpha=0.05`` does), or the
second ``--where`` is refused with one line (exit 2).
"""

from __future__ import annotations

import subprocess
import sys

from amsweep.pipeline.cell import run_cell
from amsweep.storage.cube import Cube

CLI = [sys.executable, "-m", "amsweep.sweeps.cli"]


def test_a_repeated_where_is_not_silently_dropped(tmp_path, small_sweep):
    url = str(tmp_path / "cube.zarr")
    with Cube.create_or_open(url, small_sweep) as cube:
        cube.write([run_cell(small_sweep.job(t)) for t in small_sweep.tasks()])

    def rows(*where: str) -> tuple[int, str]:
        out = subprocess.run(
            [*CLI, "query", url, "--metric", "m_train", *where], capture_output=True, text=True, timeout=300
        )
        return out.returncode, out.stdout

    rc, both = rows("--where", "seed=0,alpha=0.05")
    assert rc == 0
    rc, twice = rows("--where", "seed=0", "--where", "alpha=0.05")
    assert rc == 2 or twice == both, f"--where given twice answered a different selection:\n{twice}\nversus\n{both}"
