"""Where a cube's numbers came from: amsweep's version and source commit, and the run's machine.

A cube outlives the code that wrote it; a figure that surprises someone a year later should be
traceable to the exact source (commit, and whether the tree had uncommitted changes) and to the
numeric stack of each run (numpy, numba, BLAS), since a BLAS or numba change can move the last
bits of a result.
"""

from __future__ import annotations

import functools
import platform
import socket
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["cube_attrs", "package_version", "run_environment", "SOURCE", "source"]

SOURCE = Path(__file__).resolve().parents[1]


def package_version(name: str = "amsweep") -> str:
    from importlib.metadata import PackageNotFoundError, version  # not on every status: ~0.02 s

    try:
        return version(name)
    except PackageNotFoundError:
        return "unknown"


@functools.lru_cache(maxsize=1)
def source() -> dict[str, Any]:
    """Git commit and dirtiness of a source checkout (empty for an installed wheel)."""
    if not (SOURCE / ".git").exists():
        return {}
    try:
        commit = subprocess.run(
            ["git", "-C", str(SOURCE), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(SOURCE), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"source_commit": commit, "source_dirty": bool(dirty)}


def cube_attrs() -> dict[str, Any]:
    """Provenance attributes a cube records when it is created or changed."""
    return {"amsweep_version": package_version(), **source()}


@functools.lru_cache(maxsize=1)
def run_environment() -> dict[str, Any]:
    """The numeric stack and host of one run (kept in the run record)."""
    versions = {name: package_version(name) for name in ("numpy", "numba", "scipy", "zarr", "xarray", "ray")}
    blas = []
    try:
        from threadpoolctl import threadpool_info

        blas = [
            f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture', '?')})"
            for i in threadpool_info()
            if i.get("user_api") == "blas"
        ]
    except Exception:  # threadpoolctl cannot inspect every platform; provenance is best effort
        blas = []
    return {
        "host": socket.gethostname(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "versions": versions,
        "blas": blas,
        **cube_attrs(),
    }
