"""Metrics: the elementary quantities of pipeline/metrics.py, how pipeline/cell.py combines them,
and how one declaration in METRICS drives the cell, the cube template and the integrity check.

Every expected value here is known in closed form (a count of flipped sites, a one-pattern Hopfield
network whose attractors are exactly +-xi) or computed independently in exact integer arithmetic.
"""

from __future__ import annotations

import numpy as np
import pytest

from amsweep.analysis import derived, tables
from amsweep.analysis.labels import value_label
from amsweep.pipeline import cell
from amsweep.pipeline import metrics as M
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.outcomes import CellResult
from amsweep.pipeline.datasets import random as random_dataset
from amsweep.pipeline.executors import SerialExecutor
from amsweep.pipeline.model import Data
from amsweep.sweeps.runner import run
from amsweep.storage import query, schema
from amsweep.storage.check import check
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE, PENDING


def spins(rng: np.random.Generator, B: int, N: int) -> np.ndarray:
    return np.where(rng.random((B, N)) < 0.5, 1, -1).astype(np.int8)


# ---- overlaps -------------------------------------------------------------------------------


def test_ising_overlap_counts_flipped_sites():
    rng = np.random.default_rng(0)
    X = spins(rng, 4, 50)
    Y = X.copy()
    for b, k in enumerate([0, 1, 10, 50]):
        Y[b, :k] *= -1
    np.testing.assert_allclose(M.overlap(X, Y), [1.0, 1 - 2 / 50, 1 - 20 / 50, -1.0], atol=1e-6)


def test_potts_overlap_is_one_for_equal_and_zero_on_average_for_unrelated_states():
    rng = np.random.default_rng(1)
    q, N = 21, 400
    X = rng.integers(0, q, size=(200, N)).astype(np.int8)
    np.testing.assert_allclose(M.overlap(X, X, q), 1.0)
    Y = X.copy()
    Y[:, :100] = (Y[:, :100] + 1) % q  # a quarter of the sites differ: f = 3/4
    np.testing.assert_allclose(M.overlap(X, Y, q), (q * 0.75 - 1) / (q - 1))
    # Independent uniform states agree on a site with probability 1/q, so E[overlap] = 0; the
    # mean over 200 rows of N = 400 sites has sd sqrt((1/q)(1-1/q)/(200 N)) q/(q-1) ~ 8e-4: 5 sd.
    Z = rng.integers(0, q, size=(200, N)).astype(np.int8)
    assert abs(M.overlap(X, Z, q).mean()) < 4e-3


@pytest.mark.parametrize("q", [2, 5])
def test_overlap_matrix_agrees_with_rowwise_overlap(q):
    rng = np.random.default_rng(2)
    A = spins(rng, 6, 30) if q == 2 else rng.integers(0, q, (6, 30)).astype(np.int8)
    B = spins(rng, 4, 30) if q == 2 else rng.integers(0, q, (4, 30)).astype(np.int8)
    mat = M.overlap_matrix(A, B, q)
    for j in range(B.shape[0]):
        np.testing.assert_allclose(mat[:, j], M.overlap(A, np.repeat(B[j : j + 1], 6, axis=0), q), atol=1e-6)
    np.testing.assert_allclose(M.best_overlap(A, B, q), mat.max(axis=1), atol=1e-6)


def test_best_overlaps_and_degenerate_inputs():
    rng = np.random.default_rng(3)
    X = spins(rng, 3, 40)
    assert np.all(M.best_overlap(X, np.concatenate([X[::-1], -X])) == 1.0)
    assert np.isnan(M.best_overlap(X, X[:0])).all()  # no examples: undefined, not 0
    np.testing.assert_allclose(M.best_abs_overlap(-X, X), 1.0)  # a feature and its negation
    assert np.isnan(M.mean_or_nan(np.array([])))


def test_cosine_similarity_is_scale_free():
    rng = np.random.default_rng(4)
    J = rng.standard_normal((20, 20)).astype(np.float32)
    assert M.cosine_similarity(J, 7.5 * J) == pytest.approx(1.0, abs=1e-6)
    assert M.cosine_similarity(J, -J) == pytest.approx(-1.0, abs=1e-6)
    K = np.zeros_like(J)
    K[0, 0], J2 = 1.0, np.zeros_like(J)
    J2[1, 1] = 3.0
    assert M.cosine_similarity(K, J2) == 0.0
    assert np.isnan(M.cosine_similarity(J, np.zeros_like(J)))


# ---- corruption and random starts -------------------------------------------------------------


