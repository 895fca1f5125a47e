"""ELBO mixture memory: EM against independent fits, component recovery, retrieval beside KDE and CRP."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from scipy.stats import multivariate_normal

from amsweep.pipeline import memory_metrics
from amsweep.pipeline.datasets import mixture
from amsweep.pipeline.dynamics import softmax
from amsweep.pipeline.metric_types import CELL
from amsweep.pipeline.model import Data, Model, NotApplicable
from amsweep.pipeline.rules import crp_memory, elbo_memory, kde
from tests.physics import corrupt

SOFTMAX = {"max_sweeps": 100, "tol": 1e-4}


def _params(**over) -> dict:
    return {**{k: p.default for k, p in elbo_memory.PARAMS.items()}, **over}


def _mixture(N: int, C: int, per: int, flip: float, seed: int) -> Data:
    params = {"components": C, "per_component": per, "flip": flip, "balanced": True}
    return mixture.make(N, C * per, 200, params, np.random.default_rng(seed))


def _reference_em(X: np.ndarray, means: np.ndarray, var: float, floor: float, learn: bool, iterations: int):
    """Textbook EM for a mixture of N(mu_k, s^2 I) with a shared s^2, one component at a time.

    Written from the definitions (scipy's Gaussian density, explicit sums over components), not
    from the package's matrix form; returns the parameters after ``iterations`` E+M steps, the
    responsibilities of those parameters and the log-likelihood after each E-step.
    """
    P, N = X.shape
    K = means.shape[0]
    mu, pi = [m.copy() for m in means], [1.0 / K] * K
    trace = []

    def responsibilities():
        logp = np.column_stack(
            [np.log(pi[k]) + multivariate_normal(mu[k], var * np.eye(N)).logpdf(X) for k in range(K)]
        )
        top = logp.max(axis=1, keepdims=True)
        lik = top[:, 0] + np.log(np.exp(logp - top).sum(axis=1))
        return np.exp(logp - lik[:, None]), float(lik.sum())

    for _ in range(iterations):
        R, loglik = responsibilities()
        trace.append(loglik)
        spread = 0.0
        for k in range(K):
            Nk = R[:, k].sum()
            pi[k] = Nk / P
            mu[k] = (R[:, k, None] * X).sum(axis=0) / Nk
            spread += float((R[:, k] * ((X - mu[k]) ** 2).sum(axis=1)).sum())
        if learn:
            var = max(spread / (P * N), floor)
    R, loglik = responsibilities()
    trace.append(loglik)
    return np.array(mu), np.array(pi), var, R, np.array(trace)


@pytest.mark.parametrize("width", ["learned", "fixed"])
def test_em_equals_a_direct_em_fit_with_soft_assignments(width):
    # Overlapping clusters (30% flips, N = 20): many examples are shared between memories, so the
    # agreement covers genuinely proportional assignments, not only hard ones.
    data = _mixture(20, 3, 12, 0.3, seed=1)
    X = data.train.astype(np.float64)
    params = _params(width=width, bandwidth=0.3, iterations=15, tol=0.0)
    means0 = elbo_memory.initial_means(X, 3, "kmeans++", np.random.default_rng(2))
    em = elbo_memory.fit(X, 3, params, np.random.default_rng(0), means=means0)
    floor = 20 * 0.3**2
    var0 = floor
    if width == "learned":
        d2 = ((X[:, None, :] - means0[None]) ** 2).sum(axis=2).min(axis=1)
        var0 = max(d2.sum() / X.size, floor)
    mu, pi, var, R, trace = _reference_em(X, means0, var0, floor, width == "learned", em.elbo.size - 1)
    soft = ((R > 0.05) & (R < 0.95)).any(axis=1).mean()
    assert soft > 0.1, soft  # a tenth of the examples or more are split between memories
    np.testing.assert_allclose(em.means, mu, atol=1e-9)
    np.testing.assert_allclose(np.exp(em.log_weights), pi, atol=1e-12)
    assert em.variance == pytest.approx(var, rel=1e-12)
    np.testing.assert_allclose(em.responsibilities, R, atol=1e-9)
    np.testing.assert_allclose(em.elbo, trace, rtol=1e-12)
    assert np.all(np.diff(em.elbo) >= -1e-9)  # EM never lowers the bound


def test_em_matches_scikit_learn_gaussian_mixture_from_the_same_start():
    # scikit-learn's GaussianMixture (spherical covariances, one variance per component) started
    # from the same means, equal weights and the same variance: on separated clusters its
    # responsibilities are the same hard ones, so means, weights and labels must coincide.
    sklearn = pytest.importorskip("sklearn.mixture")
    data = _mixture(64, 6, 20, 0.1, seed=3)
    X = data.train.astype(np.float64)
    means0 = elbo_memory.initial_means(X, 6, "kmeans++", np.random.default_rng(4))
    em = elbo_memory.fit(X, 6, _params(tol=1e-12), np.random.default_rng(0), means=means0)
    d2 = ((X[:, None, :] - means0[None]) ** 2).sum(axis=2).min(axis=1)
    var0 = d2.sum() / X.size
    gm = sklearn.GaussianMixture(
        6,
        covariance_type="spherical",
        means_init=means0,
        weights_init=np.full(6, 1 / 6),
        precisions_init=np.full(6, 1 / var0),
        reg_covar=1e-12,
        tol=1e-12,
        max_iter=200,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gm.fit(X)
    np.testing.assert_allclose(em.means, gm.means_, atol=1e-6)
    np.testing.assert_allclose(np.exp(em.log_weights), gm.weights_, atol=1e-9)
    assert (em.responsibilities.argmax(axis=1) == gm.predict(X)).all()
    # one shared variance against six: the shared one is their mean weighted by the mixture weights
    assert float(gm.weights_ @ gm.covariances_) == pytest.approx(em.variance, rel=1e-9)


def test_recovers_the_components_and_retrieves_prototypes_where_kde_memorizes():
    # 16 prototypes, 10 examples each, 10% flips, N = 64: every component is found (a memory whose
    # sign is its prototype), the assignments are the true labels up to relabelling, and test cues
    # with 20% more flips retrieve their prototype. A narrow KDE keeps the examples instead.
    data = _mixture(64, 16, 10, 0.1, seed=5)
    protos, labels = data.meta["prototypes"], data.meta["train_labels"]
    model = elbo_memory.train(data.train, 2, _params(), np.random.default_rng(6), meta=data.meta)
    assert model.info["n_memories"] == 16 and model.info["converged"]
    recovered, found = memory_metrics.recovered_components(model.memories, protos)
    assert found == 1.0 and recovered >= 0.99
    # as good as the label-aware estimate: each memory is its component's empirical mean
    assert memory_metrics.as_oracle(model.memories, data) == 1.0
    oracle = memory_metrics.label_means(data.train, labels, 16)
    np.testing.assert_allclose(np.sort(model.memories, axis=0), np.sort(oracle, axis=0), atol=1e-5)
    assign = model.info["assignment"]
    pairs = {(int(a), int(b)) for a, b in zip(assign, labels)}
    assert len(pairs) == 16  # one memory per true component, none shared
    # the learned width is the clusters' spread, 4 p (1 - p) = 0.36 per site
    assert model.info["variance"] == pytest.approx(0.36, abs=0.04)
    rng = np.random.default_rng(7)
    cues = corrupt(data.test[:100], 0.2, rng)
    target = protos[data.meta["test_labels"][:100]]
    res = softmax.relax(model, cues, SOFTMAX, rng)
    assert (res.final == target).all(axis=1).mean() >= 0.95
    crp = crp_memory.train(data.train, 2, {"alpha": 1.0, "d": 0.0, "beta": 0.5, "c": 0.5}, np.random.default_rng(0))
    assert memory_metrics.recovered_components(crp.memories, protos)[1] == 1.0
    narrow = kde.train(data.train, 2, {"bandwidth": 0.1, "bandwidth_scaling": "fixed"}, rng)
    kept = softmax.relax(narrow, corrupt(data.train[:50], 0.1, rng), SOFTMAX, rng).final
    assert (kept == data.train[:50]).all(axis=1).mean() >= 0.9  # examples, not prototypes
    assert memory_metrics.recovered_components(narrow.memories, protos)[1] < 0.5


def test_one_example_per_memory_collapses_the_width_to_its_floor():
    # K = P on random-like data: each memory sits on one example and the maximum-likelihood
    # variance is 0, so the floor (bandwidth) holds; retrieval is then a narrow KDE's.
    data = _mixture(48, 40, 1, 0.1, seed=8)
    model = elbo_memory.train(data.train, 2, _params(bandwidth=0.05), np.random.default_rng(0), meta=data.meta)
    assert model.info["n_memories"] == 40
    assert model.info["variance"] == pytest.approx(48 * 0.05**2)
    np.testing.assert_array_equal(np.sort(model.memories, axis=0), np.sort(data.train.astype(np.float32), axis=0))


def test_deterministic_given_the_rng_and_k_from_the_dataset_or_p():
    data = _mixture(32, 5, 8, 0.1, seed=9)
    a = elbo_memory.train(data.train, 2, _params(), np.random.default_rng(1), meta=data.meta)
    b = elbo_memory.train(data.train, 2, _params(), np.random.default_rng(1), meta=data.meta)
    np.testing.assert_array_equal(a.memories, b.memories)
    assert elbo_memory.n_memories(40, _params(), None) == 40
    assert elbo_memory.n_memories(40, _params(K=7), data.meta) == 7
    assert elbo_memory.n_memories(4, _params(K=7), None) == 4


def test_ising_only():
    with pytest.raises(NotApplicable):
        elbo_memory.train(np.zeros((3, 5), np.int8), 21, _params(), np.random.default_rng(0))


def test_mixture_dataset_balanced_noisy_copies_with_prototypes_in_meta():
    params = {"components": 0, "per_component": 10, "flip": 0.2, "balanced": True}
    data = mixture.make(200, 95, 50, params, np.random.default_rng(0))
    C = data.meta["n_components"]
    assert C == 10 and data.meta["features"] is data.meta["prototypes"]
    counts = np.bincount(data.meta["train_labels"], minlength=C)
    assert counts.min() == 9 and counts.max() == 10
    own = data.meta["prototypes"][data.meta["train_labels"]]
    assert np.mean(data.train != own) == pytest.approx(0.2, abs=0.01)
    assert data.train.dtype == np.int8 and data.test.shape == (50, 200)
    assert mixture.n_components(95, {"components": 3, "per_component": 10}) == 3


def test_model_metrics_apply_where_they_mean_something():
    data = _mixture(32, 4, 10, 0.1, seed=10)
    model = elbo_memory.train(data.train, 2, _params(), np.random.default_rng(0), meta=data.meta)
    values = memory_metrics.model_metrics(model, data)
    assert set(values) == {k for k, m in memory_metrics.MEMORY_METRICS.items() if m.group == CELL}
    assert values["components_found"] == 1.0 and values["components_as_oracle"] == 1.0
    assert np.isnan(values["n_clusters"])
    bare = memory_metrics.model_metrics(Model(q=2, J=np.zeros((4, 4), np.float32)), data)
    assert all(np.isnan(v) for v in bare.values())
