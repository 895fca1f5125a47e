"""attack23a (adversarial review of issue 23): ``amsweep.run`` called again in the same process
(a notebook) after a plug-in was edited.

``registry.code_hashes`` reads the plug-in files from disk, so the edit is seen and a resume is
refused; ``allow_changed_plugins=True`` then records the *new* hash in the cube. But the registry
keeps the module it imported on the first call (``registry._checked`` cache, ``sys.modules``):
nothing in ``amsweep.run`` clears it, so the resumed cells run the *old* code while the cube
records the new code's hash. Found at 36a0080 (the "fixed" rule fails again, as before the fix);
strict xfail for the lead. Serial executor, two tiny cells, < 2 s.
"""

from __future__ import annotations

import textwrap


import amsweep
from amsweep.pipeline import registry
from amsweep.storage.cube import Cube

RULE = """
from amsweep.pipeline.model import Model, Param
from amsweep.pipeline.rules import hebb as _hebb

PARAMS = {"scale": Param(1.0, float, "a knob", low=0.0, open_low=True)}


def train(X, q, params, rng):
    if params["scale"] > LIMIT:
        raise ValueError("scale not supported yet")
    return _hebb.train(X, q, {}, rng)


LIMIT = 3.0
"""
SPEC = (
    'name = "toy"\nseeds = 1\nnoise = [0.0]\nP_test = 4\n'
    "[retrieval]\ntrain_starts = 3\ntest_starts = 2\nrandom_starts = 2\n"
    "[datasets.random]\nN = [32]\nP = [3]\n[rules.toy]\nscale = [2.0, 4.0]\n"
)


def test_a_second_run_in_one_process_runs_the_code_whose_hash_it_records(tmp_path, monkeypatch):
    folder = tmp_path / "plugins"
    (folder / "rules").mkdir(parents=True)
    rule = folder / "rules" / "toy.py"
    rule.write_text(textwrap.dedent(RULE))
    monkeypatch.setenv(registry.ENV_VAR, str(folder))
    monkeypatch.setenv("AMSWEEP_CACHE", str(tmp_path / "cache"))
    spec, out = tmp_path / "toy.toml", str(tmp_path / "toy.zarr")
    spec.write_text(SPEC)
    registry.clear()
    try:
        first = amsweep.run(str(spec), out, executor="serial")
        assert (first.done, first.failed) == (1, 1)  # scale 4 is not supported yet
        rule.write_text(textwrap.dedent(RULE).replace("LIMIT = 3.0", "LIMIT = 5.0"))  # the fix, in the notebook
        second = amsweep.run(str(spec), out, executor="serial", allow_changed_plugins=True)
        recorded = Cube.open(out).attrs["plugins"]["amsweep_plugins.rules.toy"]
        registry.clear()
        assert recorded == registry.code_hashes([("rules", "toy")])["amsweep_plugins.rules.toy"]  # the new code's
        assert (second.done, second.failed) == (1, 0), "the cell ran the code from before the edit"
    finally:
        registry.clear()
