"""Attack (issue 21, claim 1) on S3: a driver frozen inside the swap phase of a mid-axis extension
(restage ``finish``), just as it deletes an old object, is taken over; the new holder finishes the
extension and the whole sweep; the frozen one resumes.

Its one pending delete is fenced only by ``Lease.confirm`` (a proof only when the heartbeat is
overdue, and it was not when the process froze), so it lands after the takeover and removes an
object of the *new* holder's finished cube: with PAUSE_KEY = a data shard, every done task's
``m_train`` is lost (check: 96 problems; query refuses). Expected: the stale driver writes (and
deletes) nothing after the takeover, and the cube equals an uninterrupted run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from amsweep.storage.check import check
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE
from benchmarks._moto import moto_server
from tests.conftest import assert_same_cube
from tests.test_fencing import SPEC, _state

ROOT = Path(__file__).resolve().parents[1]
SPEC2 = SPEC.replace("alpha = [0.05, 0.1, 0.3]", "alpha = [0.05, 0.1, 0.2, 0.3]")  # 0.2 lands mid-axis

# `amsweep run` that freezes itself (SIGSTOP) on the first store delete whose key contains PAUSE_KEY
PAUSER = r"""
import os, signal, sys
from amsweep.pipeline import cli
from amsweep.storage import objects
real = objects.FsspecObjects.delete
def paused(self, key):
    if os.environ["PAUSE_KEY"] in key and not getattr(paused, "done", False):
        paused.done = True
        os.kill(os.getpid(), signal.SIGSTOP)
    return real(self, key)
objects.FsspecObjects.delete = paused
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def s3_server():
    with moto_server(buckets=("attack",)) as env:
        yield env


def _args(spec: Path, url: str) -> list[str]:
    return ["run", str(spec), "--out", url, "--executor", "serial", "--quiet"]


_S3_DELETES = pytest.mark.xfail(
    strict=True,
    reason="known, open (issue 21): S3 has no conditional delete, so a delete of a driver frozen "
    "after its last lease proof lands after a takeover; restage's swap and repair's shard removal "
    "must overwrite (conditionally) instead of delete on S3",
)


@_S3_DELETES
@pytest.mark.parametrize("pause_key", ["m_train/c/", "status/c/", "N/zarr.json"])
def test_s3_a_driver_frozen_in_a_restage_swap_deletes_nothing_after_a_takeover(s3_server, tmp_path, pause_key):
    env = {**os.environ, "AMSWEEP_LEASE_STALE_SECONDS": "3", "PAUSE_KEY": pause_key}
    spec1, spec2 = tmp_path / "one.toml", tmp_path / "two.toml"
    spec1.write_text(SPEC)
    spec2.write_text(SPEC2)
    url = f"s3://attack/{uuid.uuid4().hex[:8]}.zarr"
    cli = [sys.executable, "-m", "amsweep.pipeline.cli"]
    subprocess.run([*cli, *_args(spec1, url)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    a = subprocess.Popen(
        [sys.executable, "-c", PAUSER, *_args(spec2, url)],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    while _state(a.pid) != "T":
        assert a.poll() is None, f"driver A ended before freezing: {a.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    deadline = time.monotonic() + 120
    while True:
        b = subprocess.run([*cli, *_args(spec2, url)], cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
        if "is in use by another driver" not in b.stderr or time.monotonic() > deadline:
            break
        time.sleep(1.0)
    assert b.returncode == 0, b.stderr
    os.kill(a.pid, signal.SIGCONT)
    _, err = a.communicate(timeout=180)
    assert a.returncode != 0 and len(err.strip().splitlines()) == 1, err

    reference = str(tmp_path / "reference.zarr")
    subprocess.run([*cli, *_args(spec2, reference)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    cube = Cube.open(url)
    assert (cube.status() == DONE).all()
    report = check(cube)
    assert report.ok, report
    assert_same_cube(url, reference)


@_S3_DELETES
def test_s3_a_repair_frozen_before_removing_an_unreadable_shard_removes_nothing_after_a_takeover(s3_server, tmp_path):
    """The same unconditional delete from ``check --repair``: repair A freezes just before it removes
    an unreadable shard; the operator runs ``check --repair`` again (B takes the stale lease,
    removes the shard, sets its tasks pending) and ``run`` (C recomputes them and writes the shard
    afresh); A resumes, exits 2 with one line, but its delete lands first: C's shard is gone and
    72 done tasks have no m_train."""
    import s3fs

    env = {**os.environ, "AMSWEEP_LEASE_STALE_SECONDS": "3", "PAUSE_KEY": "m_train/c/"}
    spec = tmp_path / "one.toml"
    spec.write_text(SPEC)
    name = uuid.uuid4().hex[:8]
    url = f"s3://attack/{name}.zarr"
    cli = [sys.executable, "-m", "amsweep.pipeline.cli"]
    subprocess.run([*cli, *_args(spec, url)], cwd=ROOT, env=env, check=True, capture_output=True, timeout=300)
    fs = s3fs.S3FileSystem()
    shard = f"attack/{name}.zarr/m_train/c/0/0/0/0/0/0"
    fs.pipe(shard, fs.cat(shard)[:100])  # truncated: unreadable, so repair removes it
    a = subprocess.Popen(
        [sys.executable, "-c", PAUSER, "check", "--repair", url],
        cwd=ROOT,
        env=env,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    while _state(a.pid) != "T":
        assert a.poll() is None, f"repair A ended before freezing: {a.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    time.sleep(4.0)  # past the stale timeout
    b = subprocess.run([*cli, "check", "--repair", url], cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert b.returncode == 0, b.stderr
    c = subprocess.run([*cli, *_args(spec, url)], cwd=ROOT, env=env, text=True, capture_output=True, timeout=300)
    assert c.returncode == 0, c.stderr
    os.kill(a.pid, signal.SIGCONT)
    a.communicate(timeout=180)
    assert a.returncode != 0

    cube = Cube.open(url)
    assert (cube.status() == DONE).all()
    report = check(cube)
    assert report.ok, report.problems[:3]
