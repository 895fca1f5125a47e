"""Bisection basins: exact single-pattern basins, agreement with a brute-force scan, cell wiring."""

from __future__ import annotations

import numpy as np
import pytest

from amsweep.pipeline import basin_bisection as BB
from amsweep.pipeline import cell
from amsweep.pipeline import metrics as M
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.dynamics import asynchronous, paper_synchronous, synchronous
from amsweep.pipeline.errors import SpecError
from amsweep.pipeline.rules import hebb, plm
from tests.physics import patterns

PLM = {**{k: p.default for k, p in plm.PARAMS.items()}, "epochs": 100}


def relax_with(dyn, model, params):
    rng = np.random.default_rng(11)
    return lambda S: dyn.relax(model, S, params, rng).final


@pytest.mark.parametrize("N", [31, 32])
@pytest.mark.parametrize("dyn", [asynchronous, synchronous, paper_synchronous])
def test_single_pattern_hebb_basin_is_exact(N: int, dyn) -> None:
    """One stored pattern: N h_i = xi_i (xi.s - xi_i s_i). With k flips xi.s = N - 2k; a flipped
    site has field (N - 2k + 1) xi_i, an intact one (N - 2k - 1) xi_i. For k <= ceil(N/2) - 1 both
    are >= 0 and the flipped sites return in one step (a zero field on an intact site: asynchronous
    and synchronous keep it, the paper's rule sets it to 0 and restores it next step). At
    k = N/2 (N even) every intact site turns wrong: no retrieval. So k* = ceil(N/2) - 1 exactly."""
    X = patterns(1, N, seed=N)
    model = hebb.train(X, 2, {}, np.random.default_rng(0))
    k = BB.bisect(X, relax_with(dyn, model, {"max_sweeps": 10}), 3, 0.99, 2, np.random.default_rng(1))
    assert k.tolist() == [int(np.ceil(N / 2)) - 1]


@pytest.mark.parametrize("dyn", [synchronous, paper_synchronous])
@pytest.mark.parametrize("rule", ["hebb", "plm"])
def test_bisection_equals_a_brute_force_scan_of_every_flip_count(dyn, rule: str) -> None:
    """Deterministic dynamics, the same nested starts: bisection must return a boundary of the
    scanned success table (k* retrieved, k* + 1 not), and the end of the run of successes from
    k = 0 wherever the row is monotone."""
    N, P = 48, 10 if rule == "hebb" else 20
    X = patterns(P, N, seed=3)
    model = (
        hebb.train(X, 2, {}, np.random.default_rng(0))
        if rule == "hebb"
        else plm.train(X, 2, PLM, np.random.default_rng(0))
    )
    relax = relax_with(dyn, model, {"max_sweeps": 10})
    k = BB.bisect(X, relax, 3, 0.99, 2, np.random.default_rng(5))
    table = BB.scan(X, relax, 3, 0.99, 2, np.random.default_rng(5))
    K = N // 2
    monotone = 0
    for e in range(P):
        row = table[e]
        assert row[k[e]] or (k[e] == 0 and not row[0])
        assert k[e] == K or not row[k[e] + 1]
        run = int(np.argmin(row)) if not row.all() else K + 1  # successes from k = 0
        if not row[run:].any():
            monotone += 1
            assert k[e] == max(run - 1, 0)
    assert monotone >= P // 2  # the check above is not vacuous
    assert len(set(k.tolist())) > 1  # examples differ: the scan resolves per-example basins


def test_basin_metrics_are_mean_and_quantiles_of_2k_over_N() -> None:
    s = M.evaluate(M.BASINS, 2.0 * np.array([0, 10, 20, 30, 40]) / 100)
    assert s["basin_mean"] == pytest.approx(0.4)
    assert s["basin_q10"] == pytest.approx(0.08) and s["basin_q50"] == pytest.approx(0.4)
    assert s["basin_q90"] == pytest.approx(0.72)
    assert all(np.isnan(v) for v in M.evaluate(M.BASINS, np.zeros(0)).values())  # bisection off


def _spec(**retrieval):
    return spec_mod.from_dict(
        {
            "name": "bb",
            "root_seed": 4,
            "seeds": [0],
            "noise": [0.0, 0.1],
            "P_test": 5,
            "retrieval": {"train_starts": 10, "test_starts": 5, "random_starts": 2, **retrieval},
            "datasets": {"random": {"N": [40], "P": [6]}},
            "rules": {"hebb": {}, "hebb_paper": {"kind": "hebb", "dynamics": "paper_synchronous"}},
        }
    )


def test_basin_keys_are_opt_in_and_validated() -> None:
    off = _spec()
    assert not any(k.startswith("basin") for k in off.canonical["retrieval"])
    on = _spec(basin_examples=4)
    assert on.canonical["retrieval"]["basin_trials"] == 3 and on.canonical["retrieval"]["basin_criterion"] == 0.99
    with pytest.raises(SpecError, match="basin_examples = 0"):
        _spec(basin_trials=5)
    with pytest.raises(SpecError, match="basin_criterion"):
        _spec(basin_examples=2, basin_criterion=1.5)
    with pytest.raises(SpecError, match="basin_trials"):
        _spec(basin_examples=2, basin_trials=0)


def test_cell_basins_are_deterministic_paired_and_leave_other_metrics_alone() -> None:
    off, on = _spec(), _spec(basin_examples=6, basin_trials=2)
    for t_off, t_on in zip(off.tasks(), on.tasks()):
        a = cell.run_cell(off.job(t_off)).values
        b = cell.run_cell(on.job(t_on)).values
        c = cell.run_cell(on.job(t_on)).values
        assert np.isnan(a["basin_mean"]) and 0.0 < b["basin_mean"] <= 1.0
        for name in b:
            if not name.endswith("_seconds"):
                np.testing.assert_array_equal(b[name], c[name])  # reproducible
            if not name.startswith("basin") and not name.endswith("_seconds"):
                np.testing.assert_array_equal(a[name], b[name])  # unchanged by the metric
        assert b["basin_q10"] <= b["basin_q50"] <= b["basin_q90"]
