"""Potts helpers, Potts Hebb and PLM rules and zero-temperature asynchronous Potts dynamics.

Physics / known answers: overlap statistics of independent states, exact corruption, Hebb
storage at small load and its loss at large load, PLM fixed points and its identity with
L2-regularised multinomial logistic regression, fixed points and energy descent of the
dynamics, and a coupling with no fixed point at all.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from amsweep.pipeline import potts
from amsweep.pipeline.dynamics import _potts as dyn
from amsweep.pipeline.model import Model, NotApplicable
from amsweep.pipeline.rules import _hebb_potts, _plm_potts, plm

PLM = dict(lam=1.0, lr=2.0, epochs=100, init="hebb", batch_size=0, clip=0.0, symmetric=False, l2=0.0, momentum=0.0)
ASYNC = {"max_sweeps": 100}


def uniform_states(rng: np.random.Generator, B: int, N: int, q: int) -> np.ndarray:
    return rng.integers(0, q, size=(B, N)).astype(np.int8)


# ---------------------------------------------------------------- helpers: overlap, corrupt


def test_overlap_identical_opposite_and_independent_rows():
    rng = np.random.default_rng(0)
    q, B, N = 4, 400, 500
    a, b = uniform_states(rng, B, N, q), uniform_states(rng, B, N, q)
    assert np.all(potts.overlap(a, a, q) == 1.0)
    # every site different: f = 0, overlap -1/(q-1) exactly
    assert np.allclose(potts.overlap(a, (a + 1) % q, q), -1.0 / (q - 1))
    m = potts.overlap(a, b, q)
    # f ~ Binomial(N, 1/q)/N, so the overlap has mean 0 and variance 1/(N (q-1)) per row.
    var = 1.0 / (N * (q - 1))
    assert abs(m.mean()) < 5 * np.sqrt(var / B)  # 5 sigma of the mean of B rows
    # sample variance of B = 400 rows: relative std sqrt(2/B) = 0.07; 0.25 is 3.5 sigma
    assert abs(m.var() / var - 1.0) < 0.25


def test_one_hot_layout():
    X = np.array([[0, 2], [1, 0]], dtype=np.int8)
    expected = np.array([[1, 0, 0, 0, 0, 1], [0, 1, 0, 1, 0, 0]], dtype=np.float32)
    assert np.array_equal(potts.one_hot(X, 3), expected)
    with pytest.raises(ValueError, match="0..2"):
        potts.one_hot(np.array([[3, 0]]), 3)


@pytest.mark.parametrize("N, rho", [(97, 0.0), (97, 0.1), (100, 0.29), (97, 0.5), (97, 1.0)])
def test_corrupt_changes_exactly_floor_rho_n_sites(N, rho):
    rng = np.random.default_rng(1)
    q, B = 5, 300
    X = uniform_states(rng, B, N, q)
    Y = potts.corrupt(X, rho, q, rng)
    k = {0.0: 0, 0.1: 9, 0.29: 29, 0.5: 48, 1.0: 97}[rho]  # floor(rho N), 0.29 * 100 included
    assert np.all((Y != X).sum(axis=1) == k)
    assert Y.dtype == np.int8 and Y.min() >= 0 and Y.max() < q
    # the initial overlap is the same for every start: 1 - q/(q-1) k/N
    assert np.allclose(potts.overlap(Y, X, q), 1.0 - q / (q - 1) * k / N)


def test_corrupt_new_states_uniform_over_the_other_states():
    rng = np.random.default_rng(2)
    q, B, N = 5, 400, 100
    X = uniform_states(rng, B, N, q)
    Y = potts.corrupt(X, 0.3, q, rng)
    changed = Y != X
    shift = ((Y.astype(int) - X.astype(int)) % q)[changed]
    freq = np.bincount(shift, minlength=q)[1:] / shift.size
    # 12,000 resampled sites: each of the q-1 shifts has frequency 1/4, std 0.004; 5 sigma
    n = shift.size
    assert np.all(np.abs(freq - 1 / (q - 1)) < 5 * np.sqrt(0.25 * 0.75 / n))
    # which sites are hit is uniform too: per site Binomial(B, 0.3), mean 120, std 9.2
    hits = changed.sum(axis=0)
    assert np.all(np.abs(hits - 0.3 * B) < 5 * np.sqrt(B * 0.3 * 0.7))


# ---------------------------------------------------------------- Hebb


def test_hebb_potts_is_the_centred_covariance():
    rng = np.random.default_rng(3)
    q, P, N = 3, 7, 6
    X = uniform_states(rng, P, N, q)
    J = _hebb_potts.train(X, q, {}, rng).J
    C = np.eye(q)[X] - 1.0 / q  # (P, N, q)
    ref = np.einsum("pia,pjb->iajb", C, C) / N
    ref[np.arange(N), :, np.arange(N), :] = 0.0
    assert J.shape == (N, q, N, q) and J.dtype == np.float32
    assert np.allclose(J, ref, atol=1e-6)
    assert np.array_equal(J, J.transpose(2, 3, 0, 1))


def test_hebb_potts_retrieves_at_small_load_and_fails_at_large_load():
    # Potts Hopfield capacity (Kanter 1988): alpha_c ~ 0.138 q(q-1)/2 = 1.38 at q = 5.
    # alpha = 0.05 is 28x below: crosstalk std ~ sqrt(alpha) << signal, every pattern is an
    # attractor with a wide basin even at N = 200. alpha = 3 is twice above: none is stable.
    rng = np.random.default_rng(4)
    q, N = 5, 200
    X = uniform_states(rng, 10, N, q)
    model = _hebb_potts.train(X, q, {}, rng)
    assert np.all(potts.is_fixed_point(model.J, X))
    r = dyn.relax_async(model, potts.corrupt(X, 0.1, q, rng), ASYNC, rng)
    assert np.all(r.converged) and np.all(r.final == X)
    Xbig = uniform_states(rng, 600, N, q)
    big = _hebb_potts.train(Xbig, q, {}, rng)
    assert potts.is_fixed_point(big.J, Xbig).mean() < 0.2


# ---------------------------------------------------------------- PLM


def test_plm_potts_small_alpha_every_training_sequence_is_a_fixed_point():
    rng = np.random.default_rng(5)
    q, N, P = 4, 60, 12  # alpha = 0.2
    X = uniform_states(rng, P, N, q)
    model = _plm_potts.train(X, q, PLM, rng)
    H = potts.local_fields(model.J, X)
    own = np.take_along_axis(H, X.astype(np.intp)[:, :, None], axis=2)[:, :, 0]
    rival = np.where(np.eye(q, dtype=bool)[X], -np.inf, H).max(axis=2)
    assert np.all(own > rival)  # strict: no tie anywhere
    r = dyn.relax_async(model, X, ASYNC, rng)
    assert np.all(r.final == X) and np.all(r.sweeps == 1)
    # log-PL rises from Hebb's start towards 0 (T -> 0); the gradient sums to 0 over a
    assert -0.05 < model.info["log_pl"] < 0 and model.info["nan_recoveries"] == 0
    assert np.abs(model.J.sum(axis=1)).max() < 1e-4 * np.abs(model.J).max()
    sym = _plm_potts.train(X, q, {**PLM, "symmetric": True}, rng)
    assert np.array_equal(sym.J, sym.J.transpose(2, 3, 0, 1))
    assert np.all(potts.is_fixed_point(sym.J, X))


def test_plm_potts_equals_multinomial_logistic_regression():
    """Per site, PLM with L2 is sklearn's multinomial logistic regression without intercept.

    PLM maximises (1/P) sum_mu log softmax(lam h_i)[xi_i] - l2 |J_i|^2 per site. With
    W = lam J_i that is -(1/P) [sum CE + (P l2 / lam^2) |W|^2], and sklearn minimises
    C sum CE + |W|^2 / 2, hence C = lam^2 / (2 P l2).
    """
    rng = np.random.default_rng(6)
    q, N, P, lam, l2 = 3, 12, 80, 0.7, 0.005
    proto = uniform_states(rng, 2, N, q)  # noisy copies of two prototypes: real couplings
    X = potts.corrupt(proto[rng.integers(0, 2, P)], 0.3, q, rng)
    params = {**PLM, "lam": lam, "l2": l2, "epochs": 600, "init": "zero"}
    J = _plm_potts.train(X, q, params, rng).J
    F = potts.one_hot(X, q, np.float64)
    for i in (0, 5, 11):
        assert len(np.unique(X[:, i])) == q  # every state seen, so sklearn fits q classes
        keep = np.ones(N * q, dtype=bool)
        keep[i * q : (i + 1) * q] = False
        clf = LogisticRegression(C=lam**2 / (2 * P * l2), fit_intercept=False, tol=1e-12, max_iter=10_000)
        clf.fit(F[:, keep], X[:, i])
        W = lam * J[i].reshape(q, N * q)[:, keep]
        # strongly convex (modulus 2 l2 / lam^2 = 0.02): float32 training lands ~1e-6
        # (relative) from the float64 optimum; a wrong C or gradient is off by >= 1e-2
        assert np.abs(W - clf.coef_).max() < 1e-4 * np.abs(clf.coef_).max()
        assert np.abs(J[i, :, i, :]).max() == 0.0


def test_plm_potts_loglik_stays_exact_when_saturated_and_blow_ups_are_undone():
    # fields (0, 200) at q = 2, state 0 observed: log P = -200 - log(1 + e^-200) = -200,
    # although P = e^-200 underflows float32; residual = onehot - softmax = (1, -1)
    H = np.array([[0.0, 200.0]], dtype=np.float32)
    assert _plm_potts.residual_and_loglik(H, np.zeros((1, 1), np.int8), 2, 1.0) == -200.0
    assert np.array_equal(H, [[1.0, -1.0]])
    # lr = 3e38 drives float32 fields to overflow; the step is undone, J and lr shrink, and
    # training ends finite with the patterns stored
    rng = np.random.default_rng(14)
    X = uniform_states(rng, 10, 20, 4)
    model = _plm_potts.train(X, 4, {**PLM, "lr": 3e38, "epochs": 30, "init": "zero"}, rng)
    assert model.info["nan_recoveries"] >= 1 and model.info["lr_final"] < 3e38
    assert np.all(np.isfinite(model.J)) and np.isfinite(model.info["log_pl"])
    assert np.all(potts.is_fixed_point(model.J, X))


def test_plm_potts_minibatch_and_clip_still_store_the_patterns():
    rng = np.random.default_rng(7)
    q, N, P = 5, 40, 16
    X = uniform_states(rng, P, N, q)
    params = {**PLM, "batch_size": 5, "clip": 1.0, "init": "random", "epochs": 60}
    model = _plm_potts.train(X, q, params, rng)
    assert np.all(potts.is_fixed_point(model.J, X))
    assert np.all(np.isfinite(model.J)) and model.info["nan_recoveries"] == 0


# ---------------------------------------------------------------- dynamics


def test_async_from_a_fixed_point_does_nothing_and_batches_are_independent():
    rng = np.random.default_rng(8)
    q, N = 4, 80
    X = uniform_states(rng, 5, N, q)
    model = _hebb_potts.train(X, q, {}, rng)
    r = dyn.relax_async(model, X, ASYNC, rng)
    assert np.all(r.final == X) and np.all(r.converged) and np.all(r.sweeps == 1)
    # one seed per state: the first state's trajectory ignores the rest of the batch
    starts = potts.corrupt(X, 0.4, q, rng)
    whole = dyn.relax_async(model, starts, ASYNC, np.random.default_rng(9))
    alone = dyn.relax_async(model, starts[:1], ASYNC, np.random.default_rng(9))
    assert np.array_equal(whole.final[:1], alone.final)


def test_async_symmetric_couplings_descend_the_energy_to_fixed_points():
    # Potts spin glass: symmetric Gaussian J. Each change raises h_i(s_i) strictly, which
    # lowers E = -1/2 sum J[i,s_i,j,s_j] by that amount, so E never rises and the dynamics
    # must stop at a fixed point (checked independently with numpy fields).
    rng = np.random.default_rng(10)
    q, N, B = 4, 60, 40
    J = rng.standard_normal((N, q, N, q)) / np.sqrt(N)
    J = 0.5 * (J + J.transpose(2, 3, 0, 1))
    J[np.arange(N), :, np.arange(N), :] = 0.0
    model = Model(q=q, J=J.astype(np.float32))
    starts = uniform_states(rng, B, N, q)
    energies = [potts.energy(model.J, starts)]
    for sweeps in (1, 2, 3, 5, 100):  # same seeds: each run extends the previous trajectory
        r = dyn.relax_async(model, starts, {"max_sweeps": sweeps}, np.random.default_rng(11))
        energies.append(potts.energy(model.J, r.final))
    E = np.array(energies)
    assert np.all(np.diff(E, axis=0) <= 1e-9 * np.abs(E[0]).max())
    assert np.all(E[-1] < E[0])
    assert np.all(r.converged)
    assert np.all(potts.is_fixed_point(model.J, r.final))


def test_async_reports_no_convergence_when_no_fixed_point_exists():
    # Site 0 copies site 1, site 1 takes site 0's state plus one (mod 3): s0 = s1 and
    # s1 = s0 + 1 cannot both hold, so every sweep changes something, forever.
    q, N = 3, 2
    J = np.zeros((N, q, N, q), dtype=np.float32)
    J[0, :, 1, :] = np.eye(q)
    J[1, :, 0, :] = np.roll(np.eye(q), 1, axis=0)  # J[1, a, 0, b] = 1 iff a = b + 1
    r = dyn.relax_async(
        Model(q=q, J=J), np.array([[0, 0], [2, 1]], np.int8), {"max_sweeps": 7}, np.random.default_rng(12)
    )
    assert not r.converged.any() and np.all(r.sweeps == 7)


def test_async_ties_keep_the_current_state():
    # zero couplings: every field is 0, every state ties with every other, nothing may move
    rng = np.random.default_rng(13)
    starts = uniform_states(rng, 6, 10, 5)
    r = dyn.relax_async(Model(q=5, J=np.zeros((10, 5, 10, 5), np.float32)), starts, ASYNC, rng)
    assert np.array_equal(r.final, starts) and np.all(r.converged) and np.all(r.sweeps == 1)


def test_async_needs_couplings():
    with pytest.raises(NotApplicable):
        dyn.relax_async(Model(q=4, J=None), np.zeros((1, 3), np.int8), ASYNC, np.random.default_rng(0))


def test_potts_plm_momentum_reaches_the_l2_optimum_sooner() -> None:
    """With L2 the Potts rows are strongly convex: 4000 plain epochs define the optimum (to
    float32 rounding); Nesterov momentum 0.8 is there after 100 epochs (measured 2e-6) while
    plain ascent is still 2e-2 away. Deterministic: no statistics."""
    X = np.random.default_rng(0).integers(0, 3, size=(60, 8)).astype(np.int8)
    base = {k: p.default for k, p in plm.PARAMS.items()} | {"l2": 0.02, "lr": 0.5, "init": "zero"}
    ref = plm.train(X, 3, base | {"epochs": 4000}, np.random.default_rng(1)).J
    gap = {
        mu: np.abs(plm.train(X, 3, base | {"epochs": 100, "momentum": mu}, np.random.default_rng(1)).J - ref).max()
        / np.abs(ref).max()
        for mu in (0.0, 0.8)
    }
    assert gap[0.8] < 1e-4 < 1e-2 < gap[0.0], gap
