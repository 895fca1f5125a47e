"""Hebb rule J = X^T X / N: the classical Hopfield network, capacity alpha_c ~ 0.138.

Also keeps the patterns as ``memories`` because the message-passing dynamics (TAP/AMP)
work with the overlaps X s, O(N P), instead of the N x N couplings.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Model, Param
from amsweep.pipeline.rules._ising import as_spins, hebb_couplings

PARAMS: dict[str, Param] = {}
POTTS = True
PROVIDES = ("couplings", "memories", "patterns")  # memories: the patterns, for TAP and dense dynamics


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """Hebbian couplings; Potts data are handed to the Potts Hebb rule."""
    if q > 2:
        from amsweep.pipeline.rules._hebb_potts import train as train_potts

        return train_potts(X, q, params, rng)
    Xf = as_spins(X)
    return Model(q=2, J=hebb_couplings(Xf), memories=Xf, params={}, info={})
