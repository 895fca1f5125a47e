"""PLM (Ising): fixed points, the logistic-regression correspondence, float32 accuracy, basins."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from amsweep.pipeline.dynamics import asynchronous
from amsweep.pipeline.rules import hebb, plm, pseudo_inverse
from tests.physics import patterns, corrupt

DEFAULTS = {k: p.default for k, p in plm.PARAMS.items()}


def stable(J: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Per pattern: every site aligned with its field (a strict fixed point of sign(J s))."""
    H = X.astype(np.float64) @ J.astype(np.float64).T
    return np.all(H * X > 0, axis=1)


@pytest.mark.parametrize("symmetric", [False, True])
def test_small_alpha_every_pattern_is_a_fixed_point(symmetric: bool) -> None:
    # alpha = 0.2 is far below the PLM storage limits (~1 symmetric, ~2 asymmetric): the
    # likelihood is maximised by separating every pattern, so all 40 must be stable.
    X = patterns(40, 200, seed=1)
    m = plm.train(X, 2, dict(DEFAULTS, symmetric=symmetric), np.random.default_rng(0))
    assert m.J.dtype == np.float32 and m.J.shape == (200, 200)
    assert np.all(np.diag(m.J) == 0)
    if symmetric:
        assert np.array_equal(m.J, m.J.T)
    assert stable(m.J, X).all()
    r = asynchronous.relax(m, X, {"max_sweeps": 10}, np.random.default_rng(1))
    assert np.array_equal(r.final, X) and r.converged.all()
    assert m.info["epochs"] == DEFAULTS["epochs"] and m.info["log_pl"] > -0.01


@pytest.mark.parametrize("init", ["zero", "random"])
def test_minibatches_also_store_the_patterns(init: str) -> None:
    # same load as above, other initialisations, 4 clipped minibatch steps per epoch
    X = patterns(40, 200, seed=2)
    m = plm.train(X, 2, dict(DEFAULTS, batch_size=10, clip=1.0, init=init), np.random.default_rng(0))
    assert stable(m.J, X).all()


@pytest.mark.parametrize("lam,l2", [(1.0, 0.01), (0.5, 0.02)])
def test_rows_equal_sklearn_logistic_regression(lam: float, l2: float) -> None:
    """Row i of PLM == L2 logistic regression of xi_i on the other spins.

    Our objective per row: (1/P) sum_mu [lam xi h - log 2cosh(lam h)] - l2 |J_i|^2, and
    lam xi h - log 2cosh(lam h) = -log(1 + exp(-2 lam xi h)): the logistic loss with weights
    w = 2 lam J_i. sklearn minimises |w|^2 / 2 + C sum_mu logloss(w); dividing ours by -1/P
    and substituting J_i = w / (2 lam) gives sum logloss + P l2 |w|^2 / (4 lam^2), hence
    C = 2 lam^2 / (P l2). Both problems are strictly convex, so the optima coincide.
    """
    N, P = 30, 90
    X = patterns(P, N, seed=3)
    params = dict(DEFAULTS, lam=lam, l2=l2, lr=0.5, epochs=3000, init="zero")
    J = plm.train(X, 2, params, np.random.default_rng(0)).J
    C = 2 * lam**2 / (P * l2)
    worst = 0.0
    for i in range(N):
        others = np.delete(np.arange(N), i)
        fit = LogisticRegression(C=C, fit_intercept=False, tol=1e-10, max_iter=10000)
        fit.fit(X[:, others], X[:, i])
        w = fit.coef_[0] / (2 * lam)
        worst = max(worst, np.abs(J[i, others] - w).max() / np.abs(w).max())
    # 3000 steps of a strongly convex problem (curvature >= 2 l2) converge to ~1e-7; what
    # is left is float32 rounding of the couplings (relative 1e-7) and sklearn's tol.
    assert worst < 1e-4


def test_float32_matches_float64_reference() -> None:
    """50 epochs against a plain float64 implementation of the same gradient ascent."""
    N, P, lam, lr, l2 = 60, 45, 1.0, 1.0, 0.001
    X = patterns(P, N, seed=4)
    params = dict(DEFAULTS, lam=lam, lr=lr, l2=l2, epochs=50)
    J32 = plm.train(X, 2, params, np.random.default_rng(0)).J
    Xd = X.astype(np.float64)
    J = Xd.T @ Xd / N
    np.fill_diagonal(J, 0.0)
    for _ in range(50):
        G = lam * (Xd - np.tanh(lam * Xd @ J.T)).T @ Xd / P - 2 * l2 * J
        np.fill_diagonal(G, 0.0)
        J += lr * G
    # float32 GEMMs carry ~1e-7 relative error per step; 50 contracting steps keep it
    # well below 1e-4 of the coupling scale.
    assert np.abs(J32 - J).max() < 1e-4 * np.abs(J).max()


def test_nan_recovery_restores_a_finite_solution() -> None:
    # lr = 1e38 makes the first step overflow float32 couplings (1e38 * O(1) > 3.4e38):
    # the trainer must restore, shrink J and halve lr until the steps are sane again.
    X = patterns(10, 100, seed=5)
    m = plm.train(X, 2, dict(DEFAULTS, lr=1e38, epochs=200), np.random.default_rng(0))
    assert m.info["nan_recoveries"] > 0 and m.info["lr_final"] < 1e38
    assert np.isfinite(m.J).all() and np.isfinite(m.info["log_pl"])
    assert stable(m.J, X).all()


