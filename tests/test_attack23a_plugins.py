"""attack23a (adversarial review of issue 23): plug-in code hashes that miss an edit.

A cube records a hash of each plug-in module it was made with, so that a resume with edited
plug-in code is refused (``registry.code_hashes``). The hash covers the module's file and the
sibling helper *files* it imports with ``from ._x import y`` or ``from amsweep_plugins.<family>._x
import y``; three common ways of importing a helper are not followed, so an edit of that helper
resumes silently and the cube mixes cells of the old and the new code under one recorded hash.
Found at 36a0080; fixed (fix23a): every import form is followed, a helper package
hashed whole. Serial executor, tiny specs: well under a second each.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from amsweep.pipeline import registry
from amsweep.storage.cube import Cube
from amsweep.sweeps.cli import main

HELPER = """
import numpy as np


def hebb(X, scale):
    Xf = np.asarray(X, dtype=np.float32)
    J = (Xf.T @ Xf) * np.float32(scale / Xf.shape[1])
    np.fill_diagonal(J, 0.0)
    return J
"""
EDITED = HELPER.replace("scale / Xf.shape[1]", "2 * scale / Xf.shape[1]")  # other results, same files elsewhere
TOY = """
from amsweep.pipeline.model import Model, Param
{imports}

PARAMS = {{"scale": Param(1.0, float, "factor on the Hebb couplings", low=0.0, open_low=True)}}


def train(X, q, params, rng):
    if params["scale"] > 3.0:
        raise ValueError("scale not supported yet")
    return Model(q=2, J=hebb(X, params["scale"]))
"""
SPEC = (
    'name = "toy"\nseeds = 1\nnoise = [0.0]\nP_test = 4\n'
    "[retrieval]\ntrain_starts = 3\ntest_starts = 2\nrandom_starts = 2\n"
    "[datasets.random]\nN = [32]\nP = [3]\n[rules.toy]\nscale = [2.0, 4.0]\n"
)
# (how toy.py imports its helper, where the helper file lives under rules/)
ABSOLUTE_MODULE = ("from amsweep_plugins.rules import _helpers\nhebb = _helpers.hebb", "_helpers.py")
PACKAGE = ("from ._lib import hebb", "_lib/__init__.py")
PACKAGE_MODULE = ("from ._lib.core import hebb", "_lib/core.py")


def plugin(folder: Path, imports: str, helper: str, helper_text: str = HELPER) -> Path:
    (folder / "rules").mkdir(parents=True, exist_ok=True)
    (folder / "rules" / "toy.py").write_text(textwrap.dedent(TOY.format(imports=imports)))
    path = folder / "rules" / helper
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(helper_text)
    return path


def toy_hash() -> str:
    registry.clear()  # a new process: the code as it is on disk now
    return registry.code_hashes([("rules", "toy")])["amsweep_plugins.rules.toy"]


@pytest.fixture
def plugin_folder(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    monkeypatch.setenv(registry.ENV_VAR, str(folder))
    monkeypatch.setenv("AMSWEEP_CACHE", str(tmp_path / "cache"))
    yield folder
    registry.clear()


def test_the_rel_import_of_a_helper_file_is_hashed(plugin_folder):
    """Control (holds): ``from ._helpers import hebb`` is followed, so an edit changes the hash."""
    helper = plugin(plugin_folder, "from ._helpers import hebb", "_helpers.py")
    registry.clear()
    registry.component("rules", "toy")  # it imports and meets its contract
    before = toy_hash()
    helper.write_text(EDITED)
    assert toy_hash() != before


@pytest.mark.parametrize("how", [ABSOLUTE_MODULE, PACKAGE, PACKAGE_MODULE], ids=["absolute", "package", "submodule"])
def test_an_edit_of_a_helper_imported_another_way_changes_the_hash(plugin_folder, how):
    imports, where = how
    helper = plugin(plugin_folder, imports, where)
    registry.clear()
    registry.component("rules", "toy")  # a working plug-in: the import form is valid Python
    before = toy_hash()
    helper.write_text(EDITED)
    assert toy_hash() != before


def test_a_resume_after_editing_an_absolutely_imported_helper_is_refused(plugin_folder, tmp_path):
    helper = plugin(plugin_folder, *ABSOLUTE_MODULE)
    spec, out = tmp_path / "toy.toml", tmp_path / "toy.zarr"
    spec.write_text(SPEC)

    def run(*flags: str) -> int:
        registry.clear()
        return main(["run", str(spec), "--out", str(out), "--executor", "serial", "--quiet", *flags])

    assert run() == 1  # scale 2 done, scale 4 failed: a resume retries it
    recorded = dict(Cube.open(str(out)).attrs["plugins"])
    helper.write_text(EDITED)  # the couplings now differ: the done cell would not be reproduced
    assert run() == 2, "resumed with edited plug-in code and no --allow-changed-plugins"
    assert dict(Cube.open(str(out)).attrs["plugins"]) == recorded
