"""Test-side helpers written independently of the package's own kernels."""

from __future__ import annotations

import numpy as np


def patterns(P: int, N: int, seed: int) -> np.ndarray:
    """P unbiased random +-1 patterns of N spins."""
    rng = np.random.default_rng(seed)
    return np.where(rng.random((P, N)) < 0.5, 1, -1).astype(np.int8)


def corrupt(X: np.ndarray, rho: float, rng: np.random.Generator) -> np.ndarray:
    """Flip exactly floor(rho N) distinct sites of each row."""
    P, N = X.shape
    idx = np.argsort(rng.random((P, N)), axis=1)[:, : int(rho * N)]
    S = X.copy()
    np.put_along_axis(S, idx, -np.take_along_axis(S, idx, 1), 1)
    return S
