"""Ties in binarised memories (issue 22, point 1): a tie is no information, never float noise.

With 6 examples per component, sites where 3 are flipped have a mean of exactly 0; a soft
(``elbo_memory``) or weighted mean leaves a remainder there of the size of its rounding, as small
as a float32 denormal (1e-45), whose sign is noise. ``components_found`` and
``components_as_oracle`` must not depend on it: they are compared here with a tie-robust count
written independently (ties = anything far below a mean's resolution 1/6, counted 0), on exact
ties, on ties leaning toward the prototype by a denormal, with denormals flushed to zero, and
with every value perturbed below float32 resolution.
"""

from __future__ import annotations

import numpy as np
import pytest

from amsweep.pipeline import memory_metrics as MM
from amsweep.pipeline.datasets import mixture
from amsweep.pipeline.dynamics import softmax
from amsweep.pipeline.model import Data, Model
from amsweep.pipeline.rules import elbo_memory

DENORMAL = np.float32(1e-45)  # the smallest positive float32, a denormal


def _mixture(seed: int, flip: float) -> Data:
    params = {"components": 0, "per_component": 6, "flip": flip, "balanced": True}
    return mixture.make(64, 48, 0, params, np.random.default_rng(seed))


def _robust_signs(memories: np.ndarray) -> np.ndarray:
    """Signs with ties 0: a mean of 6 +-1 examples is a multiple of 1/6, anything below 1e-4 of its
    row's scale is a tie (rounding or a negligible remainder), as integers."""
    m = np.asarray(memories, dtype=np.float64)
    tol = 1e-4 * np.abs(m).max(axis=1, keepdims=True)
    return np.where(m > tol, 1, np.where(m < -tol, -1, 0)).astype(np.int64)


def _robust_counts(memories: np.ndarray, prototypes: np.ndarray) -> list[int]:
    """Per prototype, the best number of agreeing minus disagreeing sites of any memory (ties 0)."""
    s, xi = _robust_signs(memories), prototypes.astype(np.int64)
    return [max(int(sum(int(a) * int(b) for a, b in zip(row, p))) for row in s) for p in xi]


def _robust_metrics(memories: np.ndarray, data: Data) -> tuple[float, float]:
    """(components_found, components_as_oracle) by the tie-robust count, oracle = label means in float64."""
    protos, labels = data.meta["prototypes"], data.meta["train_labels"]
    N = protos.shape[1]
    best = _robust_counts(memories, protos)
    oracle = np.array([data.train[labels == c].astype(np.float64).mean(axis=0) for c in range(protos.shape[0])])
    best_oracle = _robust_counts(oracle, protos)
    found = float(np.mean([b >= MM.FOUND_OVERLAP * N for b in best]))
    return found, float(np.mean([b >= o for b, o in zip(best, best_oracle)]))


def _metrics(memories: np.ndarray, data: Data) -> tuple[float, float]:
    values = MM.model_metrics(Model(q=2, memories=memories), data)
    return values["components_found"], values["components_as_oracle"]


def _flushed(memories: np.ndarray) -> np.ndarray:
    """What a machine that flushes denormals to zero holds."""
    m = memories.copy()
    m[np.abs(m) < np.finfo(np.float32).tiny] = 0.0
    return m


def test_exact_ties_and_denormal_remainders_give_the_tie_robust_count():
    data = _mixture(seed=1, flip=0.15)
    protos, labels = data.meta["prototypes"], data.meta["train_labels"]
    means = MM.label_means(data.train, labels, protos.shape[0])
    ties = means == 0.0
    assert ties.sum() > 20, "the instance must hold many exact ties (3 of 6 examples flipped)"
    # memories: the label means, one component merged into another (so not every prototype is found)
    memories = means.copy()
    memories[0] = 0.5 * (means[0] + means[1])
    ties = memories == 0.0
    # remainders of a soft mean leaning toward the prototype, and leaning away from it
    toward = np.where(ties, DENORMAL * protos[np.minimum(np.arange(len(memories)), len(protos) - 1)], memories)
    away = np.where(ties, -toward, memories)
    expected = _robust_metrics(memories, data)
    assert 0.0 < expected[0] < 1.0  # the count is not trivial
    for variant in (memories, toward.astype(np.float32), away.astype(np.float32), _flushed(toward)):
        assert _metrics(variant, data) == expected


@pytest.mark.parametrize("seed", [1, 2])
def test_a_fitted_elbo_memory_reads_the_same_under_perturbations_below_float32_resolution(seed):
    # elbo_memory at 6 examples per component, flip 0.2: 38-46 tie sites whose remainders span
    # 1e-45 to 1e-9 (measured), non-ties >= 1/3; main read 0.125 / 0.625 here only by chance.
    data = _mixture(seed, flip=0.2)
    params = {name: p.default for name, p in elbo_memory.PARAMS.items()}
    model = elbo_memory.train(data.train, 2, params, np.random.default_rng(100 + seed), meta=data.meta)
    memories = model.memories
    small = np.abs(memories) < 1e-6
    assert small.sum() > 30
    rng = np.random.default_rng(seed)
    jitter = (rng.standard_normal(memories.shape) * 1e-9).astype(np.float32)  # below float32 resolution of 1
    expected = _robust_metrics(memories, data)
    flipped_remainders = np.where(small, -memories, memories)
    for variant in (memories, _flushed(memories), memories + jitter, flipped_remainders):
        assert _metrics(variant, data) == expected, variant is memories


def test_softmax_read_out_decides_a_tie_by_its_rule_not_by_the_remainder():
    # two memories opposite at the last site: the state half-way between reads +1 there, whatever the
    # sign of a remainder within a few float32 ulps of the state's scale (main read -1 for -1e-6)
    mem = np.array([[1.0, 1.0, 1.0, 1.0], [1.0, 1.0, 1.0, -1.0]], dtype=np.float32)
    model = Model(q=2, memories=mem, params={"beta": 1.0})
    params = {"max_sweeps": 1, "tol": 1e-4}
    for remainder in (0.0, 1e-45, -1e-45, -1e-6, 1e-6):
        start = np.array([[1.0, 1.0, 1.0, remainder]], dtype=np.float32)
        x, _, _ = softmax.mean_shift(model, start, params)
        assert abs(float(x[0, 3])) < 1.5e-6  # the state sits on the tie
        assert softmax.relax(model, start, params, None).final.tolist() == [[1, 1, 1, 1]]
