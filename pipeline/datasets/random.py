"""Unbiased (or biased) iid +-1 patterns: the reference dataset of every capacity result.

Test examples are fresh i.i.d. patterns with no relation to the training set, so the overlap
from a test start measures nothing the network learned: ``TEST_MEANINGFUL = False`` keeps m_test
and the other test-derived values out of figures and reports (``analysis.meaningful``).
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Data, Param

TEST_MEANINGFUL = False

PARAMS: dict[str, Param] = {
    "bias": Param(
        0.0,
        float,
        "mean magnetization b of each site: P(+1) = (1 + b) / 2",
        low=-1.0,
        high=1.0,
        open_low=True,
        open_high=True,
    ),
}


def check(N: int, P: int, P_test: int, params: dict) -> None:
    """Any N >= 2 and any P >= 1 can be drawn."""
    if N < 2:
        raise ValueError(f"random patterns need N >= 2, got N={N}")


def make(N: int, P: int, P_test: int, params: dict, rng: np.random.Generator) -> Data:
    """Draw P training and P_test test patterns independently."""
    p_plus = (1.0 + params["bias"]) / 2.0
    X = np.where(rng.random((P + P_test, N)) < p_plus, 1, -1).astype(np.int8)
    return Data(train=X[:P], test=X[P:], q=2, meta={})
