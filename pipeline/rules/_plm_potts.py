"""Potts pseudo-likelihood maximisation (plmDCA without fields, at zero temperature).

Site i is a softmax regression of xi_i on the other sites: h_i(a) = sum_j J[i,a,j,xi_j] and
maximised is F = (1/P) sum_{mu,i} [lam h_i(xi_i) - log sum_a exp(lam h_i(a))] - l2 sum J^2
(l2 per pattern, as for Ising PLM). On one-hot encodings X1 (P, N q) an epoch is two float32
GEMMs: H = X1 J^T and G = (X1 - softmax(lam H))^T X1 (dF/dJ = lam G / P - 2 l2 J), with the
i == j blocks masked. Everything between them is one fused numba pass.

Gauge: sum_a of a softmax residual is 0, so the asymmetric gradient never moves J along
a-constant directions; all three initialisations start in the zero-sum gauge, hence the
asymmetric J stays zero-sum over the target state a, the gauge that leaves every
conditional (and thus the dynamics) unchanged. The symmetric variant keeps the gradient's
a-constant parts: with J = J^T they act as the single-site fields this model has no slot for.

Without L2 on separable data |J| grows without bound: that is the zero-temperature limit
(|J| is the inverse temperature), reached with lam = 1 and plain gradient ascent.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from amsweep.pipeline.model import Model
from amsweep.pipeline.potts import check_states, one_hot
from amsweep.pipeline.rules._hebb_potts import hebb_potts_couplings
from amsweep.pipeline.rules._plm_kernels import SHRINK, momentum_step, site_clip_scales

MAX_RECOVERIES = 200  # 0.5^200 brings any float32 J back to a finite field


@njit(cache=True)
def residual_and_loglik(H: np.ndarray, X: np.ndarray, q: int, lam: float) -> float:
    """Overwrite H (B, N q) with onehot(X) - softmax(lam H) per site; return sum of log P(xi_i | rest).

    Max-subtracted log-sum-exp in float64: log P = lam h(x) - top - log z stays finite for any
    finite H, however saturated (a probability below float32's 1e-45 is still a finite log).
    The log-likelihood is accumulated in float64 (it is compared across epochs).
    """
    B, N = X.shape
    total = 0.0
    e = np.empty(q)
    for m in range(B):
        for i in range(N):
            o = i * q
            x = X[m, i]
            top = lam * np.float64(H[m, o])
            for a in range(1, q):
                top = max(top, lam * np.float64(H[m, o + a]))
            z = 0.0
            for a in range(q):
                e[a] = np.exp(lam * np.float64(H[m, o + a]) - top)
                z += e[a]
            total += lam * np.float64(H[m, o + x]) - top - np.log(z)
            for a in range(q):
                H[m, o + a] = -e[a] / z
            H[m, o + x] += 1.0
    return total


@njit(cache=True)
def apply_step(
    J: np.ndarray, G: np.ndarray, backup: np.ndarray, step: float, l2: float, clip: float, symmetric: bool, q: int
) -> None:
    """J += step * G', in place after saving J in backup; G' is G prepared as follows.

    G arrives as lam/P times the raw likelihood gradient. symmetric: G <- (G + G^T)/2, the
    gradient restricted to J = J^T. The i == j blocks are zeroed, then -2 l2 J is added.
    clip: a site's block row (q x N q, one softmax regression) whose gradient norm exceeds
    clip is rescaled to it; in the symmetric case the whole gradient is rescaled by the worst
    site so that J stays symmetric.
    """
    D = J.shape[0]
    N = D // q
    for r in range(D):
        for c in range(D):
            backup[r, c] = J[r, c]
    if symmetric:
        for r in range(D):
            for c in range(r + 1, D):
                g = 0.5 * (G[r, c] + G[c, r])
                G[r, c] = g
                G[c, r] = g
    for i in range(N):
        for r in range(i * q, (i + 1) * q):
            for c in range(i * q, (i + 1) * q):
                G[r, c] = 0.0
    if l2 > 0.0:
        for r in range(D):
            for c in range(D):
                G[r, c] -= 2.0 * l2 * J[r, c]
    scale = site_clip_scales(G, q, clip, symmetric)
    for r in range(D):
        s = step * scale[r // q]
        for c in range(D):
            J[r, c] += s * G[r, c]


def initial_couplings(X: np.ndarray, q: int, init: str, symmetric: bool, rng: np.random.Generator) -> np.ndarray:
    """Flat (N q, N q) float32 start: Hebb, zero, or Gaussian projected on the zero-sum gauge."""
    N = X.shape[1]
    if init == "hebb":
        return hebb_potts_couplings(X, q)
    if init == "zero":
        return np.zeros((N * q, N * q), dtype=np.float32)
    if init == "random":
        J4 = rng.standard_normal((N, q, N, q)) / np.sqrt(N)
        if symmetric:
            J4 = 0.5 * (J4 + J4.transpose(2, 3, 0, 1))
        J4 -= J4.mean(axis=1, keepdims=True)
        J4 -= J4.mean(axis=3, keepdims=True)
        J4[np.arange(N), :, np.arange(N), :] = 0.0
        return J4.astype(np.float32).reshape(N * q, N * q)
    raise ValueError(f"unknown init {init!r}; expected hebb, zero or random")


def mean_log_pl(J: np.ndarray, X: np.ndarray, X1: np.ndarray, q: int, lam: float) -> float:
    """Mean over patterns and sites of log P(xi_i | xi_{-i}) (a fresh GEMM, J untouched)."""
    H = X1 @ J.T
    return residual_and_loglik(H, X, q, lam) / X.size


def _ascend(
    J: np.ndarray, X: np.ndarray, X1: np.ndarray, q: int, params: dict, rng: np.random.Generator
) -> tuple[float, int, float]:
    """Run the epochs on J in place; return (mean log-PL of the last epoch, recoveries, final lr).

    On a non-finite log-likelihood the step that caused it is undone and J and lr are both
    shrunk (repeatedly if needed): the remedy of the reference code for the T -> 0 regime.
    """
    P = X.shape[0]
    lam, lr = float(params["lam"]), float(params["lr"])
    l2, clip, symmetric = float(params["l2"]), float(params["clip"]), bool(params["symmetric"])
    bs = int(params["batch_size"])
    bs = P if bs <= 0 or bs >= P else bs
    mu = float(params["momentum"])
    backup = J.copy()
    V = np.zeros_like(J) if mu > 0.0 else None  # momentum: velocity of J
    G = np.empty_like(J)
    Hbuf = np.empty((bs, J.shape[0]), dtype=np.float32)
    recoveries = 0
    loglik = np.nan
    for _ in range(int(params["epochs"])):
        order = np.arange(P) if bs == P else rng.permutation(P)
        total = 0.0
        for k in range(0, P, bs):
            rows = order[k : k + bs]
            Xb = X if bs == P else np.ascontiguousarray(X[rows])
            X1b = X1 if bs == P else np.ascontiguousarray(X1[rows])
            Hb = Hbuf[: Xb.shape[0]]
            np.matmul(X1b, J.T, out=Hb)
            ll = residual_and_loglik(Hb, Xb, q, lam)
            while not np.isfinite(ll) and recoveries < MAX_RECOVERIES:
                J[:] = backup * np.float32(SHRINK)
                backup[:] = J
                lr *= SHRINK
                recoveries += 1
                if V is not None:
                    V[:] = 0.0  # momentum restarts after a refused step
                np.matmul(X1b, J.T, out=Hb)
                ll = residual_and_loglik(Hb, Xb, q, lam)
            if not np.isfinite(ll):
                raise FloatingPointError(f"Potts PLM: log-likelihood {ll} after {recoveries} recoveries")
            total += ll
            np.matmul(Hb.T, X1b, out=G)
            G *= np.float32(lam / Xb.shape[0])
            apply_step(J, G, backup, lr, l2, clip, symmetric, q)
            if V is not None:
                momentum_step(J.reshape(-1), backup.reshape(-1), V.reshape(-1), mu)
        loglik = total / X.size
    if not np.all(np.isfinite(J)):  # the very last step overflowed
        J[:] = backup
        recoveries += 1
    return loglik, recoveries, lr


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """Gradient ascent on the Potts pseudo-likelihood; asymmetric J unless ``symmetric``."""
    X = np.ascontiguousarray(check_states(X, q))
    N = X.shape[1]
    lam = float(params["lam"])
    X1 = one_hot(X, q)
    J = initial_couplings(X, q, params["init"], bool(params["symmetric"]), rng)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected and undone
        loglik, recoveries, lr = _ascend(J, X, X1, q, params, rng)
        final = mean_log_pl(J, X, X1, q, lam)
    J64 = J.astype(np.float64)  # norms of a T -> 0 J may overflow float32
    info = {
        "epochs": int(params["epochs"]),
        "log_pl": float(final),
        "log_pl_last_epoch": float(loglik),
        "J_norm": float(np.linalg.norm(J64)),
        "row_norm_mean": float(np.linalg.norm(J64.reshape(N, -1), axis=1).mean()),
        "nan_recoveries": recoveries,
        "lr_final": lr,
    }
    return Model(q=q, J=J.reshape(N, q, N, q), params={}, info=info)
