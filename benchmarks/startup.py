"""Start of ``amsweep status`` and ``amsweep query`` (issue 26: <= 0.3 s from import to output).

Cold: wall seconds from spawning a new Python process that runs the command (``amsweep.sweeps.cli.main``,
stdout unbuffered) to the first byte of its output, interpreter start included: what a user waits for.
Warm: the same command run again inside that process (everything imported), the command's own work.
On a small cube (the cube benchmark's shape with 2 seeds, 120 tasks), so that reading it is a few ms
and the figure is the start. With ``AMSWEEP_STARTUP_PEER=/path/to/checkout`` (its ``.venv/bin/python``
runs its own code) the peer is timed in the same run, alternated, and the per-repeat ratio reported.

A real query on a big cube, so that the start is not bought with a slower read: the wall seconds of a
whole ``amsweep query`` process (``--metric m_train --mean``, and ``--csv`` of every row) on the cube
benchmark's sweep with 1,667 seeds (100,020 cells, 700,140 rows of m_train), this against the peer,
alternated; without a peer, this alone.

Also the shard checksum that made status load numba: encode + decode of every shard of the cube
benchmark's 10^5-cell cube with storage/shards.py's google-crc32c (one C call per inner chunk) against
the numba table kernel it replaced (kept here), alternated; format 2's one-task chunks as well.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._harness import Row, interleaved, ratio_row

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


def first_output(python: str, cwd: Path, argv: list[str]) -> tuple[float, float, float]:
    """(seconds from spawn to the first byte of stdout, the warm run's seconds, the CPU seconds of the
    whole process: user + sys, which a loaded machine inflates far less than wall time)."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
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
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cold, warm, cpu


def numba_crc32c_rows(rows: np.ndarray) -> np.ndarray:
    """The numba table kernel storage/shards.py used before issue 26 (compiled on first call)."""
    global _NUMBA_KERNEL
    if _NUMBA_KERNEL is None:
        import numba

        table = np.zeros(256, dtype=np.uint32)
        for i in range(256):
            c = i
            for _ in range(8):
                c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
            table[i] = c

        @numba.njit(cache=True)
        def kernel(rows: np.ndarray, table: np.ndarray) -> np.ndarray:
            out = np.empty(rows.shape[0], dtype=np.uint32)
            for r in range(rows.shape[0]):
                c = np.uint32(0xFFFFFFFF)
                for b in rows[r]:
                    c = table[(c ^ b) & 0xFF] ^ (c >> np.uint32(8))
                out[r] = c ^ np.uint32(0xFFFFFFFF)
            return out

        _NUMBA_KERNEL = lambda rows: kernel(np.ascontiguousarray(rows, dtype=np.uint8), table)  # noqa: E731
    return _NUMBA_KERNEL(rows)


_NUMBA_KERNEL = None


def crc_rows(tiny: bool, repeats: int) -> list[Row]:
    """Encode + decode every shard of every variable, google-crc32c against the numba kernel."""
    import dataclasses

    from benchmarks.cube import sweep
    from amsweep.storage import shards, zarr_documents
    from amsweep.storage.shards import ShardIdentity

    s = sweep(seeds=2 if tiny else 1667)
    tpl = zarr_documents.build(s)
    rng = np.random.default_rng(0)
    rows: list[Row] = []
    for fmt in (3, 2):
        work = []
        for name, meta in tpl.arrays.items():
            if type(meta.codecs[0]).__name__ != "ShardingCodec":
                continue  # coordinates
            g = zarr_documents.shard_geometry(meta)
            if fmt == 2:  # one task per inner chunk, no identity header
                g = dataclasses.replace(g, block=None, headed=False)
            for idx in np.ndindex(*g.grid(s.shape)):
                values, present = g.empty(0)
                if g.dtype.kind == "f":
                    values = rng.random(values.shape).astype(g.dtype)
                present[:] = True
                work.append((g, values, present, ShardIdentity("c", name, g.key(name, idx)) if g.headed else None))
        chunks = sum(g.n_chunks for g, *_ in work)

        def both(crc) -> None:
            shards.crc32c_rows = crc
            for g, v, p, i in work:
                g.decode(g.encode(v, p, i), 0, i)

        c_crc = shards.crc32c_rows
        numba_crc32c_rows(np.zeros((1, 4), np.uint8))  # compiled before timing
        try:
            times = interleaved(
                {"C": lambda: both(c_crc), "numba": lambda: both(numba_crc32c_rows)}, 1 if tiny else repeats
            )
        finally:
            shards.crc32c_rows = c_crc
        rows.append(
            ratio_row(
                f"shard CRC-32C, format {fmt}: google-crc32c / numba kernel",
                times["C"],
                times["numba"],
                "<=",
                1.0 if fmt == 3 else None,
                f"encode + decode every shard of {int(np.prod(s.shape)):,} tasks ({len(work)} shards, "
                f"{chunks:,} inner chunks); C {statistics.median(times['C']):.2f} s, numba "
                f"{statistics.median(times['numba']):.2f} s (+ its import, ~0.6-1 s)",
            )
        )
    return rows


