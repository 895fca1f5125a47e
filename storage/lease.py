"""The driver lease: one driver (``run``, an extension, ``check --repair``) writes a cube at a time.

The lease is one JSON object in the cube naming its holder (host, pid, process start time,
command) with a heartbeat that one process-wide daemon thread renews. Another driver refuses
while the holder lives; it takes over at once from a dead process on this machine, and from
anywhere else once the heartbeat is ``stale_after`` seconds old (a crashed or cut-off driver).

Every change is a conditional write: create-if-absent, else compare-and-swap on the version read
(version first, then content: a swap on that version fails if the content changed since). So of
two drivers taking over one lease exactly one wins, and a holder never overwrites a driver that
took over from it: it marks itself ``lost`` and ``check()`` raises. Release swaps in a record
marked "released" instead of deleting, because the store has no conditional delete and a plain
one could remove a lease taken over in between; a released record is free to take.

Heartbeat ages compare the holder's wall clock with the reader's: hosts' clocks must agree to well
within ``stale_after`` (NTP does this). ``stale_after`` defaults to 60 s, or to the environment's
``AMSWEEP_LEASE_STALE_SECONDS`` (tests use a few seconds to pause a real driver past it); the
heartbeat runs six times per stale period, at most every 10 s.

Fencing: every take (create, takeover) stamps a ``generation`` one above the record it replaces,
and ``verify`` (run under the store's lock before a local batch of writes lands,
``amsweep.storage.fence``) refuses unless the stored record is still this holder's token and
generation. The record is created only by create-if-absent and replaced only by compare-and-swap:
a holder whose record vanished never recreates it (its heartbeat marks it lost, its next write
fails with "the lease record vanished"), and a driver that finds an existing cube without one
says so loudly before it takes a new one.
"""

from __future__ import annotations

import atexit
import concurrent.futures.thread  # noqa: F401  (its exit hook first: see the end)
import contextlib
import json
import logging
import os
import socket
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from typing import Any

from amsweep.pipeline.errors import CubeError
from amsweep.storage.objects import Objects

__all__ = [
    "describe_holder",
    "holder_of",
    "KEY",
    "Lease",
    "LeaseError",
    "LeaseHeld",
    "LeaseLost",
    "log",
    "stale_seconds",
    "STALE_ENV",
]

KEY = "_amsweep/lease.json"
STALE_ENV = "AMSWEEP_LEASE_STALE_SECONDS"
log = logging.getLogger(__name__)


def stale_seconds() -> float:
    """The stale timeout: 60 s, or ``AMSWEEP_LEASE_STALE_SECONDS`` (a positive number)."""
    raw = os.environ.get(STALE_ENV, "").strip()
    if not raw:
        return 60.0
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise CubeError(f"{STALE_ENV}={raw!r}: the lease's stale timeout must be a positive number of seconds")
    return value


class LeaseError(CubeError):
    """The cube's lease cannot be had or kept."""


class LeaseHeld(LeaseError):
    """Another live driver holds the cube; the message names it and says what to do."""


class LeaseLost(LeaseError):
    """This driver may no longer write: its lease was taken over, or not renewed in time."""


def _proc_stat(pid: int) -> tuple[str | None, int | None]:
    """(state, start time in clock ticks since boot) of a process; (None, None) without /proc."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()  # the name in (...) may hold spaces
        return fields[0].decode(), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None, None


def _machine() -> str:
    """The kernel boot and pid namespace our pids belong to: a same-named host in another container
    (or after a reboot) must not judge our pids, nor we its."""
    parts = []
    for read in (
        lambda: open("/proc/sys/kernel/random/boot_id").read().strip(),
        lambda: os.readlink("/proc/self/ns/pid"),
    ):
        with contextlib.suppress(OSError):  # no /proc: the host name alone identifies the machine
            parts.append(read())
    return " ".join(parts)


HOST, MACHINE = socket.gethostname(), _machine()


def _alive(pid: Any, start: Any) -> bool:
    """Whether ``pid`` on this machine is still the process that wrote a lease (pids get reused)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's process: it exists
    state, now_start = _proc_stat(pid)
    return state != "Z" and (start is None or now_start == start)  # Z: killed, not yet reaped


def _parse(raw: bytes | None) -> dict[str, Any]:
    try:
        record = json.loads(raw or b"{}")
    except ValueError:
        return {}
    return record if isinstance(record, dict) else {}


