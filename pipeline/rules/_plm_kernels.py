"""Fused elementwise kernels of Ising PLM training (primal and dual forms).

Primal epoch: two float32 GEMMs (H = X J^T, G = R^T X) with the residual and the step in
between done here in place. Dual epoch (see ``plm._ascend_dual``): J is kept as
J = a * J0 + W^T X and the fields are advanced as H += b (C R - X d) with C = X X^T, so one
(P, P) x (P, N) GEMM replaces the two (P, N) x (N, N) ones; these kernels do the rest in one
pass each. The only transcendental, exp, is numpy's SIMD float32 exp (<= 3 ulp): numba has
no vector math library here, and its scalar expf made the residual 4-7 ms of a ~32 ms epoch
at N = P = 1000 (now 2-2.6 ms, benchmarks/RESULTS.md).
"""

from __future__ import annotations

import numpy as np
from numba import njit

# fast math without 'nnan'/'ninf': these are gradients (no exactness at stake), but
# non-finite fields must survive to be detected.
FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}
# On a non-finite step both PLM trainers (Ising and Potts) scale J and the learning rate by this.
SHRINK = 0.5


@njit(cache=True, fastmath=FAST)
def _scale_and_sum(H: np.ndarray, E: np.ndarray, c: float) -> float:
    """E = c H (E may be H); the float64 sum of H, finite iff every field is."""
    P, N = H.shape
    total = 0.0
    cf = np.float32(c)
    for m in range(P):
        for i in range(N):
            u = H[m, i]
            total += u
            E[m, i] = cf * u
    return total


@njit(cache=True, fastmath=FAST)
def _residual_from_exp(E: np.ndarray, X: np.ndarray) -> None:
    """E = exp(-2 lam h) on entry; E = x - tanh(lam h) = x + 1 - 2 / (1 + E) on exit."""
    P, N = E.shape
    one = np.float32(1.0)
    two = np.float32(2.0)
    for m in range(P):
        for i in range(N):
            E[m, i] = X[m, i] + one - two / (one + E[m, i])


@njit(cache=True, fastmath=FAST)
def _residual_from_exp_cols(E: np.ndarray, X: np.ndarray, d: np.ndarray, rabs: np.ndarray) -> None:
    """As _residual_from_exp, with the column sums d_i = (R^T X)_ii and rabs_i = sum |R_mu,i|."""
    P, N = E.shape
    one = np.float32(1.0)
    two = np.float32(2.0)
    d[:] = 0.0
    rabs[:] = 0.0
    for m in range(P):
        for i in range(N):
            x = np.float32(X[m, i])
            r = x + one - two / (one + E[m, i])
            E[m, i] = r
            d[i] += r * x
            rabs[i] += abs(r)


def residual(H: np.ndarray, X: np.ndarray, lam: float) -> float:
    """Overwrite float32 H with R = X - tanh(lam H); return the sum of the fields.

    tanh(lam u) = 2 / (1 + exp(-2 lam u)) - 1: exp overflow gives the right limit -1. The
    returned sum is finite iff every field is: the trainer's NaN/overflow check, no extra pass.
    """
    total = _scale_and_sum(H, H, -2.0 * lam)
    np.exp(H, out=H)
    _residual_from_exp(H, X)
    return total


def residual_into(H: np.ndarray, X: np.ndarray, lam: float, R: np.ndarray, d: np.ndarray, rabs: np.ndarray) -> None:
    """R = X - tanh(lam H) with H untouched (the dual form still needs it), d = diag(R^T X)
    and rabs = column sums of |R| (they bound the growth of the dual weights)."""
    _scale_and_sum(H, R, -2.0 * lam)
    np.exp(R, out=R)
    _residual_from_exp_cols(R, X, d, rabs)


@njit(cache=True)
def loglik(H: np.ndarray, X: np.ndarray, lam: float) -> float:
    """Sum of lam x h - log 2cosh(lam h) over H (not modified), in float64.

    log 2cosh(u) = |u| + log1p(exp(-2|u|)) stays finite for large |u| (the T -> 0 regime).
    Computed once after training: it is the reported objective, not part of the epoch.
    """
    P, N = H.shape
    total = 0.0
    for m in range(P):
        for i in range(N):
            u = lam * H[m, i]
            x = X[m, i]
            a = abs(u)
            total += x * u - (a + np.log1p(np.exp(-2.0 * a)))
    return total


