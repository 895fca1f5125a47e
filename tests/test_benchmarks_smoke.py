"""The benchmark suite at tiny sizes: every code path runs and returns well-formed rows, and the
implementations each benchmark compares compute the same thing (no timing is asserted).

PyTorch is an optional extra, so nothing here imports it: the torch benchmark's claim of equal
accuracy rests on the float64 numpy transcription of the authors' algorithm
(``benchmarks.plm_torch.reference_epochs``), which is checked here against finite differences
of their loss and against amsweep; the benchmark run itself checks torch against amsweep.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from benchmarks import (
    async_retrieval,
    memory,
    plm_roofline,
    plm_sklearn,
    plm_torch,
    retrieval_bounds,
    scale,
    small_cell,
    startup,
    sweep_overhead,
)
from benchmarks._harness import Row, markdown, random_patterns
from benchmarks._plm_common import forced_form, params
from amsweep.pipeline.rules import plm
from amsweep.pipeline.rules._ising import hebb_couplings


@pytest.fixture(autouse=True)
def one_blas_thread():
    with threadpool_limits(1):
        yield


def assert_well_formed(rows: list[Row], n: int) -> None:
    assert len(rows) == n
    for r in rows:
        assert r.benchmark and r.detail and not r.detail.startswith("NOT RUN")
        assert r.repeats >= 1 and math.isfinite(r.ratio)
        assert r.lo <= r.ratio <= r.hi
        assert (r.met is None) == (r.target == "-")
    assert markdown(rows).count("\n") == n + 1  # header, rule, one line per row


@pytest.mark.parametrize(
    "module,n",
    [(plm_roofline, 2), (plm_sklearn, 3), (async_retrieval, 4), (retrieval_bounds, 8), (memory, 2), (startup, 6)],
)
def test_benchmark_runs_and_returns_rows(module, n: int) -> None:
    assert_well_formed(module.run(tiny=True, repeats=1), n)


@pytest.mark.parametrize("max_sweeps", [0, 1, 2, 100])
def test_shared_order_variant_is_todays_dynamics_with_another_order(max_sweeps: int) -> None:
    """The retrieval_bounds variant: blocks of one are ``relax_zero_t`` state for state, and a block of
    identical states is ``relax_zero_t`` with every seed replaced by the block's first one (the one
    order it shares). Asymmetric couplings, so that small budgets leave states unconverged."""
    from amsweep.pipeline.dynamics._ising_kernels import SEED_HIGH, prepare, relax_zero_t, tie_tolerance

    B, N = 12, 40
    rng = np.random.default_rng(3)
    J = rng.standard_normal((N, N)).astype(np.float32)
    np.fill_diagonal(J, 0)
    seeds = rng.integers(0, SEED_HIGH, size=B)
    tol = tie_tolerance(J)

    def relaxed(states: np.ndarray, G: int, state_seeds: np.ndarray) -> tuple[np.ndarray, ...]:
        S, H, JT = prepare(J, states)
        conv, sw = np.ones(B, np.bool_), np.full(B, -1, np.int32)  # every entry must be written
        if G:
            retrieval_bounds.relax_shared_order(S, H, JT, tol, state_seeds, max_sweeps, conv, sw, G)
        else:
            relax_zero_t(S, H, JT, tol, state_seeds, max_sweeps, conv, sw)
        return S, H, conv, sw

    for states, G, peer_seeds in [
        (random_patterns(B, N, seed=4), 1, seeds),
        (np.repeat(random_patterns(1, N, seed=5), B, axis=0), B, np.full(B, seeds[0])),
    ]:
        for got, want in zip(relaxed(states, G, seeds), relaxed(states, 0, peer_seeds)):
            assert np.array_equal(got, want)
    assert max_sweeps < 2 or not relaxed(random_patterns(B, N, seed=4), 0, seeds)[2].all()  # some cycle


def test_small_cell_times_this_checkout_against_a_baseline(monkeypatch) -> None:
    """Both rows, the baseline path included (this checkout against itself: two child interpreters)."""
    monkeypatch.setenv("AMSWEEP_BASELINE", str(small_cell.ROOT))
    assert_well_formed(small_cell.run(tiny=True, repeats=1), 2)


def test_sweep_overhead_runs_through_ray_and_serial() -> None:
    # joins the session's Ray when a test already started one, else starts (and stops) its own
    rows = sweep_overhead.run(tiny=True, repeats=1)
    assert_well_formed(rows, 1)
    assert rows[0].ratio > 0


def test_scale_runs_small_and_null_cells_through_ray() -> None:
    rows = scale.run(tiny=True, repeats=1)
    assert_well_formed(rows, 4)
    assert rows[0].ratio > 0 and rows[2].ratio > 0 and rows[3].ratio > 0  # cells/s; peak RSS; Ray/serial


def test_driver_load_generator_runs_locally_and_on_moto() -> None:
    from benchmarks import driver

    rows = driver.run(tiny=True, repeats=1)  # the child asserts every cell came back done
    assert_well_formed(rows, 5)
    assert all(r.ratio > 0 for r in rows)  # cells/s, us per cell, RSS ratio


def test_authors_gradient_is_the_derivative_of_their_loss() -> None:
    # Central differences of a smooth float64 loss at step 1e-5: truncation ~1e-10 and
    # rounding ~1e-16 / 1e-5, both far below the 1e-6 relative tolerance.
    X = random_patterns(12, 9, seed=1).astype(np.float64)
    J = np.random.default_rng(2).standard_normal((9, 9)) * 0.3
    lam, eps = 0.7, 1e-5
    G = plm_torch.authors_gradient(X, J, lam)
    for i, j in [(0, 1), (3, 7), (8, 2), (5, 5)]:
        up, down = J.copy(), J.copy()
        up[i, j] += eps
        down[i, j] -= eps
        numeric = (plm_torch.authors_loss(X, up, lam) - plm_torch.authors_loss(X, down, lam)) / (2 * eps)
        assert abs(G[i, j] - numeric) <= 1e-6 * np.abs(G).max()


@pytest.mark.parametrize("form", ["dual", "primal"])
def test_amsweep_takes_the_authors_steps(form: str) -> None:
    """SGD on the authors' loss with lr * lam * N is amsweep's ascent: the same J after 40 epochs.

    lam = 0.7 and lr = 2 so that a wrong factor of lam or N in the mapping shows. float32
    GEMMs carry ~1e-7 relative error per step, contracting steps keep the sum below 1e-5.
    """
    X = random_patterns(30, 40, seed=3)
    lam, lr, epochs = 0.7, 2.0, 40
    ref = plm_torch.reference_epochs(X, hebb_couplings(X.astype(np.float32)), lam, lr, epochs)
    with forced_form(form):
        J = plm.train(X, 2, params(lam=lam, lr=lr, epochs=epochs), np.random.default_rng(0)).J
    assert np.abs(J - ref).max() < 1e-5 * np.abs(ref).max()


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"symmetric": True},
        {"init": "random", "l2": 0.02},
        {"init": "zero", "clip": 0.05},
        {"symmetric": True, "l2": 0.01, "lam": 0.5},
        {"lr": 1e38},
    ],
)
def test_dual_and_primal_forms_give_the_same_couplings(overrides: dict) -> None:
    """The two forms the roofline benchmark times are one algorithm: same J after 100 epochs.

    Both accumulate float32 rounding (~1e-7 per step) along different paths; 100 steps keep
    the difference near 1e-6 of the coupling scale (measured 4e-7 - 3e-6 up to 2000 epochs),
    so 2e-5 separates rounding from any algebraic slip (a missing diagonal term is ~1e-2).
    lr = 1e38 overflows at once: both must recover the same number of times with the same lr.
    """
    X = random_patterns(40, 60, seed=4)
    p = params(epochs=100, **overrides)
    models = {}
    for form in ("dual", "primal"):
        with forced_form(form):
            models[form] = plm.train(X, 2, p, np.random.default_rng(5))
    dual, primal = models["dual"], models["primal"]
    assert dual.info["form"] == "dual" and primal.info["form"] == "primal"
    assert np.abs(dual.J - primal.J).max() < 2e-5 * np.abs(primal.J).max()
    assert dual.info["nan_recoveries"] == primal.info["nan_recoveries"]
    assert dual.info["lr_final"] == primal.info["lr_final"]
    assert np.all(np.diag(dual.J) == 0)
    if p["symmetric"] and p["init"] == "hebb":
        assert np.array_equal(dual.J, dual.J.T)


def test_sklearn_rows_are_the_plm_rows_at_finite_temperature() -> None:
    # The equal-accuracy criterion of the sklearn benchmark: fit_rows (w / 2 lam) with
    # C = 2 lam^2 / (P l2) is PLM's row optimum. 2000 strongly convex steps (curvature
    # >= 2 l2 = 0.02, lr = 1) converge to ~(1 - 0.02)^2000 ~ 1e-17; what remains is float32
    # rounding of J (1e-7) and the reference's tol 1e-10.
    X = random_patterns(45, 20, seed=6)
    rows = [0, 7, 19]
    C = 2 * plm_sklearn.LAM**2 / (45 * plm_sklearn.L2)
    ref = plm_sklearn.fit_rows(X.astype(np.float64), X, rows, C, tol=1e-10)
    J = plm.train(X, 2, params(lam=plm_sklearn.LAM, l2=plm_sklearn.L2, epochs=2000), np.random.default_rng(0)).J
    assert plm_sklearn.row_error(J[rows], ref) < 1e-4
