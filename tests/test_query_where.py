"""The --where grammar (issue 13): labels amsweep made select as printed, and a bad value names
the key and the values the cube has. Only coordinates are read: no cell runs here."""

from __future__ import annotations

import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.sweeps.cli import main
from amsweep.pipeline.errors import AmsweepError, CubeError, NoData, QueryError
from amsweep.storage.cube import Cube
from amsweep.storage.query import load_axis, open_cube, parse_where, select, stored_spec, task_dims, to_frame


@pytest.fixture
def cube_path(tmp_path, small_raw) -> str:
    """A pending cube whose rule labels contain '[', ',' and '=' (template only, nothing run)."""
    small_raw["rules"]["plm"].update(lr=[5.0, 0.5], epochs=[30, 5])
    path = str(tmp_path / "labels.zarr")
    Cube.create_or_open(path, spec_mod.from_dict(small_raw))
    return path


def test_labels_amsweep_made_select_as_printed(cube_path):
    """'rule=plm[lr=0.5,epochs=5]' used to split on the comma inside the brackets."""
    ds = open_cube(cube_path)
    assert "plm[lr=0.5,epochs=5]" in ds["rule"].values.tolist()
    where = parse_where("rule=plm[lr=0.5,epochs=5]|hebb, N=48")
    assert where == {"rule": ["plm[lr=0.5,epochs=5]", "hebb"], "N": ["48"]}
    picked = select(ds, where)
    assert picked["rule"].values.tolist() == ["plm[lr=0.5,epochs=5]", "hebb"]
    assert select(ds, parse_where("lr=0.5,epochs=5"))["rule"].values.tolist() == ["plm[lr=0.5,epochs=5]"]


def test_a_value_of_the_wrong_type_names_the_key_and_the_values(cube_path):
    """'N=abc' used to fail with "invalid literal for int()"."""
    with pytest.raises(QueryError) as info:
        select(open_cube(cube_path), parse_where("N=abc"))
    assert str(info.value) == "--where N=abc: N takes integers; available: 48"
    with pytest.raises(QueryError, match=r"--where alpha=x: alpha takes numbers; available: 0.05, 0.3"):
        select(open_cube(cube_path), parse_where("alpha=x"))


@pytest.mark.parametrize(
    "where, expected",
    [
        ("nois=0.1", "--where nois: no such coordinate; available: "),
        ("N=64", "--where N: no value(s) 64; available: 48"),
        ("rule=plm[lr=9.0,epochs=5]", "--where rule: no value(s) plm[lr=9.0,epochs=5]; available: hebb, "),
        ("lr=3", "--where lr: no value(s) 3; available: 0.5, 5.0"),  # rules in canonical (label) order
        ("P=3", "--where P: no value(s) 3; available: 2, 14"),  # P of an alpha cube selects (test_plain_xarray)
    ],
)
def test_selection_errors_name_the_key_and_what_exists(cube_path, where, expected):
    with pytest.raises(QueryError) as info:
        select(open_cube(cube_path), parse_where(where))
    assert str(info.value).startswith(expected), str(info.value)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("rule", "expected KEY=VALUE"),
        ("rule=", "non-empty key and values"),
        ("=plm", "non-empty key and values"),
        ("rule=plm|", "non-empty key and values"),
        ("rule=plm[lr=0.5", "unbalanced '['"),
        ("rule=plm]", "unbalanced ']'"),
        ("rule=plm,rule=hebb", "key 'rule' given twice; give several values as rule=A|B"),
    ],
)
def test_malformed_where_strings_are_refused(text, expected):
    with pytest.raises(QueryError, match=expected.replace("[", r"\[").replace("|", r"\|")):
        parse_where(text)


def test_empty_where_selects_everything(cube_path):
    assert parse_where("") == parse_where(None) == parse_where(" , ") == {}
    assert select(open_cube(cube_path), {}).sizes == open_cube(cube_path).sizes


def test_unknown_metric_and_missing_cube(cube_path, tmp_path):
    with pytest.raises(QueryError, match="unknown metric 'm_trian'; available: "):
        to_frame(open_cube(cube_path), "m_trian")
    with pytest.raises(CubeError, match="no cube there"):
        open_cube(str(tmp_path / "nowhere.zarr"))


def test_query_errors_stay_key_and_value_errors():
    """Callers written against the plain KeyError and ValueError still see a QueryError; the
    report skips only NoData (absent data), a QueryError of its own."""
    assert issubclass(QueryError, AmsweepError) and issubclass(NoData, QueryError)
    assert issubclass(QueryError, KeyError) and issubclass(QueryError, ValueError)
    assert str(QueryError("no such thing")) == "no such thing"  # not KeyError's quoted form


@pytest.mark.parametrize(
    "args, expected",
    [
        (["--metric", "m_train", "--where", "N=abc"], "--where N=abc: N takes integers; available: 48"),
        (["--metric", "m_trian"], "unknown metric 'm_trian'"),
        (["--metric", "m_train", "--where", "rule=plm[lr=0.5"], "unbalanced '['"),
    ],
)
def test_amsweep_query_prints_one_line(cube_path, capsys, args, expected):
    assert main(["query", cube_path, *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("amsweep query: error: ") and expected in err and err.count("\n") == 1, err


def test_amsweep_query_on_a_missing_cube(tmp_path, capsys):
    assert main(["query", str(tmp_path / "none.zarr"), "--metric", "m_train"]) == 2
    assert "no cube there" in capsys.readouterr().err


def test_the_stored_spec_and_task_axes_are_read_through_query(cube_path, small_raw):
    """Analysis reads a cube's spec and task axes here, not from attributes or its own copy."""
    ds = select(open_cube(cube_path), parse_where("N=48"))  # a selection keeps them
    spec = stored_spec(ds)
    assert [r["label"] for r in spec["rules"]] == ds["rule"].values.tolist()
    assert task_dims(ds) == ["dataset", "N", "alpha", "rule", "seed"] and load_axis(ds) == "alpha"
    with pytest.raises(CubeError, match="no amsweep_spec"):
        stored_spec(ds.drop_attrs())
