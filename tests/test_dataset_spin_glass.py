"""2D Edwards-Anderson dataset: PT sampler against exact enumeration, couplings, disk cache.

For L = 4 (N = 16, 2^16 states) Boltzmann averages are computed exactly from meta["true_J"],
which also checks that the couplings handed to a cell are the ones the sampler used.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from amsweep.pipeline.datasets import _parallel_tempering, spin_glass

REPO = Path(__file__).resolve().parents[1]


def _params(**kw) -> dict:
    p = {k: v.default for k, v in spin_glass.PARAMS.items()}
    p.update(kw)
    return p


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets an empty disk cache and an empty in-process pool cache."""
    root = tmp_path / "cache"
    monkeypatch.setenv("AMSWEEP_CACHE", str(root))
    spin_glass._pool.cache_clear()
    yield root
    spin_glass._pool.cache_clear()


def _exact(J: np.ndarray, T: float) -> tuple[float, float]:
    """Exact <E>/N and <|m|> of H = -1/2 s.J.s over all 2^N states (N <= 20)."""
    N = J.shape[0]
    codes = np.arange(2**N)[:, None]
    S = ((codes >> np.arange(N)) & 1).astype(np.float64) * 2 - 1
    E = -0.5 * np.einsum("si,ij,sj->s", S, J.astype(np.float64), S)
    w = np.exp(-(E - E.min()) / T)
    w /= w.sum()
    return float(w @ E) / N, float(w @ np.abs(S.mean(axis=1)))


