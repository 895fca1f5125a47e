"""Adaptive TAP outside its solution set (issue 22, point 2): flagged per start, kept out of every comparison.

Where the largest eigenvalue of the pattern-field response K = (beta / N) X diag(d) X^T stays above
the cap ``_MAX_RESPONSE`` the adaptive TAP equations have no solution near the start: the iteration
stops on a capped iterate that is no thermal state. The instance of the issue (depth 1, alpha 0.1,
T 0.6; here N = 300, seed 0 of tests/test_correlated_tap.py) has Monte Carlo in one state from both
starts, so it is the equations that fail, not state selection. Such a start has a NaN magnetisation,
is counted by ``no_solution_train``, leaves the thermal overlaps, and the analyses skip it.
"""

from __future__ import annotations

import numpy as np

from amsweep.pipeline import metrics as M
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.dynamics import _mp_mc, tap_correlated
from amsweep.pipeline.dynamics._mp_adaptive import effective_variances
from amsweep.pipeline.model import Data, Model
from tests.test_correlated_tap import _instance

T = 0.6
PARAMS = {"beta": 1.0 / T, "damping": 0.5, "max_sweeps": 1000, "tol": 1e-9}


def _largest_response(X: np.ndarray, res: tap_correlated.AdaptiveResult) -> np.ndarray:
    """Per start, the uncapped largest eigenvalue of K at the final state, from its reaction terms.

    R = 2 g / (1 + sqrt(1 + 4 g v)) inverts to g = R + R^2 v; d follows from (v, g)."""
    v = 1.0 - res.m**2
    g = res.reaction + res.reaction**2 * v
    d = effective_variances(v, g)
    Xf, N = X.astype(np.float64), X.shape[1]
    return np.array([np.linalg.eigvalsh((PARAMS["beta"] / N) * (Xf * row) @ Xf.T)[-1] for row in d])


def test_starts_without_a_solution_are_flagged_where_monte_carlo_sits_in_one_state():
    X, cues, rng = _instance(1, 0.1, 0)
    model = Model(q=2, memories=X.astype(np.float32))
    res = tap_correlated.run(model, cues, PARAMS, None)
    assert res.no_solution.all() and not res.converged.any()
    assert (_largest_response(X, res) > tap_correlated._MAX_RESPONSE).all()  # measured 0.976 for both
    chains = np.array([[_mp_mc.time_averaged_spins(X, c, 1.0 / T, 500, 3000, rng) for _ in range(4)] for c in cues])
    q = np.einsum("cn,ckn->ck", X[:2].astype(np.float64), chains) / X.shape[1]  # each chain's overlap with its start
    assert (q.max(axis=1) - q.min(axis=1) < 0.02).all() and (q > 0.5).all(), q  # one retrieval state per start
    relaxed = tap_correlated.relax(model, cues, PARAMS, None)
    assert np.isnan(relaxed.magnetisation).all() and relaxed.final.shape == cues.shape
    # a solved instance (seed 1): no flag, every response below the cap, finite magnetisations
    X1, cues1, _ = _instance(1, 0.1, 1)
    res1 = tap_correlated.run(Model(q=2, memories=X1.astype(np.float32)), cues1, PARAMS, None)
    assert not res1.no_solution.any() and res1.converged.all()
    assert (_largest_response(X1, res1) < tap_correlated._MAX_RESPONSE).all()


def test_thermal_overlaps_average_only_solved_starts_and_count_the_others():
    from amsweep.pipeline.datasets import correlated

    X = correlated.make(200, 20, 0, {"depth": 1, "feature_ratio": 0.5, "L": 3}, np.random.default_rng(2)).train
    model = Model(q=2, memories=X.astype(np.float32))
    starts = X[:4]
    res = tap_correlated.run(model, starts, PARAMS, None)
    unsolved = res.no_solution
    assert 0 < unsolved.sum() < len(unsolved)  # measured: 3 of 4 without a solution
    data = Data(train=X, test=X[:0], q=2, meta={})
    values = M.evaluate(M.TRAIN, M.Starts(tap_correlated.relax(model, starts, PARAMS, None), data, starts))
    assert values["no_solution_train"] == unsolved.mean()
    own = [float(np.dot(res.m[b], X[b])) / X.shape[1] for b in range(4) if not unsolved[b]]
    assert abs(values["m_train"] - np.mean(own)) < 1e-6
    assert values["converged_train"] == 1.0 - unsolved.mean()  # the solved start converged


def test_the_analyses_leave_out_starts_and_cells_without_a_solution(tmp_path):
    from amsweep.analysis import correlated_tap as CT
    from amsweep.analysis import correlated_tap_sites as CS
    from amsweep.pipeline.executors import SerialExecutor
    from amsweep.sweeps.runner import run
    from amsweep.storage.cube import Cube
    from amsweep.storage.query import magnetisations_by_task, open_cube

    mc = {"max_sweeps": 200, "average_sweeps": 150, "temperature": [T, 1.0]}
    raw = {
        "name": "corr_no_solution",
        "root_seed": 3,  # a root seed whose cells include starts without a solution (0.75 of one cell's)
        "seeds": 1,
        "noise": [0.0],
        "P_test": 0,
        "retrieval": {"train_starts": 4, "test_starts": 0, "random_starts": 0, "store_magnetisations": True},
        "datasets": {"corr": {"kind": "correlated", "N": [200], "alpha": [0.1], "depth": [0, 1]}},
        "rules": {
            "tap": {"kind": "hebb", "dynamics": "tap", "dynamics_params": {"beta": [1.0 / T, 1.0]}},
            "tap_correlated": {
                "kind": "hebb",
                "dynamics": "tap_correlated",
                "dynamics_params": {"beta": [1.0 / T, 1.0]},
            },
            "glauber": {"kind": "hebb", "dynamics": "glauber", "dynamics_params": mc},
            "glauber_rep": {"kind": "hebb", "dynamics": "glauber", "dynamics_params": mc},
        },
    }
    path = str(tmp_path / "corr.zarr")
    run(Cube.create_or_open(path, spec_mod.from_dict(raw)), SerialExecutor(), progress=False)
    ds = open_cube(path)
    # the stored flag counts exactly the NaN rows of the stored thermal states
    nan_rows = 0
    for task, m in magnetisations_by_task(path):
        if task.rule.entry == "tap_correlated":
            nan_rows += int(np.isnan(m[0]).any(axis=1).sum())
    assert nan_rows > 0, "precondition: some start of this sweep has no solution"
    total = float(np.nansum(ds["no_solution_train"].values)) * 4
    assert round(total) == nan_rows
    frame = CS.site_frame(path)
    assert int((~frame["solved"]).sum()) == nan_rows
    assert not (frame["compared"] & ~frame["solved"]).any()  # same_state alone would have kept some
    assert CS.site_table(frame)["no_solution"].sum() == nan_rows
    comp = CT.comparison_frame(ds)
    out = comp[comp["solved"] == False]  # noqa: E712
    assert len(out) > 0 and set(out["method"]) == set(CT.METHODS.values())  # every method of such a cell
    table = CT.agreement_table(ds)
    cells = comp.groupby(["depth", "T"]).size() // len(CT.METHODS)
    for _, row in table.iterrows():
        assert row["cells"] + row["no_solution"] == cells[(row["depth"], row["T"])]
    assert table["no_solution"].sum() > 0
    assert CS.site_figure(frame, tmp_path / "sites").exists() and CT.comparison_figure(ds, tmp_path / "cmp").exists()
