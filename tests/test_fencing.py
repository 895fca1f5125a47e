"""Fencing, written as the attack: real ``amsweep run`` driver processes, one frozen with SIGSTOP
in the middle of a flush (after its lease check, before its writes), another taking over or
finding the lease record deleted, then the first one resumed. The first must exit non-zero with
one line and land nothing; the cube must equal an uninterrupted run. On local disk and on moto's
S3 server (127.0.0.1).

The stale timeout is ``AMSWEEP_LEASE_STALE_SECONDS`` (a few seconds here). Without that knob
(amsweep before it) the second driver is retried until the default 60 s have passed, so these
tests also show the attack on that code.
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

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.cell import run_cell
from amsweep.pipeline.executors import SerialExecutor
from amsweep.pipeline.metric_table import METRICS
from amsweep.sweeps.runner import run
from amsweep.storage.check import check
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE
from amsweep.storage.lease import KEY, holder_of
from amsweep.storage.objects import objects_at
from benchmarks._moto import moto_server
from tests.conftest import assert_same_cube

ROOT = Path(__file__).resolve().parents[1]
STALE = 3.0

SPEC = """
name = "fence"
root_seed = 5
seeds = 6
noise = [0.0, 0.15]
P_test = 6
[retrieval]
train_starts = 6
test_starts = 6
random_starts = 2
[datasets.random]
N = [32, 48]
alpha = [0.05, 0.1, 0.3]
[rules.hebb]
[rules.plm]
epochs = 10
lr = 5.0
"""  # 72 tasks of a few ms: the CLI driver flushes every 16 results

# `amsweep run` that stops itself (SIGSTOP) on entering its PAUSE_AT-th flush: after the flush's
# lease check, before any of its writes, the exact window of the attack.
PAUSER = r"""
import os, signal, sys, threading
from amsweep.sweeps import cli
from amsweep.storage import cube
real, calls = cube.Cube._flush, []
def paused(self, *args, **kwargs):
    calls.append(1)
    if len(calls) == int(os.environ["PAUSE_AT"]):
        # this thread stops itself: a process-directed SIGSTOP lets the caller run on until another
        # thread takes the stop, into the flush's writes and the lease's flock (1 run in ~30 under
        # load: the second driver then waited 30 s on a lock the frozen one held); and not inside a
        # heartbeat's renewal, which holds that flock too
        with self.lease._mutex:
            signal.pthread_kill(threading.get_ident(), signal.SIGSTOP)
    return real(self, *args, **kwargs)
