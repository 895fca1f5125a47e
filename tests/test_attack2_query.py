"""Adversarial pass 2 (issue 21, "queries that cannot mislead"): a status shard and the queried
metric's shard both unreadable (truncated; or foreign, as a READY finished over another restage's
staged copy leaves them, see test_attack2_ready.py). ``check`` reports the damage, the backend
refuses to read the status, yet ``amsweep query`` prints an empty table and exits 0, with and
without ``--mean`` (attack2 at 422e4eb). With only the status shard damaged, query refuses (the
data show the tasks were done); with the data gone too, nothing says the tasks were ever done,
but the status being unreadable should be enough to refuse (storage/query.py integrity)."""

from __future__ import annotations

import pytest

from amsweep.pipeline.executors import SerialExecutor
from amsweep.storage.cube import Cube
from amsweep.sweeps.cli import main
from amsweep.sweeps.runner import run
from tests.test_axis_order import SMALL_BASE, sweep


@pytest.mark.parametrize("extra", [[], ["--mean"]], ids=["values", "mean"])
def test_query_refuses_a_selection_whose_status_is_unreadable(tmp_path, capsys, extra):
    path = tmp_path / "cube.zarr"
    run(Cube.create_or_open(str(path), sweep(SMALL_BASE)), SerialExecutor(), progress=False)
    for variable in ("status", "m_train"):
        for shard in (p for p in (path / variable / "c").rglob("*") if p.is_file()):
            shard.write_bytes(shard.read_bytes()[:100])
    assert main(["check", str(path)]) == 1
    capsys.readouterr()
    assert main(["query", str(path), "--metric", "m_train", *extra]) == 2, capsys.readouterr().out


def test_status_warns_that_an_unreadable_status_shard_counts_as_pending(tmp_path, capsys):
    """``status`` used to report "done 0, pending 6" without a word when the status shard was
    unreadable (found by attack 2): the counts are right as far as they go, but the reader must
    be told they are not the cube's."""
    path = tmp_path / "cube.zarr"
    run(Cube.create_or_open(str(path), sweep(SMALL_BASE)), SerialExecutor(), progress=False)
    main(["status", str(path)])
    assert "warning" not in capsys.readouterr().out
    for shard in (p for p in (path / "status" / "c").rglob("*") if p.is_file()):
        shard.write_bytes(shard.read_bytes()[:100])
    main(["status", str(path)])
    out = capsys.readouterr().out
    assert "warning: the status of" in out and "check --repair" in out, out
