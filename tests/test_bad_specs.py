"""Malformed specs from the adversarial pass (issue 13): each refused at validation, naming the
key and the value, before anything is written. Validation only: no cell runs here."""

from __future__ import annotations

import math

import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.sweeps.cli import main
from amsweep.pipeline.errors import AmsweepError, SpecError
from amsweep.pipeline.limits import MAX_CELLS

BASE_TOML = """\
name = "tiny"
root_seed = 11
seeds = 2
noise = [0.0, 0.15]
P_test = 6

[retrieval]
train_starts = 8
test_starts = 6
random_starts = 3

[datasets.random]
N = [48]
alpha = [0.05, 0.3]

[rules.hebb]

[rules.plm]
epochs = 30
lr = 5.0
"""


def error_of(raw) -> str:
    with pytest.raises(SpecError) as info:
        spec_mod.from_dict(raw)
    return str(info.value)


def test_the_base_toml_is_valid(tmp_path):
    """The other tests edit this text; it must be valid as written."""
    path = tmp_path / "base.toml"
    path.write_text(BASE_TOML)
    assert spec_mod.load(path).shape == (1, 1, 2, 2, 2)


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_noise_is_refused(small_raw, value):
    message = error_of({**small_raw, "noise": [0.0, value]})
    assert message.startswith("noise:") and repr(value) in message and "finite" in message


@pytest.mark.parametrize("value", [math.inf, math.nan])
def test_non_finite_alpha_is_refused_naming_the_key(small_raw, value):
    """inf used to raise OverflowError in round(alpha N); nan an error naming no key."""
    small_raw["datasets"]["random"]["alpha"] = [0.05, value]
    message = error_of(small_raw)
    assert message.startswith("datasets.random.alpha:") and repr(value) in message


@pytest.mark.parametrize(
    "mutate, where",
    [
        (lambda r: r["rules"]["plm"].update(lr=math.nan), "rules.plm: parameter 'lr' = nan"),
        (lambda r: r["rules"]["plm"].update(lam=[1.0, math.inf]), "rules.plm: parameter 'lam' = inf"),
        (lambda r: r["rules"]["plm"].update(dynamics_params={"max_sweeps": math.nan}), "parameter 'max_sweeps' = nan"),
        (
            lambda r: r["rules"].update(
                hot={"kind": "hebb", "dynamics": "glauber", "dynamics_params": {"temperature": math.nan}}
            ),
            "rules.hot.dynamics_params (glauber): parameter 'temperature' = nan",
        ),
        (lambda r: r["datasets"]["random"].update(bias=math.nan), "datasets.random: parameter 'bias' = nan"),
        (lambda r: r["rules"].update(d={"kind": "dreaming", "t": math.inf}), "rules.d: parameter 't' = inf"),
    ],
)
def test_non_finite_component_parameters_are_refused(small_raw, mutate, where):
    """lr = nan used to run, marking cells done with a meaningless fixed-point fraction of 1.0."""
    mutate(small_raw)
    assert where in error_of(small_raw)


def test_integers_must_fit_in_64_bits(small_raw):
    small_raw["rules"]["plm"]["epochs"] = 10**30
    message = error_of(small_raw)
    assert "rules.plm: parameter 'epochs'" in message and "64 bits" in message


def test_retrieval_takes_one_value_per_key(small_raw):
    """train_starts = [5, 10] used to be stored silently as 5."""
    small_raw["retrieval"]["train_starts"] = [5, 10]
    message = error_of(small_raw)
    assert "retrieval: parameter 'train_starts' = [5, 10] is a list" in message


def test_unknown_dynamics_table_is_refused_with_the_allowed_names(small_raw):
    """[dynamics.warp] used to be ignored, leaving the spec hash unchanged."""
    small_raw["dynamics"] = {"warp": {"max_sweeps": 5}}
    message = error_of(small_raw)
    assert message.startswith("dynamics.warp") and "'warp'" in message
    assert "asynchronous" in message and "glauber" in message


def test_dynamics_defaults_no_rule_uses_are_refused(small_raw):
    small_raw["dynamics"] = {"glauber": {"temperature": 0.5}}
    message = error_of(small_raw)
    assert message.startswith("dynamics.glauber: no rule uses this dynamics")


def test_dynamics_defaults_are_validated(small_raw):
    small_raw["dynamics"] = {"asynchronous": {"max_sweep": 5}}
    assert "dynamics.asynchronous: unknown parameter(s) 'max_sweep'" in error_of(small_raw)
    assert error_of(small_raw).endswith("; did you mean 'max_sweeps'?")  # the declared name closest to it


@pytest.mark.parametrize("family", ["rules", "datasets"])
def test_entry_names_are_bare_keys(small_raw, family):
    """An entry name becomes a label: a '[', ',' or newline in it would break --where and one-line errors."""
    small_raw[family]["a[x=1],b\nc"] = dict(small_raw[family][next(iter(small_raw[family]))])
    message = error_of(small_raw)
    assert message.startswith(f"{family}: entry name 'a[x=1],b\\nc' is not allowed") and "\n" not in message


