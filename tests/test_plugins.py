"""Plug-ins from AMSWEEP_PLUGIN_PATH: a file is discovered, held to its contract, run by the
conformance suite and by a sweep; a broken one fails discovery naming what it lacks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from amsweep.pipeline import registry
from amsweep.pipeline import spec as spec_mod
from amsweep.sweeps.cli import main
from amsweep.pipeline.errors import PluginError, SpecError
from amsweep.pipeline.params import Params
from amsweep.pipeline.ray_executor import _worker_setup
from amsweep.storage.query import open_cube
from amsweep.testing import check_plugins
from amsweep.testing import suite as kit

ROOT = Path(__file__).resolve().parents[1]
TOY = '''
"""Hebb couplings times a factor: the smallest rule a plug-in author could write."""

import numpy as np

from amsweep.pipeline.model import Model, Param

PARAMS = {"scale": Param(1.0, float, "factor on the Hebb couplings", low=0.0, open_low=True)}


def train(X, q, params, rng):
    Xf = np.asarray(X, dtype=np.float32)
    J = (Xf.T @ Xf) * np.float32(params["scale"] / Xf.shape[1])
    np.fill_diagonal(J, 0.0)
    return Model(q=2, J=J)
'''


# The same rule as a plug-in author following docs/architecture.md writes it across two files: a
# helper module (leading underscore: not a kind) imported relatively, parameters read by attribute.
HELPERS = """
import numpy as np


def hebb_couplings(X, scale):
    Xf = np.asarray(X, dtype=np.float32)
    J = (Xf.T @ Xf) * np.float32(scale / Xf.shape[1])
    np.fill_diagonal(J, 0.0)
    return J
"""
HELPED = """
from amsweep.pipeline.model import Model, Param

from ._helpers import hebb_couplings

PARAMS = {"scale": Param(1.0, float, "factor on the Hebb couplings", low=0.0, open_low=True)}
QUICK = {"scale": 2.0}


def scaled(params):
    return params.scale


def train(X, q, params, rng):
    return Model(q=2, J=hebb_couplings(X, scaled(params)))
"""


TILTED = """
import numpy as np

from amsweep.pipeline.model import Data, Param

PARAMS = {"bias": Param(0.5, float, "probability of +1", low=0.0, high=1.0)}


def check(N, P, P_test, params):
    if params.bias in (0.0, 1.0) and P > 1:
        raise ValueError("tilted: a bias of 0 or 1 repeats one pattern")


def make(N, P, P_test, params, rng):
    X = np.where(rng.random((P + P_test, N)) < params.bias, 1, -1).astype(np.int8)
    return Data(train=X[:P], test=X[P:])
"""


def write_helped(folder: Path, text: str = HELPED) -> None:
    write(folder, "rules", "_helpers", HELPERS)
    write(folder, "rules", "toy", text)


def write(folder: Path, family: str, kind: str, text: str) -> Path:
    path = folder / family / f"{kind}.py"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def plugins(tmp_path, monkeypatch):
    """An empty plug-in folder on AMSWEEP_PLUGIN_PATH; discovery is forgotten before and after."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    monkeypatch.setenv(registry.ENV_VAR, str(folder))
    monkeypatch.setenv("AMSWEEP_CACHE", str(tmp_path / "cache"))
    registry.clear()
    yield folder
    registry.clear()  # monkeypatch then restores the variable: the next discovery follows it


def toy_spec(path: Path, rule: str = "toy") -> Path:
    path.write_text(
        'name = "toy"\nseeds = 1\nnoise = [0.0, 0.1]\nP_test = 4\n'
        "[retrieval]\ntrain_starts = 3\ntest_starts = 2\nrandom_starts = 2\n"
        f"[datasets.random]\nN = [32]\nP = [3]\n[rules.{rule}]\nscale = 2.0\n"
    )
    return path