@njit(cache=True)
def site_clip_scales(G: np.ndarray, q: int, clip: float, symmetric: bool) -> np.ndarray:
    """Step factor per site: rows i*q .. (i+1)*q - 1 of G are site i's gradient (q = 1 Ising).

    A site whose gradient norm exceeds ``clip`` gets clip / norm; with symmetric couplings every
    site gets the worst factor, so that the step keeps J = J^T. clip = 0 turns clipping off.
    """
    D = G.shape[0]
    N = D // q
    scale = np.ones(N)
    if clip > 0.0:
        worst = 1.0
        for i in range(N):
            nrm = 0.0
            for r in range(i * q, (i + 1) * q):
                for c in range(D):
                    nrm += G[r, c] * G[r, c]
            nrm = np.sqrt(nrm)
            if nrm > clip:
                scale[i] = clip / nrm
                worst = min(worst, scale[i])
        if symmetric:
            scale[:] = worst
    return scale


@njit(cache=True)
def apply_step(
    J: np.ndarray,
    G: np.ndarray,
    backup: np.ndarray,
    gscale: float,
    lr: float,
    l2: float,
    clip: float,
    symmetric: bool,
) -> None:
    """J += lr * (gscale * G - 2 l2 J), in place, after saving J in backup.

    G arrives as the raw product R^T X; gscale = lam / batch size makes it the gradient of
    the per-pattern mean log-pseudo-likelihood, to which the L2 term is then added.
    symmetric: G <- (G + G^T) / 2, the gradient of the likelihood restricted to J = J^T
    (up to a factor 2 absorbed in the step). clip: rescale rows whose gradient norm exceeds
    clip; in the symmetric case the whole gradient is rescaled by the worst row, so that
    J stays symmetric. The diagonal stays zero.
    """
    N = J.shape[0]
    for i in range(N):
        for j in range(N):
            backup[i, j] = J[i, j]
    if symmetric:
        for i in range(N):
            for j in range(i + 1, N):
                g = 0.5 * gscale * (G[i, j] + G[j, i])
                G[i, j] = g
                G[j, i] = g
    else:
        for i in range(N):
            for j in range(N):
                G[i, j] *= gscale
    for i in range(N):
        G[i, i] = 0.0
        if l2 > 0.0:
            for j in range(N):
                G[i, j] -= 2.0 * l2 * J[i, j]
    scale = site_clip_scales(G, 1, clip, symmetric)
    for i in range(N):
        c = lr * scale[i]
        for j in range(N):
            J[i, j] += c * G[i, j]
        J[i, i] = 0.0


