"""A local Ray dies with its driver, even after ``kill -9``.

Ray ties its GCS and raylet to the driver that started them (the kernel kills them when it
dies), but the raylet's children (dashboard and runtime-env agents, idle workers) were seen
lingering ~60 s after a ``kill -9`` of the driver. ``start`` launches this module as a tiny
separate process holding the read end of a pipe whose write end only the driver has: when the
driver ends, however it ends, the pipe reaches EOF and the reaper kills every process of this
user whose command line names the driver's Ray session directory (unique to that session:
it holds the start time and the driver's pid), then exits. It ignores Ctrl-C, which is the
driver's to handle, and never touches another session.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

GRACE_SECONDS = 1.0  # let a driver that called ray.shutdown() see its processes leave first


def start(session_dir: str) -> subprocess.Popen:
    """Launch the reaper for ``session_dir``; the driver keeps the pipe's write end until it exits."""
    read, write = os.pipe()  # both ends non-inheritable: Ray's children never hold the write end
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.ray_reaper", session_dir], stdin=read,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    os.close(read)
    start.write_end = write  # type: ignore[attr-defined]  # kept open for the driver's lifetime
    return proc


def session_processes(session_dir: str) -> list[int]:
    """Pids of this user's processes whose command line names the session directory."""
    pids = []
    me, uid = os.getpid(), os.getuid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                cmdline = f.read().decode(errors="replace")
        except OSError:
            continue
        if session_dir in cmdline:
            pids.append(int(entry))
    return pids


def reap(session_dir: str) -> int:
    """SIGKILL what is left of the session; the number of processes signalled."""
    pids = session_processes(session_dir)
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return len(pids)


def main(session_dir: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    while sys.stdin.buffer.read(65536):  # EOF: the driver is gone
        pass
    time.sleep(GRACE_SECONDS)
    reap(session_dir)


if __name__ == "__main__":
    main(sys.argv[1])
