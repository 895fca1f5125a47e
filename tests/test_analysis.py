"""Analysis: basins from the noise axis, the memorization/generalization classes, tables, figures, report.

Synthetic curves check the definitions exactly; tiny cubes run through the real runner check them
end to end on networks whose attractors are known (a one-pattern Hopfield network, reversed
patterns, near-copies of training examples), and the report is checked on a half-finished cube.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from amsweep.analysis import basins, classify, derived, figures, summary, tables
from amsweep.analysis.classify import ELSEWHERE, GENERALIZING, MEMORIZING, NO_RETRIEVAL
from amsweep.analysis.labels import value_label
from amsweep.analysis.phase import phase_figure
from amsweep.analysis.report import FigureFailed, Figures, write_report
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.datasets import random as random_dataset
from amsweep.pipeline.errors import NoData, QueryError
from amsweep.pipeline.executors import SerialExecutor
from amsweep.pipeline.metric_table import METRICS
from amsweep.pipeline.model import Data
from amsweep.sweeps.runner import run
from amsweep.storage import query
from amsweep.storage.cube import Cube
from tests.conftest import StopAfter

NOISE = [0.0, 0.1, 0.2, 0.3, 0.4]


# ---- basin size from a curve -----------------------------------------------------------------


def test_basin_is_twice_the_largest_retrieved_noise_of_a_contiguous_run():
    noise = np.array(NOISE)
    m = np.array(
        [
            [1.0, 1.0, 1.0, 0.5, 0.2],  # retrieved up to rho = 0.2: m_in* = 0.6, basin 0.4
            [1.0, 0.98, 1.0, 1.0, 1.0],  # fails at 0.1: a later success is not a basin -> 0
            [1.0, 1.0, 1.0, 1.0, 1.0],  # retrieved everywhere: censored at 2 x 0.4
            [0.9, 0.9, 0.9, 0.9, 0.9],  # not even a fixed point
            [1.0, np.nan, 1.0, 1.0, 1.0],  # incomplete curve: undefined
        ]
    )
    got = basins.basin_size(noise, m)
    np.testing.assert_allclose(got[:4], [0.4, 0.0, 0.8, 0.0])
    assert np.isnan(got[4])
    # the noise grid may come in any order
    np.testing.assert_allclose(basins.basin_size(noise[::-1], m[:3, ::-1]), [0.4, 0.0, 0.8])


def test_interpolated_basin_sits_at_the_threshold_crossing():
    noise = np.array([0.0, 0.1, 0.2])
    m = np.array([[1.0, 1.0, 0.98], [1.0, 0.995, 0.985], [1.0, 1.0, 1.0]])
    # row 0: m crosses 0.99 halfway between 0.1 (1.0) and 0.2 (0.98): rho* = 0.15, basin 0.3
    # row 1: crosses halfway between 0.1 (0.995) and 0.2 (0.985): rho* = 0.15
    np.testing.assert_allclose(basins.basin_size(noise, m, interpolate=True), [0.3, 0.3, 0.4])
    assert np.all(basins.basin_size(noise, m, interpolate=True) >= basins.basin_size(noise, m))


def test_basin_refuses_inconsistent_input():
    with pytest.raises(ValueError, match="noise levels"):
        basins.basin_size(np.array([0.0, 0.6]), np.ones((1, 2)))
    with pytest.raises(ValueError, match="noise grid has 3"):
        basins.basin_size(np.array([0.0, 0.1, 0.2]), np.ones((1, 2)))


# ---- classes from metric values ---------------------------------------------------------------


def test_classes_follow_the_documented_thresholds():
    m_train = np.array([1.0, 1.0, 1.0, 0.5, 0.995, 1.0, 1.0, 0.3, 0.3, np.nan, 1.0, 0.2])
    m_test = np.array([0.3, 0.95, 0.8, 0.9, 0.55, 0.49, 0.4, 0.2, 0.1, 0.9, np.nan, np.nan])
    best = np.array([1.0, 0.5, 0.3, 0.6, 0.54, 0.1, 0.49, 0.3, 0.9, 0.1, np.nan, np.nan])
    expected = [
        MEMORIZING,  # retrieved, test starts on a training example
        GENERALIZING,  # test starts end on their own example
        GENERALIZING,
        GENERALIZING,  # generalization does not need exact training retrieval
        ELSEWHERE,  # m_test leads by 0.01 < MARGIN: neither wins
        ELSEWHERE,  # m_test 0.49 < SPECIFIC: not above chance
        ELSEWHERE,  # best leads, but 0.49 < SPECIFIC: a mixture, not a training example
        NO_RETRIEVAL,
        NO_RETRIEVAL,  # memorization needs the training examples retrieved
        np.nan,  # no m_train: undetermined
        np.nan,  # retrieved but no test starts: cannot tell memorizing from generalizing
        NO_RETRIEVAL,
    ]
    np.testing.assert_array_equal(classify.classify(m_train, m_test, best), expected)
    assert classify.class_label(np.nan) == "undetermined"
    assert classify.class_label(3.0) == "generalizing"


def test_majority_class_over_seeds_breaks_ties_towards_the_weaker_class():
    frame = pd.DataFrame({"rule": ["a"] * 4 + ["b"] * 3, "class": [3, 3, 2, 2, 1, 1, 3]})
    got = tables.seed_mode(frame, "class", ["rule"]).set_index("rule")
    assert got.loc["a", "class"] == MEMORIZING and got.loc["a", "agree"] == 0.5
    assert got.loc["b", "class"] == ELSEWHERE and got.loc["b", "n"] == 3


def test_capacity_is_a_run_from_the_smallest_load():
    loads = np.array([0.4, 0.1, 0.2, 0.3])
    assert summary.capacity(loads, np.array([True, True, True, False])) == 0.2
    assert np.isnan(summary.capacity(loads, np.array([True, False, True, True])))


# ---- tiny cubes through the real runner --------------------------------------------------------


def run_cube(path, raw) -> str:
    cube = Cube.create_or_open(str(path), spec_mod.from_dict(raw))
    report = run(cube, SerialExecutor(), progress=False)
    assert report.failed == 0
    return str(path)


def hebb_raw(P: list[int], N: int = 61, seeds: int = 2, **datasets) -> dict:
    return {
        "name": "analysis",
        "root_seed": 4,
        "seeds": seeds,
        "noise": NOISE,
        "P_test": 25,
        "retrieval": {"train_starts": 10, "test_starts": 25, "random_starts": 2},
        "datasets": {"random": {"N": [N], "P": P, **datasets}},
        "rules": {"hebb": {}},
    }


@pytest.fixture(scope="module")
def hebb_cube(tmp_path_factory) -> str:
    return run_cube(tmp_path_factory.mktemp("hebb") / "c.zarr", hebb_raw([1, 18]))


def test_tidy_table_matches_the_cube(hebb_cube):
    ds = query.open_cube(hebb_cube)
    frame = tables.tidy(ds, ["m_train", "fixed_point_fraction"])
    assert len(frame) == 2 * 2 * len(NOISE)  # (P, seed) tasks x noise levels
    assert {"alpha", "rule_kind", "dataset_kind"} <= set(frame.columns)
    ref = query.to_frame(ds, "m_train").sort_values(["P", "seed", "noise"])["m_train"].to_numpy()
    np.testing.assert_array_equal(frame.sort_values(["P", "seed", "noise"])["m_train"].to_numpy(), ref)
    # a per-task metric repeats along its task's noise rows
    assert (frame.groupby(["P", "seed"])["fixed_point_fraction"].nunique() == 1).all()


def test_basins_and_classes_of_hebbian_networks(hebb_cube):
    """One pattern (alpha = 1/61): every start with rho < 1/2 returns, so the basin is censored at
    2 x 0.4. P = 18 (alpha = 0.3, twice Hebb's capacity): a site is unstable with probability
    Phi(-1/sqrt(0.3)) = 0.034, so a pattern is exactly stable with probability 0.966^61 = 0.12 and
    the mean over 10 starts reaching 0.99 even at rho = 0 is out of reach: basin 0. The one-pattern
    network sends each random test start to +xi or -xi with probability 1/2, so the mean best
    overlap with the training example is a mean of 25 fair signs (sd 0.2): reaching SPECIFIC = 0.5
    needs >= 19 of 25 on +xi (p = 0.007), so test starts end elsewhere, with m_test ~ 1/sqrt(N)."""
    ds = query.open_cube(hebb_cube)
    b = basins.basin_frame(ds).groupby("P")["basin"]
    assert b.min()[1] == b.max()[1] == pytest.approx(0.8)
    assert b.max()[18] == 0.0
    classes = classify.class_frame(ds)
    one = classes[(classes["P"] == 1) & (classes["noise"] == 0.0)]
    assert (one["class"] == ELSEWHERE).all()
    crowded = classes[(classes["P"] == 18) & (classes["noise"] == 0.0)]
    assert (crowded["class"] == NO_RETRIEVAL).all()


def test_plm_keeps_a_wide_basin_where_hebb_has_none(tmp_path):
    """alpha = 0.2 is above Hebb's capacity 0.138: at N = 100 a site is unstable with probability
    Phi(-1/sqrt(0.2)) = 0.013, a pattern survives with probability 0.987^100 = 0.28, and the rest
    relax far away, so the mean overlap never reaches 0.99 and the basin is 0. PLM makes every
    pattern a fixed point with stabilities near the maximal ones (kappa_max(0.2) ~ 2.0 for the
    perceptron), whose basin at this load is ~0.45 at N = 200 (sweeps/random_basins_laptop);
    0.3 leaves room for N = 100 finite-size effects."""
    raw = {
        "name": "b",
        "root_seed": 9,
        "seeds": 2,
        "noise": NOISE + [0.05, 0.15, 0.25],
        "P_test": 5,
        "retrieval": {"train_starts": 20, "test_starts": 5, "random_starts": 2},
        "datasets": {"random": {"N": [100], "alpha": [0.2]}},
        "rules": {"hebb": {}, "plm": {"lr": 1.0, "epochs": 300}},
    }
    ds = query.open_cube(run_cube(tmp_path / "b.zarr", raw))
    b = basins.basin_frame(ds, interpolate=True).groupby("rule")["basin"]
    assert b.max()["hebb"] == 0.0
    assert b.min()["plm"] >= 0.3


def with_test_set(make_test):
    """A random-pattern dataset whose test examples are built from the training set."""
    original = random_dataset.make

    def make(N, P, P_test, params, rng) -> Data:
        data = original(N, P, P_test, params, rng)
        return Data(data.train, make_test(data.train, P_test), 2, {})

    return make


def test_reversed_patterns_generalize_and_near_copies_are_memorized(tmp_path, monkeypatch):
    """Hebb with P = 2 patterns at N = 61: +-xi^mu are all stable (crosstalk 1/sqrt(61) << 1), and
    -xi^mu is never a training example. Test examples -xi^mu therefore stay where they start
    (m_test = 1 at rho = 0) while their best overlap with a training example is |xi^1.xi^2|/N
    ~ 0.13: generalizing by construction. Test examples that are training examples with 3 of 61
    sites flipped fall back onto them: m_test = 1 - 6/61 = 0.90 < test_best_train = 1: memorizing."""
    monkeypatch.setattr(random_dataset, "make", with_test_set(lambda X, k: -X[np.arange(k) % len(X)]))
    ds = query.open_cube(run_cube(tmp_path / "g.zarr", hebb_raw([2])))
    c = classify.class_frame(ds)
    at0 = c[c["noise"] == 0.0]
    assert (at0["class"] == GENERALIZING).all() and (at0["m_test"] == 1.0).all()

    def near_copies(X, k):
        T = X[np.arange(k) % len(X)].copy()
        T[:, :3] *= -1
        return T

    monkeypatch.setattr(random_dataset, "make", with_test_set(near_copies))
    ds = query.open_cube(run_cube(tmp_path / "m.zarr", hebb_raw([2])))
    c = classify.class_frame(ds)
    at0 = c[c["noise"] == 0.0]
    assert (at0["class"] == MEMORIZING).all()
    np.testing.assert_allclose(at0["m_test"], 1 - 6 / 61, atol=1e-6)


# ---- figures and the report --------------------------------------------------------------------


def test_heatmap_over_a_dataset_parameter_and_refusal_to_average(tmp_path):
    raw = hebb_raw([1, 18], seeds=1, bias=[0.0, 0.4])
    ds = query.open_cube(run_cube(tmp_path / "b.zarr", raw))
    png = figures.heatmap_figure(ds, "m_train", "P", "bias", tmp_path / "fig", at={"noise": 0.1})
    assert png.suffix == ".png" and png.stat().st_size > 0 and png.with_suffix(".svg").exists()
    assert figures.heatmap_figure(ds, "class", "P", "noise", tmp_path / "cls", panel="dataset").exists()
    with pytest.raises(QueryError, match="varies along 'noise'"):
        figures.line_figure(ds, "m_train", tmp_path / "bad", panel="dataset")
    with pytest.raises(QueryError, match="varies along 'dataset'"):
        figures.line_figure(ds, "basin", tmp_path / "bad")


def test_report_of_a_partly_done_cube(tmp_path):
    raw = hebb_raw([1, 6, 18], seeds=2, bias=[0.0, 0.4])  # two dataset variants: 12 tasks
    path = str(tmp_path / "p.zarr")
    empty = write_report(Cube.create_or_open(path, spec_mod.from_dict(raw)).path, tmp_path / "empty")
    assert "No task is done yet" in empty.read_text()
    run(Cube.open(path), StopAfter(8), progress=False, flush_every=1)  # bias 0.0 done, 2 of bias 0.4
    md = write_report(path, tmp_path / "rep")
    text = md.read_text()
    assert "tasks: pending 4, done 8, failed 0, not applicable 0" in text
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert {"overlaps_vs_load_noise0.png", "overlaps_vs_load_noise0p1.png", "basin_vs_load.png"} <= set(images)
    for name in images:
        assert (md.parent / name).stat().st_size > 0 and (md.parent / name).with_suffix(".svg").exists()
    # one phase heatmap per dataset variant, under distinct names (labels contain '.' and '[')
    assert len([i for i in images if i.startswith("phase_m_train_")]) == 2
    assert any(i.startswith("m_train_P_bias") for i in images)  # the swept dataset parameter as an axis
    # random patterns' test examples carry no structure (TEST_MEANINGFUL = False): no m_test, no class
    assert not any("m_test" in i or i.startswith("class") for i in images)
    keys = summary.key_numbers(query.open_cube(path))
    assert keys["tasks"].sum() == 8  # only done tasks count


def two_test_set_sizes() -> dict:
    """Dataset 'a' has no test examples, dataset 'b' has: m_test exists in the cube, but not for 'a'.

    Mixtures: test examples of random patterns mean nothing, and the report leaves them out anyway."""
    raw = hebb_raw([1, 6], N=31, seeds=1)
    raw["datasets"] = {
        "a": {"kind": "mixture", "N": [31], "P": [1, 6], "P_test": 0},
        "b": {"kind": "mixture", "N": [31], "P": [1, 6], "P_test": 5},
    }
    return raw


def test_report_lists_a_figure_whose_data_are_absent_with_the_reason(tmp_path):
    md = write_report(run_cube(tmp_path / "t.zarr", two_test_set_sizes()), tmp_path / "rep")
    text = md.read_text()
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", text)
    assert "phase_m_test_b_N31.png" in images and "phase_m_test_a_N31.png" not in images
    not_made = text.split("## Figures not made", 1)[1]
    assert "- m_test over (P, noise), a, N=31: dataset = 'a' not in this table" in not_made


def test_report_fails_naming_a_figure_that_breaks_on_data_it_has(tmp_path, monkeypatch):
    """Only absent data (NoData) skips a figure; a KeyError or any other error inside a figure is a
    bug, and the report stops with the figure's name and the original error as its cause."""
    path = run_cube(tmp_path / "k.zarr", hebb_raw([1, 6], N=31, seeds=1))

    def broken(*args, **kwargs):
        raise KeyError("m_tarin")

    monkeypatch.setattr(figures, "line_figure", broken)
    with pytest.raises(FigureFailed, match=r"report figure 'overlaps_vs_load_noise0' .* KeyError") as info:
        write_report(path, tmp_path / "rep")
    assert isinstance(info.value.__cause__, KeyError)
    figs = Figures(tmp_path / "f")
    figs.add("absent", "absent", lambda p: (_ for _ in ()).throw(NoData("no done task has a value of 'x'")))
    assert figs.skipped == ["absent: no done task has a value of 'x'"] and not figs.made


def test_labels_and_aggregation_come_from_the_declarations(hebb_cube):
    assert value_label("m_train") == METRICS["m_train"].label
    assert value_label("train_seconds") == "training wall time (s)"
    assert value_label("class") == derived.DERIVED["class"].label
    assert derived.per_noise("m_test") and not derived.per_noise("basin") and derived.per_noise("gen_gap")
    ds = query.open_cube(hebb_cube)
    assert derived.missing(ds, ["gen_gap", "basin"]) == [] and derived.missing(ds, ["coupling_similarity"])
    with pytest.raises(QueryError, match="unknown value 'm_tarin'"):
        derived.value_frame(ds, "m_tarin")


def test_phase_figure_uses_the_standard_aggregation(hebb_cube, tmp_path):
    ds = query.open_cube(hebb_cube)
    out = phase_figure(ds, "m_train", x="P", y="noise", out=tmp_path / "phase.svg", at=0.1)
    assert out == tmp_path / "phase.svg" and out.stat().st_size > 0 and not out.with_suffix(".png").exists()
    with pytest.raises(QueryError, match="varies along 'noise'"):
        phase_figure(ds, "m_train", x="P", y="seed", out=tmp_path / "bad.png")
    with pytest.raises(NoData, match="no done task"):
        phase_figure(ds, "coupling_similarity", x="P", y="noise", out=tmp_path / "none.png")


def test_heatmaps_over_a_dataset_parameter_leave_out_datasets_without_it(tmp_path):
    """alpha_D exists for random features only; a heatmap over it for plain random patterns used
    to fail in pcolormesh (NaN axis) and was silently listed as "not made"."""
    raw = hebb_raw([1, 6], N=32, seeds=1)
    raw["datasets"] = {
        "r": {"kind": "random", "N": [32], "P": [1, 6]},
        "f": {"kind": "random_features", "N": [32], "P": [1, 6], "alpha_D": [0.25, 0.5]},
    }
    md = write_report(run_cube(tmp_path / "d.zarr", raw), tmp_path / "rep")
    images = re.findall(r"!\[[^]]*\]\(([^)]+)\)", md.read_text())
    assert any(i.startswith("m_train_P_alpha_D_dataset_entryf") for i in images)
    assert not any("dataset_entryr" in i for i in images) and "## Figures not made" not in md.read_text()