def _blocking_error(x: np.ndarray, min_blocks: int = 32) -> float:
    """Standard error of the mean of a correlated series (Flyvbjerg-Petersen blocking).

    Averages of blocks of 2^k consecutive samples become independent once the block is
    longer than the autocorrelation time; the naive error of the block means then stops
    growing. Taking the largest estimate over levels that keep >= 32 blocks is the
    conservative reading of that plateau.
    """
    best = 0.0
    while len(x) >= min_blocks:
        best = max(best, x.std(ddof=1) / np.sqrt(len(x)))
        x = 0.5 * (x[: len(x) // 2 * 2 : 2] + x[1 : len(x) // 2 * 2 : 2])
    return best


@pytest.mark.parametrize(
    ("couplings", "instance", "T"),
    [("gaussian", 0, 1.0), ("pm_j", 3, 0.5)],
)
def test_sampler_matches_exact_enumeration(couplings: str, instance: int, T: float) -> None:
    """L = 4: sample mean energy per spin and |m| agree with exact Boltzmann averages.

    20,000 samples taken 2 PT steps apart; the error bar is the blocking standard error
    (~0.002 for E/N). The tolerance is 4 of those: a fluke at that level has probability
    6e-5, while a wrong acceptance rule or a replica mix-up shifts E/N by far more.
    The +-J instance at T = 0.5 is mostly in its degenerate ground states, where the
    single-temperature Metropolis chain needs the exchanges to move between valleys.
    """
    N, count = 16, 20_000
    p = _params(
        couplings=couplings,
        instance=instance,
        temperature=T,
        n_temps=8,
        t_max=2.5,
        sweeps=2,
        equilibration=500,
        pool=count,
    )
    data = spin_glass.make(N, count, 0, p, np.random.default_rng(0))
    e_exact, m_exact = _exact(data.meta["true_J"], T)
    drawn = spin_glass.pool(N, count, p)  # time-ordered chain, for the blocking analysis
    e = drawn["energies"] / N
    m = np.abs(drawn["samples"].mean(axis=1))
    # the energies stored with the samples are those of H = -1/2 s.J.s with the true J
    S = drawn["samples"][:100].astype(np.float64)
    np.testing.assert_allclose(
        -0.5 * np.einsum("si,ij,sj->s", S, data.meta["true_J"].astype(np.float64), S) / N, e[:100], atol=1e-5
    )
    assert abs(e.mean() - e_exact) < 4 * _blocking_error(e)
    assert abs(m.mean() - m_exact) < 4 * _blocking_error(m)
    assert np.all(drawn["swap_rate"] > 0.1)  # the ladder mixes


def test_true_couplings_and_instances() -> None:
    """Symmetric, zero diagonal, 4 bonds per site; shared by cells; set by the instance seed."""
    N = 25
    p = _params(sweeps=1, equilibration=10, pool=64)
    a = spin_glass.make(N, 20, 10, p, np.random.default_rng(1))
    b = spin_glass.make(N, 20, 10, p, np.random.default_rng(2))
    J = a.meta["true_J"]
    assert J.dtype == np.float32 and J.shape == (N, N)
    assert np.array_equal(J, J.T) and not np.diag(J).any()
    assert np.all((J != 0).sum(axis=1) == 4)
    assert np.array_equal(J, b.meta["true_J"])  # the cell rng does not touch the instance
    assert not np.array_equal(a.train, b.train)  # but it does choose the examples
    bonds = J[np.triu_indices(N, 1)]
    bonds = bonds[bonds != 0]
    assert len(bonds) == 2 * N
    # 50 N(0, 1) bonds: |sample mean| < 4 / sqrt(50) and sample variance within 4 sd (sqrt(2/50))
    assert abs(bonds.mean()) < 4 / np.sqrt(50) and abs(bonds.var() - 1) < 4 * np.sqrt(2 / 50)
    other = spin_glass.make(
        N, 20, 10, _params(sweeps=1, equilibration=10, pool=64, instance=1), np.random.default_rng(1)
    )
    assert not np.array_equal(J, other.meta["true_J"])
    pmj = spin_glass.make(
        N, 20, 10, _params(sweeps=1, equilibration=10, pool=64, couplings="pm_j"), np.random.default_rng(1)
    )
    assert set(np.unique(pmj.meta["true_J"])) == {-1.0, 0.0, 1.0}


def test_split_is_disjoint_and_check_rejects_bad_cells() -> None:
    p = _params(sweeps=1, equilibration=10, pool=100)
    data = spin_glass.make(9, 60, 40, p, np.random.default_rng(0))
    assert data.train.shape == (60, 9) and data.test.shape == (40, 9) and data.train.dtype == np.int8
    assert set(np.unique(data.train)) <= {-1, 1}
    idx = np.concatenate([data.meta["train_index"], data.meta["test_index"]])
    assert len(np.unique(idx)) == 100
    for N in (3, 8, 15, 1):
        with pytest.raises(ValueError, match="N = L\\^2"):
            spin_glass.check(N, 5, 5, p)
    spin_glass.check(4, 5, 5, p)
    with pytest.raises(ValueError, match="exceeds the sample pool \\(100\\)"):
        spin_glass.check(16, 80, 21, p)
    with pytest.raises(ValueError, match="t_min <= temperature <= t_max"):
        spin_glass.check(16, 5, 5, _params(t_min=1.2))
    assert spin_glass.pool_size(100, 28, _params()) == 512  # next power of 2 >= 4 * 128
    temps, target = spin_glass.ladder(_params(t_min=0.5, t_max=2.0, n_temps=7, temperature=1.1))
    assert temps[target] == 1.1 and np.all(np.diff(temps) > 0) and len(temps) == 7


def test_cache_second_call_reads_the_file_and_prefixes_serve_smaller_pools(
    _private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    N, p = 16, _params(sweeps=1, equilibration=50, pool=256)
    first = spin_glass.make(N, 30, 10, p, np.random.default_rng(5))
    files = sorted(_private_cache.glob("ea2d-*-256.npz"))
    assert len(files) == 1
    stat = files[0].stat()

    real_sample = _parallel_tempering.sample

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampler called although the pool is cached")

    spin_glass._pool.cache_clear()
    monkeypatch.setattr(_parallel_tempering, "sample", no_sampling)
    second = spin_glass.make(N, 30, 10, p, np.random.default_rng(5))
    assert np.array_equal(first.train, second.train) and np.array_equal(first.test, second.test)
    # a smaller pool of the same chain is the prefix of the cached one, no new file
    small = spin_glass.pool(N, 100, p)
    assert np.array_equal(small["samples"], spin_glass.pool(N, 256, p)["samples"][:100])
    assert sorted(_private_cache.glob("ea2d-*.npz")) == files and files[0].stat().st_mtime_ns == stat.st_mtime_ns
    monkeypatch.setattr(_parallel_tempering, "sample", real_sample)
    # ...and equals what a fresh run of 100 samples gives (sample k does not depend on the count)
    monkeypatch.setenv("AMSWEEP_CACHE", str(_private_cache.parent / "fresh"))
    fresh = spin_glass.pool(N, 100, p)
    assert np.array_equal(fresh["samples"], small["samples"])


_RACER = textwrap.dedent(
    """
    import hashlib, sys, time
    from pathlib import Path
    import numpy as np
    from amsweep.pipeline.datasets import _parallel_tempering, spin_glass

    me, other, barrier = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    real_sample = _parallel_tempering.sample

    def sample_then_wait(*args, **kwargs):
        # both workers compute before either writes: a forced race on the same file
        out = real_sample(*args, **kwargs)
        (barrier / me).touch()
        deadline = time.time() + 120
        while not (barrier / other).exists():
            assert time.time() < deadline, "the other worker never reached the barrier"
            time.sleep(0.01)
        return out

    _parallel_tempering.sample = sample_then_wait
    params = {k: v.default for k, v in spin_glass.PARAMS.items()}
    params.update(sweeps=1, equilibration=100, pool=512)
    pool = spin_glass.pool(25, 512, params)
    print(hashlib.sha256(pool["samples"].tobytes() + pool["energies"].tobytes()).hexdigest())
    """
)


def test_concurrent_generation_yields_one_identical_file(_private_cache: Path, tmp_path: Path) -> None:
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = dict(os.environ, AMSWEEP_CACHE=str(_private_cache), PYTHONPATH=str(REPO))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, me, other, str(barrier)],
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for me, other in (("a", "b"), ("b", "a"))
    ]
    outs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, outs):
        assert proc.returncode == 0, err
    digests = {out.strip() for out, _ in outs}
    assert len(digests) == 1
    entries = sorted(p.name for p in _private_cache.iterdir())
    assert len(entries) == 1 and entries[0].startswith("ea2d-") and entries[0].endswith("-512.npz"), entries
    params = _params(sweeps=1, equilibration=100, pool=512)
    stored = spin_glass.pool(25, 512, params)  # read back from the winner's file
    assert hashlib.sha256(stored["samples"].tobytes() + stored["energies"].tobytes()).hexdigest() in digests


def test_an_edit_of_the_sampler_source_changes_the_cache_file_but_not_the_samples(
    _private_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chain's seed came from a hash of this module's source text, so a comment added to
    spin_glass.py changed every spin-glass cell. Now the source hash names the cache file only: a
    changed sampler resamples (no stale pool), an unchanged one draws the same chain."""
    N, p = 16, _params(sweeps=1, equilibration=50, pool=64)
    before = spin_glass.pool(N, 64, p)["samples"]
    spin_glass._pool.cache_clear()
    monkeypatch.setattr(spin_glass, "_CODE_VERSION", "0" * 16)  # as if the source had been edited
    after = spin_glass.pool(N, 64, p)["samples"]
    assert len(list(_private_cache.glob("ea2d-*.npz"))) == 2  # resampled, not read from the old file
    assert np.array_equal(before, after)
