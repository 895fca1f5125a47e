"""Adversarial pass 2 (issue 25, contract hardening), written as a plug-in author reading only
docs/architecture.md. Each test is a mistake that should be refused at discovery (or by `amsweep
run`) with one line, and is not yet: strict xfails for the lead to fix.

Found by the attack (tried on attack2 at 422e4eb):
- a ``memory_bytes`` that returns a non-number, NaN or raises, or takes (N, P, params) as the issue
  wrote it, passes discovery and the installed kit (7 passed), then ``amsweep run`` ends in a
  traceback and "this is a bug in amsweep" (pipeline/resources.py learning_memory: the call is not
  guarded); a negative one is accepted and shrinks the cell's memory estimate;
- a ``train`` with the wrong arity (``train(X, params, rng)``) passes discovery; every cell then
  fails at run time with a TypeError, though the contract names the signature.
"""

from __future__ import annotations

import pytest

from amsweep.pipeline import registry
from amsweep.pipeline.errors import PluginError
from amsweep.sweeps.cli import main
from tests.test_plugins import TOY, plugins, toy_spec, write  # noqa: F401 (plugins is a fixture)


@pytest.mark.parametrize(
    "body",
    [
        'def memory_bytes(N, P, q, params):\n    return "big"\n',
        'def memory_bytes(N, P, q, params):\n    return float("nan")\n',
        'def memory_bytes(N, P, q, params):\n    raise RuntimeError("oops")\n',
        "def memory_bytes(N, P, params):\n    return 10\n",
    ],
    ids=["string", "nan", "raises", "three-arguments"],
)
def test_a_broken_memory_bytes_is_one_line_not_a_bug_report(plugins, tmp_path, capsys, body):  # noqa: F811
    write(plugins, "rules", "toy", TOY + "\n" + body)
    rc = main(["run", str(toy_spec(tmp_path / "t.toml")), "--out", str(tmp_path / "t.zarr"), "--executor", "serial"])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("amsweep run: error: ") and err.count("\n") == 1, err[-600:]
    assert "memory_bytes" in err and not (tmp_path / "t.zarr").exists()


def test_a_negative_memory_bytes_is_refused(plugins, tmp_path, capsys):  # noqa: F811
    write(plugins, "rules", "toy", TOY + "\ndef memory_bytes(N, P, q, params):\n    return -10**12\n")
    rc = main(["run", str(toy_spec(tmp_path / "t.toml")), "--out", str(tmp_path / "t.zarr"), "--executor", "serial"])
    err = capsys.readouterr().err
    assert rc == 2 and "memory_bytes" in err and err.count("\n") == 1, err[-600:]


def test_a_train_with_the_wrong_arguments_is_refused_at_discovery(plugins):  # noqa: F811
    write(plugins, "rules", "toy", TOY.replace("def train(X, q, params, rng)", "def train(X, params, rng)"))
    assert "def train(X, params, rng)" in (plugins / "rules" / "toy.py").read_text()
    with pytest.raises(PluginError, match=r"rules kind 'toy' .*train"):
        registry.component("rules", "toy")


def test_the_kit_refuses_a_folder_with_no_plugin_instead_of_passing(tmp_path):
    """A plug-in author's one line, ``test_mine = plugin_tests("/path/to/plugins")``, with the path
    mistyped or pointing at ``plugins/rules`` instead of ``plugins``: pytest reports "1 skipped"
    (empty parameter set) and ``check_plugins`` returns normally, so the author's CI is green with
    nothing checked; discovery itself refuses such a folder on AMSWEEP_PLUGIN_PATH."""
    from amsweep.testing import check_plugins, plugin_tests

    write(tmp_path / "plugins", "rules", "toy", TOY)
    assert check_plugins(tmp_path / "plugins") is None  # the right folder: checked, passes
    for wrong in (tmp_path / "plugin", tmp_path / "plugins" / "rules"):
        with pytest.raises(Exception, match="plug-in"):
            check_plugins(wrong)
        with pytest.raises(Exception, match="plug-in"):
            plugin_tests(wrong)


def test_a_nested_function_with_its_own_params_argument_is_not_a_parameter_read(plugins):  # noqa: F811
    """A correct rule refused at discovery: a gradient step nested in ``train`` names its weights
    ``params`` (the usual name in optimisation code); the static check reads ``params["W"]`` there
    as a read of the rule's parameters ("train reads params['W'], which PARAMS does not declare")."""
    nested = TOY.replace(
        "    Xf = np.asarray(X, dtype=np.float32)\n",
        "    def step(params, grad):\n"
        '        return {"W": params["W"] - 0.1 * grad}\n\n'
        "    Xf = np.asarray(X, dtype=np.float32)\n"
        '    _ = step({"W": np.zeros(1)}, np.ones(1))\n',
    )
    write(plugins, "rules", "toy", nested)
    assert "def step(params, grad)" in (plugins / "rules" / "toy.py").read_text()
    registry.component("rules", "toy")
