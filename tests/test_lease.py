"""The driver lease (one driver per cube), on local disk and on S3 (moto's server on 127.0.0.1).

Other drivers are real processes (``Driver``: a child driven by JSON lines on stdin), so
liveness, kills and races are the real thing. Waits poll with generous timeouts: the tests must
pass on a busy two-core machine.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest

from amsweep.storage import lease as lease_mod
from amsweep.storage.lease import KEY, Lease, LeaseHeld, LeaseLost, holder_of
from benchmarks._moto import moto_server
from amsweep.storage.objects import objects_at

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 60.0

CHILD = r"""
import json, os, sys, time
from amsweep.storage.objects import objects_at
from amsweep.storage.lease import Lease, LeaseHeld
held = {}
print(json.dumps({"ready": os.getpid()}), flush=True)
for line in sys.stdin:
    cmd = json.loads(line)
    if cmd["op"] == "acquire":
        if cmd.get("barrier"):
            print(json.dumps({"waiting": True}), flush=True)
            while not os.path.exists(cmd["barrier"]):
                time.sleep(0.002)
        try:
            held[0] = Lease.acquire(objects_at(cmd["url"]), stale_after=cmd["stale_after"],
                                    heartbeat_every=cmd["stale_after"] / 4, command="child driver")
            print(json.dumps({"acquired": held[0].holder, "message": held[0].takeover_message}), flush=True)
        except LeaseHeld as e:
            print(json.dumps({"held": str(e)}), flush=True)
    elif cmd["op"] == "release":
        held.pop(0).release()
        print(json.dumps({"released": True}), flush=True)
    elif cmd["op"] == "exit":
        break
"""


class Driver:
    """Another driver process on this host, commanded one JSON line at a time."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-c", CHILD], cwd=ROOT, text=True, stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )
        self.lines: queue.Queue[str] = queue.Queue()
        threading.Thread(target=lambda: [self.lines.put(l) for l in self.proc.stdout], daemon=True).start()
        self.pid = self.recv()["ready"]

    def send(self, **cmd: Any) -> None:
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def recv(self) -> dict[str, Any]:
        try:
            return json.loads(self.lines.get(timeout=TIMEOUT))
        except queue.Empty:
            raise AssertionError(f"driver {self.proc.pid} said nothing for {TIMEOUT} s") from None

    def acquire(self, url: str, stale_after: float = 600.0) -> dict[str, Any]:
        self.send(op="acquire", url=url, stale_after=stale_after)
        return self.recv()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send(op="exit")
            except OSError:
                pass
        try:
            self.proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def drivers():
    started: list[Driver] = []

    def start() -> Driver:
        started.append(Driver())
        return started[-1]

    yield start
    for d in started:
        d.close()


@pytest.fixture(scope="module")
def s3_server():
    with moto_server(buckets=("leases",)) as env:
        yield env


@pytest.fixture(params=["local", "s3"])
def url(request, tmp_path) -> str:
    """A cube path with nothing in it yet; the children inherit the S3 environment."""
    if request.param == "local":
        return str(tmp_path / "cube.zarr")
    request.getfixturevalue("s3_server")
    return f"s3://leases/{uuid.uuid4().hex[:8]}.zarr"


@pytest.fixture(autouse=True)
def nothing_left_held():
    yield
    left = list(lease_mod._held.values())
    for lease in left:
        lease._refs = 1
        lease.release()
    assert not left, "a test left a lease held"


def eventually(cond: Callable[[], Any], what: str, timeout: float = TIMEOUT) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = cond()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def foreign(age: float, host: str = "elsewhere", pid: int = 4242, **extra: Any) -> bytes:
    """A lease record written by a driver we do not know, ``age`` seconds after its heartbeat."""
    t = time.time() - age
    return json.dumps(
        {
            "holder": f"{host}:{pid}",
            "host": host,
            "machine": "",
            "pid": pid,
            "pid_start": 1,
            "started": "2020-01-01T00:00:00+00:00",
            "heartbeat_epoch": t,
            "command": "amsweep run",
            "token": uuid.uuid4().hex,
            **extra,
        }
    ).encode()


