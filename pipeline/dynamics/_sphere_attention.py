"""Self-attention followed by normalisation, iterated on a set of tokens: clustering on the sphere.

One step updates every token at once (as a transformer layer does), with A_i = sum_j
softmax_j(beta x_i . x_j) x_j:
    residual:  x_i <- Norm(x_i + h A_i)        (h = 1 is the layer; h -> 0 the continuous flow)
    attention: x_i <- Norm(A_i)                (the pure-attention variant)
Norm has no learnable parameters and returns unit vectors:
    'sphere':    x / |x|, RMS normalisation up to the constant sqrt(d);
    'layernorm': (x - mean_a x_a) / |x - mean_a x_a|, LayerNorm up to the same constant.
Why unit vectors: LayerNorm's output has norm sqrt(d), which would turn beta x_i . x_j into
beta d cos(x_i, x_j) and give beta a different meaning at every d; on the unit sphere beta is the
inverse temperature of the cosines at every dimension (the scale Geshkovski et al. analyse).
'layernorm' also removes the direction (1, ..., 1), so its tokens live on the unit sphere of a
(d - 1)-dimensional subspace (at d = 2: two antipodal points only).

For h -> 0 the residual map is an explicit Euler step of the flow on the sphere
dx_i/dt = (I - x_i x_i^T) A_i, with time t = h x steps.

Clusters are counted by single linkage: tokens i and j are joined when their angle is below eps
(cos >= cos eps), and clusters are the connected components.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit

NORMS = ("sphere", "layernorm")


def normalise(X: np.ndarray, norm: str) -> np.ndarray:
    """Rows mapped to unit vectors, centred over their coordinates first for 'layernorm'."""
    if norm == "layernorm":
        X = X - X.mean(axis=1, keepdims=True)
    return X / np.linalg.norm(X, axis=1, keepdims=True)


def attention(X: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """A = softmax_rows(beta X X^T) X and the Gram matrix X X^T: two (n, n, d) products."""
    G = X @ X.T
    W = beta * G
    W -= W.max(axis=1, keepdims=True)
    np.exp(W, out=W)
    W /= W.sum(axis=1, keepdims=True)
    return W @ X, G


def step(X: np.ndarray, beta: float, residual: bool, h: float, norm: str) -> tuple[np.ndarray, np.ndarray]:
    """One synchronous update of every token; also the Gram matrix of the tokens before it."""
    A, G = attention(X, beta)
    return normalise(X + h * A if residual else A, norm), G


@njit(cache=True)
def _root(parent: np.ndarray, i: int) -> int:
    while parent[i] != i:
        parent[i] = parent[parent[i]]  # path halving
        i = parent[i]
    return i


@njit(cache=True)
def single_linkage(G: np.ndarray, threshold: float) -> tuple[int, np.ndarray]:
    """Connected components of the graph {(i, j): G_ij >= threshold}: (count, labels 0..count-1).

    Labels are numbered in order of each cluster's first token. O(n^2) with union-find, run after
    every step, where building a sparse graph for scipy would cost more than the comparisons.
    """
    n = G.shape[0]
    parent = np.arange(n)
    for i in range(n):
        for j in range(i + 1, n):
            if G[i, j] >= threshold:
                ri = _root(parent, i)
                rj = _root(parent, j)
                if ri != rj:
                    parent[max(ri, rj)] = min(ri, rj)
    labels = np.full(n, -1, dtype=np.int64)
    names = np.full(n, -1, dtype=np.int64)
    count = 0
    for i in range(n):
        r = _root(parent, i)
        if names[r] < 0:
            names[r] = count
            count += 1
        labels[i] = names[r]
    return count, labels


def count_clusters(X: np.ndarray, eps: float) -> tuple[int, np.ndarray]:
    """Single-linkage clusters of unit-vector rows at angular distance eps (radians)."""
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    return single_linkage(np.ascontiguousarray(U @ U.T), float(np.cos(eps)))


@dataclass(frozen=True)
class Evolution:
    """Tokens after the dynamics and how their cluster count got there."""

    tokens: np.ndarray  # (n, d) float64 unit vectors
    counts: np.ndarray  # (steps + 1,) cluster count before the first step and after each
    labels: np.ndarray  # (n,) cluster of each final token
    converged: bool  # the last step moved no token by tol or more

    @property
    def steps(self) -> int:
        return int(self.counts.size - 1)

    @property
    def n_clusters(self) -> int:
        return int(self.counts[-1])

    @property
    def form_steps(self) -> int:
        """Steps until the count took its final value for good (0: it never changed)."""
        changed = np.flatnonzero(self.counts != self.counts[-1])
        return int(changed[-1] + 1) if changed.size else 0


def evolve(
    X0: np.ndarray,
    beta: float,
    residual: bool = True,
    h: float = 1.0,
    norm: str = "sphere",
    max_steps: int = 1000,
    tol: float = 1e-9,
    eps: float = 1e-3,
) -> Evolution:
    """Iterate the update from Norm(X0) until no token moves by tol (max norm) or max_steps.

    The count after each step reuses the Gram matrix the next attention step needs, so tracking
    the clusters costs one O(n^2) pass per step.
    """
    if norm not in NORMS:
        raise ValueError(f"norm must be one of {NORMS}, got {norm!r}")
    X = normalise(np.asarray(X0, dtype=np.float64), norm)
    threshold = float(np.cos(eps))
    counts: list[int] = []
    converged = False
    for _ in range(max_steps):
        X_new, G = step(X, beta, residual, h, norm)
        counts.append(single_linkage(G, threshold)[0])
        moved = float(np.abs(X_new - X).max())
        X = X_new
        if moved < tol:
            converged = True
            break
    n, labels = count_clusters(X, eps)
    counts.append(n)
    return Evolution(X, np.asarray(counts, dtype=np.int64), labels, converged)
