"""A local Ray dies with its driver, even after ``kill -9``.

Ray ties its GCS and raylet to the driver that started them (the kernel kills them when it
dies), but the raylet's children (dashboard and runtime-env agents, idle workers) were seen
lingering ~60 s after a ``kill -9`` of the driver (they rename themselves, e.g.
``ray::DashboardAgent``, so their command lines cannot be matched). ``start`` launches this
module as a small separate process that holds the read end of a pipe whose write end only the
driver has. While the driver lives, the reaper notes, by pid and start time, every descendant
of the GCS and raylet processes the driver starts (its children running those executables,
``ray_roots``) once a second, five times a second for its first ten: it is launched before
``ray.init`` (``ray_local.init``), so a driver killed while Ray starts is covered. When the pipe
reaches EOF (the driver ended, however it ended) it kills those still alive, then exits. It ignores
Ctrl-C, which is the driver's to handle, and never touches a process it did not see descend
from this driver's Ray (a pid reused by another process has another start time).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time

__all__ = ["descendants", "GRACE_SECONDS", "main", "POLL_SECONDS", "process_table", "reap", "start"]

POLL_SECONDS = 1.0
GRACE_SECONDS = 1.0  # let a driver that called ray.shutdown() see its processes leave first


def start(driver: int) -> subprocess.Popen:
    """Launch the reaper of the Ray that ``driver`` starts from now on (its GCS and raylet,
    ``ray_roots``, and their descendants), before ``ray.init``, so a driver killed while its Ray is
    still starting is covered too; the driver keeps the pipe's write end (non-inheritable: Ray's
    children never hold it) until it exits."""
    read, write = os.pipe()
    proc = subprocess.Popen(
        [sys.executable, "-m", "amsweep.pipeline.ray_reaper", str(driver)],
        stdin=read,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    os.close(read)
    _write_ends.append(write)
    return proc


_write_ends: list[int] = []  # open for the driver's lifetime; closed by the kernel when it dies


def process_table() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, start time in clock ticks) of every process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        table[int(entry)] = (int(fields[1]), int(fields[19]))
    return table


def descendants(roots: set[int], table: dict[int, tuple[int, int]]) -> set[tuple[int, int]]:
    """(pid, start time) of the roots and everything below them."""
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    out, stack = set(), [r for r in roots if r in table]
    while stack:
        pid = stack.pop()
        out.add((pid, table[pid][1]))
        stack.extend(children.get(pid, ()))
    return out


RAY_ROOTS = ("gcs_server", "raylet")  # the executables Ray's driver starts; the rest descends from them


def ray_roots(driver: int, table: dict[int, tuple[int, int]]) -> set[int]:
    """The GCS and raylet processes ``driver`` started (its children running those executables)."""
    roots = set()
    for pid, (ppid, _) in table.items():
        if ppid == driver:
            try:
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    program = f.read().split(b"\0", 1)[0]
            except OSError:
                continue
            if os.path.basename(program).decode(errors="replace") in RAY_ROOTS:
                roots.add(pid)
    return roots


def reap(seen: set[tuple[int, int]]) -> int:
    """SIGKILL every process of ``seen`` that is still the same process; how many were signalled."""
    table = process_table()
    killed = 0
    for pid, started in seen:
        if pid != os.getpid() and table.get(pid, (0, -1))[1] == started:
            with contextlib.suppress(ProcessLookupError):  # it ended by itself meanwhile
                os.kill(pid, signal.SIGKILL)
                killed += 1
    return killed


def main(driver: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    seen: set[tuple[int, int]] = set()
    began = time.monotonic()
    while True:
        table = process_table()
        seen |= descendants(ray_roots(driver, table), table)
        # while Ray starts (its agents appear within seconds), look 5x as often
        poll = POLL_SECONDS if time.monotonic() - began > 10 * POLL_SECONDS else POLL_SECONDS / 5
        ready, _, _ = select.select([0], [], [], poll)
        if ready and not os.read(0, 65536):  # EOF: the driver is gone
            break
    time.sleep(GRACE_SECONDS)
    reap(seen)


if __name__ == "__main__":
    main(int(sys.argv[1]))
