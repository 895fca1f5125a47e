"""Cubes on object storage: the S3 protocol against moto's server on 127.0.0.1."""

from __future__ import annotations

import copy
import os
import subprocess
import sys

import pytest

from benchmarks._moto import moto_server
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import SerialExecutor
from amsweep.sweeps.runner import run
from amsweep.storage.cube import Cube, CubeError
from amsweep.storage.schema import DONE
from amsweep.storage.query import open_cube
from tests.conftest import assert_same_cube
from tests.conftest import StopAfter


@pytest.fixture(scope="module")
def s3_server():
    with moto_server(buckets=("cubes",)) as env:
        yield env


def test_interrupted_sweep_on_s3_resumes_to_the_local_result(tmp_path, small_sweep, s3_server):
    url = "s3://cubes/resume.zarr"
    first = run(Cube.create_or_open(url, small_sweep), StopAfter(3), progress=False, flush_every=1)
    assert first.interrupted and first.done == 3
    assert (Cube.open(url).status() == DONE).sum() == 3
    second = run(Cube.create_or_open(url, small_sweep), SerialExecutor(), progress=False)
    assert second.done == 5
    local = str(tmp_path / "local.zarr")
    run(Cube.create_or_open(local, small_sweep), SerialExecutor(), progress=False)
    assert_same_cube(url, local)
    assert float(open_cube(url)["m_train"].sel(rule="plm").max()) == 1.0


def test_another_spec_is_refused_on_s3(small_raw, s3_server):
    url = "s3://cubes/refuse.zarr"
    run(Cube.create_or_open(url, spec_mod.from_dict(small_raw)), SerialExecutor(), progress=False)
    other = copy.deepcopy(small_raw)
    other["root_seed"] = 99
    with pytest.raises(CubeError, match="root_seed: 11 -> 99"):
        Cube.create_or_open(url, spec_mod.from_dict(other))
    assert (Cube.open(url).status() == DONE).all()


def test_cli_on_s3(s3_server):
    env = {**os.environ, **s3_server}
    url = "s3://cubes/cli.zarr"

    def cli(*args: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-m", "amsweep.sweeps.cli", *args], env=env, text=True, capture_output=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    cli("run", "smoke", "--out", url, "--executor", "serial", "--quiet")
    assert "done 8, pending 0, failed 0" in cli("status", url)
    runs = cli("status", url, "--history")  # the run's record, written through S3's conditional PUTs
    assert "1 run(s)" in runs and " finished  done 8, failed 0" in runs, runs
    assert ": ok" in cli("check", url)
    table = cli("query", url, "--metric", "fixed_point_fraction", "--where", "rule=plm", "--mean")
    assert "fixed_point_fraction" in table and "1.0" in table


DATA_SPEC = """
name = "data_by_url"
root_seed = 6
seeds = 2
noise = [0.0, 0.2]
P_test = 10
[retrieval]
train_starts = 10
test_starts = 10
random_starts = 3
[datasets.proteins]
P = [20]
path = "{proteins}"
[datasets.mnist]
N = [196]
P = [20]
path = "{mnist}"
[rules.hebb]
"""


def test_datasets_read_from_s3_urls_give_the_local_files_cube(tmp_path, s3_server, monkeypatch):
    import s3fs

    from amsweep.pipeline.datasets import mnist, proteins

    monkeypatch.setenv("AMSWEEP_CACHE", str(tmp_path / "cache"))  # a fresh per-node copy of the URLs
    fs = s3fs.S3FileSystem()
    fs.mkdir("data")
    fs.put(str(proteins.BUNDLED), "data/pfam/family.a2m.gz")
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        fs.put(str(mnist.BUNDLED_DIR / name), f"data/mnist/{name}")
    by_url = tmp_path / "url.toml"
    by_url.write_text(DATA_SPEC.format(proteins="s3://data/pfam/family.a2m.gz", mnist="s3://data/mnist"))
    by_path = tmp_path / "path.toml"
    by_path.write_text(DATA_SPEC.format(proteins=proteins.BUNDLED, mnist=mnist.BUNDLED_DIR))
    cubes = []
    for spec in (by_url, by_path):
        path = str(tmp_path / f"{spec.stem}.zarr")
        report = run(Cube.create_or_open(path, spec_mod.load(spec)), SerialExecutor(), progress=False)
        assert report.done == 4 and report.failed == 0, report
        cubes.append(path)
    assert_same_cube(*cubes)
    assert list((tmp_path / "cache" / "remote").iterdir())  # the URLs were read through the cache


def test_a_missing_bucket_is_named_as_such(small_raw, s3_server, capsys):
    """Not "fix the permissions or the space": the bucket is missing, and the line says which (issue 23)."""
    import amsweep
    from amsweep.sweeps.cli import main

    url = "s3://no-such-bucket/c.zarr"
    assert main(["run", "smoke", "--out", url, "--executor", "serial", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "bucket 'no-such-bucket' does not exist" in err and "permissions" not in err, err
    for dry_run in (False, True):
        with pytest.raises(CubeError, match="bucket 'no-such-bucket' does not exist; create it") as info:
            amsweep.run(small_raw, out=url, executor="serial", dry_run=dry_run)
        assert "permissions" not in str(info.value)
