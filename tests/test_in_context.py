"""In-context energy model: gradients, normalisation, caching, minima on the mixture's modes, and the
cell's mode metrics (test_mode_distance, test_own_mode) against an independent recomputation."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from amsweep.pipeline import metrics as M
from amsweep.pipeline.datasets import _cache, mixture
from amsweep.pipeline.dynamics import softmax
from amsweep.pipeline.memory_metrics import distance_to_modes
from amsweep.pipeline.model import Data, Model, NotApplicable, Relaxation
from amsweep.pipeline.rules import _icl_fit, _icl_net, in_context, kde

SOFTMAX = {"max_sweeps": 100, "tol": 1e-4}
DEFAULTS = {k: p.default for k, p in in_context.PARAMS.items()}
# A pretraining small enough for CI (a few seconds at N = 32) that still learns to pool clusters.
SMALL = {**DEFAULTS, "layers": 2, "steps": 600, "train_flip_max": 0.3, "train_context_max": 64, "train_K_max": 4}


def _pm1(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    return np.where(rng.random(shape) < 0.5, -1.0, 1.0)


def test_backprop_matches_finite_differences():
    # Every parameter entry of a two-block network, central differences in float64, weights
    # moved off their structured start (zero Wv, W2; Wk = Wq) so no term vanishes by symmetry.
    rng = np.random.default_rng(0)
    theta = _icl_net.init(5, 4, 6, 2, rng)
    for name in theta:
        theta[name] = theta[name] + 0.3 * rng.standard_normal(theta[name].shape)
    C, X = _pm1(rng, (2, 4, 5)), _pm1(rng, (2, 3, 5))
    _, grads = _icl_net.loss_and_grad(theta, C, X)
    assert set(grads) == set(theta) == set(_icl_net.names(2))
    eps = 1e-6
    for name, value in theta.items():
        numeric = np.zeros_like(value)
        for idx in np.ndindex(value.shape):
            old = value[idx]
            value[idx] = old + eps
            up, _ = _icl_net.loss_and_grad(theta, C, X)
            value[idx] = old - eps
            down, _ = _icl_net.loss_and_grad(theta, C, X)
            value[idx] = old
            numeric[idx] = (up - down) / (2 * eps)
        np.testing.assert_allclose(grads[name], numeric, rtol=1e-5, atol=1e-9, err_msg=name)


def test_predicted_density_normalises_and_is_the_energy_on_the_hypercube():
    # Enumerate {+-1}^6: exp(log p) sums to 1, and log p(x) + beta E(x) is the same constant for
    # every x, E(x) = -(1/beta) lse_j(lw_j - beta |x - m_j|^2 / 2) the energy the dynamics descends.
    rng = np.random.default_rng(1)
    N = 6
    theta = _icl_net.init(N, 8, 8, 2, rng)
    theta["Wv0"] += 0.2 * rng.standard_normal(theta["Wv0"].shape)
    theta["uv"] += 0.5 * rng.standard_normal(N + 2)
    mu, v, _, _ = _icl_net.encode(theta, _pm1(rng, (1, 5, N)))
    cube = np.array(list(itertools.product([-1.0, 1.0], repeat=N)))
    logp = _icl_net.log_likelihood(mu, v, cube[None])[0]
    assert np.exp(logp).sum() == pytest.approx(1.0, rel=1e-12)
    m, beta, lw = _icl_net.gaussian_energy(mu[0], v[0])
    assert np.sqrt(np.mean(m * m)) == pytest.approx(1.0)
    z = lw[None] - beta * ((cube[:, None, :] - m[None]) ** 2).sum(axis=2) / 2
    beta_energy = -(z.max(axis=1) + np.log(np.exp(z - z.max(axis=1, keepdims=True)).sum(axis=1)))
    np.testing.assert_allclose(logp + beta_energy, (logp + beta_energy)[0], atol=1e-10)


def test_kde_is_the_same_energy_with_the_context_as_centres():
    # The mixture mu_j = beta c_j, v_j = 0 (kde's density at bandwidth h, beta = 1/(N h^2)) read
    # through the in-context model's energy is kde's memory: same centres, beta, and equal weights.
    rng = np.random.default_rng(2)
    X = _pm1(rng, (40, 30)).astype(np.int8)
    h = 0.4
    k = kde.train(X, 2, {"bandwidth": h, "bandwidth_scaling": "fixed"}, rng)
    m, beta, lw = _icl_net.gaussian_energy(*in_context.kde_mixture(X, 1.0 / (30 * h * h)))
    np.testing.assert_allclose(m, k.memories)
    assert beta == pytest.approx(k.params["beta"]) and np.ptp(lw) < 1e-9
    as_icl = Model(q=2, memories=m.astype(np.float32), params={"beta": beta, "log_weights": lw})
    starts = M.corrupt(X[:20], 0.25, 2, rng)
    (a, _, _), (b, _, _) = softmax.mean_shift(k, starts, SOFTMAX), softmax.mean_shift(as_icl, starts, SOFTMAX)
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_pretraining_is_deterministic_and_cached_by_configuration(tmp_path, monkeypatch):
    monkeypatch.setenv(_cache.ENV_VAR, str(tmp_path))
    tiny = {**DEFAULTS, "steps": 5, "train_context_max": 12}
    first, created = _icl_fit.weights(8, tiny)
    assert created and len(list(tmp_path.glob("icl-*.npz"))) == 1
    _icl_fit._weights.cache_clear()  # a fresh process: read from disk, not trained again
    again, created = _icl_fit.weights(8, tiny)
    assert not created
    refit = _icl_fit.fit(8, tiny)
    for name in _icl_net.names(tiny["layers"]):
        np.testing.assert_array_equal(first[name], again[name])
        np.testing.assert_array_equal(first[name], refit[name])
    other, created = _icl_fit.weights(8, {**tiny, "seed": 1})
    assert created and not np.array_equal(other["We"], first["We"])
    assert len(list(tmp_path.glob("icl-*.npz"))) == 2
    # an edit of the training code retrains (a new cache file) but draws the same seed: the seed
    # used to come from the source text, so a comment in _icl_fit.py changed every in-context cell
    _icl_fit._weights.cache_clear()
    monkeypatch.setattr(_icl_fit, "_CODE_VERSION", "0" * 16)
    edited, created = _icl_fit.weights(8, tiny)
    assert created and len(list(tmp_path.glob("icl-*.npz"))) == 3
    np.testing.assert_array_equal(edited["We"], first["We"])


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory) -> dict:
    """The SMALL configuration at N = 32, trained once for this module in a private cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(_cache.ENV_VAR, str(tmp_path_factory.mktemp("icl-cache")))
        _icl_fit.weights(32, SMALL)
        yield SMALL


