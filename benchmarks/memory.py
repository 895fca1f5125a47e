"""Peak memory of one cell versus the size of its arrays, measured in a fresh subprocess.

The probe process imports everything and runs a tiny cell first (imports, numba cache,
BLAS buffers), then runs the real cell under tracemalloc (numpy reports its allocations to
it; numba's own allocations are not seen) and the growth of the peak resident set size
(VmHWM, reset to the current size just before the cell through /proc/self/clear_refs).
The reference size is what any implementation must hold: the couplings J (N x N float32)
and the training patterns as float32 (P x N).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from benchmarks._harness import Row

ROOT = Path(__file__).resolve().parents[1]


def _spec(N: int, P: int, epochs: int) -> dict:
    return {
        "name": "memory",
        "root_seed": 3,
        "seeds": 1,
        "noise": [0.1, 0.2],
        "P_test": 20,
        "retrieval": {"train_starts": 100, "test_starts": 20, "random_starts": 10},
        "datasets": {"random": {"N": [N], "P": [P]}},
        "rules": {"plm": {"epochs": epochs, "lr": 1.0}},
    }


def _status_kib(field: str) -> int:
    """A field of /proc/self/status in KiB (VmRSS: resident now, VmHWM: peak resident)."""
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field + ":"))


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False where that is not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def probe(N: int, P: int, epochs: int) -> dict:
    """Run in the subprocess: one cell's traced peak and peak RSS growth, in bytes."""
    import tracemalloc

    from amsweep.pipeline import spec as spec_mod
    from amsweep.pipeline.cell import run_cell
    from amsweep.pipeline.rules import plm

    def cell(n: int, p: int, e: int):
        sweep = spec_mod.from_dict(_spec(n, p, e))
        task = next(sweep.tasks())
        return run_cell(sweep.job(task)), task

    cell(32, 16, 2)
    exact = _reset_peak_rss()
    rss_before = _status_kib("VmRSS")
    tracemalloc.start()
    _, task = cell(N, P, epochs)
    _, traced_peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    rss_growth = 1024 * (_status_kib("VmHWM") - rss_before)
    form = "dual" if plm.uses_dual(P, N, task.rule.params) else "primal"
    return {"traced_peak": traced_peak, "rss_growth": rss_growth, "rss_exact": exact, "form": form}


def run(tiny: bool = False, repeats: int = 1) -> list[Row]:
    cases = [(48, 48, 2), (48, 96, 2)] if tiny else [(1000, 1000, 20), (1000, 2000, 5)]
    rows = []
    for N, P, epochs in cases:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", str(N), str(P), str(epochs)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        m = json.loads(out.stdout.strip().splitlines()[-1])
        reference = 4 * (N * N + P * N)
        ratio = m["traced_peak"] / reference
        rows.append(
            Row(
                f"cell peak memory / arrays (J + X float32), N = {N}, P = {P}",
                ratio,
                ratio,
                ratio,
                1,
                "-",
                None,
                f"PLM ({m['form']} form) + async retrieval (2 noise levels, 100 train, 20 test, 10 random starts); "
                f"numpy peak (tracemalloc) {m['traced_peak'] / 2**20:.1f} MiB, peak RSS growth "
                f"{m['rss_growth'] / 2**20:.1f} MiB{'' if m['rss_exact'] else ' (lower bound)'}, arrays "
                f"{reference / 2**20:.1f} MiB; fresh subprocess",
            )
        )
    return rows


if __name__ == "__main__":
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        print(json.dumps(probe(*(int(a) for a in sys.argv[1:4]))))
