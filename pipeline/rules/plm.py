"""Pseudo-likelihood maximisation (PLM): the central learning rule of amsweep.

Row i of J is a logistic regression of xi_i on the other spins, fitted by full-batch (or
minibatch) gradient ascent on L = sum_{mu,i} [lam xi_i h_i - log 2cosh(lam h_i)]. Without
L2 the couplings grow without bound on separable data, which is how the zero-temperature
limit is reached (|J| plays the inverse temperature). Potts data go to the plmDCA kernel.

Two exact rewritings of the same gradient ascent, chosen by cost:
- primal: per epoch H = X J^T and G = R^T X, two (P, N) x (N, N) GEMMs, 4 P N^2 flops;
- dual: every full-batch step adds a combination of the patterns to each row of J, so
  J = a J0 + W^T X (J0 the initial couplings, W (P, N)); the fields then move as
  H += b (C R - X d) with C = X X^T fixed, one (P, P) x (P, N) GEMM, 2 P^2 N flops.
  It is used up to P = 1.5 N (asymmetric) and 0.6 N (symmetric: X R^T X is two more
  P^2 N products); minibatches, and clipping together with L2, stay primal.
Both produce the same iterates up to float32 rounding (tests/test_benchmarks_smoke.py); the
dual keeps W in float64, as its entries may grow and cancel where J does not.
Optional Nesterov momentum (``momentum`` > 0) works in both forms: the fields are linear in
(W, a), so the dual form carries velocities of W, a and H (tests/test_rules_plm.py).
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline.model import Model, Param
from amsweep.pipeline.rules._ising import as_spins, hebb_couplings
from amsweep.pipeline.rules._plm_kernels import (
    SHRINK,
    apply_step,
    column_dots,
    dual_fields,
    dual_weights,
    loglik,
    momentum_fields,
    momentum_step,
    momentum_weights,
    plain_dual_update,
    residual,
    residual_into,
)

PARAMS: dict[str, Param] = {
    "lam": Param(1.0, float, "inverse temperature lam of the conditional likelihood", low=0.0, open_low=True),
    "lr": Param(
        1.0,
        float,
        "learning rate; the gradient is a per-pattern mean, so lr is "
        "size-independent (lr = 10 without clip overshoots: narrower basins). The PLM paper's "
        "code takes a mean over sites too and drops lam: its lr is this lr x lam x N (its "
        "default 10 at N = 200 is lr = 0.05), same couplings otherwise",
        low=0.0,
        open_low=True,
    ),
    "epochs": Param(200, int, "passes over the training set", low=1),
    "init": Param("hebb", str, "initial couplings", choices=("hebb", "zero", "random")),
    "batch_size": Param(0, int, "0 = full batch; else minibatches drawn from the rng", low=0),
    "clip": Param(0.0, float, "max gradient norm per row (0 = off)", low=0.0),
    "symmetric": Param(False, bool, "symmetrised gradient so that J = J^T"),
    "l2": Param(0.0, float, "L2 penalty l2 * sum J_ij^2 per pattern; 0 reaches the T -> 0 limit", low=0.0),
    "momentum": Param(
        0.0,
        float,
        "Nesterov momentum mu (0 = plain gradient ascent, the paper's rule); "
        "0.8 reaches an L2 optimum in ~3x fewer epochs; stable while lr * curvature < "
        "2 (1 + mu) / (1 + 2 mu), so lower lr if a fit stalls",
        low=0.0,
        high=1.0,
        open_high=True,
    ),
}
POTTS = True
QUICK = {"epochs": 20}  # the conformance kit's settings: 200 epochs take seconds at N = 32


def memory_bytes(N: int, P: int, q: int, params: dict) -> int:
    """Peak bytes of train: 3.77 x its couplings plus patterns as float32 in the dual form, 2.84 x
    in the primal form (benchmarks/memory.py, RESULTS.md), both rounded up to 4 (Potts: one-hot
    width N q)."""
    width = N * (q if q > 2 else 1)
    return 4 * 4 * (width * width + P * width)


# The dual form is used up to these loads alpha = P / N. Flops alone put the break-even at
# 2 (asymmetric) and 2/3 (symmetric); its elementwise passes touch more (P, N) arrays (W is
# float64), so it sits lower: measured near 1.5 and 0.7 at N = 400 (benchmarks/RESULTS.md).
DUAL_MAX_ALPHA = 1.5
DUAL_MAX_ALPHA_SYMMETRIC = 0.6
# Above this bound on |J_ij| a dual step builds J to check it for overflow: half of float32's
# max, as the symmetrised J adds two such sums.
FLOAT32_SAFE = float(np.finfo(np.float32).max) / 2


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


def uses_dual(P: int, N: int, params: dict) -> bool:
    """Whether training takes the dual form: full batch, cheaper, and no clip with L2."""
    bs = int(params["batch_size"])
    if 0 < bs < P:
        return False
    if params["symmetric"]:
        return float(params["clip"]) == 0.0 and P <= DUAL_MAX_ALPHA_SYMMETRIC * N
    return (float(params["clip"]) == 0.0 or float(params["l2"]) == 0.0) and P <= DUAL_MAX_ALPHA * N


def train(X: np.ndarray, q: int, params: dict, rng: np.random.Generator) -> Model:
    """Gradient ascent on the pseudo-likelihood; asymmetric J unless ``symmetric``."""
    if q > 2:
        from amsweep.pipeline.rules._plm_potts import train as train_potts

        return train_potts(X, q, params, rng)
    Xf = as_spins(X)
    P, N = Xf.shape
    dual = uses_dual(P, N, params)
    with np.errstate(over="ignore", invalid="ignore"):  # overflow is detected and undone
        if dual:
            J, final, lr, recoveries = _ascend_dual(Xf, params, rng)
        else:
            J = initial_couplings(Xf, params["init"], rng)
            final, lr, recoveries = _ascend(Xf, J, params, rng)
    info = {
        "epochs": int(params["epochs"]),
        "log_pl": float(final),
        "J_norm": float(np.linalg.norm(J.astype(np.float64))),
        "row_norm_mean": float(np.linalg.norm(J.astype(np.float64), axis=1).mean()),
        "nan_recoveries": recoveries,
        "lr_final": lr,
        "form": "dual" if dual else "primal",
    }
    return Model(q=2, J=J, params={}, info=info)


def _ascend(Xf: np.ndarray, J: np.ndarray, params: dict, rng: np.random.Generator) -> tuple[float, float, int]:
    """Primal gradient ascent on J in place; returns (final mean log-PL, final lr, NaN recoveries).

    Per step: H = X J^T (GEMM), R = X - tanh(lam H) in place in H with the finiteness check,
    G = R^T X (GEMM), then one fused pass for symmetrisation, L2, clipping and the step (and
    one more for momentum, if asked).
    """
    P, N = Xf.shape
    lam, lr, l2 = float(params["lam"]), float(params["lr"]), float(params["l2"])
    clip, symmetric = float(params["clip"]), bool(params["symmetric"])
    bs = int(params["batch_size"])
    bs = P if bs <= 0 or bs >= P else bs
    mu = float(params["momentum"])
    backup = J.copy()
    V = np.zeros_like(J) if mu > 0.0 else None  # momentum: velocity of J
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
                if V is not None:
                    V[:] = 0.0  # momentum restarts after a refused step
                np.matmul(Xb, J.T, out=Hb)
                residual(Hb, Xb, lam)
            np.matmul(Hb.T, Xb, out=G)
            apply_step(J, G, backup, lam / Xb.shape[0], lr, l2, clip, symmetric)
            if V is not None:
                momentum_step(J.reshape(-1), backup.reshape(-1), V.reshape(-1), mu)
    del G, H  # before the final fields are allocated: they set the cell's peak memory
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


class _Dual:
    """State of the dual form: J = a J0 + W^T X (symmetric: (W^T X + X^T W) / 2), H = X J^T.

    The fields H are float32 like the primal form's and double-buffered, so a refused step
    leaves them untouched. W is float64: on a row whose patterns cannot all be separated, W
    keeps growing while J stays bounded (the patterns' shares cancel), and float32 would lose
    that cancellation (measured: 7e-4 against 3e-6 relative error after 3000 epochs). W is
    updated only once a step is accepted, from column sums that bound |J_ij| <= sum_mu |W_mu,i|.
    """

    def __init__(self, Xf: np.ndarray, init: str, symmetric: bool, rng: np.random.Generator, mu: float = 0.0) -> None:
        P, N = Xf.shape
        self.Xf, self.symmetric, self.mu = Xf, symmetric, mu
        self.X8 = Xf.astype(np.int8)
        self.C = Xf @ Xf.T  # integer entries |C| <= N: exact in float32
        self.M = np.empty((P, P), np.float32) if symmetric else None
        self.Q2 = np.empty((P, N), np.float32) if symmetric else None
        self.g = 0.5 if symmetric else 1.0  # weight of Q in the step (the 1/2 of (G + G^T) / 2)
        self.J0 = initial_couplings(Xf, "random", rng) if init == "random" else None
        self.j0_rows = 0.0 if self.J0 is None else float(np.abs(self.J0).sum(axis=1).max())
        # per-site vectors as rows of one array, so that the plain step passes them as one argument
        self.vec = np.zeros((7, N))
        self.d, self.rabs, self.wabs, self.coef, self.b, self.a, self.a_new = self.vec
        self.a[:] = 1.0
        self.W = np.zeros((P, N))
        self.H = np.zeros((P, N), np.float32) if self.J0 is None else Xf @ self.J0.T
        self.Hn = np.empty_like(self.H)
        self.R = np.empty((P, N), np.float32)
        if mu > 0.0:  # velocities of W, a and the fields (the fields are linear in W and a)
            self.VW, self.VH = np.zeros((P, N)), np.zeros((P, N), np.float32)
            self.va, self.vabs = np.zeros(N), np.zeros(N)
        if init == "hebb":  # J0 = X^T X / N is W = X / N
            np.divide(Xf, N, out=self.W, dtype=np.float64)
            self.wabs[:] = P / N
            self.R[:] = self.W  # H = X J0^T: a step of size 1 from J = 0 (coef 0, b 1)
            d = column_dots(self.R, Xf)
            dual_fields(self.product(self.R, self.Hn), self.H, self.X8, d, np.zeros(N), np.ones(N), self.g)
            self.H, self.Hn = self.Hn, self.H

    def product(self, R: np.ndarray, out: np.ndarray) -> np.ndarray:
        """Q = C R, or C R + X R^T X when symmetric (whose gradient adds X^T R)."""
        np.matmul(self.C, R, out=out)
        if self.symmetric:
            assert self.M is not None and self.Q2 is not None  # allocated when symmetric
            np.matmul(self.Xf, R.T, out=self.M)
            np.matmul(self.M, self.Xf, out=self.Q2)
            out += self.Q2
        return out

    def step(self, lam: float, lr: float, l2: float, clip: float) -> bool:
        """One epoch's step; False (state unchanged) if it overflows the fields or J."""
        gscale = lam / self.H.shape[0]
        residual_into(self.H, self.X8, lam, self.R, self.d, self.rabs)
        if clip == 0.0 and self.mu == 0.0:
            return self._plain_step(gscale, lr, l2)
        return self._general_step(gscale, lr, l2, clip)

    def _general_step(self, gscale: float, lr: float, l2: float, clip: float) -> bool:
        """The step after the residual, with clip and momentum if asked."""
        N = self.H.shape[1]
        Q = self.product(self.R, self.Hn)
        s = np.ones(N) if clip == 0.0 else _clip_scales(self.R, Q, self.d, gscale, clip)
        coef, b = 1.0 - 2.0 * lr * l2 * s, lr * gscale * s
        mu = self.mu
        total = dual_fields(self.Hn, self.H, self.X8, self.d, coef, b, self.g)
        if mu > 0.0:
            total = momentum_fields(self.Hn, self.H, self.VH, mu)
            va = mu * self.va + (coef - 1.0) * self.a
            a = self.a * coef + mu * va
            # |W_new| <= |W| + |D| + mu (mu |VW| + |D|), |D| <= |coef - 1| |W| + |b| |R| (column sums)
            step = np.abs(coef - 1.0) * self.wabs + np.abs(b) * self.rabs
            wbound = self.wabs + step + mu * (mu * self.vabs + step)
        else:
            a = self.a * coef
            wbound = np.abs(coef) * self.wabs + np.abs(b) * self.rabs
        if not np.isfinite(total):
            return False
        # |J_ij| <= sum_mu |W_mu,i| + |a_i| sum_j |J0_ij|; only near float32's limit is J built
        if float(np.max(wbound + np.abs(a) * self.j0_rows)) >= FLOAT32_SAFE:
            D = (coef - 1.0) * self.W + b * self.R
            W = self.W + D + mu * (mu * self.VW + D) if mu > 0.0 else self.W + D
            if not np.isfinite(self.couplings(W, a)).all():
                return False
        self.H, self.Hn = self.Hn, self.H
        if mu > 0.0:
            momentum_weights(self.W, self.VW, self.R, coef, b, mu, self.wabs, self.vabs)
            self.va = va
        else:
            dual_weights(self.W, self.R, coef, b, self.wabs)
        self.a[:] = a  # in place: self.a is a row of self.vec
        return True

    def _plain_step(self, gscale: float, lr: float, l2: float) -> bool:
        """``_general_step`` without clip or momentum (the default), bit for bit: after Q = C R, one
        ``plain_dual_update`` call does what that path does in ~12 numpy operations and two kernel
        calls, the same operations on the same values (tests/test_small_cell.py). A 20-epoch PLM
        cell at N = 32 trains in ~0.17 ms instead of ~0.33 (benchmarks/RESULTS.md)."""
        Q = self.product(self.R, self.Hn)
        coef, b = 1.0 - 2.0 * lr * l2, lr * gscale  # the general path's per-row arrays at s = 1
        ok = plain_dual_update(
            Q, self.H, self.X8, self.vec, self.W, self.R, coef, b, self.g, self.j0_rows, FLOAT32_SAFE
        )
        a = self.a_new
        if ok == 0:
            return False
        if ok == 2:  # near float32's limit: build J to check it, as the general path does
            D = (self.coef - 1.0) * self.W + self.b * self.R
            if not np.isfinite(self.couplings(self.W + D, a)).all():
                return False
            dual_weights(self.W, self.R, self.coef, self.b, self.wabs)
            self.a[:] = a
        self.H, self.Hn = self.Hn, self.H
        return True

    def shrink(self, factor: float) -> None:
        """Scale J (hence H, W and a) after a refused step; momentum restarts from rest."""
        for arr in (self.H, self.W, self.a, self.wabs):
            arr *= factor
        if self.mu > 0.0:
            for arr in (self.VW, self.VH, self.va, self.vabs):
                arr[...] = 0.0

    def release(self) -> None:
        """Drop the P x N work arrays before J and its fields are formed: they set the peak memory."""
        for name in ("H", "Hn", "R", "C", "M", "Q2", "VW", "VH"):
            self.__dict__.pop(name, None)

    def couplings(self, W: np.ndarray, a: np.ndarray, block: int = 256) -> np.ndarray:
        """J = a J0 + W^T X (symmetrised if asked), zero diagonal: float64 products, float32 J."""
        N = W.shape[1]
        X64 = self.Xf.astype(np.float64)
        if self.symmetric:
            J64 = W.T @ X64
            J64 += J64.T.copy()
            J64 *= 0.5
        else:
            J64 = None
        J = np.empty((N, N), np.float32)
        with np.errstate(over="ignore"):
            for r in range(0, N, block):  # row blocks: no (N, N) float64 temporary
                rows = J64[r : r + block] if J64 is not None else W[:, r : r + block].T @ X64
                if self.J0 is not None:
                    rows = rows + a[r : r + block, None] * self.J0[r : r + block]
                J[r : r + block] = rows
        np.fill_diagonal(J, 0.0)
        return J


def _ascend_dual(Xf: np.ndarray, params: dict, rng: np.random.Generator) -> tuple[np.ndarray, float, float, int]:
    """Dual gradient ascent; returns (J, final mean log-PL, final lr, NaN recoveries).

    Per epoch: R and d = diag(R^T X) in one pass, Q = C R (GEMM), the new fields in one pass,
    the weights in another once the step is accepted. A step that overflows is refused at
    once and J, lr are scaled by SHRINK, which is what the primal form does at the start of
    the next epoch; after the last epoch it is just refused (the primal form then restores
    its backup). Every step is checked before it is taken, so unlike the primal form the
    final couplings need no check of their own.
    """
    lam, lr, l2 = float(params["lam"]), float(params["lr"]), float(params["l2"])
    clip, epochs = float(params["clip"]), int(params["epochs"])
    state = _Dual(Xf, params["init"], bool(params["symmetric"]), rng, float(params["momentum"]))
    recoveries = 0
    for epoch in range(epochs):
        if not state.step(lam, lr, l2, clip):
            recoveries += 1
            if epoch < epochs - 1:
                state.shrink(SHRINK)
                lr *= SHRINK
    state.release()
    J = state.couplings(state.W, state.a)
    return J, mean_log_pl(J, Xf, lam), lr, recoveries


def _clip_scales(R: np.ndarray, Q: np.ndarray, d: np.ndarray, gscale: float, clip: float) -> np.ndarray:
    """Per-row factor min(1, clip / |G_i|) with |G_i|^2 = gscale^2 ((R^T C R)_ii - d_i^2)."""
    norm = gscale * np.sqrt(np.maximum(column_dots(R, Q) - d * d, 0.0))
    return np.where(norm > clip, clip / np.where(norm > clip, norm, 1.0), 1.0)
