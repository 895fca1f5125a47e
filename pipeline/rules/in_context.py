"""In-context learning of an energy function: a pretrained transformer reads the training set.

Why a rule: the cell's training examples are a *context*; a transformer pretrained (once per
configuration, cached: ``_icl_fit``) on many synthetic mixtures maps any context to an energy
over the hypercube, E(x) = -(1/beta) log sum_j exp(lw_j - beta |x - m_j|^2 / 2), one component
per context point (``_icl_net``). No weight is fitted to the cell's data: "training" is one
forward pass. The kernel-density memory (``kde``) is the same energy with the context points
as centres, equal weights and a hand-set beta; the transformer learns where to put the centres
(the context's modes, by attention that pools each point with its cluster mates), how sharp to
make them and how much mass each carries.

Retrieval is descent on that energy from corrupted points: ``amsweep.pipeline.dynamics.softmax``
(mean-shift, a monotone descent for an isotropic Gaussian mixture), then sign. Its centres stay
at the data's scale (per-site rms 1, like kde's), so both memories relax in the same space; on
+-1 states the logits are the posterior responsibilities of the predicted mixture, so the sign
of a fixed point is the mode of the component that claims it.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Model, NotApplicable, Param
from amsweep.pipeline.rules import _icl_fit, _icl_net

PARAMS: dict[str, Param] = {
    "layers": Param(3, int, "transformer blocks (attention + MLP, each with residuals)", low=1),
    "width": Param(0, int, "model width D of the transformer; 0 = N", low=0),
    "hidden": Param(0, int, "width of the MLP after attention; 0 = the model width", low=0),
    "steps": Param(4000, int, "Adam steps of pretraining (one batch of synthetic contexts each)", low=1),
    "batch": Param(16, int, "synthetic contexts per pretraining step", low=1),
    "lr": Param(3e-3, float, "Adam learning rate of pretraining", low=0.0, open_low=True),
    "seed": Param(0, int, "pretraining seed (with the other settings it names the cached weights)", low=0),
    "train_K_max": Param(6, int, "pretraining mixtures have 1 ... train_K_max prototypes", low=1),
    "train_flip_min": Param(0.02, float, "smallest flip probability of pretraining mixtures", low=0.0, high=0.5),
    "train_flip_max": Param(0.35, float, "largest flip probability of pretraining mixtures", low=0.0, high=0.5),
    "train_context_min": Param(8, int, "smallest pretraining context", low=1),
    "train_context_max": Param(128, int, "largest pretraining context", low=1),
    "train_targets": Param(16, int, "held-out points per pretraining context, scored by log-likelihood", low=1),
}

POTTS = False
DEFAULT_DYNAMICS = "softmax"  # descent on the predicted Gaussian-mixture energy (mean-shift), then sign
PROVIDES = ("memories", "mixture")  # predicted centres with their beta and log-weights
QUICK = {"steps": 20}  # the conformance kit's settings: pretraining takes 4,000 Adam steps by default


def predict(X: np.ndarray, params: dict) -> tuple[np.ndarray, np.ndarray]:
    """Centres mu (P, N) and normalised log-masses v (P,) that the pretrained transformer reads off context X."""
    theta, _ = _icl_fit.weights(X.shape[1], params)
    mu, v, _, _ = _icl_net.encode(theta, np.asarray(X, dtype=np.float64)[None])
    return mu[0], v[0]


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """One forward pass of the cached transformer over the context; ``rng`` is unused (no fitting)."""
    if q != 2:
        raise NotApplicable(f"the in-context memory is written for +-1 patterns, got q = {q}")
    check_ranges(params)
    mu, v = predict(X, params)
    theta, created = _icl_fit.weights(X.shape[1], params)  # in memory since predict: info only
    centres, beta, log_weights = _icl_net.gaussian_energy(mu, v)
    return Model(
        q=2,
        memories=centres.astype(np.float32),
        params={"beta": beta, "log_weights": log_weights},
        info={
            "n_memories": int(X.shape[0]),
            "pretrain_loss": float(theta["loss"][-100:].mean()),
            "pretrain_seconds": float(theta["seconds"]),
            "pretrained_here": created,
        },
    )


def pretrain(N: int, **settings: object) -> dict[str, np.ndarray]:
    """Train (or read) the cached weights for N and these settings (defaults otherwise) ahead of a sweep.

    Why: workers that miss the cache together all train (``_cache``); one call in the driver
    first lets every worker read the file instead (on a cluster, with a shared ``AMSWEEP_CACHE``).
    """
    params = {k: p.default for k, p in PARAMS.items()}
    unknown = set(settings) - set(params)
    if unknown:
        raise KeyError(f"in_context: unknown settings {sorted(unknown)}")
    params.update(settings)
    check_ranges(params)
    return _icl_fit.weights(N, params)[0]


def check_ranges(params: dict) -> None:
    """Ranges of the pretraining distribution must be ordered (ValueError otherwise)."""
    for low, high in (("train_flip_min", "train_flip_max"), ("train_context_min", "train_context_max")):
        if params[low] > params[high]:
            raise ValueError(f"in_context: {low} = {params[low]} exceeds {high} = {params[high]}")


def kde_mixture(X: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """The kernel-density memory as a predicted mixture: mu_j = beta c_j, equal masses (no learning)."""
    return beta * np.asarray(X, dtype=np.float64), np.zeros(X.shape[0])
