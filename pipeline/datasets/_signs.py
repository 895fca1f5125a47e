"""Patterns as signs of sparse +-1 combinations: shared by random_features and correlated.

Both datasets build an example as sign(sum_k c_k f_k) over hidden +-1 features with L nonzero
+-1 coefficients per row; one implementation keeps their random draws the same in kind and order.
"""

from __future__ import annotations

import numpy as np

__all__ = ["coefficient_signs", "sign_of_combination"]


def coefficient_signs(rows: int, D: int, L: int, rng: np.random.Generator) -> np.ndarray:
    """(rows, D) float32 coefficients: all +-1 (L = 0 or L >= D), or L random entries +-1 per row."""
    signs = np.where(rng.random((rows, D)) < 0.5, -1.0, 1.0).astype(np.float32)
    if 0 < L < D:
        # the L smallest of D iid uniforms per row: a uniform random L-subset, no row loop
        keys = rng.random((rows, D))
        active = np.zeros((rows, D), dtype=bool)
        np.put_along_axis(active, np.argpartition(keys, L - 1, axis=1)[:, :L], True, axis=1)
        signs *= active
    return signs


def sign_of_combination(c: np.ndarray, features: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """sign(c @ features) as int8, zero sums broken by a fair coin; integer sums are exact in float32."""
    field = c @ features.astype(np.float32)
    coin = np.where(rng.random(field.shape) < 0.5, -1, 1).astype(np.int8)
    return np.where(field > 0, 1, np.where(field < 0, -1, coin)).astype(np.int8)
