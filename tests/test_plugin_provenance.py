"""Plug-in code hashes in the cube (issue 23): recorded when the cube is created, a resume with
edited plug-in code refused in one line (the cube untouched) unless ``--allow-changed-plugins``,
and an edit to a plug-in the sweep does not use ignored. Serial executor, one tiny cell each."""

from __future__ import annotations

import os
import shutil
import textwrap
from pathlib import Path

import pytest

from amsweep.pipeline import registry
from amsweep.storage.cube import Cube
from amsweep.sweeps.cli import main

MODULE = "amsweep_plugins.rules.toy"
HELPERS = """
import numpy as np


def hebb_couplings(X, scale):
    Xf = np.asarray(X, dtype=np.float32)
    J = (Xf.T @ Xf) * np.float32(scale / Xf.shape[1])
    np.fill_diagonal(J, 0.0)
    return J
"""
# A rule whose author has not yet written the large-scale case: that cell fails, to be resumed.
TOY = """
from amsweep.pipeline.model import Model, Param

from ._helpers import hebb_couplings

PARAMS = {"scale": Param(1.0, float, "factor on the Hebb couplings", low=0.0, open_low=True)}


def train(X, q, params, rng):
    if params["scale"] > LIMIT:
        raise ValueError("scale not supported yet")
    return Model(q=2, J=hebb_couplings(X, params["scale"]))


LIMIT = 3.0
"""
SPEC = (
    'name = "toy"\nseeds = 1\nnoise = [0.0]\nP_test = 4\n'
    "[retrieval]\ntrain_starts = 3\ntest_starts = 2\nrandom_starts = 2\n"
    "[datasets.random]\nN = [32]\nP = [3]\n[rules.toy]\nscale = [2.0, 4.0]\n"
)


def write(folder: Path, family: str, name: str, text: str) -> None:
    (folder / family).mkdir(parents=True, exist_ok=True)
    (folder / family / f"{name}.py").write_text(textwrap.dedent(text))


@pytest.fixture
def half_done(tmp_path, monkeypatch):
    """A cube of the toy plug-in rule with one cell done and one failed (so a rerun resumes it)."""
    folder = tmp_path / "plugins"
    write(folder, "rules", "_helpers", HELPERS)
    write(folder, "rules", "toy", TOY)
    write(folder, "rules", "other", TOY)  # a plug-in this sweep does not use
    monkeypatch.setenv(registry.ENV_VAR, str(folder))
    monkeypatch.setenv("AMSWEEP_CACHE", str(tmp_path / "cache"))
    spec, out = tmp_path / "toy.toml", tmp_path / "toy.zarr"
    spec.write_text(SPEC)
    registry.clear()
    assert run(spec, out) == 1  # the scale-4 cell failed
    yield folder, spec, out
    registry.clear()


def run(spec: Path, out: Path, *flags: str) -> int:
    registry.clear()  # each `amsweep run` is a new process: it imports the plug-in code as it is now
    return main(["run", str(spec), "--out", str(out), "--executor", "serial", "--quiet", *flags])


def files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*")) if p.is_file()}


def plugins_of(out: Path) -> dict[str, str]:
    return dict(Cube.open(str(out)).attrs["plugins"])


def test_the_used_plugin_is_hashed_over_its_files_and_the_hash_does_not_depend_on_its_folder(half_done, tmp_path):
    folder, _, out = half_done
    recorded = plugins_of(out)
    assert list(recorded) == [MODULE]  # the built-in dataset and dynamics, and `other`, are not plug-ins of it
    assert recorded[MODULE].startswith("sha256:") and len(recorded[MODULE]) == 7 + 64
    moved = tmp_path / "elsewhere" / "deeper"
    shutil.copytree(folder, moved)
    registry.use_plugin_path(str(moved))
    assert registry.code_hashes([("rules", "toy")]) == recorded  # same code at another path: same hash
    (moved / "rules" / "_helpers.py").write_text(HELPERS + "\n# a helper edit is an edit of the rule\n")
    registry.clear()
    assert registry.code_hashes([("rules", "toy")])[MODULE] != recorded[MODULE]


