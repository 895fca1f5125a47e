"""Attack (issue 21, claim 1) on S3: a driver frozen inside the swap phase of a mid-axis extension
(restage ``finish``), just before it writes or deletes an object of the cube, is taken over; the
new holder finishes the extension and the whole sweep; the frozen one resumes.

Before deletes were fenced, its one pending delete was fenced only by ``Lease.confirm`` (a proof
only when the heartbeat is overdue, and it was not when the process froze), so it landed after
the takeover and removed an object of the *new* holder's finished cube: with PAUSE_KEY = a data
shard, every done task's ``m_train`` was lost (check: 96 problems; query refuses); a status shard,
every status; an array document, the cube's alpha axis. Expected: the stale driver writes (and
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

# `amsweep run` that freezes itself (SIGSTOP) just before its first store write (put, conditional
# put, delete, conditional delete) of a key that starts with PAUSE_KEY: the staged copy's own keys
# (under _amsweep/stage/) do not count, the swap's do
PAUSER = r"""
import os, signal, sys, threading
from amsweep.sweeps import cli
from amsweep.storage import objects
paused = []
def wrap(real, keys_of):
    def write(self, arg, *rest, **kw):
        if not paused and any(str(k).startswith(os.environ["PAUSE_KEY"]) for k in keys_of(arg)):
            paused.append(True)
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)  # stops before this write, not after
        return real(self, arg, *rest, **kw)
    return write
for name, keys_of in [("put", lambda k: [k]), ("delete", lambda k: [k]), ("put_many", list),
                      ("put_conditional", list), ("delete_conditional", list)]:
    if hasattr(objects.FsspecObjects, name):
        setattr(objects.FsspecObjects, name, wrap(getattr(objects.FsspecObjects, name), keys_of))
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def s3_server():
    with moto_server(buckets=("attack",)) as env:
        yield env


@pytest.fixture(scope="module")
def reference2(tmp_path_factory) -> str:
    """SPEC2 run without interruption, once for the module (it was a CLI run in each test, ~4 s loaded)."""
    from amsweep.pipeline import spec as spec_mod
    from amsweep.pipeline.executors import SerialExecutor
    from amsweep.sweeps.runner import run

    folder = tmp_path_factory.mktemp("reference2")
    (folder / "two.toml").write_text(SPEC2)
    path = str(folder / "reference.zarr")
    run(Cube.create_or_open(path, spec_mod.load(folder / "two.toml")), SerialExecutor(), progress=False)
    return path


def _args(spec: Path, url: str) -> list[str]:
    return ["run", str(spec), "--out", url, "--executor", "serial", "--quiet"]


@pytest.mark.parametrize("pause_key", ["m_train/c/", "status/c/", "alpha/zarr.json"])
def test_s3_a_driver_frozen_in_a_restage_swap_deletes_nothing_after_a_takeover(
    s3_server, tmp_path, pause_key, reference2
):
    env = {**os.environ, "AMSWEEP_LEASE_STALE_SECONDS": "3", "PAUSE_KEY": pause_key}
    spec1, spec2 = tmp_path / "one.toml", tmp_path / "two.toml"
    spec1.write_text(SPEC)
    spec2.write_text(SPEC2)
    url = f"s3://attack/{uuid.uuid4().hex[:8]}.zarr"
    cli = [sys.executable, "-m", "amsweep.sweeps.cli"]
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
    # A's last heartbeat is older than its freeze: wait out the stale timeout once (each refused try of B
    # below is a CLI start, ~3 s loaded)
    time.sleep(3.2)
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

    cube = Cube.open(url)
    assert (cube.status() == DONE).all()
    report = check(cube)
    assert report.ok, report
    assert_same_cube(url, reference2)


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
    cli = [sys.executable, "-m", "amsweep.sweeps.cli"]
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


def test_a_ready_whose_staged_copy_is_gone_is_refused_before_the_swap_touches_anything(tmp_path):
    """A stale driver's create-if-absent of READY can still land after a takeover (nothing to make
    it conditional on) when the new holder has finished the same extension and removed its staged
    copy; the old swap then removed every array object and put nothing back. Now READY lists its
    staged copy and ``finish`` refuses, with one line, before it changes anything."""
    from amsweep.pipeline.errors import CubeError
    from amsweep.pipeline.executors import SerialExecutor
    from amsweep.sweeps.runner import run
    from amsweep.storage import restage
    from tests.test_axis_order import SMALL_BASE, small_grown, sweep

    path = tmp_path / "cube.zarr"
    run(Cube.create_or_open(str(path), sweep(SMALL_BASE)), SerialExecutor(), progress=False)
    cube = Cube.open(str(path))
    cube.acquire()
    restage.restage(cube, sweep(small_grown()), {})
    staged = sorted(p for p in Path(path, restage.STAGE).rglob("*") if p.is_file() and p.name != "READY.json")
    staged[len(staged) // 2].unlink()
    before = {p: p.read_bytes() for p in path.rglob("*") if p.is_file() and restage.STAGE not in str(p)}
    with pytest.raises(CubeError, match="staged object.*missing.*Nothing was changed"):
        restage.finish(cube.objects)
    cube.release()
    after = {p: p.read_bytes() for p in path.rglob("*") if p.is_file() and restage.STAGE not in str(p)}
    lease = Path(path, "_amsweep/lease.json")
    assert {p: b for p, b in after.items() if p != lease} == {p: b for p, b in before.items() if p != lease}
