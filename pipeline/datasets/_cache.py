"""A content-addressed on-disk cache of arrays that many workers may ask for at once.

Entries are immutable: a file name is a hash of everything that determines its content,
so a file that exists is correct and is never rewritten. Creation is atomic (write to a
temporary file in the same directory, then ``os.replace``), so a reader never sees a
partial file. Workers that miss at the same time all compute; the first ``os.replace``
wins, later ones find the file present, drop their own copy and read the winner's, which
holds the same values because generation is deterministic in the key.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ENV_VAR = "AMSWEEP_CACHE"


def cache_dir() -> Path:
    """``$AMSWEEP_CACHE`` or ``~/.cache/amsweep``, created on demand."""
    root = Path(os.environ.get(ENV_VAR) or Path.home() / ".cache" / "amsweep").expanduser()
    root.mkdir(parents=True, exist_ok=True)
    return root


def digest(key: dict[str, Any]) -> str:
    """Stable short hash of a JSON-able key (sorted keys, so dict order does not matter)."""
    text = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def load(path: Path) -> dict[str, np.ndarray]:
    """All arrays of a cached .npz entry, read fully so the file handle is closed."""
    with np.load(path, allow_pickle=False) as f:
        return {name: f[name] for name in f.files}


def load_or_create(path: Path, create: Callable[[], dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], bool]:
    """The arrays stored at ``path``, computing and storing them first if absent.

    Returns (arrays, created): ``created`` is False when the file was read, including when
    another worker finished first while this one was computing.
    """
    if path.exists():
        return load(path), False
    arrays = create()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)  # mkstemp's 0600 would hide the entry from other users
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy stubs type **kwds as its flags
            f.flush()
            os.fsync(f.fileno())
        if path.exists():
            return load(path), False
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return arrays, True