def _held_out(seed: int, N: int = 32, K: int = 3, P: int = 48, flip: float = 0.1):
    """A context of fresh prototypes (never seen in pretraining) and held-out points of its mixture."""
    params = {"components": K, "per_component": 10, "flip": flip, "balanced": False}
    return mixture.make(N, P, 60, params, np.random.default_rng([77, seed]))


def test_minima_sit_on_the_mixture_modes_of_held_out_contexts(pretrained):
    # Independent reference: the prototypes that generated the context (the modes of each
    # component, flip 0.1 < 1/2). Descent on the predicted energy from held-out points with 15%
    # more sites flipped (31% from their mode on average) must end on a mode, and on the point's
    # own, as KDE does only with a bandwidth wide enough to average each cluster.
    own_icl, dist_icl, dist_kde = [], [], {0.1: [], 0.4: []}
    for seed in range(4):
        data = _held_out(seed)
        protos, rng = data.meta["prototypes"], np.random.default_rng(seed)
        starts = M.corrupt(data.test, 0.15, 2, rng)
        model = in_context.train(data.train, 2, pretrained, rng)
        final = softmax.relax(model, starts, SOFTMAX, rng).final
        own_icl.append(np.mean((final == protos[data.meta["test_labels"]]).all(axis=1)))
        dist_icl.append(distance_to_modes(final, protos).mean())
        for h in dist_kde:
            k = kde.train(data.train, 2, {"bandwidth": h, "bandwidth_scaling": "fixed"}, rng)
            dist_kde[h].append(distance_to_modes(softmax.relax(k, starts, SOFTMAX, rng).final, protos).mean())
    assert np.mean(own_icl) >= 0.95, own_icl
    assert np.mean(dist_icl) <= 0.005, dist_icl
    # a narrow kernel memorises: its minima are near the noisy examples, 0.06 from a mode (measured)
    assert np.mean(dist_kde[0.1]) >= 0.04 and np.mean(dist_icl) < np.mean(dist_kde[0.1]) / 10
    assert np.mean(dist_icl) <= np.mean(dist_kde[0.4]) + 0.005