def test_a_toy_rule_file_passes_the_conformance_checks_and_runs_in_a_sweep(plugins, tmp_path):
    write(plugins, "rules", "toy", TOY)
    assert "toy" in registry.kinds("rules")
    kit.check_component("rules", "toy")
    out = tmp_path / "toy.zarr"
    assert (
        main(["run", str(toy_spec(tmp_path / "toy.toml")), "--out", str(out), "--executor", "serial", "--quiet"]) == 0
    )
    ds = open_cube(str(out))
    assert ds["status"].values.ravel().tolist() == [1]  # done
    assert ds["m_train"].sel(noise=0.0).item() == 1.0  # 3 patterns at N = 32: Hebb fixed points


def test_the_conformance_suite_collects_and_runs_a_plugin_by_its_existence(plugins, tmp_path):
    """tests/test_conformance.py finds a plug-in on the path, and so does `pytest --pyargs
    amsweep.testing`; an author's one-line test file runs the installed kit over a folder given by
    name (a rule with a helper module)."""
    write(plugins, "rules", "toy", TOY)
    authors = tmp_path / "authors"
    write_helped(authors)
    mine = tmp_path / "test_mine.py"
    mine.write_text(f"from amsweep.testing import plugin_tests\n\ntest_mine = plugin_tests({str(authors)!r})\n")
    env = {**os.environ, registry.ENV_VAR: str(plugins)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_conformance.py", str(mine)]
        + ["--pyargs", "amsweep.testing", "-k", "toy", "--rootdir", str(ROOT)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"{3 * len(kit.checks('rules'))} passed" in proc.stdout, proc.stdout[-2000:]  # by path, file, pyargs
    assert (
        "test_mine.py::test_mine[rules-toy-train]"
        in subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "--co", "-p", "no:cacheprovider", str(mine)],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=600,
        ).stdout
    )  # ids name the component and the check; helpers (_helpers.py) are not kinds


def test_a_plugin_written_from_the_docs_passes_the_kit_and_each_mistake_is_one_line(tmp_path):
    """The kit over a folder: the rule with its helper passes; a mistyped optional declaration or
    a read of an undeclared parameter is refused by discovery, in one line naming the fix."""
    folder = tmp_path / "mine"
    write_helped(folder)
    write(folder, "datasets", "tilted", TILTED)  # params by attribute in check too (spec validation)
    check_plugins(folder)
    assert registry.ENV_VAR not in os.environ or os.environ[registry.ENV_VAR] != str(folder)  # restored
    for text, message in [
        (HELPED + "\nPOTT = True\n", "POTT is not a declaration; did you mean POTTS?"),
        (HELPED.replace("X, scaled(params)", "X, params.scael"), "train reads params['scael'], which PARAMS"),
    ]:
        write_helped(folder, text)
        with pytest.raises(PluginError) as info:
            check_plugins(folder)
        assert message in str(info.value) and "\n" not in str(info.value)
    # Read through a helper, the mistake is not seen at load; Params names it when train runs.
    write_helped(folder, HELPED.replace("return params.scale", "return params.scael"))
    with pytest.raises(AttributeError, match=r"rule toy has no parameter 'scael'; declared: scale; did you mean"):
        check_plugins(folder)


def test_a_model_without_what_provides_promises_fails_its_cell_naming_the_part(plugins):
    write(plugins, "rules", "liar", TOY + "\nPROVIDES = ('couplings', 'memories')\n")
    with pytest.raises(PluginError, match=r"rule liar: it PROVIDES memories but Model\.memories is None, not float32"):
        kit.check_cell_runs("rules", "liar")


def test_params_are_read_only_by_key_or_attribute_and_name_a_mistyped_key():
    p = Params({"lr": 0.5, "epochs": 3}, "rule plm")
    assert p.lr == p["lr"] == 0.5 and {**p, "lr": 1.0}["lr"] == 1.0 and dict(p) == {"lr": 0.5, "epochs": 3}
    with pytest.raises(KeyError, match="rule plm has no parameter 'epoch'; declared: epochs, lr; did you mean"):
        p["epoch"]
    with pytest.raises(AttributeError, match="did you mean 'lr'"):
        assert p.lrr
    with pytest.raises(TypeError, match="read-only"):
        p["lr"] = 1.0
    import pickle

    assert pickle.loads(pickle.dumps(p)) == p and pickle.loads(pickle.dumps(p)).epochs == 3


