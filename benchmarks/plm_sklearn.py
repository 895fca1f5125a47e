"""PLM training versus scikit-learn's logistic regression fitted row by row, at equal accuracy.

Row i of PLM is the logistic regression of xi_i on the other spins with weights w = 2 lam J_i
(tests/test_rules_plm.py), so sklearn can solve the same problem one row at a time. Two
meanings of "equal accuracy", both stated in the table:
- finite temperature with L2 (lam = 1, l2 = 0.01, C = 2 lam^2 / (P l2)): the same strictly
  convex optimum. sklearn runs with its defaults (lbfgs, tol 1e-4) on a subset of rows; its
  error is the largest relative deviation max_j |J_ij - w*_ij| / max_j |w*_ij| from a tight
  reference fit (tol 1e-10, not timed); PLM (default lr = 1) runs the fewest epochs of a
  ladder (refined by bisection to 5%) that bring its error on the same rows below sklearn's, once
  with plain gradient ascent (the default) and once with Nesterov momentum 0.8. sklearn's time is
  per row times N (rows are independent), PLM's is the whole train() call.
- zero temperature, no L2 (sklearn C = 1e4): both must make every training pattern a fixed
  point (all rows, so sklearn fits all of them); PLM runs the fewest epochs of a ladder
  (refined by bisection) that stores them all.
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression

from benchmarks._harness import Row, interleaved, ms, random_patterns, ratio_row
from benchmarks._plm_common import params
from amsweep.pipeline.rules import plm

TARGET = 10.0
LAM, L2 = 1.0, 0.01
C_ZERO_T = 1e4
LADDER_L2 = (25, 50, 100, 200, 400, 800, 1600)
MOMENTUM = 0.8
LADDER_ZERO_T = (5, 10, 20, 40, 80, 160, 320)


def fit_rows(Xd: np.ndarray, y: np.ndarray, rows: list[int], C: float, tol: float = 1e-4) -> np.ndarray:
    """sklearn's couplings J_i = w / (2 lam) for the given rows, (len(rows), N), zero at j = i."""
    N = Xd.shape[1]
    out = np.zeros((len(rows), N))
    for k, i in enumerate(rows):
        others = np.delete(np.arange(N), i)
        fit = LogisticRegression(C=C, fit_intercept=False, tol=tol, max_iter=100_000)
        fit.fit(Xd[:, others], y[:, i])
        out[k, others] = fit.coef_[0] / (2 * LAM)
    return out


def row_error(J: np.ndarray, ref: np.ndarray) -> float:
    """Largest over rows of max_j |J_ij - ref_ij| / max_j |ref_ij|."""
    return float(np.max(np.abs(J - ref).max(axis=1) / np.abs(ref).max(axis=1)))


def stored_fraction(J: np.ndarray, X: np.ndarray) -> float:
    """Fraction of patterns whose every site is aligned with its field (float64 fields)."""
    H = X.astype(np.float64) @ J.astype(np.float64).T
    return float(np.mean(np.all(H * X > 0, axis=1)))


def _fewest_epochs(ladder: tuple[int, ...], good, train) -> tuple[int, float]:
    """Fewest epochs whose trained J passes ``good``: first passing rung, then bisection to 5%.

    ``good(J)`` returns (passes, score); returns (epochs, score), the last rung if none passes.
    """
    lo, best = 0, None
    for epochs in ladder:
        ok, score = good(train(epochs))
        if ok:
            best = (epochs, score)
            break
        lo = epochs
    if best is None:
        return epochs, score
    hi = best[0]
    while hi - lo > max(1, hi // 20):
        mid = (lo + hi) // 2
        ok, score = good(train(mid))
        if ok:
            hi, best = mid, (mid, score)
        else:
            lo = mid
    return best


def _finite_temperature(tiny: bool, repeats: int, momentum: float = 0.0, lr: float = 1.0) -> Row:
    N = P = 40 if tiny else 1000
    k = 4 if tiny else 32
    X = random_patterns(P, N, seed=3)
    Xd = X.astype(np.float64)
    rows = [int(i) for i in np.linspace(0, N - 1, k)]
    C = 2 * LAM**2 / (P * L2)
    ref = fit_rows(Xd, X, rows, C, tol=1e-10)
    sk_error = row_error(fit_rows(Xd, X, rows, C), ref)

    def train(epochs: int) -> np.ndarray:
        p = params(lam=LAM, l2=L2, epochs=epochs, momentum=momentum, lr=lr)
        return plm.train(X, 2, p, np.random.default_rng(0)).J

    epochs, error = _fewest_epochs(LADDER_L2, lambda J: ((e := row_error(J[rows], ref)) <= sk_error, e), train)
    t = interleaved(
        {"sklearn": lambda: fit_rows(Xd, X, rows, C), "amsweep": lambda: train(epochs)}, repeats, warmup=False
    )
    sk_total = [s * N / k for s in t["sklearn"]]
    how = "plain ascent" if momentum == 0.0 else f"momentum {momentum:g}"
    return ratio_row(
        f"sklearn LogisticRegression per row / PLM ({how}), lam = 1 with L2, N = P = {N}",
        sk_total,
        t["amsweep"],
        ">=",
        TARGET,
        f"equal accuracy = same row solution: error vs tight reference on {k} rows, sklearn "
        f"(lbfgs, tol 1e-4) {sk_error:.1e}, PLM {error:.1e} after {epochs} epochs (lr = {lr:g}, momentum = "
        f"{momentum:g}, l2 = {L2}); "
        f"sklearn {ms(t['sklearn'])} for {k} rows (x {N / k:.2f} for all {N}), "
        f"PLM train() {ms(t['amsweep'])}; 1 thread",
    )


def _zero_temperature(tiny: bool, repeats: int) -> Row:
    N = P = 40 if tiny else 600
    X = random_patterns(P, N, seed=4)
    Xd = X.astype(np.float64)
    rows = list(range(N))

    def train(epochs: int) -> np.ndarray:
        return plm.train(X, 2, params(lam=LAM, epochs=epochs), np.random.default_rng(0)).J

    sk_stored = stored_fraction(fit_rows(Xd, X, rows, C_ZERO_T), X)
    epochs, stored = _fewest_epochs(LADDER_ZERO_T, lambda J: ((f := stored_fraction(J, X)) >= sk_stored, f), train)
    t = interleaved(
        {"sklearn": lambda: fit_rows(Xd, X, rows, C_ZERO_T), "amsweep": lambda: train(epochs)}, repeats, warmup=False
    )
    return ratio_row(
        f"sklearn LogisticRegression per row / PLM, T -> 0 (no L2), N = P = {N}",
        t["sklearn"],
        t["amsweep"],
        ">=",
        TARGET,
        f"equal accuracy = same fraction of training patterns that are fixed points: sklearn (C = {C_ZERO_T:g}, "
        f"all {N} rows) {sk_stored:.3f}, PLM {stored:.3f} after {epochs} epochs (lr = 1); sklearn "
        f"{ms(t['sklearn'])}, PLM train() {ms(t['amsweep'])}; 1 thread",
    )


def run(tiny: bool = False, repeats: int = 3) -> list[Row]:
    """sklearn against PLM's default (plain gradient ascent, the paper's rule) and against PLM
    with Nesterov momentum (an option: mu = 0.8 at lr = 1 is within momentum's stability bound
    here, the ladder finds its fewest epochs the same way)."""
    return [
        _finite_temperature(tiny, repeats),
        _finite_temperature(tiny, repeats, momentum=MOMENTUM),
        _zero_temperature(tiny, repeats),
    ]