def test_predicted_centres_denoise_the_context(pretrained):
    # Each token's centre has the sign of its cluster's prototype more often than the token itself
    # (attention pools it with its cluster mates): the network reads the modes off the context.
    # Measured with this pretraining: 0.88-0.91 of the sites for the tokens, +0.04-0.05 for the centres.
    for seed in range(4):
        data = _held_out(seed)
        mu, _ = in_context.predict(data.train, pretrained)
        truth = data.meta["prototypes"][data.meta["train_labels"]]
        raw = np.mean(data.train == truth)
        assert np.mean(np.sign(mu) == truth) > raw + 0.025


def test_refuses_potts_and_disordered_ranges():
    with pytest.raises(NotApplicable):
        in_context.train(np.zeros((3, 5), np.int8), 21, DEFAULTS, np.random.default_rng(0))
    with pytest.raises(ValueError, match="train_flip_min"):
        in_context.check_ranges({**DEFAULTS, "train_flip_min": 0.4, "train_flip_max": 0.2})


def test_unbalanced_mixture_draws_iid_labels_from_the_same_prototypes():
    # balanced = false: every training label uniform (a context is an i.i.d. sample, as in
    # pretraining); the prototypes are the first draw either way.
    params = {"components": 5, "per_component": 10, "flip": 0.2, "balanced": False}
    data = mixture.make(200, 300, 100, params, np.random.default_rng(3))
    protos, labels = data.meta["prototypes"], data.meta["train_labels"]
    assert data.train.dtype == np.int8 and data.train.shape == (300, 200) and data.test.shape == (100, 200)
    counts = np.bincount(labels, minlength=5)
    assert counts.sum() == 300 and counts.min() >= 40 and np.ptp(counts) > 1  # balanced would give 60 each
    assert np.mean(data.train != protos[labels]) == pytest.approx(0.2, abs=0.01)
    balanced = mixture.make(200, 300, 100, {**params, "balanced": True}, np.random.default_rng(3))
    np.testing.assert_array_equal(balanced.meta["prototypes"], protos)
    assert np.ptp(np.bincount(balanced.meta["train_labels"])) == 0
    assert distance_to_modes(protos, protos).max() == 0.0


def test_mode_metrics_count_sites_to_the_prototypes_and_are_nan_without_a_mixture():
    protos = np.array([[1] * 8, [1, -1] * 4], dtype=np.int8)
    off_by_two = protos[1].copy()
    off_by_two[:2] *= -1
    final = np.stack([protos[0], off_by_two, protos[0]])  # own / 2 of 8 sites from its own / another's
    labels = np.array([0, 1, 1, 0])  # one more test example than starts: the starts are a prefix
    relaxation = Relaxation(final, np.ones(3, bool), np.ones(3, np.int32), magnetisation=0.5 * final)
    meta = {"prototypes": protos, "test_labels": labels}
    data = Data(protos[labels], protos[labels], 2, meta)
    values = M.evaluate(M.TEST, M.Starts(relaxation, data, data.test[:3]))
    assert values["test_mode_distance"] == pytest.approx(0.25 / 3) and values["test_own_mode"] == pytest.approx(1 / 3)
    for other in (
        M.Starts(relaxation, Data(data.train, data.test, 2, {"prototypes": protos}), data.test[:3]),
        M.Starts(relaxation, Data(data.train, data.test, 2, {}), data.test[:3]),
        M.Starts(Relaxation(final[:0], np.ones(0, bool), np.ones(0, np.int32)), data, data.test[:0]),
    ):
        values = M.evaluate(M.TEST, other)
        assert np.isnan(values["test_mode_distance"]) and np.isnan(values["test_own_mode"])


