"""Belief propagation for an Ising network with dense couplings, started on one pattern.

Why it is here: TAP / AMP is the large-N limit of BP on the fully connected Hopfield graph
(the Onsager term replaces the cavity subtraction of each message). Running BP on a small
network checks the TAP magnetisations without any O(1/sqrt N) sampling noise. BP keeps one
message per directed edge, O(N^2) memory and work per iteration, and one message set per
retrieved pattern (the messages are started aligned with it), so it is a cross-check for small
N, not a production dynamics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class BPResult:
    """BP marginals m_i = <s_i>, whether messages converged, and iterations used."""

    m: np.ndarray  # (N,) float64
    converged: bool
    iterations: int


def magnetizations(
    J: np.ndarray, beta: float, start: np.ndarray, damping: float = 0.5, max_iter: int = 1000, tol: float = 1e-10
) -> BPResult:
    """Iterate the cavity fields of the model P(s) ~ exp(beta sum_{i<j} J_ij s_i s_j).

    U[k, i] is the field that k sends to i: U = atanh(tanh(beta J_ki) tanh(beta h_{k->i})) / beta
    with the cavity field h_{k->i} = H_k - U[i, k] and H_k = sum_l U[l, k]. Messages start from the
    cavity fields h_{k->i} = start_k (a +-1 pattern), which selects that pattern's retrieval state.
    """
    J = np.asarray(J, dtype=np.float64)
    N = J.shape[0]
    if J.shape != (N, N) or start.shape != (N,):
        raise ValueError(f"J must be (N, N) and start (N,), got {J.shape} and {start.shape}")
    tj = np.tanh(beta * J)
    np.fill_diagonal(tj, 0.0)
    U = np.arctanh(tj * np.tanh(beta * np.asarray(start, dtype=np.float64))[:, None]) / beta
    for it in range(1, max_iter + 1):
        H = U.sum(axis=0)
        cavity = H[:, None] - U.T
        U_new = np.arctanh(tj * np.tanh(beta * cavity)) / beta
        U_new = damping * U + (1.0 - damping) * U_new
        delta = float(np.max(np.abs(U_new - U)))
        U = U_new
        if delta < tol:
            return BPResult(m=np.tanh(beta * U.sum(axis=0)), converged=True, iterations=it)
    return BPResult(m=np.tanh(beta * U.sum(axis=0)), converged=False, iterations=max_iter)
