"""attack26b (helper attackq): ``amsweep check`` on a cube whose root document has damaged array
entries (storage/check.py ``damaged_entries``, this session's change to sweeps/cli.py cmd_check).

``Cube.open`` stops at the first damaged entry (a ``DamagedArray``); ``cmd_check`` now walks every
entry again to list them all, calling ``zarr_documents.shard_geometry`` on each variable. An entry
whose only damage is one that zarr-python detects (an unknown ``data_type``) raises zarr's
ValueError there, not ``DamagedArray``: the one-line report ec2a2d0 printed became a traceback
and "this is a bug in amsweep". Fixed in ``shard_geometry``: zarr's refusal is a ``DamagedArray``, one
report line, also where that entry is the only damage (ec2a2d0 crashed there too, in ``check``'s read)."""

from __future__ import annotations

import json
from pathlib import Path


from amsweep.pipeline import spec as spec_mod
from amsweep.storage.cube import Cube
from amsweep.sweeps.cli import main

RAW = {
    "name": "tiny",
    "root_seed": 1,
    "seeds": 1,
    "noise": [0.0],
    "P_test": 2,
    "retrieval": {"train_starts": 2, "test_starts": 2, "random_starts": 1},
    "datasets": {"random": {"N": [16], "alpha": [0.125]}},
    "rules": {"hebb": {}},
}


def test_check_reports_damaged_entries_in_one_line_each(tmp_path, capsys) -> None:
    path = str(tmp_path / "c.zarr")
    with Cube.create_or_open(path, spec_mod.from_dict(RAW)):
        pass
    root = Path(path, "zarr.json")
    doc = json.loads(root.read_text())
    entries = doc["consolidated_metadata"]["metadata"]
    entries["m_train"] = "not an entry"  # Cube.open: DamagedArray (its entry is not a JSON object)
    entries["m_test"]["data_type"] = "nonsense"  # only zarr-python's metadata parser refuses this one
    root.write_text(json.dumps(doc))
    code = main(["check", path])
    got = capsys.readouterr()
    assert "bug in amsweep" not in got.err, got.err[-600:]
    assert code == 1
    assert "problem(s)" in got.out and "m_train" in got.out
    assert "2 problem(s)" in got.out and "'m_test': zarr-python cannot read it" in got.out


def test_check_reports_an_unknown_data_type_alone_in_one_line(tmp_path, capsys) -> None:
    path = str(tmp_path / "c.zarr")
    with Cube.create_or_open(path, spec_mod.from_dict(RAW)):
        pass
    root = Path(path, "zarr.json")
    doc = json.loads(root.read_text())
    doc["consolidated_metadata"]["metadata"]["m_test"]["data_type"] = "nonsense"
    root.write_text(json.dumps(doc))
    code = main(["check", path])
    got = capsys.readouterr()
    assert "bug in amsweep" not in got.err, got.err[-600:]
    assert code == 1
    assert "1 problem(s)" in got.out and "'m_test': zarr-python cannot read it" in got.out
