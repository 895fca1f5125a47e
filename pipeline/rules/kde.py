"""Gaussian kernel-density memory (modern Hopfield network) on +-1 patterns.

Why the bandwidth is measured on the unit sphere: with patterns scaled to x / sqrt(N), the
squared distance |x - xi|^2 / N = 2 (1 - m) depends only on the overlap m, so a bandwidth h means
the same thing at every N. The density sum_mu exp(-|x - xi_mu|^2 / (2 N h^2)) then retrieves with
softmax logits m_mu / h^2 (in raw +-1 units beta = 1 / (N h^2)). Crosstalk from K random patterns
adds ~K terms of size exp(O(1/(sqrt(N) h^2))) against exp(m_target / h^2) for the cue's pattern:
at fixed h the capacity ~ exp(m / h^2) does not grow with N. Shrinking h like 1/sqrt(N)
(``bandwidth_scaling = "inv_sqrt_N"``, i.e. beta fixed in raw units) makes the logits N m / h^2 and
the capacity exp(N m / h^2): exponential in dimension.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Model, NotApplicable, Param

PARAMS: dict[str, Param] = {
    "bandwidth": Param(0.3, float, "kernel width h on unit-normalised patterns x / sqrt(N)", low=0.0, open_low=True),
    "bandwidth_scaling": Param(
        "fixed", str, "'fixed': h as given; 'inv_sqrt_N': h / sqrt(N)", choices=("fixed", "inv_sqrt_N")
    ),
}

POTTS = False
PROVIDES = ("memories", "patterns", "mixture")  # kernel centres are the patterns; beta = 1 / (N h^2)
DEFAULT_DYNAMICS = "softmax"  # memories, not couplings: retrieval by softmax (mean-shift) updates


def effective_bandwidth(N: int, params: dict) -> float:
    """Kernel width on the unit sphere actually used at dimension N."""
    h = float(params["bandwidth"])
    return h / np.sqrt(N) if params["bandwidth_scaling"] == "inv_sqrt_N" else h


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """Store the patterns as kernel centres; beta = 1 / (N h^2) drives the softmax dynamics."""
    if q != 2:
        raise NotApplicable(f"the Gaussian KDE memory is written for +-1 patterns, got q = {q}")
    N = int(X.shape[1])
    h = effective_bandwidth(N, params)
    return Model(
        q=2,
        memories=np.ascontiguousarray(X, dtype=np.float32),
        params={"beta": 1.0 / (N * h * h), "bandwidth": h},
        info={"n_memories": int(X.shape[0])},
    )
