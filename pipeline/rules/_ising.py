"""Helpers shared by the Ising (q = 2) learning rules.

One place for the checks every Ising rule does and for the Hebbian couplings, which are
both a rule of their own and the starting point of PLM and of unlearning.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import NotApplicable


def require_ising(q: int, rule: str) -> None:
    """Refuse Potts data: these rules are written for +-1 spins only."""
    if q > 2:
        raise NotApplicable(f"{rule} is Ising-only (q=2)")


def as_spins(X: np.ndarray) -> np.ndarray:
    """The (P, N) patterns as float32, after checking they are +-1 (catches 0/1 data early)."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"patterns must be a (P, N) array, got shape {X.shape}")
    if X.size and not np.all(np.abs(X) == 1):
        raise ValueError("Ising rules need +-1 patterns")
    return X.astype(np.float32)


def hebb_couplings(Xf: np.ndarray) -> np.ndarray:
    """J = X^T X / N with zero diagonal, float32 (one BLAS product)."""
    N = Xf.shape[1]
    J = Xf.T @ Xf
    J /= np.float32(N)
    np.fill_diagonal(J, 0.0)
    return J