def test_in_context_runs_in_the_grid_and_the_cube_records_the_modes(tmp_path, monkeypatch):
    # Through the runner into a cube: the rule is discovered by name and retrieves by softmax; the
    # cell records the distance of each attractor to the nearest mode and whether it is its own.
    from threadpoolctl import threadpool_limits

    from amsweep.analysis.in_context import mode_distances, own_modes
    from amsweep.pipeline import cell
    from amsweep.pipeline import spec as spec_mod
    from amsweep.pipeline.executors import SerialExecutor
    from amsweep.sweeps.runner import run
    from amsweep.pipeline.seeding import stream
    from amsweep.storage.cube import Cube
    from amsweep.storage.query import open_cube

    monkeypatch.setenv(_cache.ENV_VAR, str(tmp_path / "cache"))
    mix = {"kind": "mixture", "N": [16], "P": [8, 24], "components": 2, "balanced": False, "flip": [0.05, 0.2]}
    sweep = spec_mod.from_dict(
        {
            "name": "icl_tiny",
            "root_seed": 3,
            "seeds": 2,
            "noise": [0.0, 0.2],
            "P_test": 10,
            "retrieval": {"train_starts": 8, "test_starts": 10, "random_starts": 2},
            "datasets": {"mix": mix},
            "rules": {"in_context": {"steps": 40, "layers": 1}, "kde": {"bandwidth": [0.3, 0.6]}},
        }
    )
    assert sweep.rules[0].dynamics == "softmax"
    path = str(tmp_path / "icl.zarr")
    report = run(Cube.create_or_open(path, sweep), SerialExecutor(), progress=False)
    assert report.failed == 0 and report.done == 2 * 2 * 3 * 2
    ds = open_cube(path)
    for table, sign in ((mode_distances(ds), 1.0), (own_modes(ds), -1.0)):  # lower distance, higher fraction
        assert set(table["rule"]) == {"in_context", "kde (best h)", "kde (best fixed h)"}
        assert len(table) == 3 * 2 * 2 * 2 and (table["seeds"] == 2).all()
        best = table[table["rule"] == "kde (best h)"].set_index(["flip", "P", "noise"])["mean"]
        fixed = table[table["rule"] == "kde (best fixed h)"].set_index(["flip", "P", "noise"])["mean"]
        assert (sign * best <= sign * fixed + 1e-12).all()  # the per-cell oracle is never worse
    assert mode_distances(ds)["mean"].between(0.0, 0.5).all() and own_modes(ds)["mean"].between(0.0, 1.0).all()
    # Independent recomputation of every task: the cell's data, model and corrupted test starts
    # (its stream corrupts the training starts first), softmax descent, and Hamming distances
    # counted site by site; one BLAS thread, as in the cell, so near-ties resolve the same way.
    with threadpool_limits(1):
        for task in sweep.tasks():
            data = cell.make_data(task, sweep.root_seed)
            model = cell.train(task, data, sweep.root_seed)
            protos, labels = data.meta["prototypes"], data.meta["test_labels"]
            for level, rho in enumerate(sweep.noise):
                rng = stream(sweep.root_seed, "starts", *cell.data_key(task), rho)
                M.corrupt(data.train[:8], rho, 2, rng)
                starts = M.corrupt(data.test, rho, 2, rng)
                final = softmax.relax(model, starts, task.rule.dynamics_params, rng).final
                hamming = (final[:, None, :] != protos[None]).mean(axis=2).min(axis=1).mean()
                own = (final == protos[labels]).all(axis=1).mean()
                at = (*task.index, level)
                assert ds["test_mode_distance"].values[at] == pytest.approx(hamming, rel=1e-6, abs=1e-7)
                assert ds["test_own_mode"].values[at] == pytest.approx(own, rel=1e-6)
