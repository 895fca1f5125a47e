"""Stable random streams keyed by coordinate values.

A cell's numbers must not depend on which worker ran it, in which order, or after how many
resumes; so every stream is seeded from the root seed and a hash of coordinate *values*
(never positions, never Python's salted ``hash``). Streams are split by purpose so that the
same data and the same corrupted starts are shared by every rule: comparisons between rules
are paired, which removes sampling noise from rule-versus-rule differences.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

__all__ = ["stable_key", "stream"]


def stable_key(*parts: Any) -> int:
    """128-bit integer from JSON-encoded parts; identical on every machine and Python version."""
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).digest()
    return int.from_bytes(digest[:16], "little")


def stream(root_seed: int, *parts: Any) -> np.random.Generator:
    """Independent Generator for one purpose of one cell."""
    return np.random.default_rng([root_seed, stable_key(*parts)])