def test_basins_wider_than_hebb_and_projector() -> None:
    """At alpha = 0.3 (N = 300) PLM and the projector store every pattern, Hebb does not
    (alpha > 0.138); PLM's basins are wider than the projector's. From rho = 0.25 we
    measured on seeds 0-1:
    PLM 0.76-0.80, projector 0.65-0.66, Hebb ~0.3. Each mean here is over 360 paired
    starts (4 corruptions of 90 patterns) of a bimodal overlap (~1 or ~0.3), std of the
    mean ~0.02, so a margin of 0.05 is > 2 sigma below the 0.11-0.14 gap."""
    N, P, rho = 300, 90, 0.25
    X = patterns(P, N, seed=6)
    rng = np.random.default_rng(0)
    models = {
        "plm": plm.train(X, 2, DEFAULTS, rng),
        "hebb": hebb.train(X, 2, {}, rng),
        "pinv": pseudo_inverse.train(X, 2, {}, rng),
    }
    targets = np.concatenate([X] * 4)
    starts = corrupt(targets, rho, rng)
    m = {}
    for name, model in models.items():
        final = asynchronous.relax(model, starts, {"max_sweeps": 100}, np.random.default_rng(1)).final
        m[name] = float((final.astype(np.float64) * targets).mean())
    assert m["plm"] > m["pinv"] + 0.05, m
    assert m["plm"] > m["hebb"] + 0.3, m


def test_asymmetric_plm_stores_beyond_alpha_one_symmetric_does_not() -> None:
    """alpha = 1.5 (N = 200): each row of the asymmetric J is an independent perceptron and
    1.5 < alpha_c(kappa = 0) = 2, so gradient ascent separates every pattern; the margin is
    small (kappa_max(1.5) = 0.19), so it takes ~400 epochs (measured on 4 seeds: 0.96-1.0
    of the patterns stable at 200 epochs, all at 400). The symmetric constraint couples the
    rows and the papers place its limit near alpha ~ 1: measured 0.01-0.08 stable at 400
    epochs (0.51 at 1000), far below the asymmetric 1.0."""
    X = patterns(300, 200, seed=7)
    asym = plm.train(X, 2, dict(DEFAULTS, epochs=400), np.random.default_rng(0))
    sym = plm.train(X, 2, dict(DEFAULTS, epochs=400, symmetric=True), np.random.default_rng(0))
    assert stable(asym.J, X).all()
    assert stable(sym.J, X).mean() < 0.5


def _sklearn_rows(X: np.ndarray, lam: float, l2: float) -> np.ndarray:
    """The L2 optimum row by row (the correspondence of test_rows_equal_sklearn_logistic_regression)."""
    P, N = X.shape
    W = np.zeros((N, N))
    for i in range(N):
        others = np.delete(np.arange(N), i)
        fit = LogisticRegression(C=2 * lam**2 / (P * l2), fit_intercept=False, tol=1e-10, max_iter=10000)
        W[i, others] = fit.fit(X[:, others], X[:, i]).coef_[0] / (2 * lam)
    return W


def test_momentum_reaches_the_l2_optimum_in_fewer_epochs() -> None:
    """Strongly convex rows (curvature >= 2 l2): plain ascent contracts like 1 - lr mu_min per
    epoch, Nesterov momentum like 1 - sqrt(lr mu_min); deterministic, so no statistics.
    Measured (N = 30, P = 90, lr = 0.5): plain 0.070 / 0.010 after 50 / 100 epochs, momentum
    0.8 0.0012 after 50. With lr = 1 this problem is past momentum's stability bound
    (lr L < 2 (1 + mu) / (1 + 2 mu)): the fit stalls, which the docs of the parameter say."""
    lam, l2 = 1.0, 0.01
    X = patterns(90, 30, seed=3)
    W = _sklearn_rows(X, lam, l2)

    def error(momentum: float, epochs: int) -> float:
        p = dict(DEFAULTS, lam=lam, l2=l2, lr=0.5, epochs=epochs, init="zero", momentum=momentum)
        J = plm.train(X, 2, p, np.random.default_rng(0)).J
        return float(np.max(np.abs(J - W).max(axis=1) / np.abs(W).max(axis=1)))

    assert error(0.8, 50) < error(0.0, 100) / 4
    assert error(0.8, 400) < 1e-4  # and it converges to the same optimum


@pytest.mark.parametrize("init,symmetric", [("zero", False), ("hebb", False), ("random", False), ("hebb", True)])
def test_momentum_matches_a_float64_reference_in_both_forms(init: str, symmetric: bool) -> None:
    """Nesterov's look-ahead form, V <- mu V + D, J <- J + D + mu V (D the plain step), in
    float64 numpy against the float32 dual and primal forms: 300 stable epochs (lr = 0.5)
    keep float32 rounding near 5e-7 of the coupling scale (measured), hence 1e-5."""
    from benchmarks._plm_common import forced_form

    lam, l2, lr, mu, epochs = 1.0, 0.02, 0.5, 0.8, 300
    X = patterns(40, 60, seed=4)
    Xd = X.astype(np.float64)
    P, N = Xd.shape
    J = plm.initial_couplings(X.astype(np.float32), init, np.random.default_rng(5)).astype(np.float64)
    V = np.zeros_like(J)
    for _ in range(epochs):
        G = lam * (Xd - np.tanh(lam * Xd @ J.T)).T @ Xd / P
        if symmetric:
            G = (G + G.T) / 2
        np.fill_diagonal(G, 0.0)
        D = lr * (G - 2 * l2 * J)
        V = mu * V + D
        J = J + D + mu * V
    p = dict(DEFAULTS, lam=lam, l2=l2, lr=lr, epochs=epochs, init=init, momentum=mu, symmetric=symmetric)
    for form in ("dual", "primal"):
        with forced_form(form):
            model = plm.train(X, 2, p, np.random.default_rng(5))
        assert model.info["form"] == form
        assert np.abs(model.J - J).max() < 1e-5 * np.abs(J).max(), form
