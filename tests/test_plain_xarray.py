"""What a plain xarray user sees of a cube (issue 24): one-line plot labels, CF units, coordinate
names that shadow no Dataset attribute, dask arrays without ``chunks={}``, and ``P`` selectable
on an alpha cube. One cube of 48 tasks, written in process (~1 s)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import xarray as xr
from xarray.plot.utils import label_from_attrs

import amsweep
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.cell import run_cell
from amsweep.pipeline.errors import QueryError
from amsweep.pipeline.metric_table import METRICS
from amsweep.storage.cube import Cube
from amsweep.storage.query import open_cube, parse_where, select, to_frame
from tests.conftest import SMALL

LABEL_WIDTH = 30  # xarray.plot wraps "long_name [units]" at 30 characters
SHADOWED = {n for cls in (xr.Dataset, xr.DataArray) for n in dir(cls) if not n.startswith("_")}


def spec() -> spec_mod.Sweep:
    """Two N so that P = 12 is alpha 0.5 at N = 24 and 0.25 at N = 48; PLM's ``clip`` varies."""
    raw = copy.deepcopy(SMALL)
    raw["datasets"]["random"].update(N=[24, 48], alpha=[0.25, 0.5])
    raw["rules"]["plm"]["clip"] = [0.0, 1.0]
    return spec_mod.from_dict(raw)


@pytest.fixture(scope="module")
def cube(tmp_path_factory) -> str:
    sweep = spec()
    path = str(tmp_path_factory.mktemp("plain") / "cube.zarr")
    with Cube.create_or_open(path, sweep) as c:
        c.write([run_cell(sweep.job(t)) for t in sweep.tasks()])
    return path


def test_every_label_is_one_short_line_with_the_sentence_in_description(cube):
    """``long_name`` used to be the whole sentence (five lines beside a colour bar) and every
    dimensionless quantity said "[1]", every string coordinate "[]"."""
    ds = xr.open_dataset(cube, engine="amsweep")
    for name, var in ds.variables.items():
        label = label_from_attrs(var)
        assert "\n" not in label and len(var.attrs["long_name"]) <= LABEL_WIDTH, (name, label)
        assert "[1]" not in label and "[]" not in label and var.attrs.get("units") != "1", (name, label)
        assert var.attrs["description"] and var.attrs["description"] != var.attrs["long_name"], name
        if var.dtype.kind not in "iuf":
            assert "units" not in var.attrs, name
    assert ds["train_seconds"].attrs["units"] == "s" and label_from_attrs(ds["train_seconds"]).endswith("[s]")
    assert ds["m_train"].attrs == {
        "long_name": "overlap from training starts",
        "description": METRICS["m_train"].description,
    }
    assert "coordinates" not in ds["m_train"].attrs  # storage plumbing naming coordinates by stored names


def test_a_parameter_that_shadows_a_dataset_method_is_renamed_and_selects_by_either_name(cube):
    """A rule parameter ``clip`` used to be a coordinate that ``ds.clip`` (the method) hid."""
    ds = open_cube(cube)
    assert "clip" in SHADOWED and "clip" not in ds.coords and "rule_clip" in ds.coords
    assert not any(str(c) in SHADOWED for c in ds.coords)
    assert ds.rule_clip.attrs == {"long_name": "rule clip", "description": "parameter 'clip' of the rule variant"}
    np.testing.assert_array_equal(ds.rule_clip.values, [np.nan, 0.0, 1.0])  # hebb has no clip
    new, old = (select(ds, parse_where(w)) for w in ("rule_clip=1.0", "clip=1.0"))
    assert new["rule"].values.tolist() == old["rule"].values.tolist() == ["plm[clip=1.0]"]
    assert Cube.open(cube).attrs["amsweep_spec_hash"] == ds.attrs["amsweep_spec_hash"]  # nothing stored changed


