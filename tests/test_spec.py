"""Spec validation: every mistake is caught before work starts, with a message that says where."""

from __future__ import annotations

import copy

import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.sweeps.cli import BUNDLED
from amsweep.pipeline.params import SpecError


def error_of(raw) -> str:
    with pytest.raises(SpecError) as info:
        spec_mod.from_dict(raw)
    return str(info.value)


def test_valid_spec_expands_to_the_full_grid(small_sweep):
    assert small_sweep.shape == (1, 1, 2, 2, 2)
    tasks = list(small_sweep.tasks())
    assert len(tasks) == 8
    assert {t.P for t in tasks} == {2, 14}  # round(0.05 * 48), round(0.3 * 48)
    assert len({t.index for t in tasks}) == 8


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda r: r.update(nosie=[0.1]), "unknown top-level key(s) 'nosie'"),
        (lambda r: r.pop("rules"), "missing top-level key 'rules'"),
        (lambda r: r.update(noise=[0.1, 0.7]), "noise"),
        (lambda r: r.update(noise=[0.1, 0.1]), "duplicate values"),
        (lambda r: r.update(seeds=[0, "a"]), "seeds: value 'a'"),
        (lambda r: r["rules"]["plm"].update(lr=-1.0), "rules.plm: parameter 'lr' = -1.0 is out of range"),
        (lambda r: r["rules"]["plm"].update(epochs=2.5), "rules.plm: parameter 'epochs' = 2.5 has type float"),
        (lambda r: r["rules"]["plm"].update(learning_rate=1.0), "rules.plm: unknown parameter(s) 'learning_rate'"),
        (lambda r: r["rules"]["plm"].update(init="ones"), "parameter 'init' = 'ones'; allowed: one of"),
        (lambda r: r["rules"].update(oja={}), "rules.oja.kind: unknown rule kind 'oja'"),
        (lambda r: r["rules"]["hebb"].update(dynamics="magic"), "rules.hebb.dynamics: unknown dynamics kind 'magic'"),
        (lambda r: r["datasets"]["random"].update(N=[1]), "value 1 is not an integer >= 2"),
        (lambda r: r["datasets"]["random"].pop("alpha"), "datasets.random: missing 'alpha'"),
        (lambda r: r["datasets"].update(other={"kind": "random", "N": [10], "P": [3]}), "one sweep has one load axis"),
        (lambda r: r["datasets"]["random"].update(bias=2.0), "'bias' = 2.0 is out of range"),
        (lambda r: r["retrieval"].update(train_starts=0), "retrieval: parameter 'train_starts' = 0 is out of range"),
    ],
)
def test_invalid_specs_are_refused_with_a_precise_message(small_raw, mutate, expected):
    mutate(small_raw)
    assert expected in error_of(small_raw)


def test_spec_file_errors(tmp_path):
    with pytest.raises(SpecError, match="does not exist"):
        spec_mod.load(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("noise = [0.1,\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        spec_mod.load(bad)


def test_lists_of_parameters_become_named_variants(small_raw):
    small_raw["rules"]["plm"]["lr"] = [1.0, 5.0]
    sweep = spec_mod.from_dict(small_raw)
    assert [r.label for r in sweep.rules] == ["hebb", "plm[lr=1.0]", "plm[lr=5.0]"]
    assert [r.params.get("lr") for r in sweep.rules] == [None, 1.0, 5.0]


def test_hash_depends_on_science_not_on_names(small_raw):
    base = spec_mod.from_dict(small_raw).spec_hash
    renamed = copy.deepcopy(small_raw)
    renamed.update(name="other", description="same physics")
    assert spec_mod.from_dict(renamed).spec_hash == base
    explicit = copy.deepcopy(small_raw)
    explicit["rules"]["plm"]["lam"] = 1.0  # the default, written out: same canonical spec
    assert spec_mod.from_dict(explicit).spec_hash == base
    changed = copy.deepcopy(small_raw)
    changed["noise"] = [0.0, 0.2]
    assert spec_mod.from_dict(changed).spec_hash != base


def test_canonical_form_round_trips(small_sweep):
    again = spec_mod.from_canonical(small_sweep.canonical)
    assert again.spec_hash == small_sweep.spec_hash
    assert [t.index for t in again.tasks()] == [t.index for t in small_sweep.tasks()]


def test_hand_offs_are_typed_and_immutable(small_raw):
    """The [retrieval] table is a frozen RetrievalOptions read from the canonical table (which alone
    is hashed), every declared key a field; jobs, sweeps, tasks and variants are frozen and built by
    keyword only, so a reordered field cannot silently swap two values."""
    import dataclasses

    assert {f.name for f in dataclasses.fields(spec_mod.RetrievalOptions)} == set(spec_mod.RETRIEVAL)
    raw = copy.deepcopy(small_raw)
    raw["retrieval"] = {"basin_examples": 2, "train_starts": 5}
    sweep = spec_mod.from_dict(raw)
    options = sweep.retrieval
    assert (options.basin_examples, options.train_starts, options.basin_criterion) == (2, 5, 0.99)
    assert options.basin_method == "bisect" and "basin_method" not in sweep.canonical["retrieval"]
    assert spec_mod.from_canonical(sweep.canonical).retrieval == options
    task = next(sweep.tasks())
    job = sweep.job(task)
    assert (job.task, job.noise, job.retrieval, job.root_seed) == (task, sweep.noise, options, sweep.root_seed)
    for frozen, field in ((options, "train_starts"), (job, "root_seed"), (task, "seed"), (task.rule, "label")):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(frozen, field, 1)
    for cls, made in ((spec_mod.Sweep, sweep), (spec_mod.Task, task), (type(task.dataset), task.dataset)):
        values = [getattr(made, f.name) for f in dataclasses.fields(cls)]
        with pytest.raises(TypeError, match="positional"):
            cls(*values)
    with pytest.raises(SpecError, match="unknown key"):
        spec_mod.RetrievalOptions.from_table({**sweep.canonical["retrieval"], "trian_starts": 3})
    assert sweep.coords_of(task.index) == {"dataset": "random", "N": 48, "alpha": 0.05, "rule": "hebb", "seed": 0}
    assert sweep.index_at(sweep.coords_of(task.index)) == task.index


def test_every_bundled_sweep_is_valid():
    paths = sorted(BUNDLED.glob("*.toml"))
    assert {"quickstart", "smoke"} <= {p.stem for p in paths}
    for path in paths:
        sweep = spec_mod.load(path)
        assert sum(1 for _ in sweep.tasks()) > 0, path


@pytest.mark.parametrize(
    "dataset, expected",
    [
        ({"kind": "mnist", "N": [400], "P": [10]}, "N=400"),
        ({"kind": "mnist", "N": [196], "P": [5000], "P_test": 10}, "P=5000"),
        ({"kind": "mnist", "N": [196], "P": [10], "path": "/nonexistent/mnist"}, "/nonexistent/mnist"),
        ({"kind": "proteins", "N": [60], "P": [10]}, "N=60"),
        ({"kind": "proteins", "P": [100000]}, "P=100000"),
        ({"kind": "spin_glass", "N": [50], "P": [10]}, "N=50"),
    ],
)
def test_data_the_dataset_cannot_provide_is_refused_at_validation(small_raw, dataset, expected):
    small_raw["datasets"] = {"data": dataset}
    message = error_of(small_raw)
    assert message.startswith("datasets.data") and expected in message, message
