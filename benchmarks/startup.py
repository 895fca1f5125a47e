"""Start of ``amsweep status`` and ``amsweep query`` (issue 26: <= 0.3 s from import to output).

Cold: wall seconds from spawning a new Python process that runs the command (``amsweep.sweeps.cli.main``,
stdout unbuffered) to the first byte of its output, interpreter start included: what a user waits for.
Warm: the same command run again inside that process (everything imported), the command's own work.
On a small cube (the cube benchmark's shape with 2 seeds, 120 tasks), so that reading it is a few ms
and the figure is the start. With ``AMSWEEP_STARTUP_PEER=/path/to/checkout`` (its ``.venv/bin/python``
runs its own code) the peer is timed in the same run, alternated, and the per-repeat ratio reported.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._harness import Row, ratio_row

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.3  # seconds, import to first output (issue 26)
COMMANDS = {
    "status": ["status", "{cube}"],
    "query": ["query", "{cube}", "--metric", "m_train", "--where", "noise=0.1", "--mean"],
}
# Runs the command twice: the first prints as soon as it can (cold), the second is timed inside (warm).
PROBE = (
    "import io, sys, time\n"
    "from amsweep.sweeps.cli import main\n"
    "args = sys.argv[1:]\n"
    "main(args)\n"
    "out, sys.stdout = sys.stdout, io.StringIO()\n"
    "t = time.perf_counter(); main(args); warm = time.perf_counter() - t\n"
    "sys.stdout = out\n"
    "print(f'WARM {warm}', file=sys.stderr)\n"
)


def make_cube(path: str) -> None:
    """The cube benchmark's sweep with 2 seeds, every task written through the storage API."""
    from benchmarks.cube import results, sweep, write_all

    s = sweep(seeds=2)
    write_all(path, s, results(s))


def first_output(python: str, cwd: Path, argv: list[str]) -> tuple[float, float]:
    """(seconds from spawn to the first byte of stdout, the warm run's seconds)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [python, "-u", "-c", PROBE, *argv], cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    cold = time.perf_counter() - t0
    rest, err = proc.communicate(timeout=300)
    if proc.returncode != 0 or not first:
        raise RuntimeError(f"{python} {argv} failed ({proc.returncode}): {err.decode()[-2000:]}")
    warm = float(next(line.split()[1] for line in err.decode().splitlines() if line.startswith("WARM ")))
    return cold, warm


def run(tiny: bool = False, repeats: int = 5) -> list[Row]:
    peer = os.environ.get("AMSWEEP_STARTUP_PEER")
    contenders = {"this": (sys.executable, ROOT)}
    if peer and not tiny:
        contenders["peer"] = (str(Path(peer) / ".venv" / "bin" / "python"), Path(peer))
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="amsweep-startup-") as folder:
        cube = str(Path(folder) / "c.zarr")
        make_cube(cube)
        for name, template in COMMANDS.items():
            argv = [a.format(cube=cube) for a in template]
            cold: dict[str, list[float]] = {k: [] for k in contenders}
            warm: dict[str, list[float]] = {k: [] for k in contenders}
            order = list(contenders)
            for r in range(1 if tiny else repeats):
                for k in order if r % 2 == 0 else order[::-1]:
                    c, w = first_output(*contenders[k], argv)
                    cold[k].append(c)
                    warm[k].append(w)
            med = statistics.median(cold["this"])
            detail = (
                f"`amsweep {' '.join(template)}` on 120 tasks, new process to first byte; warm (in-process "
                f"repeat) {1e3 * statistics.median(warm['this']):.0f} ms; load {load}"
            )
            rows.append(
                Row(
                    f"import to first output, {name} (s)",
                    med,
                    min(cold["this"]),
                    max(cold["this"]),
                    len(cold["this"]),
                    f"<= {TARGET:g}",
                    med <= TARGET,
                    detail,
                )
            )
            if "peer" in contenders:
                rows.append(
                    ratio_row(
                        f"import to first output, {name}: this / peer",
                        cold["this"],
                        cold["peer"],
                        "<=",
                        None,
                        f"peer {peer}: {statistics.median(cold['peer']):.3f} s cold, warm "
                        f"{1e3 * statistics.median(warm['peer']):.0f} ms; alternated",
                    )
                )
    return rows
