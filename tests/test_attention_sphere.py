"""Normalisation with self-attention on the sphere: brute-force references, clusters against beta."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import connected_components

from amsweep.pipeline import memory_metrics
from amsweep.pipeline.datasets import sphere_tokens
from amsweep.pipeline.dynamics import _sphere_attention as SA
from amsweep.pipeline.dynamics import softmax
from amsweep.pipeline.rules import self_attention


def _loop_step(X: list[list[float]], beta: float, residual: bool, norm: str) -> list[list[float]]:
    """One update written token by token in plain float64 Python, from the formula."""
    n, d = len(X), len(X[0])
    out = []
    for i in range(n):
        logits = [beta * sum(X[i][a] * X[j][a] for a in range(d)) for j in range(n)]
        top = max(logits)
        w = [np.exp(v - top) for v in logits]
        z = sum(w)
        A = [sum(w[j] / z * X[j][a] for j in range(n)) for a in range(d)]
        y = [X[i][a] + A[a] for a in range(d)] if residual else A
        if norm == "layernorm":
            mean = sum(y) / d
            y = [v - mean for v in y]
        length = sum(v * v for v in y) ** 0.5
        out.append([v / length for v in y])
    return out


def _bfs_clusters(X: np.ndarray, eps: float) -> int:
    """Connected components of 'angle < eps' by scipy's graph code (independent of the kernel)."""
    U = X / np.linalg.norm(X, axis=1, keepdims=True)
    angle = np.arccos(np.clip(U @ U.T, -1.0, 1.0))
    return int(connected_components(csr_matrix(angle <= eps), directed=False)[0])


def _euler_flow(X0: np.ndarray, beta: float, T: float, dt: float) -> np.ndarray:
    """Explicit Euler of dx_i/dt = (I - x_i x_i^T) sum_j softmax_j(beta x_i . x_j) x_j, renormalised."""
    X = X0 / np.linalg.norm(X0, axis=1, keepdims=True)
    for _ in range(int(round(T / dt))):
        L = beta * X @ X.T
        W = np.exp(L - L.max(axis=1, keepdims=True))
        A = (W / W.sum(axis=1, keepdims=True)) @ X
        X = X + dt * (A - np.sum(A * X, axis=1, keepdims=True) * X)
        X /= np.linalg.norm(X, axis=1, keepdims=True)
    return X


def _two_groups(rng: np.random.Generator, spread: float = 0.25) -> np.ndarray:
    """Three tokens around e1 and three around e2 (90 degrees apart) in R^3."""
    centres = np.repeat(np.eye(3)[:2], 3, axis=0)
    X = centres + spread * rng.standard_normal((6, 3))
    return X / np.linalg.norm(X, axis=1, keepdims=True)


@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("norm", ["sphere", "layernorm"])
@pytest.mark.parametrize("beta", [1.0, 8.0])
def test_kernel_equals_a_token_by_token_float64_loop(residual, norm, beta):
    X0 = sphere_tokens.uniform_sphere(7, 4, np.random.default_rng(0))
    ref = SA.normalise(X0, norm).tolist()
    ev = SA.evolve(X0, beta, residual=residual, norm=norm, max_steps=40, tol=1e-300, eps=0.05)
    counts = [_bfs_clusters(np.array(ref), 0.05)]
    for _ in range(40):
        ref = _loop_step(ref, beta, residual, norm)
        counts.append(_bfs_clusters(np.array(ref), 0.05))
    np.testing.assert_allclose(ev.tokens, np.array(ref), atol=1e-10)
    # the kernel stops once no token moves (pure attention can reach its fixed point exactly)
    assert ev.counts.tolist() == counts[: ev.counts.size] and set(counts[ev.counts.size - 1 :]) == {counts[-1]}
    if norm == "layernorm":
        np.testing.assert_allclose(ev.tokens.sum(axis=1), 0.0, atol=1e-12)