def test_unknown_keys_list_every_allowed_key(small_raw):
    small_raw["datasets"]["random"]["N_max"] = 5
    assert "datasets.random: unknown parameter(s) 'N_max'; allowed: kind, N, alpha, P_test, bias" in error_of(small_raw)
    del small_raw["datasets"]["random"]["N_max"]
    small_raw["rules"]["hebb"]["dynamic"] = "glauber"
    assert "allowed: kind, dynamics, dynamics_params" in error_of(small_raw)


def test_a_seed_count_that_cannot_fit_is_refused_without_allocating(small_raw):
    """seeds = 100000000000 used to die with a MemoryError building range(seeds)."""
    message = error_of({**small_raw, "seeds": 100_000_000_000})
    assert message.startswith("seeds:") and "100000000000" in message and str(MAX_CELLS) in message


def test_a_grid_with_too_many_tasks_is_refused(small_raw):
    small_raw["seeds"] = MAX_CELLS // 2
    message = error_of(small_raw)
    assert "tasks" in message and "seeds" in message and str(MAX_CELLS) in message


def test_too_many_variants_are_refused_before_they_are_built(small_raw):
    small_raw["rules"]["plm"].update(lr=[0.01 * (i + 1) for i in range(1001)], epochs=list(range(1, 1002)))
    message = error_of(small_raw)
    assert message.startswith("rules.plm:") and "variants" in message and "lr: 1001" in message


@pytest.mark.parametrize(
    "dataset, expected",
    [
        ({"N": [48], "alpha": [1e15]}, "P = 48000000000000000"),
        ({"N": [100_000_000], "alpha": [0.05]}, "N = 100000000"),
        ({"N": [48], "alpha": [1e308]}, "alpha = 1e+308"),
        ({"N": [48], "P": [10**15]}, "P = 1000000000000000"),
    ],
)
def test_sizes_that_cannot_fit_a_cell_are_refused(small_raw, dataset, expected):
    """alpha = [1e15] or N = [100000000] used to create the cube and fail in every cell."""
    small_raw["datasets"] = {"random": dataset}
    message = error_of(small_raw)
    assert message.startswith("datasets.random (random) at N=") and expected in message


def test_large_but_feasible_sizes_pass(small_raw):
    small_raw["datasets"]["random"]["N"] = [20_000]
    small_raw["datasets"]["random"]["alpha"] = [2.0]
    spec_mod.from_dict(small_raw)


@pytest.mark.parametrize(
    "content",
    [
        'name = "caf\u00e9"\n'.encode("latin-1") + BASE_TOML.split("\n", 1)[1].encode(),
        b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe",
    ],
    ids=["latin-1", "binary"],
)
def test_a_spec_file_that_is_not_utf8_is_refused_naming_the_file(tmp_path, content):
    path = tmp_path / "weird.toml"
    path.write_bytes(content)
    with pytest.raises(SpecError) as info:
        spec_mod.load(path)
    assert str(path) in str(info.value) and "UTF-8" in str(info.value)


def test_errors_from_a_spec_file_name_the_file(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text(BASE_TOML.replace("noise = [0.0, 0.15]", "noise = [0.0, nan]"))
    with pytest.raises(SpecError, match=f"^{path}: noise:"):
        spec_mod.load(path)
    with pytest.raises(SpecError, match="is not a file"):
        spec_mod.load(tmp_path)


@pytest.mark.parametrize(
    "old, new",
    [
        ("noise = [0.0, 0.15]", "noise = [nan]"),
        ("alpha = [0.05, 0.3]", "alpha = [inf]"),
        ("alpha = [0.05, 0.3]", "alpha = [1e15]"),
        ("N = [48]", "N = [100000000]"),
        ("seeds = 2", "seeds = 100000000000"),
        ("lr = 5.0", "lr = nan"),
        ("train_starts = 8", "train_starts = [5, 10]"),
        ("[rules.hebb]", "[dynamics.warp]\n[rules.hebb]"),
    ],
)
def test_the_cli_refuses_a_bad_spec_in_one_line_and_writes_nothing(tmp_path, capsys, old, new):
    path = tmp_path / "bad.toml"
    assert old in BASE_TOML
    path.write_text(BASE_TOML.replace(old, new))
    out = tmp_path / "o.zarr"
    assert main(["run", str(path), "--out", str(out), "--executor", "serial", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"amsweep run: error: {path}: ") and err.count("\n") == 1, err
    assert not out.exists()


def test_spec_errors_are_amsweep_errors_and_value_errors():
    assert issubclass(SpecError, AmsweepError) and issubclass(SpecError, ValueError)
