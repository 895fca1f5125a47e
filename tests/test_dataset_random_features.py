"""Random-features (hidden-manifold) dataset: exact single-site statistics of xi = sign(c . f).

Known answer used throughout: with n nonzero +-1 coefficients, the correlation of an example
with one of its active features, E[xi_i c_k f_ki], is the probability that the other n - 1
terms sum to exactly 0 (n odd), or to exactly +1 (n even, fair coin on ties):
    mu(n) = C(n-1, floor((n-1)/2)) / 2^(n-1)     (both cases give this binomial term).
Each term xi_i c_k f_ki is +-1 with mean mu given either the site's features or the
example's coefficients alone (the other set is iid and symmetric), so the M * N terms of one
feature are uncorrelated and the mean over them has standard error sqrt(1 - mu^2) / sqrt(M N).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from amsweep.pipeline.datasets import random_features as rf


def _params(**kw) -> dict:
    p = {k: v.default for k, v in rf.PARAMS.items()}
    p.update(kw)
    return p


def _mu(n: int) -> float:
    return math.comb(n - 1, (n - 1) // 2) / 2 ** (n - 1)


@pytest.mark.parametrize("D", [5, 6])
def test_dense_feature_overlap_matches_exact_binomial(D: int) -> None:
    """Dense examples correlate with every feature by mu(D): 0.375 (D = 5), 0.3125 (D = 6, ties)."""
    N, M = 2000, 200
    data = rf.make(N, M, 0, _params(alpha_D=D / N), np.random.default_rng(1))
    F = data.meta["features"].astype(np.float64)
    c = data.meta["train_coefficients"].astype(np.float64)  # (M, D) signs
    assert F.shape == (D, N) and data.meta["D"] == D
    overlaps = (data.train.astype(np.float64) @ F.T) / N * c  # (M, D): xi . c_k f_k / N
    per_feature = overlaps.mean(axis=0)
    sigma = math.sqrt(1 - _mu(D) ** 2) / math.sqrt(M * N)  # ~0.0015
    # 5 sigma per feature: a wrong law (e.g. the large-D Gaussian limit sqrt(2 / (pi D)),
    # 0.357 at D = 5) is 10 sigma away.
    np.testing.assert_allclose(per_feature, _mu(D), atol=5 * sigma)


def test_ties_are_broken_by_a_fair_coin() -> None:
    """With D = 6 a third of the fields are exactly 0; the examples must still be unbiased.

    The mean of xi over M N sites has standard error 1 / sqrt(M N) (pairs of sites share
    either features or coefficients, never both, and such pairs are uncorrelated on average
    by the sign symmetry of c). A fixed tie rule such as sign(0) = +1 would give a
    magnetisation P(tie) = C(6, 3) / 64 = 0.31, 200 standard errors away.
    """
    N, M = 2000, 200
    data = rf.make(N, M, 0, _params(alpha_D=6 / N), np.random.default_rng(2))
    assert set(np.unique(data.train)) == {-1, 1}
    assert abs(data.train.mean()) < 5 / math.sqrt(M * N)


def test_sparse_examples_use_only_their_L_features() -> None:
    """L = 3 of D = 20: overlap mu(3) = 0.5 with each active feature, 0 with the inactive ones."""
    N, M, D, L = 1000, 300, 20, 3
    data = rf.make(N, M, 0, _params(alpha_D=D / N, L=L), np.random.default_rng(3))
    c = data.meta["train_coefficients"].astype(np.float64)
    assert np.all((c != 0).sum(axis=1) == L)
    overlaps = (data.train.astype(np.float64) @ data.meta["features"].T.astype(np.float64)) / N
    active = c != 0
    # active: M L N terms of +-1 with mean 0.5; inactive: sign(.) is independent of f_k, so
    # M (D - L) N terms with mean 0. 5 standard errors of the smaller count M N each.
    sigma = 1 / math.sqrt(M * N)
    assert abs((overlaps * c)[active].mean() - _mu(L)) < 5 * sigma
    assert abs(overlaps[~active].mean()) < 5 * sigma


def test_test_examples_are_fresh_combinations_of_the_same_features() -> None:
    """With D = 3 every example is one of the 8 majority patterns sign(+-f1 +-f2 +-f3)."""
    N, P, P_test = 200, 40, 40
    data = rf.make(N, P, P_test, _params(alpha_D=3 / N), np.random.default_rng(4))
    F = data.meta["features"].astype(np.int64)
    signs = np.array([[a, b, c] for a in (-1, 1) for b in (-1, 1) for c in (-1, 1)])
    allowed = np.sign(signs @ F).astype(np.int8)  # (8, N); odd sums, no ties
    for X in (data.train, data.test):
        matches = (X[:, None, :] == allowed[None, :, :]).all(axis=2)
        assert matches.sum(axis=1).min() == 1
    # fresh coefficients: the test set is not a copy of the training set and uses several
    # of the 8 combinations (40 draws from 8 equally likely ones)
    assert not np.array_equal(data.meta["test_coefficients"], data.meta["train_coefficients"][:P_test])
    assert len({tuple(r) for r in data.meta["test_coefficients"]}) >= 4


def test_feature_bias_sets_feature_magnetisation() -> None:
    """P(f = +1) = (1 + b) / 2: mean of D N iid features = b within 5 sqrt((1 - b^2) / (D N))."""
    N, b = 500, 0.4
    data = rf.make(N, 10, 5, _params(alpha_D=2.0, feature_bias=b), np.random.default_rng(5))
    F = data.meta["features"]
    assert F.shape == (1000, N) and F.dtype == np.int8
    assert abs(F.mean() - b) < 5 * math.sqrt((1 - b * b) / F.size)


def test_shapes_determinism_and_check() -> None:
    p = _params(alpha_D=0.5, L=4)
    a = rf.make(100, 30, 10, p, np.random.default_rng(7))
    b = rf.make(100, 30, 10, p, np.random.default_rng(7))
    assert a.train.shape == (30, 100) and a.test.shape == (10, 100) and a.train.dtype == np.int8
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test)
    assert not np.array_equal(a.train, rf.make(100, 30, 10, p, np.random.default_rng(8)).train)
    rf.check(100, 30, 10, p)
    with pytest.raises(ValueError, match="L=60 exceeds the D=50"):
        rf.check(100, 30, 10, _params(alpha_D=0.5, L=60))
    with pytest.raises(ValueError, match="0 features"):
        rf.check(100, 30, 10, _params(alpha_D=0.001))