@pytest.mark.parametrize("beta,expect", [(1.0, 1), (12.0, 2)])
def test_small_step_residual_map_follows_the_continuous_flow_and_its_clusters(beta, expect):
    # x <- Norm(x + h A) is an Euler step of the flow on the sphere with time h per step. Two groups
    # of three tokens 90 degrees apart: at beta = 1 they merge into one cluster by t = 30; at
    # beta = 12 a group attends to the other with weight ~exp(-12), so each collapses on its own.
    X0 = _two_groups(np.random.default_rng(1))
    T = 30.0
    flow = _euler_flow(X0, beta, T, dt=1e-3)
    ev = SA.evolve(X0, beta, residual=True, h=0.01, max_steps=3000, tol=1e-300, eps=0.05)
    assert ev.steps == 3000
    np.testing.assert_allclose(ev.tokens, flow, atol=2e-2)  # O(h) apart
    assert ev.n_clusters == _bfs_clusters(flow, 0.05) == expect


def test_single_linkage_equals_scipy_connected_components():
    rng = np.random.default_rng(2)
    for n, p in [(1, 0.0), (30, 0.05), (60, 0.2), (40, 1.0)]:
        A = np.triu(rng.random((n, n)) < p, 1)
        G = (A | A.T).astype(np.float64)
        count, labels = SA.single_linkage(G, 0.5)
        ref_count, ref_labels = connected_components(csr_matrix(G >= 0.5), directed=False)
        assert count == ref_count
        same = labels[:, None] == labels[None, :]
        assert (same == (ref_labels[:, None] == ref_labels[None, :])).all()
        assert labels[0] == 0 if n else True


def test_one_cluster_at_small_beta_every_token_alone_at_large_beta():
    # n = 32 uniform tokens in R^16 are ~orthogonal (cos ~ 0.25): at beta = 1 every token attends to
    # all and one cluster forms within tens of steps; at beta = 64 a token's own weight exceeds the
    # others' by e^48 and no token moves: 32 clusters, formed at step 0.
    X0 = sphere_tokens.uniform_sphere(32, 16, np.random.default_rng(3))
    for residual in (True, False):
        small = SA.evolve(X0, 1.0, residual=residual)
        assert small.n_clusters == 1 and small.converged and 0 < small.form_steps < 50
        large = SA.evolve(X0, 64.0, residual=residual)
        assert large.n_clusters == 32 and large.form_steps == 0 and large.converged


def test_count_grows_with_beta_in_low_dimension():
    # On the circle (d = 2) tokens are dense, so at large beta near neighbours still merge: the count
    # rises with beta (clusters ~1 / sqrt(beta) wide) but stays far below n within 1000 steps.
    X0 = sphere_tokens.uniform_sphere(64, 2, np.random.default_rng(4))
    counts = [SA.evolve(X0, beta).n_clusters for beta in (0.5, 8.0, 128.0)]
    assert counts[0] == 1 and counts[0] < counts[1] < counts[2] < 32, counts


def test_rule_stores_tokens_reports_clusters_and_retrieves_through_softmax():
    data = sphere_tokens.make(16, 24, 5, {}, np.random.default_rng(5))
    assert np.allclose(np.linalg.norm(data.meta["tokens"], axis=1), 1.0)
    assert (data.train == np.where(data.meta["tokens"] >= 0, 1, -1)).all()
    params = {k: p.default for k, p in self_attention.PARAMS.items()}
    rng = np.random.default_rng(0)
    for beta, clusters in ((0.5, 1), (64.0, 24)):
        model = self_attention.train(data.train, 2, {**params, "beta": beta}, rng, meta=data.meta)
        assert model.info["n_clusters"] == clusters
        assert memory_metrics.token_clusters(model.memories, params["eps"]) == clusters
        values = memory_metrics.model_metrics(model, data)
        assert values["n_clusters"] == clusters and np.isnan(values["recovered_components"])
        res = softmax.relax(model, data.train, {"max_sweeps": 100, "tol": 1e-4}, rng)
        fixed = (res.final == data.train).all(axis=1).mean()
        assert fixed == 1.0 if clusters == 24 else fixed < 0.5
    # without tokens in meta the +-1 examples are the directions
    plain = self_attention.train(data.train, 2, {**params, "beta": 1000.0}, rng, meta={})
    np.testing.assert_allclose(plain.memories, data.train, atol=1e-5)