@pytest.mark.parametrize("q", [2, 21])
def test_corrupt_changes_exactly_floor_rho_n_sites(q):
    rng = np.random.default_rng(5)
    N = 100
    X = spins(rng, 50, N) if q == 2 else rng.integers(0, q, (50, N)).astype(np.int8)
    # 0.29 * 100 = 28.999999999999996 in floating point: still 29 sites, not 28.
    for rho, k in [(0.0, 0), (0.1, 10), (0.29, 29), (0.5, 50)]:
        Y = M.corrupt(X, rho, q, np.random.default_rng(6))
        np.testing.assert_array_equal((X != Y).sum(axis=1), k)
        if q == 2:
            np.testing.assert_allclose(M.overlap(X, Y), 1 - 2 * k / N, atol=1e-6)
        assert Y.dtype == np.int8 and Y.min() >= (-1 if q == 2 else 0) and Y.max() <= (1 if q == 2 else q - 1)
    Y = M.corrupt(X, 0.0, q, rng)
    assert Y is not X  # a copy: relaxing it must not change the data


def test_corrupt_picks_sites_uniformly_and_reproducibly():
    X = np.ones((4000, 20), dtype=np.int8)
    Y = M.corrupt(X, 0.25, 2, np.random.default_rng(7))
    # Each site is flipped with probability 5/20 = 0.25 in each of 4000 rows: sd of the
    # per-site frequency sqrt(0.25 * 0.75 / 4000) = 0.0068, so 0.03 is 4.4 sd.
    np.testing.assert_allclose((Y == -1).mean(axis=0), 0.25, atol=0.03)
    np.testing.assert_array_equal(Y, M.corrupt(X, 0.25, 2, np.random.default_rng(7)))


def test_random_states_are_uniform_in_the_alphabet():
    rng = np.random.default_rng(8)
    S = M.random_states(500, 100, 2, rng)
    assert set(np.unique(S)) == {-1, 1}
    assert abs(S.mean()) < 0.02  # 50,000 fair signs: sd 0.0045
    P = M.random_states(500, 100, 21, rng)
    counts = np.bincount(P.ravel(), minlength=21) / P.size
    np.testing.assert_allclose(counts, 1 / 21, atol=0.004)  # sd sqrt(p(1-p)/5e4) = 9e-4


# ---- the cell: a one-pattern Hopfield network has known attractors --------------------------


def one_pattern_task(N: int = 51, P_test: int = 9):
    raw = {
        "name": "one",
        "root_seed": 3,
        "seeds": [0],
        "noise": [0.0, 0.2, 0.4],
        "P_test": P_test,
        "retrieval": {"train_starts": 1, "test_starts": P_test, "random_starts": 7},
        "datasets": {"random": {"N": [N], "P": [1]}},
        "rules": {"hebb": {}},
    }
    sweep = spec_mod.from_dict(raw)
    (task,) = list(sweep.tasks())
    return sweep, task


