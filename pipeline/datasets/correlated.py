"""Correlated patterns built from a hierarchy of hidden features (Mezard 2017, section on correlations).

Why this dataset: the TAP equations of the Hopfield model assume patterns that are independent
across mu; patterns that share hidden features are correlated and the Onsager reaction term of
plain TAP is then wrong (docs/science_correlated_tap.md). Each pattern is a sparse combination of
a smaller set of features, the features themselves (for depth > 1) of a still smaller set, down to
``depth`` hidden layers whose deepest layer is iid +-1:

    layer 0 (patterns)  xi^mu    = sign(sum_k c^(1)_{mu k} f^(1)_k)
    layer l             f^(l)_k  = sign(sum_j c^(l+1)_{k j} f^(l+1)_j),  l = 1 ... depth - 1
    layer depth         f^(depth) iid unbiased +-1

Every row of every c has exactly L nonzero entries +-1 (random support, random signs). Layer l has
D_l = max(L, round(feature_ratio D_{l-1})) vectors, D_0 = P: the number of patterns per feature
(L / feature_ratio on average) does not change with the load, so a sweep over alpha keeps one
correlation structure. depth = 0 gives independent unbiased patterns (the control). Test examples
are fresh combinations of the same layer-1 features. Odd L never ties; an even L breaks a zero sum
with a fair coin (a fixed rule would magnetise the patterns).
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.datasets._signs import coefficient_signs, sign_of_combination
from amsweep.pipeline.model import Data, Param

PARAMS: dict[str, Param] = {
    "depth": Param(1, int, "hidden feature layers between the patterns and iid +-1 vectors; 0 = independent", low=0),
    "feature_ratio": Param(
        0.5,
        float,
        "vectors of each hidden layer per vector of the layer above: D_l = max(L, round(ratio D_(l-1))), D_0 = P",
        low=0.0,
        open_low=True,
    ),
    "L": Param(3, int, "nonzero coefficients +-1 per row of every combination matrix c", low=1),
}


META = ("features", "depth", "layer_sizes", "train_coefficients", "test_coefficients")  # depth 0: no features


def layer_sizes(P: int, params: dict) -> list[int]:
    """[D_1, ..., D_depth]: each layer feature_ratio times the one above, at least L vectors."""
    sizes: list[int] = []
    above = P
    for _ in range(params["depth"]):
        above = max(params["L"], int(round(params["feature_ratio"] * above)))
        sizes.append(above)
    return sizes


def check(N: int, P: int, P_test: int, params: dict) -> None:
    """Need N >= 2; layer sizes are at least L by construction, so any P >= 1 works."""
    if N < 2:
        raise ValueError(f"correlated patterns need N >= 2, got N={N}")


def make(N: int, P: int, P_test: int, params: dict, rng: np.random.Generator) -> Data:
    """Draw the deepest layer, combine upwards; train and test patterns share the layer-1 features."""
    check(N, P, P_test, params)
    sizes = layer_sizes(P, params)
    L = params["L"]
    if not sizes:  # depth 0: the independent control
        X = np.where(rng.random((P + P_test, N)) < 0.5, 1, -1).astype(np.int8)
        none = np.zeros((P + P_test, 0), dtype=np.int8)
        meta = {"features": np.zeros((0, N), dtype=np.int8), "depth": 0, "layer_sizes": []}
        return Data(X[:P], X[P:], 2, meta | {"train_coefficients": none[:P], "test_coefficients": none[P:]})
    below = np.where(rng.random((sizes[-1], N)) < 0.5, 1, -1).astype(np.int8)
    for D_above, D_below in zip(sizes[-2::-1], sizes[:0:-1]):
        below = sign_of_combination(coefficient_signs(D_above, D_below, L, rng), below, rng)
    features = below  # layer 1, (D_1, N)
    c = coefficient_signs(P + P_test, sizes[0], L, rng)
    X = sign_of_combination(c, features, rng)
    return Data(
        train=X[:P],
        test=X[P:],
        q=2,
        meta={
            "features": features,
            "depth": params["depth"],
            "layer_sizes": sizes,
            "train_coefficients": c[:P].astype(np.int8),
            "test_coefficients": c[P:].astype(np.int8),
        },
    )
