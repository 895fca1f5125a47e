"""Cheaper small cells (issue 26) change no value: batches relaxed together, streams opened faster.

The cell relaxes all its batches through ``asynchronous.relax_groups`` and opens its streams
through ``seeding``'s own SeedSequence path; each must give exactly what the one-call-per-batch
cell and ``np.random.default_rng`` gave, and a golden digest of a small cell's values (computed
at 7abf3e9, before these changes) guards every stream at once.
"""

from __future__ import annotations

import hashlib
import math
import json

import numpy as np
import pytest

from amsweep.pipeline import cell, seeding
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.dynamics import asynchronous
from amsweep.pipeline.metric_table import METRICS
from amsweep.pipeline.model import Model
from amsweep.pipeline.params import Params

SPEC = {
    "name": "small",
    "root_seed": 9,
    "seeds": 2,
    "noise": [0.0, 0.1, 0.3],
    "P_test": 12,
    "retrieval": {"train_starts": 100, "test_starts": 12, "random_starts": 7, "store_magnetisations": True},
    "datasets": {"random": {"N": [24], "alpha": [0.2, 0.5]}},
    "rules": {"hebb": {}, "plm": {"epochs": 5}, "storkey": {"dynamics": "glauber"}},
}


def _values(sweep: spec_mod.Sweep) -> list[tuple[tuple[int, ...], dict[str, bytes], bytes]]:
    out = []
    for task in sweep.tasks():
        r = cell.run_cell(sweep.job(task))
        values = {k: np.asarray(v).tobytes() for k, v in r.values.items() if METRICS[k].deterministic}
        out.append((task.index, values, np.asarray(r.magnetisations).tobytes()))
    return out


def test_relax_groups_is_one_relax_per_group_bit_for_bit() -> None:
    """Asymmetric couplings (cycles, ties), groups of 0-9 states, sweep budgets 1 and 50: the same
    states, flags and sweep counts as one ``relax`` per group, and the generator left in the same state."""
    rng = np.random.default_rng(4)
    N = 20
    J = rng.normal(size=(N, N)).astype(np.float32)
    np.fill_diagonal(J, 0.0)
    J[:, 3] = 0.0  # exact ties at site 3 of every field
    model = Model(q=2, J=J)
    groups = [
        (np.where(rng.random((b, N)) < 0.5, 1, -1).astype(np.int8), Params({"max_sweeps": s}, "dynamics"))
        for b, s in ((9, 1), (0, 50), (5, 50), (1, 50), (7, 2))
    ]
    a, b = np.random.default_rng(11), np.random.default_rng(11)
    apart = [asynchronous.relax(model, states, params, a) for states, params in groups]
    together = asynchronous.relax_groups(model, groups, b)
    assert len(together) == len(groups)
    for x, y in zip(apart, together):
        for name in ("final", "converged", "sweeps"):
            u, v = getattr(x, name), getattr(y, name)
            assert u.dtype == v.dtype and u.shape == v.shape and np.array_equal(u, v), name
    assert {int(r.sweeps.max()) for r in apart if r.sweeps.size} >= {1, 2}  # the budgets were reached
    assert a.random() == b.random()


def test_cell_values_do_not_depend_on_how_batches_are_relaxed(monkeypatch) -> None:
    """Three rules (one thermal: its fixed-point check runs the zero-temperature dynamics, a module
    of its own), three noise levels, kept magnetisations: the cell with ``relax_groups`` equals the
    cell that relaxes each batch in its own call, value for value."""
    sweep = spec_mod.from_dict(SPEC)
    grouped = _values(sweep)
    monkeypatch.delattr(asynchronous, "relax_groups")
    assert _values(sweep) == grouped


# Hebb at N = 32 with zero-temperature dynamics: couplings k/32 and every field and overlap exact
# in float32, so the digest is the same on every machine and BLAS. Basins on: their streams too.
GOLDEN_SPEC = {
    **SPEC,
    "datasets": {"random": {"N": [32], "alpha": [0.2, 0.5]}},
    "rules": {"hebb": {}},
    "retrieval": {**SPEC["retrieval"], "basin_examples": 2},
}
GOLDEN = "81070c6006e07a2f4167b814334e717d09598f72a03d7bcc9615353b0dc48a7a"