def _age(record: dict[str, Any]) -> float:
    try:
        return time.time() - float(record.get("heartbeat_epoch"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("inf")  # unreadable: as good as stale


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="seconds")


def holder_of(objects: Objects) -> dict[str, Any] | None:
    """The stored lease record if a driver holds it (live or stale), for ``status`` to show."""
    record = _parse(objects.get(KEY))
    return record if record and not record.get("released") else None


def describe_holder(objects: Objects) -> str | None:
    """One line for ``amsweep status``: which driver holds the cube and whether its heartbeat is
    fresh (a stale one is taken over by the next ``amsweep run``); None when no driver holds it."""
    record = holder_of(objects)
    if record is None:
        return None
    age = _age(record)
    state = "stale: the next run takes it over" if age > stale_seconds() else "live"
    return (
        f"writer: {record.get('holder', '?')} ({record.get('command', '?')}), last heartbeat {age:.0f} s ago ({state})"
    )


class Lease:
    """This process's hold on one cube: ``acquire``, ``check()`` before each write, ``release()``."""

    def __init__(self, objects: Objects, stale_after: float, heartbeat_every: float, command: str) -> None:
        self.objects, self.url = objects, objects.url.rstrip("/")
        self.stale_after, self.heartbeat_every = stale_after, heartbeat_every
        self.lost = False
        self.takeover_message: str | None = None
        self.vanished_message: str | None = None
        self.taken_by: dict[str, Any] = {}
        self._refs, self._released, self._version, self._confirmed = 0, False, None, 0.0
        self._due = 0.0
        self._error: Exception | None = None  # the last failed write, reported if no attempt succeeds
        self._mutex = threading.Lock()
        pid, t = os.getpid(), time.time()
        self.record: dict[str, Any] = {
            "holder": f"{HOST}:{pid}",
            "host": HOST,
            "machine": MACHINE,
            "pid": pid,
            "pid_start": _proc_stat(pid)[1],
            "started": _iso(t),
            "heartbeat": _iso(t),
            "heartbeat_epoch": t,
            "command": (command or " ".join(sys.argv))[:200],
            "token": uuid.uuid4().hex,
            "generation": 1,
        }

    @property
    def holder(self) -> str:
        return self.record["holder"]

    @property
    def users_in_process(self) -> int:
        """How many opens in this process share this lease (one process may open a cube twice):
        above 1, another run or writer of this process holds the cube too."""
        with _state_lock:
            return self._refs

    @classmethod
    def acquire(
        cls,
        objects: Objects,
        *,
        stale_after: float | None = None,
        heartbeat_every: float | None = None,
        command: str = "",
        expect_record: bool = False,
    ) -> "Lease":
        """Take the cube's lease, or share it if this process holds it already (one process may
        open a cube twice); raise ``LeaseHeld`` naming the live holder otherwise.
        ``expect_record``: the cube exists, so a missing record was removed (``vanished_message``)."""
        stale_after = stale_seconds() if stale_after is None else stale_after
        heartbeat_every = min(10.0, stale_after / 6) if heartbeat_every is None else heartbeat_every
        if not 0 < heartbeat_every < stale_after:
            raise ValueError(
                f"heartbeat_every ({heartbeat_every}) must be positive and below stale_after ({stale_after})"
            )
        with _acquire_lock:
            lease = cls(objects, stale_after, heartbeat_every, command)
            held = lease._take(expect_record)
            with _state_lock:
                if held is not None:
                    held._refs += 1
                    return held
                lease._refs, lease._due = 1, time.monotonic() + heartbeat_every
                _held[lease.record["token"]] = lease
            _ensure_heartbeat()
            return lease

    def _take(self, expect_record: bool) -> "Lease | None":
        for _ in range(10):
            version, other = self.objects.version(KEY), self.objects.get(KEY)
            if version is None or other is None:  # no record: only create-if-absent may make one
                if self.objects.create(KEY, self._stamp(generation=1)) and self._sync() is not None:
                    if expect_record:
                        self.vanished_message = (
                            f"{self.url}: the cube's lease record {KEY} was missing (deleted by hand, or not "
                            "copied?); took a new one. A driver still writing this cube stops at its next write"
                        )
                        log.info("%s", self.vanished_message)  # the cube prints it
                    return None
                continue
            record = _parse(other)
            with _state_lock:
                mine = _held.get(record.get("token"))  # type: ignore[arg-type]
            if mine is not None and not mine.lost:
                return mine
            same = record.get("host") == HOST and record.get("machine") == MACHINE
            ident = (record.get("pid"), record.get("pid_start"))
            ours = same and ident == (self.record["pid"], self.record["pid_start"])
            dead = same and not ours and not _alive(record.get("pid"), record.get("pid_start"))
            age = _age(record)
            if not (record.get("released") or ours or dead or age > self.stale_after):
                raise LeaseHeld(self._held_message(record, age))
            generation = record.get("generation")
            generation = generation + 1 if isinstance(generation, int) and generation > 0 else 1
            if self._swap(self._stamp(generation=generation), version) is not None:
                if not (record.get("released") or ours):
                    who = record.get("holder", "an unreadable lease")
                    self.takeover_message = (
                        f"taking over the lease of {who} (last heartbeat {age:.0f} s ago; that driver is gone)"
                    )
                    log.info("%s: %s", self.url, self.takeover_message)
                return None
        if self._error is not None:
            raise self._error  # e.g. no permission to write: say so rather than "busy"
        raise LeaseError(f"{self.url}: could not take the cube's lease: it kept changing under us")

    def _held_message(self, r: dict[str, Any], age: float) -> str:
        return (
            f"{self.url} is in use by another driver: {r.get('holder')} (host {r.get('host')}, pid "
            f"{r.get('pid')}, `{r.get('command')}`, started {r.get('started')}, last heartbeat {age:.0f} s "
            f"ago). Wait for it to finish, or stop it; if that driver is dead on another machine its "
            f"lease expires {self.stale_after:.0f} s after its last heartbeat."
        )

    def _stamp(self, **extra: Any) -> bytes:
        t = time.time()
        self.record.update(heartbeat=_iso(t), heartbeat_epoch=t, **extra)
        return json.dumps(self.record, indent=1).encode()

    def _sync(self) -> dict[str, Any] | None:
        """The stored record if it is ours (then its version becomes ours), else None. Version
        first, then content: content that is ours proves the version read before it is ours."""
        version, record = self.objects.version(KEY), _parse(self.objects.get(KEY))
        if record.get("token") != self.record["token"]:
            self.taken_by = record
            return None
        self._version, self._confirmed = version, record["heartbeat_epoch"]
        return record

    def _swap(self, data: bytes, version: Any) -> dict[str, Any] | None:
        """Compare-and-swap; a swap that returns its new version is ours (the store said so), else
        read back (an error mid-request may hide a write that landed)."""
        try:
            swapped = self.objects.replace_if(KEY, data, version)
            if swapped is not None and not isinstance(swapped, bool):
                self._version, self._confirmed = swapped, self.record["heartbeat_epoch"]
                return self.record
        except CubeError:
            raise  # LockBusy: the lock stayed held (a frozen driver): say who holds it
        except Exception as e:  # outcome unknown: the read-back tells
            log.debug("%s: conditional write of the lease: %s", self.url, e)
            self._error = e
        return self._sync()

    def _renew(self) -> None:
        with self._mutex:
            self._due = time.monotonic() + self.heartbeat_every
            if not (self._released or self.lost) and self._swap(self._stamp(), self._version) is None:
                self.lost = True
                log.info(  # the next write says so, in one line (LeaseLost)
                    "%s: the lease was taken over by %s; this driver stops writing",
                    self.url,
                    self.taken_by.get("holder", "someone (record removed)"),
                )

    def check(self) -> None:
        """Raise ``LeaseLost`` unless this driver may still write (the writer calls it before each flush)."""
        if self.lost:
            if not self.taken_by:
                raise LeaseLost(
                    f"{self.url}: the lease record vanished (deleted while this driver held it); "
                    "stopping: results written before are intact"
                )
            raise LeaseLost(
                f"{self.url}: another driver took over this driver's lease (now held by "
                f"{self.taken_by.get('holder')}, generation {self.taken_by.get('generation')}); "
                "stopping: results written before are intact"
            )
        if self._released:
            raise LeaseLost(f"{self.url}: this lease was released")
        age = time.time() - self._confirmed
        if age > self.stale_after:  # late (a paused process?): a swap now says whether it is still ours
            with contextlib.suppress(Exception):  # the store unreachable: said below
                self._cas_heartbeat()
            if self.lost:
                self.check()
            age = time.time() - self._confirmed
        if age > self.stale_after:
            raise LeaseLost(
                f"{self.url}: could not renew the lease for {age:.0f} s (store unreachable?); another "
                "driver may have taken over, so this one stops writing"
            )

    def verify(self, stored: bytes | None) -> None:
        """The fence: raise ``LeaseLost`` (and mark this lease lost) unless ``stored``, the lease
        record read under the store's lock just before a batch of writes, is still this holder's."""
        if self._released:
            raise LeaseLost(f"{self.url}: this lease was released")
        record = _parse(stored) if stored is not None else {}
        mine = (record.get("token"), record.get("generation")) == (self.record["token"], self.record["generation"])
        if not mine or record.get("released"):
            self.lost, self.taken_by = True, record if stored is not None else {}
            self.check()  # raises; a record still ours needs no age check (and none may swap under this lock)

    def confirm(self) -> None:
        """Before each batch of writes to a store without a locked fence (S3): ``LeaseLost`` if the
        heartbeat found the lease lost, and a proof now if the heartbeat is overdue (this process
        was paused or starved: another driver may have taken over meanwhile)."""
        if self.lost or self._released:
            self.check()
        if time.time() - self._confirmed > 2 * self.heartbeat_every:
            self.prove()

    def prove(self) -> None:
        """A conditional heartbeat now (compare-and-swap on the version last written): proves this
        driver still holds the lease, or marks it lost and raises ``LeaseLost`` (a late heartbeat is
        no reason to stop: the swap on our version says whether anyone took over meanwhile)."""
        self._cas_heartbeat()
        self.check()

    def _cas_heartbeat(self) -> None:
        with self._mutex:
            if not (self._released or self.lost):
                self._due = time.monotonic() + self.heartbeat_every
                if self._swap(self._stamp(), self._version) is None:
                    self.lost = True

    def release(self) -> None:
        """Drop one hold; the last marks the record released if it is still ours (never another's)."""
        if os.getpid() != self.record["pid"]:
            return  # a forked child: the lease is its parent's
        with _state_lock:
            self._refs -= 1
            if self._refs > 0:
                return
            _held.pop(self.record["token"], None)
        with self._mutex:
            if self._released:
                return
            self._released = True
            try:
                tombstone = self._stamp(released=_iso(time.time()))
                for _ in range(3):  # a retry only if an earlier ambiguous write moved our version
                    stored = None if self.lost else self._swap(tombstone, self._version)
                    if stored is None or stored.get("released"):
                        break
            except Exception as e:
                log.warning(
                    "%s: could not release the lease (%s); it expires %.0f s after its last heartbeat",
                    self.url,
                    e,
                    self.stale_after,
                )

    def __enter__(self) -> "Lease":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


_held: dict[str, Lease] = {}  # token -> lease this process holds
_state_lock, _acquire_lock, _wake = threading.Lock(), threading.Lock(), threading.Event()
_thread: threading.Thread | None = None


def _ensure_heartbeat() -> None:
    global _thread
    if _thread is None or not _thread.is_alive():
        _thread = threading.Thread(target=_heartbeat, name="amsweep-lease-heartbeat", daemon=True)
        _thread.start()
    _wake.set()


def _heartbeat() -> None:
    """Renew every held lease when due; a failing store is retried next tick, never fatal."""
    while True:
        _wake.clear()
        with _state_lock:
            leases = list(_held.values())
        for lease in leases:
            if time.monotonic() >= lease._due:
                try:
                    lease._renew()
                except Exception as e:
                    log.warning("%s: lease heartbeat failed (%s); retrying", lease.url, e)
        with _state_lock:
            due = min((l._due for l in _held.values() if not l.lost), default=None)
        _wake.wait(None if due is None else max(0.0, due - time.monotonic()))


def _release_all() -> None:
    with _state_lock:
        leases = list(_held.values())
    for lease in leases:
        lease._refs = 1
        lease.release()


def _forget_in_child() -> None:
    """A forked child holds nothing: its parent's leases and heartbeat thread stay the parent's."""
    global _held, _state_lock, _acquire_lock, _wake, _thread
    _held, _thread = {}, None
    _state_lock, _acquire_lock, _wake = threading.Lock(), threading.Lock(), threading.Event()


# At exit, release before concurrent.futures refuses new work (s3fs resolves names through it):
# threading's exit hooks run in reverse order of registration, before atexit's.
getattr(threading, "_register_atexit", atexit.register)(_release_all)
os.register_at_fork(after_in_child=_forget_in_child)
