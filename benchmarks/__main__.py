"""Run every benchmark and print the table: ``python -m benchmarks [--tiny] [--only a,b] [--out FILE]``.

Threads are pinned to one (BLAS, OpenMP, numba, torch) because a cell runs on one core:
parallelism comes from running cells side by side, which ``sweep_overhead`` measures.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import importlib  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from threadpoolctl import threadpool_limits  # noqa: E402

from benchmarks._harness import Row, machine, markdown  # noqa: E402

MODULES = (
    "plm_roofline",
    "plm_torch",
    "plm_sklearn",
    "async_retrieval",
    "retrieval_bounds",
    "sweep_overhead",
    "memory",
    "cube",
    "reads",
    "scale",
    "threads_per_cell",
    "small_cell",
    "startup",
    "driver",
)


def run_all(names: tuple[str, ...] = MODULES, tiny: bool = False, repeats: int | None = None) -> list[Row]:
    """Every requested benchmark's rows, in order; progress goes to stderr."""
    rows: list[Row] = []
    for name in names:
        module = importlib.import_module(f"benchmarks.{name}")
        t0 = time.perf_counter()
        kwargs = {"tiny": tiny} if repeats is None else {"tiny": tiny, "repeats": repeats}
        with threadpool_limits(1):
            rows.extend(module.run(**kwargs))
        print(f"[{name}: {time.perf_counter() - t0:.0f} s]", file=sys.stderr, flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="smallest sizes: checks the code paths, not speed")
    parser.add_argument("--only", default=",".join(MODULES), help=f"comma-separated subset of {', '.join(MODULES)}")
    parser.add_argument("--repeats", type=int, default=None, help="repeats per comparison (default: each module's)")
    parser.add_argument("--out", default=None, help="also write the machine and the table to this markdown file")
    args = parser.parse_args(argv)
    names = tuple(n.strip() for n in args.only.split(",") if n.strip())
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; choose from {', '.join(MODULES)}")
    t0 = time.perf_counter()
    info = machine()
    rows = run_all(names, args.tiny, args.repeats)
    note = "\n(--tiny: smallest sizes, the ratios say nothing about speed)\n" if args.tiny else ""
    text = (
        f"## Machine\n\n{info}\n\n## Results ({time.strftime('%Y-%m-%d %H:%M')}, "
        f"{time.perf_counter() - t0:.0f} s in all)\n{note}\n{markdown(rows)}\n"
    )
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
