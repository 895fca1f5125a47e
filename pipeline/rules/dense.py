"""Dense associative memory (Krotov-Hopfield): E(s) = -sum_mu F(xi^mu . s).

Why a separate rule: a steeper F separates the stored pattern's term from the crosstalk of the
others, so capacity grows like N^(n-1) for F(x) = x^n (n = 2 is the Hopfield model, 0.138 N)
and exponentially in N for F(x) = exp(beta x). Training only stores the patterns; the energy
is evaluated by `amsweep.pipeline.dynamics.dense` (asynchronous flips) or `amsweep.pipeline.dynamics.softmax`
(for exp, the same energy seen as log-sum-exp with inverse temperature beta).
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Model, NotApplicable, Param

PARAMS: dict[str, Param] = {
    "interaction": Param("poly", str, "F(x) = x^n ('poly') or exp(beta x) ('exp')", choices=("poly", "exp")),
    "n": Param(3, int, "power of the polynomial interaction (n = 2 is Hopfield)", low=2),
    "beta": Param(1.0, float, "inverse temperature of exp(beta x); also the softmax beta", low=0.0, open_low=True),
}

POTTS = False
PROVIDES = ("memories", "patterns", "mixture")  # the patterns, with the softmax beta
DEFAULT_DYNAMICS = "dense"  # asynchronous flips on the dense energy -sum F(xi . s)


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """Store the +-1 patterns; the interaction F is carried in ``Model.params``."""
    if q != 2:
        raise NotApplicable(f"dense associative memory is written for +-1 patterns, got q = {q}")
    memories = np.ascontiguousarray(X, dtype=np.float32)
    model_params = {"interaction": params["interaction"], "n": int(params["n"]), "beta": float(params["beta"])}
    return Model(q=2, memories=memories, params=model_params, info={"n_memories": int(X.shape[0])})
