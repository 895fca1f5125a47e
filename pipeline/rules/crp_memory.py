"""Memories created on demand with a Chinese-restaurant-process (Pitman-Yor) prior.

Why: a fixed-size memory either wastes units or overloads; a nonparametric prior lets the number
of memories K follow the data. Training examples arrive online (order from rng); each joins the
nearest memory unless the "new cluster" term (alpha + d K) exp(-c |v|^2) of the energy
(docs/science.md#learning-rules) dominates the memories' terms (n_k - d) exp(-beta |mu_k - v|^2). For +-1 data
|v|^2 = N, so a new memory opens roughly when min_k |mu_k - v|^2 / N > c / beta (up to the log
prior weights): c / beta sets the squared radius of a memory per site, between the spread
4 p (1 - p) of an example with flip noise p around its cluster mean and ~2 for unrelated patterns.

The memories are the cluster means (K, N) in [-1, 1]; retrieval is `amsweep.pipeline.dynamics.softmax`
on the same mixture: softmax beta = 2 beta (its logits are -beta_s |x - mu|^2 / 2) and
log-weights log(n_k - d).
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Model, NotApplicable, Param
from amsweep.pipeline.rules._mp_crp import crp_pass

PARAMS: dict[str, Param] = {
    "alpha": Param(1.0, float, "concentration of the Pitman-Yor prior (weight of a new memory)", low=0.0),
    "d": Param(
        0.0,
        float,
        "discount of the Pitman-Yor prior (0 = Chinese restaurant process)",
        low=0.0,
        high=1.0,
        open_high=True,
    ),
    "beta": Param(0.1, float, "inverse width of a memory: weight exp(-beta |mu - v|^2)", low=0.0, open_low=True),
    "c": Param(0.1, float, "inverse width of the new-memory term exp(-c |v|^2)", low=0.0),
}

POTTS = False
PROVIDES = ("memories", "mixture")  # cluster means in [-1, 1], weighted by their counts
DEFAULT_DYNAMICS = "softmax"  # memories, not couplings: retrieval by softmax (mean-shift) updates


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """One online pass over the examples in a random order; K <= P memories come out."""
    if q != 2:
        raise NotApplicable(f"the CRP memory is written for +-1 patterns, got q = {q}")
    order = rng.permutation(X.shape[0])
    alpha, d, beta, c = (float(params[k]) for k in ("alpha", "d", "beta", "c"))
    means, counts, assign = crp_pass(np.asarray(X[order], dtype=np.float64), alpha, d, beta, c)
    assignment = np.empty(X.shape[0], dtype=np.int64)
    assignment[order] = assign
    return Model(
        q=2,
        memories=means.astype(np.float32),
        params={"beta": 2.0 * beta, "log_weights": np.log(counts - d)},
        info={"n_memories": int(means.shape[0]), "counts": counts, "assignment": assignment},
    )
