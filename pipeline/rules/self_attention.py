"""Normalisation with self-attention as a memory: the token dynamics clusters the training set.

Why a rule: iterating x_i <- Norm(x_i + sum_j softmax_j(beta x_i . x_j) x_j) over the set of
training tokens (``amsweep.pipeline.dynamics._sphere_attention``) moves them to a few points of the
sphere: one at small beta, where every token attends to all, and several at large beta, where a
token attends mainly to itself and its near neighbours. Those points are what the layer has
"stored" from its input; the rule keeps the final tokens as memories, and a cue retrieves by one
more attention read-out against them (``amsweep.pipeline.dynamics.softmax``, the same beta on
cosines), so the system lives in the same grid as the other memories.

The tokens are ``meta["tokens"]`` of the ``sphere_tokens`` dataset, or for any other dataset the
+-1 examples as directions x / sqrt(N). The cluster count and the steps it took to form are in
``Model.info`` (``n_clusters``, ``form_steps``; ``amsweep.pipeline.memory_metrics`` reads them).
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.dynamics._sphere_attention import NORMS, evolve
from amsweep.pipeline.model import Model, NotApplicable, Param

PARAMS: dict[str, Param] = {
    "beta": Param(1.0, float, "inverse temperature of the attention on cosines of unit tokens", low=0.0),
    "residual": Param(True, bool, "x <- Norm(x + h A) (True) or the pure-attention x <- Norm(A) (False)"),
    "step": Param(1.0, float, "h of the residual update (1 = the layer; small h = the continuous flow)", low=0.0),
    "norm": Param("sphere", str, "'sphere': x / |x|; 'layernorm': centre the coordinates first", choices=NORMS),
    "max_steps": Param(1000, int, "most layers (steps) applied to the token set", low=1),
    "tol": Param(1e-9, float, "stop when no token coordinate moves by tol in a step", low=0.0, open_low=True),
    "eps": Param(1e-3, float, "angular distance (radians) within which tokens are one cluster", low=0.0, open_low=True),
}

POTTS = False
DEFAULT_DYNAMICS = "softmax"  # a cue attends to the clustered tokens
PROVIDES = ("memories", "mixture")  # the clustered tokens, with the attention beta
READS_META = ("tokens",)  # the continuous tokens of sphere_tokens; other data: the patterns


def tokens_of(X: np.ndarray, meta: dict | None) -> np.ndarray:
    """The dataset's continuous tokens when it has them, else the +-1 examples as directions."""
    if meta is not None and "tokens" in meta:
        return np.asarray(meta["tokens"], dtype=np.float64)
    return np.asarray(X, dtype=np.float64) / np.sqrt(X.shape[1])


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator, meta: dict | None = None) -> Model:
    """Run the token dynamics; memories are the final tokens scaled to the +-1 norm sqrt(N)."""
    if q != 2:
        raise NotApplicable(f"attention on the sphere is written for real tokens or +-1 patterns, got q = {q}")
    N = X.shape[1]
    beta = float(params["beta"])
    ev = evolve(
        tokens_of(X, meta),
        beta,
        residual=bool(params["residual"]),
        h=float(params["step"]),
        norm=params["norm"],
        max_steps=int(params["max_steps"]),
        tol=float(params["tol"]),
        eps=float(params["eps"]),
    )
    return Model(
        q=2,
        memories=(ev.tokens * np.sqrt(N)).astype(np.float32),
        # raw-unit softmax beta: (beta / N) x . m = beta cos(x, m) for |x| = |m| = sqrt(N)
        params={"beta": beta / N},
        info={
            "n_memories": int(X.shape[0]),
            "n_clusters": ev.n_clusters,
            "form_steps": ev.form_steps,
            "steps": ev.steps,
            "converged": ev.converged,
            "counts": ev.counts,
            "labels": ev.labels,
        },
    )
