"""Property-based tests of bad input (issue 13): generated specs, --where strings and CLI flags.

Every generated spec either validates (into a canonical form with only finite numbers) or raises
SpecError naming a key it changed, never another exception; a spec the CLI refuses never creates
--out. Bounded examples and derandomized (a fixed seed), so CI sees the same cases every run;
no cell runs: specs are only validated and the runner is replaced where the CLI is called.
"""

from __future__ import annotations

import copy
import io
import json
import math
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from amsweep.pipeline import spec as spec_mod
from amsweep.sweeps.cli import main
from amsweep.pipeline.errors import QueryError, SpecError
from amsweep.pipeline.executors import EXECUTORS
from amsweep.sweeps.runner import RunReport
from amsweep.storage.cube import Cube
from amsweep.storage.query import open_cube, parse_where, select
from tests.conftest import SMALL

pytestmark = pytest.mark.fuzz


def fuzz(max_examples: int) -> settings:
    """Fixed seed, bounded examples, no example database: the same cases on every CI run."""
    return settings(
        derandomize=True,
        deadline=None,
        database=None,
        max_examples=max_examples,
        suppress_health_check=[HealthCheck.too_slow],
    )


# ---- specs ----------------------------------------------------------------------------------
PATHS: list[tuple[str, ...]] = [
    ("name",),
    ("description",),
    ("root_seed",),
    ("seeds",),
    ("noise",),
    ("P_test",),
    ("nosie",),
    ("retrieval",),
    ("retrieval", "train_starts"),
    ("retrieval", "test_starts"),
    ("retrieval", "random_starts"),
    ("retrieval", "store_couplings"),
    ("retrieval", "trian_starts"),
    ("datasets",),
    ("datasets", "random"),
    ("datasets", "random", "N"),
    ("datasets", "random", "alpha"),
    ("datasets", "random", "P"),
    ("datasets", "random", "P_test"),
    ("datasets", "random", "kind"),
    ("datasets", "random", "bias"),
    ("datasets", "random", "N_max"),
    ("datasets", "extra"),
    ("rules",),
    ("rules", "plm"),
    ("rules", "plm", "lr"),
    ("rules", "plm", "epochs"),
    ("rules", "plm", "init"),
    ("rules", "plm", "momentum"),
    ("rules", "plm", "kind"),
    ("rules", "plm", "dynamics"),
    ("rules", "plm", "dynamics_params"),
    ("rules", "plm", "dynamics_params", "max_sweeps"),
    ("rules", "hebb", "dynamics"),
    ("rules", "extra"),
    ("dynamics",),
    ("dynamics", "asynchronous"),
    ("dynamics", "asynchronous", "max_sweeps"),
    ("dynamics", "glauber"),
    ("dynamics", "warp"),
]
SPECIAL = [
    0,
    1,
    2,
    -1,
    3,
    48,
    10**8,
    10**12,
    2**63,
    -(2**63) - 1,
    10**30,
    0.0,
    0.05,
    0.5,
    1.0,
    1e15,
    1e308,
    -0.0,
    math.nan,
    math.inf,
    -math.inf,
    "",
    "plm",
    "hebb",
    "random",
    "glauber",
    "asynchronous",
    "warp",
    True,
    False,
]
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=8)
scalar = st.one_of(st.sampled_from(SPECIAL), st.integers(-(2**70), 2**70), st.floats(), text)
value = st.recursive(
    scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["N", "alpha", "lr", "kind", "x"]) | text, inner, max_size=3),
    ),
    max_leaves=6,
)
DELETE = object()
mutation = st.tuples(st.sampled_from(PATHS), st.one_of(value, st.just(DELETE)))


def mutated(mutations: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    raw = copy.deepcopy(SMALL)
    for path, new in mutations:
        table = raw
        for key in path[:-1]:
            if not isinstance(table.get(key), dict):
                table[key] = {}
            table = table[key]
        if new is DELETE:
            table.pop(path[-1], None)
        else:
            table[path[-1]] = copy.deepcopy(new)
    return raw


def check_spec_outcome(raw: dict[str, Any], mutations) -> None:
    try:
        sweep = spec_mod.from_dict(raw)
    except SpecError as e:
        message = str(e)
        assert "\n" not in message, message
        assert any(key in message for path, _ in mutations for key in path), (message, mutations)
    else:  # a validated spec holds only finite numbers: its canonical JSON needs no NaN or inf
        json.dumps(sweep.canonical, allow_nan=False)


@fuzz(300)
@given(st.lists(mutation, min_size=1, max_size=3))
def test_generated_specs_validate_or_name_a_key(mutations):
    check_spec_outcome(mutated(mutations), mutations)


# ---- the same through a TOML file and the CLI --------------------------------------------
def toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False).replace("\x7f", "\\u007f")
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{toml_value(str(k))} = {toml_value(x)}" for k, x in v.items()) + "}"


def to_toml(raw: dict[str, Any]) -> str:
    """Every top-level key on its own line, tables inline: enough TOML for any generated spec."""
    return "".join(f"{toml_value(k)} = {toml_value(v)}\n" for k, v in raw.items())


