"""The dataset's own couplings, as a rule: the reference that learned couplings are compared with.

Why a rule: a dataset generated from a known model (the 2D Edwards-Anderson spin glass) has true
couplings ``meta["true_J"]``; retrieving with them through the same cell gives the overlaps that
learned couplings approach as data grow, stored as a row of the same cube (same test samples,
noise levels and dynamics), so a figure can draw it as the reference line.

Scale: the samples are Boltzmann-distributed, p(s) ~ exp(s.J.s / (2 T)), so the rule returns
J / T (T = ``meta["temperature"]``, the couplings the data's distribution has at unit temperature,
which is what pseudo-likelihood with lam = 1 estimates); zero-temperature dynamics and the cosine
``coupling_similarity`` (1 for this rule) do not depend on the scale, a Glauber run at temperature
1 samples the data's distribution. Datasets without true couplings are not applicable.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Model, NotApplicable, Param

PARAMS: dict[str, Param] = {}
POTTS = False
NEEDS_META = ("true_J",)  # the cell passes the dataset's meta; datasets without it are not applicable


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator, meta: dict | None = None) -> Model:
    """J_true / T of the dataset; NotApplicable where the dataset has no true couplings."""
    meta = meta or {}
    if meta.get("true_J") is None:
        raise NotApplicable("true_couplings needs a dataset with known couplings (meta['true_J'], e.g. spin_glass)")
    if q != 2:
        raise NotApplicable(f"true_couplings is written for Ising data (q = 2), got q = {q}")
    J = np.asarray(meta["true_J"], dtype=np.float32)
    N = np.asarray(X).shape[1]
    if J.shape != (N, N):
        raise ValueError(f"true couplings have shape {J.shape}, the data have N = {N}")
    T = float(meta.get("temperature", 1.0))
    J = J / np.float32(T)
    np.fill_diagonal(J, 0.0)
    return Model(q=2, J=J, params={}, info={"temperature": T})