def test_a_resume_with_edited_plugin_code_is_refused_in_one_line_and_touches_nothing(half_done, capsys):
    folder, spec, out = half_done
    old = plugins_of(out)[MODULE]
    write(folder, "rules", "toy", TOY.replace("LIMIT = 3.0", "LIMIT = 5.0"))  # the fix, between resumes
    new = registry.code_hashes([("rules", "toy")])[MODULE]
    before = files(out)
    capsys.readouterr()
    assert run(spec, out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert MODULE in err and old in err and new in err and "--allow-changed-plugins" in err, err
    assert files(out) == before  # not a byte of the cube changed, the lease released


def test_allow_changed_plugins_resumes_with_the_new_code_and_records_it(half_done, capsys):
    folder, spec, out = half_done
    old = plugins_of(out)[MODULE]
    write(folder, "rules", "toy", TOY.replace("LIMIT = 3.0", "LIMIT = 5.0"))
    assert run(spec, out, "--allow-changed-plugins") == 0  # the failed cell now runs with the fixed rule
    cube = Cube.open(str(out))
    new = cube.attrs["plugins"][MODULE]
    assert new != old and new == registry.code_hashes([("rules", "toy")])[MODULE]
    [change] = cube.attrs["plugins_changed"]
    assert change["modules"] == {MODULE: [old, new]}
    assert f"plug-in {MODULE} changed ({old} -> {new})" in capsys.readouterr().err
    assert (cube.status() == 1).all()  # both cells done


def test_an_edit_to_a_plugin_the_sweep_does_not_use_is_not_refused(half_done):
    folder, spec, out = half_done
    recorded = plugins_of(out)
    write(folder, "rules", "other", TOY.replace("LIMIT = 3.0", "LIMIT = 9.0"))
    write(folder, "rules", "_unused_helper", "X = 1\n")
    assert run(spec, out) == 1  # resumed: the scale-4 cell is retried (and fails again, as coded)
    assert plugins_of(out) == recorded
    assert "plugins_changed" not in Cube.open(str(out)).attrs


def test_a_shipped_folder_is_named_by_its_content_and_a_worker_finds_it_on_its_sys_path(tmp_path, monkeypatch):
    """What Ray's py_modules does, without Ray: the staged copy's parent on sys.path; a batch's
    shipped name resolves to it, never to the driver's folder, and a missing one is one clear error."""
    from amsweep.pipeline import plugin_shipping
    from amsweep.pipeline.errors import PluginError

    folder, twin = tmp_path / "a" / "plugins", tmp_path / "b" / "plugins"
    for f in (folder, twin):
        write(f, "rules", "toy", TOY)
        (f / "rules" / "__pycache__").mkdir()
        (f / "rules" / "__pycache__" / "toy.cpython-311.pyc").write_bytes(b"stale")
    staged = plugin_shipping.stage((folder,))
    assert staged is not None
    try:
        [name] = staged.names
        assert plugin_shipping.names_of((twin,)) == (name,)  # same content elsewhere: same package
        monkeypatch.syspath_prepend(str(staged.directory))
        [shipped] = plugin_shipping.worker_path(staged.path_value).split(os.pathsep)
        assert (
            Path(shipped) == staged.directory / name
            and (Path(shipped) / "rules" / "toy.py").read_text() == (folder / "rules" / "toy.py").read_text()
        )
        assert not (Path(shipped) / "rules" / "__pycache__").exists()
        write(twin, "rules", "toy", TOY.replace("3.0", "3.5"))
        [other] = plugin_shipping.names_of((twin,))
        assert other != name
        with pytest.raises(PluginError, match=f"{other} was not shipped to this worker"):
            plugin_shipping.worker_path(other)
    finally:
        staged.remove()
    assert not staged.directory.exists()