def test_a_rule_declares_its_memory_and_an_unknown_kind_names_the_plugin_path(plugins, tmp_path):
    from amsweep.pipeline.resources import cell_memory

    write(plugins, "rules", "toy", TOY)
    write(plugins, "rules", "big", TOY + "\ndef memory_bytes(N, P, q, params):\n    return 2**40\n")
    sweep = spec_mod.load(toy_spec(tmp_path / "toy.toml"))
    big = spec_mod.load(toy_spec(tmp_path / "big.toml", "big"))
    assert (
        cell_memory(next(big.tasks()), big.retrieval) - cell_memory(next(sweep.tasks()), sweep.retrieval) > 1.5 * 2**39
    )
    with pytest.raises(
        SpecError, match=r"unknown rule kind 'tyo'; .*did you mean 'toy'\? Or a plug-in\? put tyo\.py in "
    ):
        spec_mod.load(toy_spec(tmp_path / "tyo.toml", "tyo"))
    with pytest.raises(
        SpecError, match=rf"rules/ under a folder on AMSWEEP_PLUGIN_PATH \(now: {re.escape(str(plugins))}\)"
    ):
        spec_mod.load(toy_spec(tmp_path / "tyo.toml", "tyo"))


def test_a_rule_without_train_fails_discovery_naming_train(plugins, tmp_path, capsys):
    write(plugins, "rules", "broken", TOY.replace("def train(", "def fit("))
    with pytest.raises(PluginError, match=r"rules kind 'broken' \(.*broken\.py\) breaks its contract: lacks train"):
        registry.component("rules", "broken")
    with pytest.raises(PluginError, match="lacks train"):
        spec_mod.from_dict({**kit.spec_for("rules", "hebb"), "rules": {"broken": {}}})
    capsys.readouterr()
    rc = main(["run", str(toy_spec(tmp_path / "b.toml", "broken")), "--out", str(tmp_path / "b.zarr")])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("amsweep run: error: ") and "lacks train" in err and err.count("\n") == 1
    assert not (tmp_path / "b.zarr").exists()


@pytest.mark.parametrize(
    "family, text, message",
    [
        ("rules", TOY.replace("PARAMS = ", "SETTINGS = "), "lacks PARAMS"),
        ("rules", TOY + "\nPOTTS = 'yes'\n", "POTTS = 'yes' is not valid"),
        ("rules", TOY + "\nNEEDS_META = ('true_J',)\n", "train takes no meta= keyword"),
        ("rules", TOY + "\nPROVIDES = ('weights',)\n", "PROVIDES = ('weights',) is not valid"),
        ("rules", TOY + "\nPOTT = True\n", "breaks its contract: POTT is not a declaration; did you mean POTTS?"),
        ("rules", TOY + "\nPROVIDE = ('memories',)\n", "PROVIDE is not a declaration; did you mean PROVIDES?"),
        ("rules", TOY.replace("PARAMS = ", "Params = "), "Params is not a declaration; did you mean PARAMS?"),
        (
            "rules",
            TOY.replace('params["scale"]', 'params["scal"]'),
            "train reads params['scal'], which PARAMS does not declare (declared: scale); did you mean 'scale'?",
        ),
        ("rules", TOY + "\nQUICK = {'scal': 2.0}\n", "QUICK names 'scal', which PARAMS does not declare"),
        ("rules", TOY + "\nQUICK = {'scale': -1.0}\n", "QUICK: parameter 'scale' = -1.0 is out of range"),
        (
            "rules",
            TOY + "\nDEFAULT_DYNAMICS = 'dense'\n",
            "its DEFAULT_DYNAMICS cannot relax what it PROVIDES: dense dynamics needs memories",
        ),
        ("rules", TOY + "\nDEFAULT_DYNAMICS = 'magic'\n", "DEFAULT_DYNAMICS = 'magic' is not a dynamics kind"),
        (
            "dynamics",
            "from amsweep.pipeline.model import Param\nPARAMS = {}\ndef relax(m, s, p, r):\n    return s\n",
            "lacks max_sweeps",
        ),
        ("datasets", "PARAMS = {}\ndef make(N, P, P_test, params, rng):\n    return None\n", "lacks check"),
        (
            "datasets",
            "PARAMS = {}\nraise RuntimeError('no data here')\n",
            "importing it raised RuntimeError: no data here",
        ),
        ("rules", "import sys\nsys.exit(3)\n", "importing it raised SystemExit (it called sys.exit(3);"),
        ("dynamics", "raise SystemExit('bye')\n", "importing it raised SystemExit (it called sys.exit('bye');"),
    ],
)
def test_discovery_names_what_a_broken_plugin_lacks_or_declares_wrongly(plugins, family, text, message):
    write(plugins, family, "bad", text)
    with pytest.raises(PluginError, match=re.escape(message)):
        registry.component(family, "bad")