BIG_QUERIES = {
    "--mean": ["query", "{cube}", "--metric", "m_train", "--mean"],
    "--csv": ["query", "{cube}", "--metric", "m_train", "--csv", "{csv}"],
}


def big_query_rows(contenders: dict[str, tuple[str, Path]], tiny: bool, repeats: int, load: str) -> list[Row]:
    """Whole-process wall seconds of a query over every cell of a 10^5-cell cube (tiny: 120 cells)."""
    from benchmarks.cube import results, sweep, write_all

    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="amsweep-bigquery-") as folder:
        cube = str(Path(folder) / "big.zarr")
        s = sweep(seeds=2 if tiny else 1667)
        write_all(cube, s, results(s))
        cells = int(np.prod(s.shape))
        for name, template in BIG_QUERIES.items():
            times: dict[str, list[float]] = {k: [] for k in contenders}
            for r in range(1 if tiny else repeats):
                for k in list(contenders) if r % 2 == 0 else list(contenders)[::-1]:
                    python, cwd = contenders[k]
                    argv = [a.format(cube=cube, csv=str(Path(folder) / f"{k}.csv")) for a in template]
                    env = {v: x for v, x in os.environ.items() if v != "PYTHONPATH"}
                    t0 = time.perf_counter()
                    subprocess.run(
                        [python, "-m", "amsweep.sweeps.cli", *argv], cwd=cwd, env=env, check=True, capture_output=True
                    )
                    times[k].append(time.perf_counter() - t0)
            if name == "--csv" and "peer" in contenders:  # the same table, byte for byte
                assert Path(folder, "this.csv").read_bytes() == Path(folder, "peer.csv").read_bytes()
            med = statistics.median(times["this"])
            shown = " ".join(template).replace("{cube}", "CUBE").replace("{csv}", "OUT")
            if "peer" in contenders:
                rows.append(
                    ratio_row(
                        f"query of {cells:,} cells, {name}: this / peer (wall)",
                        times["this"],
                        times["peer"],
                        "<=",
                        1.0,
                        f"`amsweep {shown}`, whole process; this {med:.2f} s, peer "
                        f"{statistics.median(times['peer']):.2f} s; alternated; load {load}",
                    )
                )
            else:
                rows.append(
                    Row(
                        f"query of {cells:,} cells, {name} (s, wall)",
                        med,
                        min(times["this"]),
                        max(times["this"]),
                        len(times["this"]),
                        "-",
                        None,
                        f"`amsweep {shown}`, whole process; load {load}",
                    )
                )
    return rows


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
            cpu: dict[str, list[float]] = {k: [] for k in contenders}
            order = list(contenders)
            for r in range(1 if tiny else repeats):
                for k in order if r % 2 == 0 else order[::-1]:
                    c, w, u = first_output(*contenders[k], argv)
                    cold[k].append(c)
                    warm[k].append(w)
                    cpu[k].append(u)
            med = statistics.median(cold["this"])
            shown = " ".join(template).replace("{cube}", "CUBE")
            detail = (
                f"`amsweep {shown}` on 120 tasks, new process to first byte; process CPU "
                f"{statistics.median(cpu['this']):.2f} s (both runs); warm (in-process repeat) "
                f"{1e3 * statistics.median(warm['this']):.0f} ms; load {load}"
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
                        f"peer {peer}: {statistics.median(cold['peer']):.3f} s cold (this "
                        f"{med:.3f} s), process CPU {statistics.median(cpu['peer']):.2f} s (this "
                        f"{statistics.median(cpu['this']):.2f} s), warm "
                        f"{1e3 * statistics.median(warm['peer']):.0f} ms; alternated",
                    )
                )
    rows += big_query_rows(contenders, tiny, 3 if repeats > 3 else repeats, load)
    return rows + crc_rows(tiny, 3 if repeats > 3 else repeats)
