"""Preprocessing of a multiple sequence alignment for Potts models: gap filters, duplicates,
and the plmDCA sequence weights.

Order of the filters (it fixes N independently of the sequence filter):
1. columns whose gap fraction over all records exceeds ``max_gap_column`` are dropped;
2. sequences whose gap fraction over the kept columns exceeds ``max_gap_sequence`` are dropped;
3. optionally, exact duplicates (over the kept columns) are dropped, first occurrence kept.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from amsweep.pipeline.datasets._a2m import GAP


def filter_alignment(
    states: np.ndarray, max_gap_column: float, max_gap_sequence: float, deduplicate: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(filtered states, kept column indices, kept record indices) of an (M, L) alignment."""
    gaps = states == GAP
    columns = np.flatnonzero(gaps.mean(axis=0) <= max_gap_column)
    kept = states[:, columns]
    if columns.size == 0:
        return kept, columns, np.arange(0)
    rows = np.flatnonzero((kept == GAP).mean(axis=1) <= max_gap_sequence)
    if deduplicate and rows.size:
        _, first = np.unique(kept[rows], axis=0, return_index=True)
        rows = rows[np.sort(first)]
    return np.ascontiguousarray(kept[rows]), columns, rows


@njit(cache=True)
def _neighbour_counts(S: np.ndarray, min_matches: int) -> np.ndarray:
    """For each sequence, how many sequences (itself included) share >= min_matches sites.

    O(M^2 L) byte comparisons with an early exit once the threshold is out of reach; the
    pairwise identity matrix is never stored (M^2 would be 10^8 entries for large families).
    """
    M, L = S.shape
    counts = np.ones(M, dtype=np.int64)
    for s in range(M):
        for t in range(s + 1, M):
            matches = 0
            mismatches = 0
            for i in range(L):
                if S[s, i] == S[t, i]:
                    matches += 1
                else:
                    mismatches += 1
                    if L - mismatches < min_matches:
                        break
            if matches >= min_matches:
                counts[s] += 1
                counts[t] += 1
    return counts


def sequence_weights(states: np.ndarray, theta: float) -> np.ndarray:
    """plmDCA weights w_s = 1 / #{t : identity(s, t) > theta}, float64 (M,).

    Identity is the fraction of equal sites (gaps included) over the columns; the count
    includes s itself, so a sequence without close relatives weighs 1 and a cluster of n
    near-identical sequences weighs 1 in total. Their sum is the effective number of
    sequences M_eff. Strict '>' as in plmDCA (Hamming distance < 1 - theta).
    """
    S = np.ascontiguousarray(states, dtype=np.int8)
    M, L = S.shape
    if M == 0:
        return np.zeros(0)
    # identity > theta  <=>  matches > theta L  <=>  matches >= floor(theta L) + 1
    min_matches = int(np.floor(theta * L + 1e-9)) + 1
    return 1.0 / _neighbour_counts(S, min_matches).astype(np.float64)