@njit(cache=True, fastmath=FAST)
def column_dots(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """sum_mu A_mu,i B_mu,i for every column i, float64: the dual form's gradient row norms."""
    P, N = A.shape
    out = np.zeros(N)
    for m in range(P):
        for i in range(N):
            out[i] += A[m, i] * B[m, i]
    return out


@njit(cache=True, fastmath=FAST)
def dual_fields(
    Hn: np.ndarray,
    H: np.ndarray,
    X: np.ndarray,
    d: np.ndarray,
    coef: np.ndarray,
    b: np.ndarray,
    g: float,
) -> float:
    """The fields after one dual step, Hn = coef H + b (g Q - X d); returns their sum.

    On entry Hn holds the product Q (C R, or C R + X R^T X when symmetric). Row i of J moves
    as J_i <- coef_i J_i + b_i (g Q-part)_i without its diagonal, which is what the X d term
    removes. H stays untouched (the backup if the step is refused). The sum is taken over
    the stored float32 values: their overflow is what the caller checks.
    """
    P, N = H.shape
    total = 0.0
    for m in range(P):
        for i in range(N):
            h = np.float32(coef[i] * H[m, i] + b[i] * (g * Hn[m, i] - X[m, i] * d[i]))
            Hn[m, i] = h
            total += h
    return total


@njit(cache=True, fastmath=FAST)
def dual_weights(W: np.ndarray, R: np.ndarray, coef: np.ndarray, b: np.ndarray, wabs: np.ndarray) -> None:
    """W = coef W + b R in place (float64), the same step on J = a J0 + W^T X; wabs = sum_mu |W|."""
    P, N = W.shape
    wabs[:] = 0.0
    for m in range(P):
        for i in range(N):
            w = coef[i] * W[m, i] + b[i] * R[m, i]
            W[m, i] = w
            wabs[i] += abs(w)


@njit(cache=True)
def plain_dual_update(
    Hn: np.ndarray,
    H: np.ndarray,
    X: np.ndarray,
    vec: np.ndarray,
    W: np.ndarray,
    R: np.ndarray,
    coef: float,
    b: float,
    g: float,
    j0_rows: float,
    safe: float,
) -> int:
    """The rest of a plain dual step (no momentum, no clip) after Q = C R, in one call.

    ``vec`` holds the per-site rows d, rabs, wabs, coef, b, a, a_new (``_Dual.vec``); coef and b are
    filled with the step's two numbers (the general path's arrays at s = 1). Then ``dual_fields``,
    a_new = a coef and the bound max(|coef| wabs + |b| rabs + |a_new| j0_rows), each value computed
    as the numpy expressions of ``_Dual._general_step`` compute it (no fast math here: the same IEEE
    operations in the same order, so the same bits). Returns 0 if the new fields overflow (nothing
    else touched), 2 if the bound reaches ``safe`` (the caller builds J to check it; W, wabs and a
    untouched), else 1 after ``dual_weights`` and a = a_new. One call with one vector argument
    instead of ~12 small numpy operations and two kernel calls: most of a small PLM epoch (issue 26).
    """
    d, rabs, wabs, cf, bv, a, a_new = vec[0], vec[1], vec[2], vec[3], vec[4], vec[5], vec[6]
    cf[:] = coef
    bv[:] = b
    total = dual_fields(Hn, H, X, d, cf, bv, g)
    N = a.shape[0]
    reached = False
    nan = False
    for i in range(N):
        an = a[i] * cf[i]
        a_new[i] = an
        v = (abs(cf[i]) * wabs[i] + abs(bv[i]) * rabs[i]) + abs(an) * j0_rows
        if v != v:
            nan = True  # numpy's max is then NaN, and NaN >= safe is False
        elif v >= safe:
            reached = True
    if not np.isfinite(total):
        return 0
    if reached and not nan:
        return 2
    dual_weights(W, R, cf, bv, wabs)
    a[:] = a_new
    return 1


# Nesterov momentum (the look-ahead form of Bengio et al. 2013): with D the step plain gradient
# ascent would take from J, V <- mu V + D and J <- J + D + mu V. mu = 0 is plain ascent; these
# kernels only run for mu > 0, so the default path is untouched.


@njit(cache=True, fastmath=FAST)
def momentum_step(J: np.ndarray, before: np.ndarray, V: np.ndarray, mu: float) -> None:
    """Primal form, flat views: J holds J + D (the plain step from ``before``) on entry."""
    for k in range(J.shape[0]):
        d = J[k] - before[k]
        v = mu * V[k] + d
        V[k] = v
        J[k] += mu * v


@njit(cache=True, fastmath=FAST)
def momentum_fields(Hn: np.ndarray, H: np.ndarray, VH: np.ndarray, mu: float) -> float:
    """Dual form: Hn holds the plain step's fields; add mu times the field velocity VH (the
    fields are linear in J). Returns the sum of the new float32 fields (overflow check)."""
    P, N = H.shape
    total = 0.0
    for m in range(P):
        for i in range(N):
            v = mu * VH[m, i] + (Hn[m, i] - H[m, i])
            VH[m, i] = v
            h = np.float32(Hn[m, i] + mu * v)
            Hn[m, i] = h
            total += h
    return total


@njit(cache=True, fastmath=FAST)
def momentum_weights(
    W: np.ndarray,
    VW: np.ndarray,
    R: np.ndarray,
    coef: np.ndarray,
    b: np.ndarray,
    mu: float,
    wabs: np.ndarray,
    vabs: np.ndarray,
) -> None:
    """Dual form: D = (coef - 1) W + b R, VW <- mu VW + D, W <- W + D + mu VW (float64);
    wabs and vabs = column sums of |W| and |VW| (bounds on |J| and on its velocity)."""
    P, N = W.shape
    wabs[:] = 0.0
    vabs[:] = 0.0
    for m in range(P):
        for i in range(N):
            d = (coef[i] - 1.0) * W[m, i] + b[i] * R[m, i]
            v = mu * VW[m, i] + d
            VW[m, i] = v
            w = W[m, i] + d + mu * v
            W[m, i] = w
            wabs[i] += abs(w)
            vabs[i] += abs(v)