def test_a_second_driver_is_refused_until_the_first_releases(url, drivers):
    other = drivers()
    with Lease.acquire(objects_at(url), command="amsweep run tiny") as mine:
        assert mine.takeover_message is None
        refused = other.acquire(url)["held"]
        assert f"pid {os.getpid()}" in refused and mine.holder in refused
        assert "amsweep run tiny" in refused and "Wait for it to finish, or stop it" in refused
        assert "expires 600 s after its last heartbeat" in refused
        mine.check()
    assert holder_of(objects_at(url)) is None
    got = other.acquire(url)
    assert got["acquired"] == f"{socket.gethostname()}:{other.pid}" and got["message"] is None
    with pytest.raises(LeaseHeld, match=f"pid {other.pid}"):
        Lease.acquire(objects_at(url))
    other.close()  # exits holding it: released at exit
    assert holder_of(objects_at(url)) is None
    with Lease.acquire(objects_at(url)) as again:
        assert again.takeover_message is None


def test_one_process_may_hold_a_cube_twice(url, drivers):
    first = Lease.acquire(objects_at(url))
    second = Lease.acquire(objects_at(url))  # another handle on the same store
    assert second is first
    second.release()
    first.check()
    assert holder_of(objects_at(url))["holder"] == first.holder
    assert "held" in drivers().acquire(url)
    first.release()
    assert holder_of(objects_at(url)) is None
    with pytest.raises(LeaseLost):
        first.check()


def test_a_killed_holder_is_taken_over_at_once(url, drivers):
    victim = drivers()
    assert "acquired" in victim.acquire(url, stale_after=600.0)
    os.kill(victim.pid, signal.SIGKILL)
    # not reaped yet (a zombie): it must count as dead all the same
    eventually(lambda: lease_mod._proc_stat(victim.pid)[0] in ("Z", None), "the killed driver to die")
    with Lease.acquire(objects_at(url), stale_after=600.0) as mine:
        assert mine.takeover_message.startswith(f"taking over the lease of {socket.gethostname()}:{victim.pid} ")
        assert "that driver is gone" in mine.takeover_message
        assert holder_of(objects_at(url))["token"] == mine.record["token"]


def test_stale_heartbeats_are_taken_over_and_fresh_ones_refused(url):
    objects = objects_at(url)
    objects.put(KEY, foreign(age=5))
    with pytest.raises(LeaseHeld) as refused:
        Lease.acquire(objects, stale_after=60)
    text = str(refused.value)
    for part in (
        "elsewhere:4242",
        "host elsewhere",
        "pid 4242",
        "started 2020-01-01T00:00:00+00:00",
        "last heartbeat ",
        "expires 60 s after its last heartbeat",
    ):
        assert part in text
    assert 5 <= int(text.split("last heartbeat ")[1].split(" s ago")[0]) < 60
    # our host name in another container (another pid namespace): its pid is not ours to judge
    objects.put(KEY, foreign(age=5, host=socket.gethostname(), pid=2**22 + 7, machine="another"))
    with pytest.raises(LeaseHeld):
        Lease.acquire(objects)
    objects.put(KEY, foreign(age=120))
    with Lease.acquire(objects, stale_after=60) as mine:
        assert re.fullmatch(
            r"taking over the lease of elsewhere:4242 \(last heartbeat 1[2-7]\d s ago; "
            r"that driver is gone\)",
            mine.takeover_message,
        )
    # a reused pid on this machine (alive, but started at another time) is a dead holder
    objects.put(
        KEY, foreign(age=0, host=socket.gethostname(), pid=os.getppid(), pid_start=1, machine=lease_mod.MACHINE)
    )
    with Lease.acquire(objects) as mine:
        assert f":{os.getppid()} " in mine.takeover_message
    objects.put(KEY, b"not json")
    with Lease.acquire(objects) as mine:
        assert "an unreadable lease" in mine.takeover_message


def test_racing_takeovers_have_one_winner(url, drivers, tmp_path):
    objects = objects_at(url)
    a, b = drivers(), drivers()
    for round in range(4):
        if round == 0:
            objects.delete(KEY)  # both create at once
        else:
            objects.put(KEY, foreign(age=300))  # both take over one stale lease at once
        barrier = tmp_path / f"go-{round}"
        for d in (a, b):
            d.send(op="acquire", url=url, stale_after=60.0, barrier=str(barrier))
        assert a.recv() == b.recv() == {"waiting": True}
        barrier.touch()
        got = {d: d.recv() for d in (a, b)}
        winners = [d for d in (a, b) if "acquired" in got[d]]
        assert len(winners) == 1, got
        winner, loser = winners[0], b if winners[0] is a else a
        assert f"pid {winner.pid}" in got[loser]["held"]
        assert (got[winner]["message"] is None) == (round == 0)
        assert holder_of(objects)["pid"] == winner.pid
        winner.send(op="release")
        assert winner.recv() == {"released": True}


