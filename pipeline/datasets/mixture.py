"""A mixture of noisy prototypes: C random +-1 prototypes, each example one of them with flips.

Why: a memory that clusters (CRP, ELBO mixture) should recover the components that generated the
data, which needs data with known components. Example n of component k is xi_k with every site
flipped independently with probability ``flip``: a product-of-Bernoulli component whose mean is
(1 - 2 flip) xi_k, at squared distance 4 flip (1 - flip) per site from it. Training examples are
spread evenly over the components (shuffled) when ``balanced`` (the default), else each draws its
component uniformly, as test examples always do: an i.i.d. sample of the mixture, the contexts
the in-context transformer (``rules/in_context``) was pretrained on, where a small context can
miss a component.

The number of components is ``components`` when given, else ceil(P / per_component), so that a
sweep over P at fixed ``per_component`` grows the number of stored components with the load (the
capacity axis of a clustering memory). ``meta["features"]`` holds the prototypes so that the
cell's ``test_best_feature`` reads how well a test cue retrieves a prototype; ``prototypes`` and
``test_labels`` give the cell's ``test_mode_distance`` and ``test_own_mode`` (the attractor's
distance to the nearest prototype, and whether it is its own component's).
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Data, Param

PARAMS: dict[str, Param] = {
    "components": Param(0, int, "number of prototypes C; 0 = ceil(P / per_component)", low=0),
    "per_component": Param(10, int, "training examples per prototype when components = 0", low=1),
    "flip": Param(0.1, float, "probability that a site of an example differs from its prototype", low=0.0, high=0.5),
    "balanced": Param(
        True, bool, "training labels spread evenly over the components (shuffled); false: drawn uniformly (i.i.d.)"
    ),
}


META = ("features", "prototypes", "n_components", "train_labels", "test_labels")


def n_components(P: int, params: dict) -> int:
    """C from the parameters: fixed, or growing with P at a fixed number of examples each."""
    C = int(params["components"])
    return C if C > 0 else -(-P // int(params["per_component"]))


def check(N: int, P: int, P_test: int, params: dict) -> None:
    """Any N >= 2; the prototypes need not all have training examples (C > P is allowed)."""
    if N < 2:
        raise ValueError(f"mixture needs N >= 2, got N={N}")


def _noisy(prototypes: np.ndarray, labels: np.ndarray, flip: float, rng: np.random.Generator) -> np.ndarray:
    """Examples of the given labels: the prototype with each site flipped with probability ``flip``."""
    signs = np.where(rng.random((labels.size, prototypes.shape[1])) < flip, -1, 1).astype(np.int8)
    return prototypes[labels] * signs


def make(N: int, P: int, P_test: int, params: dict, rng: np.random.Generator) -> Data:
    """Prototypes first, then the training labels (balanced and shuffled, or uniform) and uniform test labels.

    With ``balanced = true`` the draws are those of every earlier version: its results are unchanged.
    """
    check(N, P, P_test, params)
    C, flip = n_components(P, params), float(params["flip"])
    prototypes = np.where(rng.random((C, N)) < 0.5, 1, -1).astype(np.int8)
    if params["balanced"]:
        train_labels = rng.permutation(np.arange(P) % C)
    else:
        train_labels = rng.integers(0, C, size=P)
    test_labels = rng.integers(0, C, size=P_test)
    train = _noisy(prototypes, train_labels, flip, rng)
    test = _noisy(prototypes, test_labels, flip, rng)
    return Data(
        train=train,
        test=test,
        q=2,
        meta={
            "features": prototypes,  # read by the cell's test_best_feature
            "prototypes": prototypes,
            "n_components": C,
            "train_labels": train_labels,
            "test_labels": test_labels,
        },
    )
