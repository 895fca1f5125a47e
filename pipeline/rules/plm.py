"""Pseudo-likelihood maximisation (PLM): the central learning rule of amsweep.

Row i of J is a logistic regression of xi_i on the other spins, fitted by full-batch (or
minibatch) gradient ascent on L = sum_{mu,i} [lam xi_i h_i - log 2cosh(lam h_i)]. Without
L2 the couplings grow without bound on separable data, which is how the zero-temperature
limit is reached (|J| plays the inverse temperature). Potts data go to the plmDCA kernel.
"""

from __future__ import annotations

import numpy as np

from pipeline.model import Model, Param
from pipeline.rules._ising import as_spins, hebb_couplings
from pipeline.rules._plm_kernels import apply_step, loglik, residual

PARAMS: dict[str, Param] = {
    "lam": Param(1.0, float, "inverse temperature lam of the conditional likelihood", low=0.0, open_low=True),
    "lr": Param(1.0, float, "learning rate; the gradient is a per-pattern mean, so lr is "
                "size-independent (lr = 10 without clip overshoots: narrower basins)", low=0.0,
                open_low=True),
    "epochs": Param(200, int, "passes over the training set", low=1),
    "init": Param("hebb", str, "initial couplings", choices=("hebb", "zero", "random")),
    "batch_size": Param(0, int, "0 = full batch; else minibatches drawn from the rng", low=0),
    "clip": Param(0.0, float, "max gradient norm per row (0 = off)", low=0.0),
    "symmetric": Param(False, bool, "symmetrised gradient so that J = J^T"),
    "l2": Param(0.0, float, "L2 penalty l2 * sum J_ij^2 per pattern; 0 reaches the T -> 0 limit", low=0.0),
}
POTTS = True

SHRINK = 0.5  # on a non-finite step: J and lr are both scaled by this


def initial_couplings(Xf: np.ndarray, init: str, rng: np.random.Generator) -> np.ndarray:
    """Hebb (the field's reference start), zero, or Gaussian with row norm ~ 1."""
    N = Xf.shape[1]
    if init == "hebb":
        return hebb_couplings(Xf)
    if init == "zero":
        return np.zeros((N, N), dtype=np.float32)
    if init == "random":
        J = (rng.standard_normal((N, N)) / np.sqrt(N)).astype(np.float32)
        np.fill_diagonal(J, 0.0)
        return J
    raise ValueError(f"unknown init {init!r}; expected hebb, zero or random")


def mean_log_pl(J: np.ndarray, Xf: np.ndarray, lam: float) -> float:
    """Mean over patterns and sites of log P(xi_i | xi_{-i}) (a fresh GEMM, J untouched)."""
    return loglik(Xf @ J.T, Xf, lam) / Xf.size


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """Gradient ascent on the pseudo-likelihood; asymmetric J unless ``symmetric``."""
    if q > 2:
        from pipeline.rules._plm_potts import train as train_potts

        return train_potts(X, q, params, rng)
    Xf = as_spins(X)
    J = initial_couplings(Xf, params["init"], rng)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected and undone
        final, lr, recoveries = _ascend(Xf, J, params, rng)
    info = {
        "epochs": int(params["epochs"]),
        "log_pl": float(final),
        "J_norm": float(np.linalg.norm(J.astype(np.float64))),
        "row_norm_mean": float(np.linalg.norm(J.astype(np.float64), axis=1).mean()),
        "nan_recoveries": recoveries,
        "lr_final": lr,
    }
    return Model(q=2, J=J, params={}, info=info)


def _ascend(
    Xf: np.ndarray, J: np.ndarray, params: dict, rng: np.random.Generator
) -> tuple[float, float, int]:
    """Gradient ascent on J in place; returns (final mean log-PL, final lr, NaN recoveries).

    Per step: H = X J^T (GEMM), R = X - tanh(lam H) in place in H with the finiteness check,
    G = R^T X (GEMM), then one fused pass for symmetrisation, L2, clipping and the step.
    """
    P, N = Xf.shape
    lam, lr, l2 = float(params["lam"]), float(params["lr"]), float(params["l2"])
    clip, symmetric = float(params["clip"]), bool(params["symmetric"])
    bs = int(params["batch_size"])
    bs = P if bs <= 0 or bs >= P else bs
    backup = J.copy()
    G = np.empty((N, N), dtype=np.float32)
    H = np.empty((bs, N), dtype=np.float32)
    recoveries = 0
    for _ in range(int(params["epochs"])):
        for Xb in [Xf] if bs == P else _minibatches(Xf, bs, rng):
            Hb = H[: Xb.shape[0]]
            np.matmul(Xb, J.T, out=Hb)
            if not np.isfinite(residual(Hb, Xb, lam)):
                # the last step blew up: back to the previous J, smaller and slower
                J[:] = backup * np.float32(SHRINK)
                lr *= SHRINK
                recoveries += 1
                np.matmul(Xb, J.T, out=Hb)
                residual(Hb, Xb, lam)
            np.matmul(Hb.T, Xb, out=G)
            apply_step(J, G, backup, lam / Xb.shape[0], lr, l2, clip, symmetric)
    final = mean_log_pl(J, Xf, lam)
    if not np.isfinite(final):
        J[:] = backup
        recoveries += 1
        final = mean_log_pl(J, Xf, lam)
    return final, lr, recoveries


def _minibatches(Xf: np.ndarray, bs: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A fresh random partition of the patterns into batches of size bs (last one smaller)."""
    idx = rng.permutation(Xf.shape[0])
    return [np.ascontiguousarray(Xf[idx[k : k + bs]]) for k in range(0, len(idx), bs)]
