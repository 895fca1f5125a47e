"""Side-by-side timing: interleaved repeats, per-repeat ratios, medians, spreads, table rows.

The machine these run on is shared, so no absolute time is ever a verdict: each repeat
times the contenders back to back (alternating their order), the ratio is taken within the
repeat, and the table reports the median ratio with its min-max spread over the repeats.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Row:
    """One line of the results table: a ratio, its spread, the target and what was timed."""

    benchmark: str
    ratio: float
    lo: float
    hi: float
    repeats: int
    target: str
    met: bool | None  # None: no target, or the comparison could not run
    detail: str


def interleaved(fns: dict[str, Callable[[], Any]], repeats: int, warmup: bool = True) -> dict[str, list[float]]:
    """Wall seconds of each function per repeat, run in turn, order reversed every other repeat."""
    names = list(fns)
    if warmup:
        for name in names:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names if r % 2 == 0 else names[::-1]:
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return times


def ratio_row(
    benchmark: str, num: Sequence[float], den: Sequence[float], op: str, target: float | None, detail: str
) -> Row:
    """Row of the per-repeat ratios num/den; ``op`` is '<=' or '>=' against ``target``."""
    ratios = [a / b for a, b in zip(num, den)]
    med = statistics.median(ratios)
    if target is None:
        return Row(benchmark, med, min(ratios), max(ratios), len(ratios), "-", None, detail)
    met = med <= target if op == "<=" else med >= target
    return Row(benchmark, med, min(ratios), max(ratios), len(ratios), f"{op} {target:g}", met, detail)


def skipped(benchmark: str, target: str, reason: str) -> Row:
    """A row whose comparison could not run here (e.g. the optional baseline is not installed)."""
    return Row(benchmark, float("nan"), float("nan"), float("nan"), 0, target, None, f"NOT RUN: {reason}")


def ms(seconds: Sequence[float] | float) -> str:
    """Median milliseconds, for the detail column (information only, never a verdict)."""
    value = statistics.median(seconds) if isinstance(seconds, Sequence) else seconds
    return f"{1e3 * value:.1f} ms"


def random_patterns(P: int, N: int, seed: int) -> np.ndarray:
    """Unbiased +-1 int8 patterns, the data every benchmark trains on."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((P, N)) < 0.5, 1, -1).astype(np.int8)


def markdown(rows: Sequence[Row]) -> str:
    """The results table as GitHub markdown."""
    lines = [
        "| benchmark | ratio (median) | spread (min-max) | repeats | target | met | what was timed |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        verdict = {True: "yes", False: "**no**", None: "-"}[r.met]
        lines.append(
            f"| {r.benchmark} | {r.ratio:.2f} | {r.lo:.2f}-{r.hi:.2f} | {r.repeats} | {r.target} "
            f"| {verdict} | {r.detail} |"
        )
    return "\n".join(lines)


def machine() -> str:
    """CPU, cores, load and library builds, as markdown bullet points."""
    from threadpoolctl import threadpool_info

    cpu = "unknown"
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    lines = [
        f"- CPU: {cpu}; {os.cpu_count()} logical cores; load average at start "
        f"{', '.join(f'{x:.2f}' for x in os.getloadavg())}",
        f"- Python {platform.python_version()} on {platform.system()} {platform.release()}",
    ]
    versions = []
    for name in ("numpy", "numba", "scipy", "sklearn", "ray", "zarr", "torch"):
        try:
            versions.append(f"{name} {__import__(name).__version__}")
        except ImportError:
            versions.append(f"{name} (not installed)")
    lines.append("- " + ", ".join(versions))
    for lib in threadpool_info():
        lines.append(
            f"- {lib['user_api']}: {lib['internal_api']} {lib.get('version')} "
            f"({lib.get('architecture', '?')}, {lib.get('threading_layer', '?')}), "
            f"{os.path.basename(lib['filepath'])}"
        )
    return "\n".join(lines)