def test_small_cell_values_are_those_of_before_the_change() -> None:
    """Digest of every deterministic value (and the kept magnetisations) of GOLDEN_SPEC's 4 cells,
    as 7abf3e9 computed them: any changed draw, order or formula moves it."""
    digest = hashlib.sha256(repr(_values(spec_mod.from_dict(GOLDEN_SPEC))).encode()).hexdigest()
    assert digest == GOLDEN


@pytest.mark.parametrize(
    "parts",
    [
        ("starts", "random", 32, 10, 3, 0.1),
        ("data", 'a\u00e9"x\\', 0, -1, 1e-7, -0.0, 2.5e300),
        (True, None, [1, 2], {"b": 1, "a": 2}, float("nan"), float("inf")),
        (np.float64(0.1), np.int64(3), "rule", ("nested", 1)),
        (),
    ],
)
def test_streams_are_default_rng_of_the_same_key(parts) -> None:
    """The key is sha256 of exactly ``json.dumps(parts, sort_keys=True, default=str)`` and the
    generator exactly ``default_rng([root_seed, key])``, for every kind of part and root seed."""
    assert seeding._json(parts) == json.dumps(parts, sort_keys=True, default=str)
    key = seeding.stable_key(*parts)
    for root in (0, 9, 2**32, 2**63 - 1):
        a, b = np.random.default_rng([root, key]), seeding.stream(root, *parts)
        assert a.bit_generator.state == b.bit_generator.state
        assert a.integers(0, 2**40, size=9).tolist() == b.integers(0, 2**40, size=9).tolist()


def test_seed_sequence_output_is_numpys_for_any_length() -> None:
    """``_Seeds.generate_state`` is numpy's output hash for any word count and both dtypes."""
    for entropy in ([1, 2], [2**70, 5], [0], list(range(9))):
        for n in (1, 3, 4, 9, 20):
            for dtype in (np.uint32, np.uint64):
                a = np.random.SeedSequence(entropy).generate_state(n, dtype)
                b = seeding._Seeds(entropy).generate_state(n, dtype)
                assert a.dtype == b.dtype and a.tolist() == b.tolist()


@pytest.mark.parametrize("safe", [None, 1.0])
def test_plm_plain_step_is_the_general_step_bit_for_bit(monkeypatch, safe) -> None:
    """The dual PLM step without clip or momentum (one ``plain_dual_update`` call) gives the couplings
    and info of the general numpy path: three inits, loads 0.1-1.5, L2, a learning rate that
    overflows (refused steps, shrinks); ``safe`` = 1 builds J at every step (the bound check)."""
    from amsweep.pipeline.rules import plm

    if safe is not None:
        monkeypatch.setattr(plm, "FLOAT32_SAFE", safe)
    rng = np.random.default_rng(3)
    cases = []
    for P, init, lr, l2 in (
        (3, "hebb", 1.0, 0.0),
        (16, "zero", 0.5, 0.01),
        (40, "random", 2.0, 0.02),
        (9, "hebb", 1e38, 0.0),
    ):
        X = np.where(rng.random((P, 32)) < 0.5, 1, -1).astype(np.int8)
        params = {k: p.default for k, p in plm.PARAMS.items()} | {"epochs": 12, "init": init, "lr": lr, "l2": l2}
        cases.append((X, params))

    def trained() -> list[tuple[bytes, dict]]:
        out = []
        for X, params in cases:
            m = plm.train(X, 2, params, np.random.default_rng(5))
            assert m.info["form"] == "dual"
            out.append((m.J.tobytes(), m.info))
        return out

    fused = trained()
    assert any(info["nan_recoveries"] for _, info in fused)  # the refused-step path ran
    monkeypatch.setattr(plm._Dual, "_plain_step", lambda self, g, lr, l2: self._general_step(g, lr, l2, 0.0))
    assert trained() == fused


