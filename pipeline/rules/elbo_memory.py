"""Memories with proportional assignments: a Gaussian mixture fitted by maximising its ELBO.

Why: the Chinese-restaurant memory (``crp_memory``) assigns each example wholly to one memory, once,
in the order examples arrive. Keeping explicit soft assignments r_nk (the variational posterior
q(z_n = k)) and alternating the two coordinate ascents of the evidence lower bound
ELBO = sum_nk r_nk [log pi_k + log N(x_n; mu_k, s^2 I) - log r_nk] gives every example a share of
every memory in proportion to its posterior, and lets memories move as evidence accumulates
(expectation-maximisation). E-step: r_nk = softmax_k(log pi_k - |x_n - mu_k|^2 / (2 s^2)).
M-step: pi_k = N_k / P, mu_k = sum_n r_nk x_n / N_k (N_k = sum_n r_nk), and, when learned, the
shared variance s^2 = sum_nk r_nk |x_n - mu_k|^2 / (P N).

The components are isotropic with one shared variance so that retrieval is exactly
``amsweep.pipeline.dynamics.softmax``: a mean-shift step x <- sum_k r_k(x) mu_k is the E-step of the
cue followed by its posterior mean (softmax beta = 1 / s^2, log-weights log pi_k). Widths use kde's
convention: h on unit-normalised patterns x / sqrt(N), raw per-site variance s^2 = N h^2. A learned
width is floored at ``bandwidth``: with one example per memory the maximum-likelihood variance is 0.

Deterministic given ``rng`` (it only picks the initial means: see ``initial_means``). Every step
is a (P x N) @ (N x K) product, so the cost is O(P K N) per iteration.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.special import logsumexp

from amsweep.pipeline.model import Model, NotApplicable, Param

PARAMS: dict[str, Param] = {
    "K": Param(
        0,
        int,
        "number of memories; 0 = the dataset's number of components (meta 'n_components') if it has one, else P",
        low=0,
    ),
    "width": Param(
        "learned",
        str,
        "'learned': shared variance from the M-step, floored at bandwidth; 'fixed': the bandwidth",
        choices=("learned", "fixed"),
    ),
    "bandwidth": Param(
        0.02,
        float,
        "component width h on unit-normalised patterns (raw per-site variance N h^2): fixed width or floor",
        low=0.0,
        open_low=True,
    ),
    "init": Param(
        "farthest",
        str,
        "initial means: farthest-first examples, greedy k-means++ (D^2 sampling) or distinct random examples",
        choices=("farthest", "kmeans++", "random"),
    ),
    "iterations": Param(200, int, "maximum EM iterations (E-step then M-step)", low=1),
    "tol": Param(1e-8, float, "stop when the ELBO gains less than tol per example and site", low=0.0),
}

POTTS = False
DEFAULT_DYNAMICS = "softmax"  # mean-shift on the fitted mixture: E-step of the cue, then posterior mean
PROVIDES = ("memories", "mixture")  # the fitted means with their width and weights
READS_META = ("n_components",)  # K = 0: the dataset's number of components, if it has one


@dataclass(frozen=True)
class EMFit:
    """Result of one ELBO maximisation: the mixture and the assignments consistent with it."""

    means: np.ndarray  # (K, N) float64
    log_weights: np.ndarray  # (K,) log pi_k
    variance: float  # shared raw per-site variance s^2
    responsibilities: np.ndarray  # (P, K) r_nk of the final parameters
    elbo: np.ndarray  # ELBO after each E-step (equal to the log-likelihood there)
    converged: bool


def initial_means(X: np.ndarray, K: int, init: str, rng: np.random.Generator) -> np.ndarray:
    """K examples as starting means, one per cluster if possible: EM cannot move a second mean
    out of a cluster it shares, so a cluster left without one stays merged with another.

    'farthest' (default): a random first example, then each time the example farthest from every
    mean chosen so far. In a mixture of +-1 prototypes with flip rate p two examples of a cluster
    are |x - y|^2 = 8 p (1 - p) N apart and examples of two clusters 2 N, so the farthest example
    lies in a cluster without a mean while any is left (w.h.p. for N >~ 50 at p = 0.1); its weakness
    is outliers, which this dataset does not have. 'kmeans++': greedy D^2 sampling (2 + ln K
    candidates per pick, the one lowering the total squared distance most, as scikit-learn does);
    here a missed cluster's examples weigh only 2 / (8 p (1 - p)) = 2.8 times more than covered ones,
    and it missed 5-10% of 64-256 components at N = 64-128 where 'farthest' missed 0-3%.
    'random': K distinct random examples (misses a cluster with probability 1 - K!/K^K).
    """
    P = X.shape[0]
    if init == "random":
        return X[rng.choice(P, size=K, replace=False)].copy()
    sq = np.einsum("pn,pn->p", X, X)
    first = int(rng.integers(P))
    chosen = [first]
    d2 = np.maximum(sq - 2.0 * X @ X[first] + sq[first], 0.0)
    trials = 2 + int(np.log(K))
    for _ in range(1, K):
        if init == "farthest":
            pick = int(np.argmax(d2))
            chosen.append(pick)
            d2 = np.minimum(d2, np.maximum(sq - 2.0 * X @ X[pick] + sq[pick], 0.0))
            continue
        total = d2.sum()
        if total <= 0:  # every example sits on a chosen mean: duplicates only
            chosen.append(int(rng.integers(P)))
            continue
        candidates = np.minimum(np.searchsorted(np.cumsum(d2), rng.random(trials) * total, side="right"), P - 1)
        cand_d2 = np.maximum(sq[:, None] - 2.0 * X @ X[candidates].T + sq[candidates], 0.0)  # (P, trials)
        best = int(np.argmin(np.minimum(d2[:, None], cand_d2).sum(axis=0)))
        chosen.append(int(candidates[best]))
        d2 = np.minimum(d2, cand_d2[:, best])
    return X[chosen].copy()


def e_step(X: np.ndarray, means: np.ndarray, log_weights: np.ndarray, variance: float) -> tuple[np.ndarray, float]:
    """Posterior responsibilities r (P, K) and the ELBO they attain (the log-likelihood)."""
    P, N = X.shape
    logits = log_weights + (X @ means.T - 0.5 * np.einsum("kn,kn->k", means, means)) / variance
    lse = logsumexp(logits, axis=1)
    R = np.exp(logits - lse[:, None])
    const = -0.5 * np.einsum("pn,pn->", X, X) / variance - 0.5 * P * N * np.log(2.0 * np.pi * variance)
    return R, float(lse.sum() + const)


def m_step(
    X: np.ndarray, R: np.ndarray, means: np.ndarray, variance_floor: float, learn_variance: bool
) -> tuple[np.ndarray, np.ndarray, float]:
    """Weights, means and (when learned) the shared variance maximising the ELBO at fixed r.

    A component with no responsibility left keeps its mean (its weight is ~0, so it no longer
    attracts anything): the maximiser is undefined there, and NaN would poison the dynamics.
    """
    P, N = X.shape
    Nk = R.sum(axis=0)
    weighted = R.T @ X  # (K, N): sum_n r_nk x_n
    alive = Nk > 1e-12
    new_means = means.copy()
    new_means[alive] = weighted[alive] / Nk[alive, None]
    log_weights = np.log(np.maximum(Nk, 1e-300) / P)
    variance = variance_floor
    if learn_variance:
        spread = (
            np.einsum("pn,pn->", X, X)
            - 2.0 * np.einsum("kn,kn->", new_means, weighted)
            + float(Nk @ np.einsum("kn,kn->k", new_means, new_means))
        )
        variance = max(spread / (P * N), variance_floor)
    return new_means, log_weights, variance


def fit(
    X: np.ndarray,
    K: int,
    params: dict,
    rng: np.random.Generator,
    means: np.ndarray | None = None,
) -> EMFit:
    """EM from equal weights and the initial means (given, or drawn with ``rng``).

    The first E-step needs a width: the fixed one, or for a learned width the spread of the
    examples around their nearest initial mean (the variance a hard assignment would give).
    """
    X = np.asarray(X, dtype=np.float64)
    P, N = X.shape
    floor = N * float(params["bandwidth"]) ** 2
    learn = params["width"] == "learned"
    means = initial_means(X, K, params["init"], rng) if means is None else np.array(means, dtype=np.float64)
    log_weights = np.full(K, -np.log(K))
    variance = floor
    if learn:
        sq = np.einsum("pn,pn->p", X, X)[:, None] - 2.0 * X @ means.T + np.einsum("kn,kn->k", means, means)
        variance = max(float(np.maximum(sq.min(axis=1), 0.0).sum()) / (P * N), floor)
    trace: list[float] = []
    converged = False
    tol = float(params["tol"]) * P * N
    for _ in range(int(params["iterations"])):
        R, elbo = e_step(X, means, log_weights, variance)
        if trace and elbo - trace[-1] <= tol:
            trace.append(elbo)
            converged = True
            break
        trace.append(elbo)
        means, log_weights, variance = m_step(X, R, means, floor, learn)
    if not converged:  # the assignments of the last M-step's parameters
        R, elbo = e_step(X, means, log_weights, variance)
        trace.append(elbo)
    return EMFit(means, log_weights, variance, R, np.asarray(trace), converged)


def n_memories(P: int, params: dict, meta: dict | None) -> int:
    """K from the parameters: given, else the dataset's number of components, else one per example."""
    K = int(params["K"])
    if K == 0:
        K = int(meta["n_components"]) if meta and "n_components" in meta else P
    return min(K, P)


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator, meta: dict | None = None) -> Model:
    """Fit the mixture; memories are its means, retrieved by softmax with its weights and width."""
    if q != 2:
        raise NotApplicable(f"the ELBO mixture memory is written for +-1 patterns, got q = {q}")
    K = n_memories(X.shape[0], params, meta)
    em = fit(X, K, params, rng)
    return Model(
        q=2,
        memories=em.means.astype(np.float32),
        params={"beta": 1.0 / em.variance, "log_weights": em.log_weights},
        info={
            "n_memories": K,
            "iterations": int(em.elbo.size),
            "converged": em.converged,
            "elbo": em.elbo,
            "variance": em.variance,
            "responsibilities": em.responsibilities.astype(np.float32),
            "assignment": em.responsibilities.argmax(axis=1),
        },
    )