def test_an_entry_point_that_exits_at_import_is_a_refused_plugin():
    """sys.exit() while an entry point's module imports used to end `amsweep` with that status."""

    def load():
        sys.exit(0)

    with pytest.raises(
        PluginError, match=re.escape("rules entry point 'quit' (pkg.quit): importing it raised SystemExit")
    ):
        registry._load_entry_point("rules", "quit", "pkg.quit", load)


def test_a_plugin_that_breaks_a_conformance_check_is_caught_with_the_reason(plugins):
    write(plugins, "rules", "diagonal", TOY.replace("np.fill_diagonal(J, 0.0)", "J += 1"))
    registry.component("rules", "diagonal")  # its contract is kept: the suite catches the rest
    with pytest.raises(AssertionError, match="diagonal of J is not zero"):
        kit.check_train("diagonal")


def test_a_kind_defined_twice_or_a_missing_folder_is_refused(plugins, monkeypatch):
    write(plugins, "rules", "hebb", TOY)
    with pytest.raises(PluginError, match="'hebb' is defined twice"):
        registry.kinds("rules")
    (plugins / "rules" / "hebb.py").unlink()
    other = plugins.parent / "other"
    write_helped(plugins)
    write(other, "rules", "_helpers", HELPERS)
    monkeypatch.setenv(registry.ENV_VAR, os.pathsep.join([str(plugins), str(other)]))
    registry.clear()
    with pytest.raises(PluginError, match="rules helper '_helpers' is defined twice: .* rename one"):
        registry.kinds("rules")
    monkeypatch.setenv(registry.ENV_VAR, str(plugins / "nowhere"))
    registry.clear()
    with pytest.raises(PluginError, match="is not a folder"):
        registry.kinds("datasets")


def test_a_worker_follows_the_drivers_plugin_path(plugins, monkeypatch):
    """What a Ray worker does before a batch: it started without the variable, and after the
    batch's setup it finds the driver's plug-ins (and forgets them when the driver has none)."""
    write(plugins, "rules", "toy", TOY)
    monkeypatch.delenv(registry.ENV_VAR)
    registry.clear()
    assert "toy" not in registry.kinds("rules")
    jobs = [("a job",)]
    assert _worker_setup(jobs, str(plugins), None) == jobs
    model = registry.component("rules", "toy").train(np.ones((2, 4), np.int8), 2, {"scale": 1.0}, None)
    assert model.J.shape == (4, 4)
    _worker_setup(jobs, "", None)
    assert "toy" not in registry.kinds("rules")


def test_ray_workers_run_a_plugin_their_processes_never_saw(plugins, tmp_path, ray_local):
    """The workers of the session's Ray started before the plug-in path was set: each batch
    carries it (``ray_executor._worker_setup``), so the cell finds the toy rule there too."""
    from amsweep.pipeline.executors import RayExecutor
    from amsweep.sweeps.runner import run
    from amsweep.storage.cube import Cube

    write_helped(plugins)  # a relative import of its helper, in a worker that never saw the folder
    sweep = spec_mod.load(toy_spec(tmp_path / "toy.toml"))
    path = str(tmp_path / "ray.zarr")
    report = run(Cube.create_or_open(path, sweep), RayExecutor(), progress=False)
    assert report.failed == 0 and report.done == 1, report.errors
    assert open_cube(path)["m_train"].sel(noise=0.0).item() == 1.0
