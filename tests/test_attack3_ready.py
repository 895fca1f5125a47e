"""Adversarial pass 3 on ``storage/restage.py`` ``read_ready``/``unfinishable``/``settle`` and
``amsweep check --repair``: a READY that cannot be trusted must never be swapped in, and nothing
finished may be lost (the cube stays as last committed: 6 done tasks of SMALL_BASE).

Held (attack3 at 16f1e2d): an intact READY is finished; a staged status shard whose first byte is
damaged is swapped in and its status rebuilt from the data (6 done); a damaged staged array
document is swapped in and rewritten from the root document (6 done).

Found, strict xfails:
- A READY whose staged copy is complete but one staged metric shard is damaged (a flipped byte,
  not missing) is finished by ``check --repair``: the damaged shard replaces the cube's good one,
  then repair sets all 6 done tasks back to pending (every metric of them lost, to recompute).
  ``unfinishable`` checks only that the listed objects exist and the status shards' cube id; it
  does not decode (checksum) the staged shards before the point of no return.
- A READY that is valid JSON but lists no staged objects (no ``staged`` key: ``ready.get("staged",
  [])``), over a stage that is gone, is "finishable": ``finish`` deletes every shard of the cube
  (the new layout has none) and commits; all 6 done tasks lost, check then says "ok".
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from amsweep.storage import restage
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE
from amsweep.sweeps.cli import main
from tests.test_attack2_ready import _staged

DONE_BEFORE = 6  # SMALL_BASE: 1 N x 3 loads x 2 seeds, all done before the restage was staged


def _flip(path: Path, byte: int | None = None) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2 if byte is None else byte] ^= 0xFF
    path.write_bytes(bytes(data))


def _repaired_done(path: Path, capsys) -> int:
    assert main(["check", "--repair", str(path)]) == 0, capsys.readouterr().err[-600:]
    return int((Cube.open(str(path)).status() == DONE).sum())


@pytest.mark.parametrize("damage", ["status/c/0/0/0/0/0", "m_train/zarr.json"])
def test_a_damaged_staged_status_shard_or_document_loses_nothing(tmp_path, capsys, damage):
    path = _staged(tmp_path)
    _flip(path / restage.STAGE / damage, 0)
    assert _repaired_done(path, capsys) == DONE_BEFORE


def test_a_ready_whose_staged_shard_is_damaged_loses_no_finished_task(tmp_path, capsys):
    path = _staged(tmp_path)
    _flip(path / restage.STAGE / "m_train/c/0/0/0/0/0/0")
    assert _repaired_done(path, capsys) == DONE_BEFORE


def test_a_ready_listing_no_staged_copy_is_not_finished_over_the_cube(tmp_path, capsys):
    path = _staged(tmp_path)
    ready = json.loads((path / restage.READY).read_bytes())
    del ready["staged"]
    for key in (path / restage.STAGE).rglob("*"):
        if key.is_file() and key != path / restage.READY:
            key.unlink()
    (path / restage.READY).write_text(json.dumps(ready))
    assert _repaired_done(path, capsys) == DONE_BEFORE
