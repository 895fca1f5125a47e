"""A set of tokens drawn uniformly on the unit sphere of R^d: the input of attention clustering.

Why N = d and P = n: the grid's N is the length of an example and P the size of the set a rule
learns from, so a token (a row) has N = d coordinates and the token set is the training set of
P = n tokens. The inverse temperature beta then rides on the rule axis, and a sweep over
(N, P, rule) is a sweep over (d, n, beta) with every axis meaning what it means elsewhere.

Cells speak +-1 states, so ``train`` and ``test`` are the sign patterns of the tokens (ties have
probability 0) and the continuous tokens travel in ``meta["tokens"]`` / ``meta["test_tokens"]``,
which the ``self_attention`` rule reads. Uniform directions are normalised Gaussian vectors.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Data, Param

PARAMS: dict[str, Param] = {}


META = ("tokens", "test_tokens")


def check(N: int, P: int, P_test: int, params: dict) -> None:
    """Tokens need at least two coordinates to have a direction on a circle."""
    if N < 2:
        raise ValueError(f"sphere_tokens needs dimension N = d >= 2, got N={N}")


def uniform_sphere(n: int, d: int, rng: np.random.Generator) -> np.ndarray:
    """n independent unit vectors, uniform on the sphere S^(d-1) (rotation-invariant Gaussian)."""
    X = rng.standard_normal((n, d))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def _signs(X: np.ndarray) -> np.ndarray:
    return np.where(X >= 0.0, 1, -1).astype(np.int8)


def make(N: int, P: int, P_test: int, params: dict, rng: np.random.Generator) -> Data:
    """P training and P_test test tokens in R^N; the +-1 arrays are their signs."""
    check(N, P, P_test, params)
    tokens = uniform_sphere(P, N, rng)
    test_tokens = uniform_sphere(P_test, N, rng)
    return Data(
        train=_signs(tokens),
        test=_signs(test_tokens),
        q=2,
        meta={"tokens": tokens, "test_tokens": test_tokens},
    )
