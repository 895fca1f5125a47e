"""Reading format-1 cubes (one Zarr chunk object per task per variable), for status, query,
report and ``amsweep upgrade``. Format 1 is never written: ``run`` asks for an upgrade first.

Reads go through zarr-python, chunk by chunk where a chunk is damaged, so that a damaged
format-1 cube can still be inspected and upgraded (its damaged tasks become pending).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import numpy as np
import zarr

from amsweep.storage.schema import PENDING
from amsweep.storage.records import AMSWEEP_DIR

__all__ = ["group", "read_array", "read_couplings", "read_failures", "read_status"]

if TYPE_CHECKING:
    from amsweep.storage.cube import Cube


def group(cube: "Cube") -> zarr.Group:
    return zarr.open_group(
        cube.path, mode="r", storage_options=cube.storage_options, zarr_format=3, use_consolidated=False
    )


def read_array(cube: "Cube", name: str, fill: Any) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """A whole format-1 array; if a chunk is damaged, task by task to find which."""
    arr = group(cube)[name]
    assert isinstance(arr, zarr.Array), f"{name} is a group in a format-1 cube"
    try:
        return np.asarray(arr[...]), []
    except Exception:  # a truncated or garbled chunk somewhere: locate it below
        out = np.full(arr.shape, fill, dtype=arr.dtype)
    bad = []
    for index in np.ndindex(*cube.sweep.shape):
        try:
            out[index] = arr[index]
        except Exception:
            bad.append(index)
    return out, bad


def read_status(cube: "Cube") -> tuple[np.ndarray, list[tuple[int, ...]]]:
    status, bad = read_array(cube, "status", PENDING)
    for index in bad:
        status[index] = PENDING
    return status.astype(np.int8), bad


def read_failures(cube: "Cube") -> list[dict[str, Any]]:
    """Format 1 kept one JSON record per failed or not-applicable task."""
    prefix = f"{AMSWEEP_DIR}/failures/"
    keys = [k for k in cube.objects.list(f"{AMSWEEP_DIR}/failures") if k.endswith(".json")]
    out = []
    for key, data in sorted(cube.objects.get_many(keys).items()):
        if data and key.startswith(prefix):
            record = json.loads(data)
            record["coords"] = cube.coords_of(tuple(record["index"]))
            out.append(record)
    return out


def read_couplings(cube: "Cube", key: str) -> np.ndarray | None:
    g = group(cube)
    name = f"{AMSWEEP_DIR}/couplings/{key}"
    if name not in g:
        return None
    arr = g[name]
    assert isinstance(arr, zarr.Array), f"{name} is a group in a format-1 cube"
    return np.asarray(arr[...])
