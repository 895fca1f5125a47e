"""Where a command's CPU goes, process by process: a diagnostic for issue 26's "Ray pays off on 2 cores".

``python -m benchmarks.ray_timeline -- amsweep run SPEC --out CUBE --executor ray --workers 2`` runs the
command and samples its process tree every 0.25 s: per process name (the driver, gcs_server, raylet,
the dashboard and runtime-env agents, the log monitor, each worker), the CPU it ran
(``/proc/PID/task/TID/schedstat``: run time) and the time it waited for a core (run-queue wait),
then the command's output lines with the second each arrived. Run-queue wait is what a loaded
machine adds: on the shared 2-core VM, serial's "missing" wall time (43 s for 23 s of CPU) was all
of it. Not a benchmark row (no figure to compare): a measuring tool, Linux only.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections import defaultdict

SAMPLE_SECONDS = 0.25


def _parents() -> dict[int, int]:
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat", "rb") as f:
                    out[int(entry)] = int(f.read().rsplit(b")", 1)[1].split()[1])
            except OSError:
                pass
    return out


def _name(pid: int) -> str:
    with open(f"/proc/{pid}/comm") as f:
        name = f.read().strip()
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    if name.startswith("python") and len(argv) > 1:
        name = "py:" + b" ".join(argv[1:3]).decode(errors="replace")[-50:]
    return name


def main(argv: list[str]) -> None:
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1)
    lines: list[tuple[float, str]] = []

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append((time.perf_counter() - t0, line.rstrip()))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    seen: dict[tuple[int, int], tuple[str, int, int, float, float]] = {}  # (pid, tid) -> name, run, wait, first, last
    while proc.poll() is None:
        children: dict[int, list[int]] = defaultdict(list)
        for pid, parent in _parents().items():
            children[parent].append(pid)
        stack, now = [proc.pid], time.perf_counter() - t0
        while stack:
            pid = stack.pop()
            stack.extend(children.get(pid, ()))
            try:
                name = _name(pid)
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                        run, wait, _ = f.read().split()
                    first = seen[(pid, int(tid))][3] if (pid, int(tid)) in seen else now
                    seen[(pid, int(tid))] = (name, int(run), int(wait), first, now)
            except OSError:
                continue  # it ended meanwhile
        time.sleep(SAMPLE_SECONDS)
    wall = time.perf_counter() - t0
    reader.join(2)
    totals: dict[str, list] = defaultdict(lambda: [0, 0, set(), float("inf"), 0.0])
    for (pid, _), (name, run, wait, first, last) in seen.items():
        t = totals[name]
        t[0], t[1], t[3], t[4] = t[0] + run, t[1] + wait, min(t[3], first), max(t[4], last)
        t[2].add(pid)
    print(f"wall {wall:.2f} s, exit status {proc.returncode}")
    for name, (run, wait, pids, first, last) in sorted(totals.items(), key=lambda kv: -kv[1][0]):
        print(
            f"  cpu {run / 1e9:7.2f} s  run-queue wait {wait / 1e9:7.2f} s  processes {len(pids):2d}  "
            f"seen {first:6.1f}-{last:6.1f} s  {name}"
        )
    print(f"  total cpu {sum(t[0] for t in totals.values()) / 1e9:.2f} s")
    progress = [x for x in lines if "task/s" in x[1] or "s/task" in x[1]]
    for at, line in [x for x in lines if x not in progress] + progress[:2] + progress[-2:]:
        print(f"  [{at:6.2f} s] {line[-150:]}")


if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or args[0] in ("-h", "--help"):  # not a command to run (attackx: --help ran "--help")
        print("usage: python -m benchmarks.ray_timeline -- COMMAND [ARG ...]\n\n" + (__doc__ or "").strip())
        sys.exit(0 if args else 2)
    main(args[1:] if args[:1] == ["--"] else args)
