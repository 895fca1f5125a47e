"""attack26b (helper attackq): ``amsweep query`` without xarray/pandas against the ec2a2d0 query.

Where the seeds' values nearly cancel, ec2a2d0's pandas (float32 Kahan sum, rows not in group order:
seed before noise) gave a mean of exactly 0.0; the float64 seed statistics (``storage.table.mean_sem_count``,
commit 6d6cff2, shared with ``analysis.tables.seed_stats``) give -6.2e-10, the float32 of the exact mean,
on purpose (found on a real cube: m_test of plm[lr=0.1,epochs=10,symmetric=True] at noise 0.3, N = 24;
the three values are copied here). The other tests are defects the attack found, fixed: labels printed in
full, ``--csv`` with a ``~`` the shell left alone, ``--csv`` compressed by its extension.
"""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.metric_table import METRICS
from amsweep.pipeline.outcomes import CellResult
from amsweep.storage.cube import Cube
from amsweep.sweeps.cli import main

# m_test of three seeds of one (rule, noise) cell of a real cube (written by ec2a2d0's amsweep run)
CANCELLING = (-0.027777776, -0.027777778, 0.055555552)


def _cube(path: str) -> str:
    raw = {
        "name": "cancel",
        "root_seed": 1,
        "seeds": 3,
        "noise": [0.0, 0.1],  # rows (alpha, seed, noise): a group's rows are not contiguous
        "P_test": 2,
        "retrieval": {"train_starts": 2, "test_starts": 2, "random_starts": 1},
        "datasets": {"random": {"N": [16], "alpha": [0.125, 0.25]}},
        "rules": {"hebb": {}},
    }
    sweep = spec_mod.from_dict(raw)
    results = []
    for t in sweep.tasks():
        seed = t.index[-1]
        values = {}
        for name, m in METRICS.items():
            x = CANCELLING[seed] if name == "m_train" else 0.5
            values[name] = np.full(2, x, np.float32) if m.per_noise else np.float32(x)
        results.append(CellResult(t.index, values))
    with Cube.create_or_open(path, sweep) as c:
        c.write(results)
    return path


def test_mean_of_cancelling_seeds_is_the_float32_of_the_exact_mean(tmp_path, capsys) -> None:
    cube = _cube(str(tmp_path / "cancel.zarr"))
    exact = math.fsum(float(np.float32(v)) for v in CANCELLING) / len(CANCELLING)
    expected = np.float32(exact)
    assert expected != 0  # ec2a2d0's pandas printed 0.0 here
    assert main(["query", cube, "--metric", "m_train", "--mean"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["alpha", "noise", "P", "m_train", "n"]
    assert [line.split()[3] for line in lines[1:]] == [f"{float(expected):.6e}"] * 4
    out = tmp_path / "mean.csv"
    assert main(["query", cube, "--metric", "m_train", "--mean", "--csv", str(out)]) == 0
    capsys.readouterr()
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 4
    assert all(np.float32(r["m_train"]) == expected and r["n"] == "3" for r in rows)


def test_csv_path_with_a_tilde_is_written_in_home(tmp_path, monkeypatch, capsys) -> None:
    cube = _cube(str(tmp_path / "cancel.zarr"))
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    code = main(["query", cube, "--metric", "m_train", "--csv=~/table.csv"])
    got = capsys.readouterr()
    assert code == 0, got.err[-400:]
    assert (home / "table.csv").read_text().startswith("dataset,N,alpha,rule,seed,noise,")


def test_csv_with_a_gz_extension_is_gzip(tmp_path, capsys) -> None:
    import gzip

    cube = _cube(str(tmp_path / "cancel.zarr"))
    out = tmp_path / "table.csv.gz"
    assert main(["query", cube, "--metric", "m_train", "--csv", str(out)]) == 0
    capsys.readouterr()
    assert out.read_bytes()[:2] == b"\x1f\x8b"  # gzip's magic number
    assert gzip.decompress(out.read_bytes()).decode().startswith("dataset,N,alpha,rule,seed,noise,")


LONG_RULE = "hebb_" + "with_a_long_name_" * 4  # 73 characters: variant labels of several parameters are as long


def test_long_labels_are_printed_in_full(tmp_path, capsys) -> None:
    raw = {
        "name": "long",
        "root_seed": 1,
        "seeds": 1,
        "noise": [0.0],
        "P_test": 2,
        "retrieval": {"train_starts": 2, "test_starts": 2, "random_starts": 1},
        "datasets": {"random": {"N": [16], "alpha": [0.125]}},
        "rules": {"hebb": {}, LONG_RULE: {"kind": "hebb"}},
    }
    sweep = spec_mod.from_dict(raw)
    results = [
        CellResult(
            t.index,
            {n: np.full(1, 0.5, np.float32) if m.per_noise else np.float32(0.5) for n, m in METRICS.items()},
        )
        for t in sweep.tasks()
    ]
    path = str(tmp_path / "long.zarr")
    with Cube.create_or_open(path, sweep) as c:
        c.write(results)
    assert main(["query", path, "--metric", "m_train"]) == 0
    assert LONG_RULE in capsys.readouterr().out


def test_csv_compressions_read_back_as_pandas_wrote_them(tmp_path, capsys) -> None:
    """bz2, xz and zip as pandas' ``to_csv`` wrote them (ec2a2d0): ``read_csv`` infers each from the
    extension, and a zip holds one member named as pandas named it (the file's name less ``.zip``)."""
    import zipfile

    import pandas as pd

    cube = _cube(str(tmp_path / "cancel.zarr"))
    plain = tmp_path / "table.csv"
    assert main(["query", cube, "--metric", "m_train", "--csv", str(plain)]) == 0
    for name in ("table.csv.bz2", "table.csv.xz", "table.csv.zip", "TABLE.CSV.GZ"):
        out = tmp_path / name
        assert main(["query", cube, "--metric", "m_train", "--csv", str(out)]) == 0
        read = pd.read_csv(out)  # compression inferred from the extension, case-insensitive
        pd.testing.assert_frame_equal(read, pd.read_csv(plain))
    capsys.readouterr()
    pandas_zip = tmp_path / "pandas.csv.zip"
    pd.DataFrame({"a": [1]}).to_csv(pandas_zip, index=False)
    with zipfile.ZipFile(pandas_zip) as z:
        assert z.namelist() == ["pandas.csv"]
    with zipfile.ZipFile(tmp_path / "table.csv.zip") as z:
        assert z.namelist() == ["table.csv"]
        assert z.read("table.csv") == plain.read_bytes()


@pytest.mark.parametrize("name", ["t.csv.zst", "t.csv.tar.gz", "t.tar"])
def test_csv_compression_the_standard_library_lacks_is_refused_before_reading(tmp_path, capsys, name) -> None:
    # the cube does not exist: the extension is refused first, in one line, and nothing is written
    assert main(["query", str(tmp_path / "absent.zarr"), "--metric", "m_train", "--csv", str(tmp_path / name)]) != 0
    err = capsys.readouterr().err
    assert "cannot compress" in err and ".gz, .bz2, .zip, .xz" in err and "absent.zarr" not in err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / name).exists()