def test_heartbeats_renew_and_a_lost_lease_is_never_overwritten(url):
    objects = objects_at(url)
    lease = Lease.acquire(objects, stale_after=30.0, heartbeat_every=0.2)
    try:
        first = holder_of(objects)["heartbeat_epoch"]
        eventually(lambda: holder_of(objects)["heartbeat_epoch"] > first, "a heartbeat")
        # another driver takes it over (as a take-over does: a swap on the version it read)
        taker = foreign(age=0, host="thief", pid=7)
        eventually(lambda: objects.replace_if(KEY, taker, objects.version(KEY)), "the take-over write")
        eventually(lambda: lease.lost, "the holder to notice")
        with pytest.raises(LeaseLost, match="now held by thief:7"):
            lease.check()
        time.sleep(1.0)  # five more heartbeat periods
        assert objects.get(KEY) == taker
    finally:
        lease.release()
    assert objects.get(KEY) == taker


class Flaky:
    """A store that can be cut off: every call fails while ``down``, every write while ``read_only``."""

    def __init__(self, inner: Any) -> None:
        self.inner, self.url, self.down, self.read_only = inner, inner.url, False, False

    def __getattr__(self, name: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            if self.down or self.read_only and name in ("put", "create", "replace_if", "delete"):
                raise PermissionError("store unreachable" if self.down else "access denied")
            return getattr(self.inner, name)(*args, **kwargs)

        return call


def test_an_unreachable_store_stops_writes_until_renewed(url):
    store = Flaky(objects_at(url))
    with Lease.acquire(store, stale_after=2.0, heartbeat_every=0.1) as lease:
        lease.check()
        store.down = True
        eventually(lambda: _fails(lease.check), "check to refuse while the store is down")
        with pytest.raises(LeaseLost, match="could not renew the lease"):
            lease.check()
        store.down = False
        eventually(lambda: not _fails(lease.check), "the heartbeat thread to renew after errors")
        assert not lease.lost


def test_a_store_refusing_writes_says_so(url):
    store = Flaky(objects_at(url))
    store.put(KEY, foreign(age=300))
    store.read_only = True
    with pytest.raises(PermissionError, match="access denied"):
        Lease.acquire(store)  # the stale lease can be taken over, but the write is refused
    store.inner.delete(KEY)
    with pytest.raises(PermissionError, match="access denied"):
        Lease.acquire(store)


def _fails(fn: Callable[[], Any]) -> bool:
    try:
        fn()
    except LeaseLost:
        return True
    return False


def test_bad_intervals_are_refused(tmp_path):
    with pytest.raises(ValueError, match="below stale_after"):
        Lease.acquire(objects_at(str(tmp_path)), stale_after=5, heartbeat_every=5)


# ---- fencing: a holder that lost the lease writes nothing ------------------------------------


def test_a_takeover_raises_the_generation_and_fences_the_old_holder(url):
    from amsweep.storage.fence import FencedObjects

    objects = objects_at(url)
    lease = Lease.acquire(objects, stale_after=30.0, heartbeat_every=10.0)
    try:
        assert holder_of(objects)["generation"] == 1
        fenced = FencedObjects(objects_at(url), lease)
        fenced.begin_flush()
        fenced.put("data/a", b"mine")
        # another driver takes over (a swap on the version it read, one generation up)
        taker = foreign(age=0, host="thief", pid=7, generation=2)
        assert objects.replace_if(KEY, taker, objects.version(KEY))
        with pytest.raises(LeaseLost, match="now held by thief:7, generation 2"):
            fenced.begin_flush() if url.startswith("s3://") else fenced.put("data/a", b"stale")
        with pytest.raises(LeaseLost):
            fenced.put_many({"data/a": b"stale", "data/b": b"stale"})
        with pytest.raises(LeaseLost):
            fenced.delete("data/a")
        assert objects.get("data/a") == b"mine" and objects.get("data/b") is None
        assert objects.get(KEY) == taker
    finally:
        lease.release()
    assert objects.get(KEY) == taker  # never released over the new holder's record


def test_a_vanished_record_stops_its_holder_and_is_never_recreated(url):
    from amsweep.storage.fence import FencedObjects

    objects = objects_at(url)
    lease = Lease.acquire(objects, stale_after=30.0, heartbeat_every=0.1)
    try:
        fenced = FencedObjects(objects_at(url), lease)
        fenced.put("data/a", b"mine")
        objects.delete(KEY)
        with pytest.raises(LeaseLost, match="the lease record vanished"):
            fenced.begin_flush() if url.startswith("s3://") else fenced.put("data/a", b"stale")
        with pytest.raises(LeaseLost, match="the lease record vanished"):
            fenced.put("data/a", b"stale")
        time.sleep(0.5)  # five heartbeat periods
        assert objects.get(KEY) is None and objects.get("data/a") == b"mine"
    finally:
        lease.release()
    assert objects.get(KEY) is None
    with Lease.acquire(objects, expect_record=True) as again:  # a cube whose record is gone: said
        assert "lease record _amsweep/lease.json was missing" in again.vanished_message
        assert again.takeover_message is None
    with Lease.acquire(objects, expect_record=True) as again:  # a released record is no news
        assert again.vanished_message is None and holder_of(objects) is not None
        assert holder_of(objects)["generation"] == 2


LOCKER = r"""
import fcntl, os, signal, sys
fd = open(sys.argv[1], "a")
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
os.kill(os.getpid(), signal.SIGSTOP)
"""


def test_a_frozen_lock_holder_is_named_not_waited_for(tmp_path, monkeypatch):
    from amsweep.storage import objects as objects_mod

    url = str(tmp_path / "cube.zarr")
    objects = objects_at(url)
    objects.put(KEY, foreign(age=300))
    lock = tmp_path / "cube.zarr" / "_amsweep" / "lease.json.lock"
    frozen = subprocess.Popen([sys.executable, "-c", LOCKER, str(lock)], text=True, stdout=subprocess.PIPE)
    try:
        assert frozen.stdout.readline().strip() == "locked"
        monkeypatch.setattr(objects_mod, "LOCK_WAIT", 1.0)
        t0 = time.monotonic()
        with pytest.raises(objects_mod.LockBusy, match=f"held for over 1 s by pid {frozen.pid} on "):
            Lease.acquire(objects, stale_after=60)
        assert time.monotonic() - t0 < 10
    finally:
        frozen.kill()
        frozen.wait()
    with Lease.acquire(objects, stale_after=60) as mine:  # the lock died with its holder
        assert "elsewhere:4242" in mine.takeover_message


def test_the_stale_timeout_comes_from_the_environment(tmp_path, monkeypatch):
    from amsweep.pipeline.errors import CubeError

    monkeypatch.setenv(lease_mod.STALE_ENV, "4")
    with Lease.acquire(objects_at(str(tmp_path))) as lease:
        assert (lease.stale_after, lease.heartbeat_every) == (4.0, 4.0 / 6)
    monkeypatch.setenv(lease_mod.STALE_ENV, "soon")
    with pytest.raises(CubeError, match="AMSWEEP_LEASE_STALE_SECONDS='soon'"):
        Lease.acquire(objects_at(str(tmp_path)))
    monkeypatch.delenv(lease_mod.STALE_ENV)
    with Lease.acquire(objects_at(str(tmp_path))) as lease:
        assert (lease.stale_after, lease.heartbeat_every) == (60.0, 10.0)


def test_status_names_the_driver_holding_the_cube(tmp_path, small_sweep, monkeypatch):
    """`amsweep status` shows who holds the lease and whether its heartbeat is fresh."""
    from amsweep.storage.cube import Cube
    from amsweep.storage.status import render_status

    path = str(tmp_path / "c.zarr")
    cube = Cube.create_or_open(path, small_sweep)
    shown = render_status(path)
    assert f"writer: {cube.lease.holder} (" in shown and "(live)" in shown
    monkeypatch.setenv(lease_mod.STALE_ENV, "0.001")
    time.sleep(0.01)
    assert "(stale: the next run takes it over)" in render_status(path)
    cube.release()
    assert "writer: none" in render_status(path)