def test_cell_metrics_of_a_single_stored_pattern():
    """Hebb with one pattern xi: h_i = xi_i (xi.s - xi_i s_i) / N, so every start with xi.s > 0 ends on
    xi and every start with xi.s < 0 on -xi (N odd: xi.s is never 0). Training starts at noise
    rho < 1/2 have xi.s = N - 2 floor(rho N) > 0; unflipped test examples t end on sign(xi.t) xi."""
    sweep, task = one_pattern_task()
    result = cell.run_cell(sweep.job(task)).values
    data = cell.make_data(task, sweep.root_seed)
    xi = data.train[0].astype(int)
    dots = data.test.astype(int) @ xi
    N = xi.size
    assert result["fixed_point_fraction"] == 1.0
    np.testing.assert_array_equal(result["m_train"], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(result["success_train"], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(result["converged_train"], [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(result["converged_test"], [1.0, 1.0, 1.0])
    assert result["m_test"][0] == pytest.approx(np.abs(dots).mean() / N, abs=1e-6)
    assert result["test_best_train"][0] == pytest.approx(np.sign(dots).mean(), abs=1e-6)
    # Random starts end on +-xi: the best overlap with the one training example is +-1 each, so
    # the mean over 7 starts is one of (2 j - 7) / 7.
    assert np.isclose(result["random_best_train"] * 7, np.arange(-7, 8, 2), atol=1e-5).any()
    assert result["random_converged"] == 1.0
    assert np.isnan(result["test_best_feature"]).all() and np.isnan(result["coupling_similarity"])


def test_cell_uses_features_and_true_couplings_when_the_dataset_provides_them(monkeypatch):
    """With the pattern itself as the only feature, every attractor (+-xi) has |overlap| 1 with it;
    with true couplings proportional to Hebb's, the cosine similarity is 1."""
    original = random_dataset.make

    def with_meta(N, P, P_test, params, rng) -> Data:
        data = original(N, P, P_test, params, rng)
        xi = data.train.astype(np.float32)
        J = xi.T @ xi / N
        np.fill_diagonal(J, 0.0)
        return Data(data.train, data.test, 2, {"features": data.train.copy(), "true_J": 3.0 * J})

    monkeypatch.setattr(random_dataset, "make", with_meta)
    sweep, task = one_pattern_task()
    result = cell.run_cell(sweep.job(task)).values
    np.testing.assert_allclose(result["test_best_feature"], 1.0, atol=1e-6)
    assert result["coupling_similarity"] == pytest.approx(1.0, abs=1e-5)


def test_fixed_point_fraction_matches_exact_stability_count():
    """A pattern survives one asynchronous sweep iff no site wants to flip: xi_i h_i >= 0 for all i
    (a zero field keeps the spin). Counted here in exact integers: N h_i = sum_mu xi_i^mu (xi^mu.xi - xi_i^mu xi_i)."""
    raw = {
        "name": "fp",
        "root_seed": 5,
        "seeds": [0, 1, 2],
        "noise": [0.0],
        "P_test": 0,
        "retrieval": {"train_starts": 1, "test_starts": 0, "random_starts": 0},
        "datasets": {"random": {"N": [31], "P": [8]}},
        "rules": {"hebb": {}},
    }
    sweep = spec_mod.from_dict(raw)
    seen = []
    for task in sweep.tasks():
        got = cell.run_cell(sweep.job(task)).values["fixed_point_fraction"]
        X = cell.make_data(task, sweep.root_seed).train.astype(np.int64)
        Nh = (X @ X.T) @ X - X.shape[0] * X  # row nu: N h_i at pattern nu (self-coupling removed)
        expected = np.mean(np.all(X * Nh >= 0, axis=1))
        assert got == pytest.approx(expected)
        seen.append(expected)
    assert 0.0 < min(seen) < 1.0 or 0.0 < max(seen) < 1.0  # alpha = 0.26: some patterns unstable


# ---- the declaration: one METRICS entry drives the cell, the cube and its check ---------------


def _binarised_overlap(s: M.Starts) -> float:
    return M.mean_or_nan(M.overlap(s.relaxation.final, s.examples, s.data.q))


def test_a_declared_metric_is_computed_stored_and_checked(tmp_path, monkeypatch):
    """A new metric is a declaration in METRICS and its formula in COMPUTE: the cell computes it for
    its group, the cube template gives it the declared dims, dtype and attributes, the check
    accepts it, and analysis labels and tabulates it. At zero temperature the binarised final
    state is the state itself, so it equals m_train bit for bit."""
    declared = M.Metric(M.TRAIN, "overlap of the binarised final state", "binarised overlap")
    monkeypatch.setitem(M.METRICS, "m_train_binarised", declared)
    monkeypatch.setitem(M.COMPUTE, "m_train_binarised", _binarised_overlap)
    sweep, _ = one_pattern_task()
    path = str(tmp_path / "c.zarr")
    run(Cube.create_or_open(path, sweep), SerialExecutor(), progress=False)
    ds = query.open_cube(path)
    var = ds["m_train_binarised"]
    assert var.dims == (*schema.task_dims(sweep), "noise") and var.dtype == np.float32
    assert var.attrs == {"long_name": "binarised overlap", "description": "overlap of the binarised final state"}
    np.testing.assert_array_equal(var.values, ds["m_train"].values)
    with Cube.open(path) as cube:
        assert check(cube).ok
    # analysis takes it like any stored metric: label, noise axis and tables from the declaration
    assert value_label("m_train_binarised") == "binarised overlap" and derived.per_noise("m_train_binarised")
    assert len(tables.tidy(ds, ["m_train_binarised"])) == len(sweep.noise)


def test_a_result_with_an_undeclared_or_missing_metric_cannot_be_written(tmp_path):
    """A value without a declaration would have no variable: the write refuses it (a bug, not
    input) before anything is written, instead of dropping it or storing NaN for a missing one."""
    sweep, task = one_pattern_task()
    values = cell.run_cell(sweep.job(task)).values
    with Cube.create_or_open(str(tmp_path / "c.zarr"), sweep) as cube:
        with pytest.raises(ValueError, match=r"undeclared \['m_extra'\], missing \[\]"):
            cube.write([CellResult(task.index, {**values, "m_extra": np.float32(1.0)})])
        with pytest.raises(ValueError, match=r"undeclared \[\], missing \['m_test'\]"):
            cube.write([CellResult(task.index, {k: v for k, v in values.items() if k != "m_test"})])
        assert (cube.status() == PENDING).all()
        cube.write([CellResult(task.index, values)])
        assert (cube.status() == DONE).all()


def test_metric_groups_are_checked_when_declared():
    with pytest.raises(ValueError, match="metric group 'starts'"):
        M.Metric("starts", "d", "l")
    assert {m.group for m in M.METRICS.values()} == set(M.GROUPS)
    assert [n for n, m in M.METRICS.items() if not m.deterministic] == [
        "train_seconds",
        "retrieval_seconds",
        "basin_seconds",
    ]