@fuzz(40)
@given(st.lists(mutation, min_size=1, max_size=2))
def test_a_spec_the_cli_refuses_never_creates_out(mutations):
    raw = mutated(mutations)
    with tempfile.TemporaryDirectory() as tmp:
        path, out = Path(tmp, "fuzz.toml"), Path(tmp, "out.zarr")
        path.write_text(to_toml(raw), encoding="utf-8")
        try:
            spec_mod.load(path)
        except SpecError:
            with mock.patch("amsweep.sweeps.runner.run", side_effect=AssertionError("a cell would run")):
                assert main(["run", str(path), "--out", str(out), "--executor", "serial", "--quiet"]) == 2
            assert not out.exists()


def test_the_toml_writer_round_trips():
    assert spec_mod.tomllib.loads(to_toml(SMALL)) == SMALL


# ---- --where --------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def labelled_ds(labelled_cube):
    return open_cube(labelled_cube)


@pytest.fixture(scope="module")
def labelled_cube(tmp_path_factory) -> str:
    raw = copy.deepcopy(SMALL)
    raw["rules"]["plm"].update(lr=[5.0, 0.5], epochs=[30, 5])
    path = str(tmp_path_factory.mktemp("where") / "c.zarr")
    Cube.create_or_open(path, spec_mod.from_dict(raw))  # template only: nothing runs
    return path


KEYS = ["rule", "N", "alpha", "seed", "noise", "lr", "epochs", "dataset", "rule_kind", "P", "nope", ""]
VALUES = [
    "plm[lr=0.5,epochs=5]",
    "plm[lr=5.0,epochs=30]",
    "hebb",
    "48",
    "0.05",
    "0.3",
    "0",
    "1",
    "0.15",
    "5.0",
    "0.5",
    "30",
    "random",
    "plm",
    "abc",
    "",
    "1e400",
    "nan",
    "[",
    "]",
    "-1",
]
where_item = st.tuples(st.sampled_from(KEYS), st.lists(st.sampled_from(VALUES), min_size=1, max_size=3))
structured = st.lists(where_item, max_size=3).map(lambda items: ",".join(f"{k}={'|'.join(vs)}" for k, vs in items))
noise_text = st.text(alphabet="rulenNalph=|,[]0123456789.e ", max_size=25)


@fuzz(150)
@given(st.one_of(structured, noise_text))
def test_where_strings_select_or_name_the_key(labelled_ds, text):
    ds = labelled_ds
    try:
        where = parse_where(text)
        picked = select(ds, where)
    except QueryError as e:
        assert str(e).startswith("--where") and "\n" not in str(e), str(e)
    else:
        for key, values in where.items():  # what came back is what was asked for
            got = picked[key].values.tolist()
            assert got and set(got) <= {type(got[0])(v) for v in values}, (text, key, got)


@fuzz(25)
@given(st.one_of(structured, noise_text))
def test_amsweep_query_answers_or_prints_one_line(labelled_cube, text):
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()):
        rc = main(["query", labelled_cube, "--metric", "m_train", f"--where={text}"])
    assert rc in (0, 2)
    if rc == 2:
        assert err.getvalue().startswith("amsweep query: error: ") and err.getvalue().count("\n") == 1


# ---- run flags ------------------------------------------------------------------------------
flag_value = st.one_of(
    st.sampled_from(["1", "2", "0", "-1", "abc", "", "1.5", "auto", "nan"]), st.integers(-5, 5).map(str)
)
flag = st.one_of(
    st.tuples(st.just("--workers"), flag_value),
    st.tuples(st.just("--max-rows"), flag_value),
    st.tuples(st.just("--executor"), st.sampled_from(["serial", "ray", "dask", ""])),
    st.just(("--no-retry-failed",)),
    st.just(("--quiet",)),
    st.just(("--bogus",)),
)


class NoRay:
    """Stands in for RayExecutor: the flags are under test, not Ray."""

    name, workers = "fake", 1
    OPTIONS = ("address", "workers", "cells_per_task")

    def __init__(self, address=None, workers=None, **options) -> None:
        pass  # (--cells-per-task and any later executor option)

    def capacity(self) -> tuple[float, float, str]:
        return float("inf"), float("inf"), "no node"  # `run` sizes the sweep before the cube is made

    def shutdown(self) -> None:
        pass


@fuzz(30)
@given(st.lists(flag, max_size=4))
def test_run_flags_are_accepted_or_refused_before_out_exists(flags):
    argv = [token for f in flags for token in f]
    with tempfile.TemporaryDirectory() as tmp:
        spec, out = Path(tmp, "s.toml"), Path(tmp, "o.zarr")
        spec.write_text(to_toml(SMALL))
        err = io.StringIO()
        with (
            mock.patch("amsweep.sweeps.runner.run", return_value=RunReport()),
            mock.patch.dict(EXECUTORS, {"ray": NoRay}),
            redirect_stderr(err),
            redirect_stdout(io.StringIO()),
        ):
            rc = main(["run", str(spec), "--out", str(out), *argv])
        executor = [f[1] for f in flags if f[0] == "--executor"][-1:] or ["ray"]
        bad = (
            any(f[0] in ("--bogus", "--max-rows") for f in flags)
            or any(f[0] == "--workers" and not (f[1].isdigit() and int(f[1]) >= 1) for f in flags)
            or any(f[0] == "--executor" and f[1] not in EXECUTORS for f in flags)
            or (executor == ["serial"] and any(f[0] == "--workers" for f in flags))  # not a serial option
        )
        assert rc == (2 if bad else 0), (argv, err.getvalue())
        assert out.exists() == (not bad)
        if bad:
            assert err.getvalue().startswith("amsweep run: error: ") and err.getvalue().count("\n") == 1
