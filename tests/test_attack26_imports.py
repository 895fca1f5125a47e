"""Attacks on issue 26's reading side (lazy imports, ``zarr_documents.StoredArray``): what ``amsweep
status``, ``query`` and ``check`` say about a cube whose root document is damaged or whose S3 store
cannot be reached. Each defect found is a test marked ``xfail(strict=True)`` until the product is
fixed (then it passes and the marker must go). The rule they hold the product to (DEVELOPERS.md):
bad input is one clear line (exit 2), never a traceback that calls itself a bug in amsweep.

Main before issue 26 (7abf3e9) failed these too (zarr's metadata parser raised instead of
``StoredArray``): they are older than issue 26, but issue 26 rewrote the code that raises.
One 16-task cube written in process (~1 s), each command run in process.
"""

from __future__ import annotations

import copy
import json
import socket
from pathlib import Path

import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.cell import run_cell
from amsweep.storage.cube import Cube
from amsweep.sweeps.cli import main
from tests.conftest import SMALL

BUG = "this is a bug in amsweep"


@pytest.fixture(scope="module")
def intact(tmp_path_factory) -> str:
    sweep = spec_mod.from_dict(copy.deepcopy(SMALL))
    path = str(tmp_path_factory.mktemp("attack26_imports") / "cube.zarr")
    with Cube.create_or_open(path, sweep) as c:
        c.write([run_cell(sweep.job(t)) for t in sweep.tasks()])
    return path


def damaged_entry(intact: str, tmp_path: Path, change) -> str:
    """A copy of the cube whose root document's ``m_train`` entry ``change`` has edited (JSON still valid)."""
    import shutil

    path = str(tmp_path / "damaged.zarr")
    shutil.copytree(intact, path)
    root = Path(path, "zarr.json")
    doc = json.loads(root.read_text())
    change(doc["consolidated_metadata"]["metadata"]["m_train"])
    root.write_text(json.dumps(doc))
    return path


def run(capsys, *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out + out.err


def test_an_intact_cube_reads_without_error(intact, capsys):
    """The control for the tests below: the same commands on the undamaged cube."""
    for argv in (("status", intact), ("query", intact, "--metric", "m_train", "--mean"), ("check", intact)):
        code, text = run(capsys, *argv)
        assert code == 0 and BUG not in text, (argv, text[-400:])


def test_query_of_a_damaged_fill_value_is_one_clear_error(intact, tmp_path, capsys):
    """Fixed (was a strict xfail): StoredArray.fill_value maps a string fill value through a dict ({'NaN':
    ...}[value]): a damaged root-document entry (fill_value 'garbage') is a KeyError traceback 'bug in amsweep'
    from query (main before issue 26: zarr's TypeError, the same traceback), not a one-line CubeError naming the
    array."""
    path = damaged_entry(intact, tmp_path, lambda m: m.update(fill_value="garbage"))
    code, text = run(capsys, "query", path, "--metric", "m_train", "--mean")
    assert code == 2 and BUG not in text and "m_train" in text, text[-600:]


@pytest.mark.parametrize(
    "change",
    [
        lambda m: m.pop("fill_value"),
        lambda m: m.update(codecs=[{"name": "bytes", "configuration": {"endian": "little"}}]),
    ],
    ids=["no_fill_value", "not_sharded"],
)
def test_query_and_check_of_a_damaged_array_entry_are_clear_errors(intact, tmp_path, capsys, change):
    """Fixed (was a strict xfail): StoredArray/shard_geometry index the root document's JSON directly: an
    m_train entry without 'fill_value' (or whose first codec is not sharding_indexed) is a KeyError traceback
    'bug in amsweep' from query, and `amsweep check`, the command meant to diagnose a damaged cube, crashes the
    same way."""
    path = damaged_entry(intact, tmp_path, change)
    for argv in (("query", path, "--metric", "m_train", "--mean"), ("check", path)):
        code, text = run(capsys, *argv)
        assert code != 0 and BUG not in text and "m_train" in text, (argv, text[-600:])


def test_status_of_an_unreachable_s3_store_is_one_clear_error(capsys, monkeypatch):
    """Fixed (was a strict xfail): An S3 endpoint that refuses connections (or no credentials) reaches `amsweep
    status` as a botocore/aiohttp traceback labelled 'bug in amsweep' (main before issue 26 too), not one line
    saying the store cannot be reached."""
    pytest.importorskip("s3fs")
    import s3fs

    with socket.socket() as s:  # a port nothing listens on: connections are refused at once
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for key, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
        "AWS_MAX_ATTEMPTS": "1",
        "AWS_RETRY_MODE": "standard",
    }.items():
        monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()
    try:
        code, text = run(capsys, "status", "s3://attack26/cube.zarr")
    finally:
        s3fs.S3FileSystem.clear_instance_cache()
    assert code == 2 and BUG not in text, text[-600:]


def test_check_reports_every_damaged_array_entry(intact, tmp_path, capsys):
    """`amsweep check` stopped at the first damaged entry of the root document (opening a cube stops
    there): three damaged entries are three problem lines, each naming its array and what is wrong."""
    import shutil

    path = str(tmp_path / "damaged3.zarr")
    shutil.copytree(intact, path)
    root = Path(path, "zarr.json")
    doc = json.loads(root.read_text())
    entries = doc["consolidated_metadata"]["metadata"]
    entries["m_train"].pop("fill_value")
    entries["m_test"]["codecs"] = [{"name": "bytes", "configuration": {"endian": "little"}}]
    entries["status"]["shape"] = "garbage"
    root.write_text(json.dumps(doc))
    code, text = run(capsys, "check", path)
    assert code == 1 and BUG not in text, text
    lines = text.splitlines()
    assert lines[0] == f"{path}: 3 problem(s)", text
    for name, why in (("m_train", "no fill_value"), ("m_test", "not sharded"), ("status", "shape 'garbage'")):
        assert sum(f"array {name!r}: " in line and why in line for line in lines) == 1, (name, text)
