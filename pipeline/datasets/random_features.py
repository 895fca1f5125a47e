"""Random-features (hidden-manifold) patterns: structured data with a known generative basis.

D = alpha_D N hidden features f_k in {+-1}^N are drawn once per cell; every example is
xi = sign(sum_k c_k f_k) with fresh random coefficients c_k = +-1/sqrt(D) (or, with sparsity
L > 0, only L nonzero coefficients +-1/sqrt(L)). Training and test examples share the
features and differ in their coefficients, so a network that generalises should retrieve
something close to the features (or to unseen combinations of them) rather than to the
training examples themselves. alpha_D is an axis of the phase diagram.

Only the signs of c matter for sign(.), so the sum is taken over integer +-1 coefficients
(exact in float32 for D < 2^24) and zero sums (possible when the number of nonzero
coefficients is even) are broken by a fair coin from ``rng``: any fixed tie rule would give
the examples a spurious magnetisation.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.datasets._signs import coefficient_signs, sign_of_combination
from amsweep.pipeline.model import Data, Param

PARAMS: dict[str, Param] = {
    "alpha_D": Param(0.5, float, "number of hidden features per neuron, D = round(alpha_D N)", low=0.0, open_low=True),
    "L": Param(0, int, "nonzero coefficients per example; 0 = dense (all D features)", low=0),
    "feature_bias": Param(
        0.0,
        float,
        "magnetisation b of the features: P(f = +1) = (1 + b) / 2",
        low=-1.0,
        high=1.0,
        open_low=True,
        open_high=True,
    ),
}
META = ("features", "D", "train_coefficients", "test_coefficients")


def n_features(N: int, params: dict) -> int:
    """D = round(alpha_D N); the sweep layer passes alpha_D, the cell needs an integer."""
    return int(round(params["alpha_D"] * N))


def check(N: int, P: int, P_test: int, params: dict) -> None:
    """Need N >= 2, at least one feature and no more nonzero coefficients than features."""
    if N < 2:
        raise ValueError(f"random_features needs N >= 2, got N={N}")
    D = n_features(N, params)
    if D < 1:
        raise ValueError(
            f"random_features: alpha_D={params['alpha_D']} gives D = round(alpha_D N) = 0 features at N={N}"
        )
    if params["L"] > D:
        raise ValueError(
            f"random_features: sparsity L={params['L']} exceeds the D={D} features (alpha_D={params['alpha_D']}, N={N})"
        )


def make(N: int, P: int, P_test: int, params: dict, rng: np.random.Generator) -> Data:
    """Features once, then P + P_test examples with independent coefficients."""
    check(N, P, P_test, params)
    D = n_features(N, params)
    L = params["L"]
    p_plus = (1.0 + params["feature_bias"]) / 2.0
    features = np.where(rng.random((D, N)) < p_plus, 1, -1).astype(np.int8)
    signs = coefficient_signs(P + P_test, D, L, rng)
    X = sign_of_combination(signs, features, rng)
    return Data(
        train=X[:P],
        test=X[P:],
        q=2,
        meta={
            "features": features,
            "D": D,
            "train_coefficients": signs[:P].astype(np.int8),
            "test_coefficients": signs[P:].astype(np.int8),
        },
    )