cube.Cube._flush = paused
sys.exit(cli.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def s3_server():
    with moto_server(buckets=("fence",)) as env:
        yield env


@pytest.fixture(params=["local", "s3"])
def url(request, tmp_path) -> str:
    if request.param == "local":
        return str(tmp_path / "cube.zarr")
    request.getfixturevalue("s3_server")
    return f"s3://fence/{uuid.uuid4().hex[:8]}.zarr"


@pytest.fixture
def spec(tmp_path) -> Path:
    path = tmp_path / "fence.toml"
    path.write_text(SPEC)
    return path


def _env() -> dict[str, str]:
    return {**os.environ, "AMSWEEP_LEASE_STALE_SECONDS": str(STALE), "PAUSE_AT": "2"}


def _args(spec: Path, url: str) -> list[str]:
    return ["run", str(spec), "--out", url, "--executor", "serial", "--quiet"]


def _frozen_driver(spec: Path, url: str) -> subprocess.Popen:
    """Driver A, started and left frozen in its second flush (16 results written, 16 more in hand)."""
    a = subprocess.Popen(
        [sys.executable, "-c", PAUSER, *_args(spec, url)],
        cwd=ROOT,
        env=_env(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 180
    while _state(a.pid) != "T":
        assert a.poll() is None, f"driver A ended before its second flush: {a.communicate()}"
        assert time.monotonic() < deadline, "driver A never reached its second flush"
        time.sleep(0.05)
    assert (Cube.open(url).status() == DONE).sum() == 16  # its first flush landed
    return a


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"


def _second_driver(spec: Path, url: str) -> subprocess.CompletedProcess:
    """Driver B: retried while A's lease is live (A is frozen, so it goes stale), then runs to the end."""
    deadline = time.monotonic() + 150
    while True:
        b = subprocess.run(
            [sys.executable, "-m", "amsweep.sweeps.cli", *_args(spec, url)],
            cwd=ROOT,
            env=_env(),
            text=True,
            capture_output=True,
            timeout=300,
        )
        if "is in use by another driver" not in b.stderr or time.monotonic() > deadline:
            return b
        time.sleep(1.0)


def _resume(a: subprocess.Popen) -> tuple[int, str]:
    os.kill(a.pid, signal.SIGCONT)
    _, err = a.communicate(timeout=180)
    return a.returncode, err


def _reference(spec: Path, tmp_path: Path) -> str:
    path = str(tmp_path / "reference.zarr")
    with Cube.create_or_open(path, spec_mod.load(spec)) as cube:
        run(cube, SerialExecutor(), progress=False)
    return path


def _assert_complete(url: str, reference: str) -> None:
    cube = Cube.open(url)
    assert (cube.status() == DONE).all(), f"{int((cube.status() != DONE).sum())} task(s) not done"
    assert check(cube).ok
    assert_same_cube(url, reference)


def test_a_frozen_driver_resumed_after_a_takeover_writes_nothing(url, spec, tmp_path):
    a = _frozen_driver(spec, url)
    try:
        b = _second_driver(spec, url)
        assert b.returncode == 0, b.stdout + b.stderr
        assert "amsweep: taking over the lease of" in b.stderr
        assert (Cube.open(url).status() == DONE).all()
        code, err = _resume(a)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1, err
    assert "another driver took over this driver's lease" in lines[0] and "generation 2" in lines[0], err
    _assert_complete(url, _reference(spec, tmp_path))
    assert holder_of(objects_at(url)) is None  # B released; A never wrote the lease again


def test_a_deleted_lease_record_is_reported_and_the_old_driver_stops(url, spec, tmp_path):
    a = _frozen_driver(spec, url)
    try:
        objects_at(url).delete(KEY)
        b = _second_driver(spec, url)
        assert b.returncode == 0, b.stdout + b.stderr
        said = [line for line in b.stderr.splitlines() if "lease record" in line]
        assert len(said) == 1 and "was missing" in said[0], b.stderr
        code, err = _resume(a)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "lease" in lines[0], err
    _assert_complete(url, _reference(spec, tmp_path))


def test_a_deleted_lease_record_stops_its_holder_and_is_never_recreated(url, spec, tmp_path):
    a = _frozen_driver(spec, url)
    try:
        objects_at(url).delete(KEY)
        time.sleep(STALE)  # frozen past the stale timeout, as a driver whose record a takeover removed
        code, err = _resume(a)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    lines = err.strip().splitlines()
    assert code != 0 and len(lines) == 1 and "the lease record vanished" in lines[0], err
    assert objects_at(url).get(KEY) is None
    assert (Cube.open(url).status() == DONE).sum() == 16  # nothing of its second flush landed
    b = _second_driver(spec, url)
    assert b.returncode == 0 and "was missing" in b.stderr, b.stdout + b.stderr
    _assert_complete(url, _reference(spec, tmp_path))


def test_on_s3_a_stale_write_in_the_gap_is_merged_not_overwritten(s3_server, small_sweep, tmp_path):
    """The holder's view is stale when another writer landed a shard after the holder read it
    (a driver past its last lease proof; here a second writer of this process): its flush must
    re-read and merge, never overwrite."""
    url = f"s3://fence/{uuid.uuid4().hex[:8]}.zarr"
    results = [run_cell(small_sweep.job(t)) for t in small_sweep.tasks()]
    holder = Cube.create_or_open(url, small_sweep)
    try:
        assert (holder.status() == DONE).sum() == 0  # read: its view of every status shard
        other = Cube.open(url, mode="r+")
        other.write(results[::2])  # every shard of the task grid gets some of its tasks
        other.release()
        holder.write(results[1::2])
        assert (holder.status() == DONE).all()  # merged: it now knows the other writer's too
    finally:
        holder.release()
    reference = str(tmp_path / "reference.zarr")
    with Cube.create_or_open(reference, small_sweep) as cube:
        cube.write(results)
    _assert_complete(url, reference)


def test_on_s3_a_writer_lists_shards_once_instead_of_a_get_per_unread_shard(s3_server, small_sweep, tmp_path):
    """Issue 26 (driver CPU on moto): a flush fetched every shard it had not read, and on a new cube
    every one of those GETs answered 404 (a third of the requests). The writer now lists each
    variable's shards once and reads only those that exist."""
    url = f"s3://fence/{uuid.uuid4().hex[:8]}.zarr"
    results = [run_cell(small_sweep.job(t)) for t in small_sweep.tasks()]
    with Cube.create_or_open(url, small_sweep) as holder:
        inner = holder.objects.inner
        fetched: list[str] = []
        real = inner.get_tagged

        def get_tagged(keys):
            keys = list(keys)
            fetched.extend(keys)
            return real(keys)

        inner.get_tagged = get_tagged
        holder.write(results[:3])
        holder._forget()  # the written shards are read again: they exist, so they are fetched
        holder.write(results[3:])
    shards = [k for k in fetched if "/c/" in k and not k.startswith("status/")]
    assert shards, "the second flush reads the shards the first one wrote"
    assert len(shards) == len(set(shards)), f"a shard fetched twice: {sorted(shards)}"
    reference = str(tmp_path / "reference.zarr")
    with Cube.create_or_open(reference, small_sweep) as cube:
        cube.write(results)
    _assert_complete(url, reference)


def test_on_s3_a_shard_created_after_the_writers_listing_is_merged_not_overwritten(s3_server, small_sweep, tmp_path):
    """A shard absent when the writer listed its variable, then landed by another writer (a stale
    driver in its gap): the writer's PUT is conditional on its absence, conflicts, and the flush
    re-reads it and merges (no flush loops on the listing it made)."""
    url = f"s3://fence/{uuid.uuid4().hex[:8]}.zarr"
    results = [run_cell(small_sweep.job(t)) for t in small_sweep.tasks()]
    holder = Cube.create_or_open(url, small_sweep)
    try:
        assert (holder.status() == DONE).sum() == 0
        keys = [holder.variable(n).key(s) for n in METRICS for s in holder.variable(n).shards()]
        assert not any(holder.objects.get_many(keys).values())  # listed: every data shard absent
        other = Cube.open(url, mode="r+")
        other.write(results[::2])  # creates every shard after the holder's listing
        other.release()
        holder.write(results[1::2])
        assert (holder.status() == DONE).all()
    finally:
        holder.release()
    reference = str(tmp_path / "reference.zarr")
    with Cube.create_or_open(reference, small_sweep) as cube:
        cube.write(results)
    _assert_complete(url, reference)