def test_amsweep_open_is_dask_backed_and_the_engine_reads_nothing_until_asked(cube, monkeypatch):
    """``amsweep.open`` used to hand out arrays whose ``.data`` was numpy, read whole. The engine
    cannot default to dask (storage/backend.py says why) but reads no shard until values are used."""
    from amsweep.storage.variable_store import VariableStore

    reads: list[str] = []
    real = VariableStore.decode
    monkeypatch.setattr(VariableStore, "decode", lambda self, *a, **k: reads.append(self.name) or real(self, *a, **k))
    shard = Cube.open(cube).variable("m_train").geometry.shard
    reference = open_cube(cube)
    ds = amsweep.open(cube)
    assert type(ds["m_train"].data).__module__.startswith("dask")
    assert ds["m_train"].data.chunks[: len(shard)] == tuple((s,) for s in shard)
    assert type(ds["m_train"].mean("seed").data).__module__.startswith("dask")  # a reduction stays lazy
    assert type(ds["m_train"].load().data) is np.ndarray  # and load computes
    for name in ("status", "m_train", "fixed_point_fraction"):
        np.testing.assert_array_equal(ds[name].values, reference[name].values)
    reads.clear()
    engine = xr.open_dataset(cube, engine="amsweep")
    picked = engine["m_test"].sel(noise=0.0, rule="hebb")
    assert reads == []
    np.testing.assert_array_equal(picked.values, reference["m_test"].sel(noise=0.0, rule="hebb").values)
    assert set(reads) == {"m_test"}
    chunked = xr.open_dataset(cube, engine="amsweep", chunks={})
    assert chunked["m_train"].data.chunks == amsweep.open(cube)["m_train"].data.chunks


def test_P_selects_the_cells_it_names_on_an_alpha_cube(cube, monkeypatch):
    """``--where P=12`` was refused ("spans ('N', 'alpha')") though the README lists P as a key.
    P = 12 is (N 24, alpha 0.5) and (N 48, alpha 0.25): the other two cells of that box are masked."""
    from amsweep.storage.variable_store import VariableStore

    ds = open_cube(cube)
    reads: list[str] = []
    real = VariableStore.decode
    monkeypatch.setattr(VariableStore, "decode", lambda self, *a, **k: reads.append(self.name) or real(self, *a, **k))
    picked = select(ds, parse_where("P=12"))
    assert reads == []  # masking the box is lazy: nothing read until a value is used
    assert picked["N"].values.tolist() == [24, 48] and picked["alpha"].values.tolist() == [0.25, 0.5]
    m = picked["m_train"]
    assert np.isnan(m.sel(N=24, alpha=0.25)).all() and np.isnan(m.sel(N=48, alpha=0.5)).all()
    assert np.isfinite(m.sel(N=24, alpha=0.5)).all() and np.isfinite(m.sel(N=48, alpha=0.25)).all()
    frame = to_frame(picked, "m_train")
    assert set(frame["P"]) == {12} and set(zip(frame["N"], frame["alpha"])) == {(24, 0.5), (48, 0.25)}
    everything = to_frame(ds, "m_train")
    assert len(frame) == (everything["P"] == 12).sum() > 0
    assert len(to_frame(select(ds, parse_where("P=6|24")), "m_train")) == everything["P"].isin([6, 24]).sum()
    one_n = select(ds, parse_where("N=48,P=12"))  # one N: a plain slice, nothing masked
    assert one_n["alpha"].values.tolist() == [0.25] and np.isfinite(one_n["m_train"]).all()
    with pytest.raises(QueryError, match=r"--where P: no value\(s\) 13; available: 6, 12, 24"):
        select(ds, parse_where("P=13"))


def test_amsweep_open_names_its_dask_arrays_without_pickling_the_cube(cube, monkeypatch):
    """dask names an unnamed array by pickling it, cube and zarr metadata included: that was ~90 %
    of ``amsweep.open(CUBE)[m].values`` (2.3 of 2.8 s, issue 26). Each open names its arrays afresh,
    so two opens of a cube that changed in between are never merged by dask."""
    import dask

    from amsweep.storage.backend import ShardedArray

    def refuse(self, protocol):
        raise AssertionError("amsweep.open pickled a ShardedArray to name a dask array")

    monkeypatch.setattr(ShardedArray, "__reduce_ex__", refuse)
    with dask.config.set({"tokenize.ensure-deterministic": True}):
        first, second = amsweep.open(cube), amsweep.open(cube)
        assert first["m_train"].data.name != second["m_train"].data.name
        np.testing.assert_array_equal(first["m_train"].values, open_cube(cube)["m_train"].values)