def test_corrupt_flips_the_sites_of_the_k_smallest_draws() -> None:
    """``metrics.corrupt`` (one kernel pass per row) equals the argsort of the same draws it replaced,
    for every k from 0 to past N, batches of 0-40 rows, and a protocol's own flip count."""
    from amsweep.pipeline import metrics as M

    def by_argsort(X: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
        out = X.copy()
        if k and X.shape[0]:
            sites = np.argsort(rng.random(X.shape), axis=1)[:, :k]
            np.put_along_axis(out, sites, -np.take_along_axis(out, sites, axis=1), axis=1)
        return out

    rng = np.random.default_rng(8)
    for B, N in ((0, 10), (1, 1), (7, 32), (40, 33), (3, 60)):
        X = np.where(rng.random((B, N)) < 0.5, 1, -1).astype(np.int8)
        for k in sorted({0, 1, 2, N // 3, N - 1, N, N + 2}):
            a = M.corrupt(X, 0.0, 2, np.random.default_rng(k), lambda n, rho: k)
            assert np.array_equal(a, by_argsort(X, k, np.random.default_rng(k))), (B, N, k)
            assert B == 0 or (np.sum(a != X, axis=1) == min(max(k, 0), N)).all()
    X = np.ones((5, 20), np.int8)
    assert np.array_equal(M.corrupt(X, 0.3, 2, np.random.default_rng(1)), by_argsort(X, 6, np.random.default_rng(1)))


def test_integer_overlap_kernels_are_the_float32_path() -> None:
    """``overlap``, ``best_overlap`` and the fixed-point fraction through the int8 kernels equal the
    float32 einsum/GEMM path they replace, bit for bit: +-1 and arbitrary int8 states, N = 1 up to the
    largest exact N (1024: every sum at most 2^24), batches of 0-33 rows, 1-9 examples."""
    from amsweep.pipeline.dynamics import _state_kernels as K
    from amsweep.pipeline import metrics as M

    rng = np.random.default_rng(12)
    for B, K_, N in ((0, 3, 32), (1, 1, 1), (33, 9, 32), (5, 2, 257), (4, 3, K.EXACT_SITES), (40, 30, 40)):
        for low in (-1, -128):
            a = rng.integers(low, 128 if low == -128 else 2, size=(B, N)).astype(np.int8)
            b = rng.integers(low, 128 if low == -128 else 2, size=(B, N)).astype(np.int8)
            e = rng.integers(low, 128 if low == -128 else 2, size=(K_, N)).astype(np.int8)
            if low == -1:
                a, b, e = (np.where(x == 0, 1, x).astype(np.int8) for x in (a, b, e))
            elif N == K.EXACT_SITES:  # the largest sums there are: every product 128^2
                a[0], b[0], e[0] = -128, -128, -128
            f = np.float32
            want = np.einsum("ij,ij->i", a.astype(f), b.astype(f)) / N
            got = M.overlap(a, b)
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (B, N, low)
            want = np.maximum.reduce((a.astype(f) @ e.astype(f).T) / N, axis=1)
            got = M.best_overlap(a, e)
            assert got.dtype == want.dtype and got.tobytes() == want.tobytes(), (B, N, low)
            b[: B // 2] = a[: B // 2]
            assert K.equal_rows(a, b) == int(np.all(a == b, axis=1).sum())


def test_fractions_at_a_cut_are_numpys_comparison() -> None:
    """``success_train``/``retrieved_fraction``'s count equals numpy's float32 ``x >= cut`` (the cut
    cast to float32: 0.9 counts float32(0.9), just below it), NaN counted as a miss; bool means too."""
    from amsweep.pipeline.dynamics import _state_kernels as K
    from amsweep.pipeline import metrics as M

    x = np.array([np.float32(0.9), np.nextafter(np.float32(0.9), np.float32(0)), 0.99, np.nan, 1.0, -1.0], np.float32)
    for cut in (M.SUCCESS_OVERLAP, M.RETRIEVED_OVERLAP, 0.9, 1.0, -np.inf):
        assert K.count_at_least(x, cut) == int(np.sum(x >= cut)), cut
        assert M._fraction_at_least(x, cut) == float(np.mean(x >= cut))
    assert math.isnan(M._fraction_at_least(x[:0], 0.9))
    flags = np.random.default_rng(2).random(37) < 0.3
    assert M.mean_or_nan(flags) == float(np.mean(flags))
