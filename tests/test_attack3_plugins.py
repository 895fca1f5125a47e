"""Adversarial pass 3 on the plug-in checks at discovery (pipeline/contracts.py ``_callable_with``,
``_scope``, the meta= check): correct plug-ins written in ordinary Python styles must load, and a
plug-in the cell cannot call must be refused. Cases that held are kept as plain tests; what fails is
a strict xfail for the lead."""

from __future__ import annotations

import pytest

from amsweep.pipeline import registry
from amsweep.pipeline.errors import PluginError
from tests.test_plugins import TOY, plugins, write  # noqa: F401 (plugins is a fixture)

WRAPS = "import functools\n\ndef logged(fn):\n    @functools.wraps(fn)\n"
WRAPS += "    def inner(*a, **k):\n        return fn(*a, **k)\n    return inner\n"
BARE = "def logged(fn):\n    def inner(*a, **k):\n        return fn(*a, **k)\n    return inner\n"

ACCEPTED = {
    "defaults-and-keyword-only-extras": TOY.replace(
        "def train(X, q, params, rng)", "def train(X, q, params, rng=None, *, extra=1)"
    ),
    "star-args": TOY.replace("def train(X, q, params, rng)", "def train(X, q, *rest)").replace(
        'params["scale"]', 'rest[0]["scale"]'
    ),
    "functools-wraps-decorator": TOY.replace("def train(", WRAPS + "\n@logged\ndef train("),
    "bare-decorator": TOY.replace("def train(", BARE + "\n@logged\ndef train("),
    "functools-partial": TOY.replace("def train(X, q, params, rng)", "def _train(X, q, params, rng, factor)")
    + "\nimport functools\ntrain = functools.partial(_train, factor=1.0)\n",
    "memory-bytes-star-args": TOY + "\ndef memory_bytes(N, P, *rest):\n    return 10 * N\n",
    "memory-bytes-partial": TOY
    + "\nimport functools\ndef _mem(N, P, q, params, k):\n    return k * N\n"
    + "memory_bytes = functools.partial(_mem, k=8)\n",
    "callable-instance": TOY.replace("def train(X, q, params, rng)", "def _train(X, q, params, rng)")
    + "\nclass _T:\n    def __call__(self, X, q, params, rng):\n"
    + "        return _train(X, q, params, rng)\ntrain = _T()\n",
    "nested-function-with-own-params": TOY.replace(
        "    return Model(", "    def step(params, g):\n        return params['lr_'] * g\n    return Model("
    ),
    "meta-keyword-only-with-default": TOY.replace(
        "def train(X, q, params, rng)", "def train(X, q, params, rng, *, meta=None)"
    )
    + '\nREADS_META = ("labels",)\n',
}


@pytest.mark.parametrize("text", ACCEPTED.values(), ids=ACCEPTED.keys())
def test_a_correct_plugin_in_an_ordinary_style_loads(plugins, text):  # noqa: F811
    write(plugins, "rules", "toy", text)
    assert registry.component("rules", "toy").__name__.endswith("toy")


FALSELY_REFUSED = {
    # The cell calls train(X, q, params, rng, meta=data.meta) (pipeline/cell.py): both accept it.
    "meta-through-kwargs": TOY.replace("def train(X, q, params, rng)", "def train(X, q, params, rng, **extra)")
    + '\nREADS_META = ("labels",)\n',
    "meta-required-keyword": TOY.replace("def train(X, q, params, rng)", "def train(X, q, params, rng, *, meta)")
    + '\nNEEDS_META = ("labels",)\n',
    "meta-through-bare-decorator": TOY.replace(
        "def train(X, q, params, rng)", "def train(X, q, params, rng, meta=None)"
    ).replace("def train(", BARE + "\n@logged\ndef train(")
    + '\nREADS_META = ("labels",)\n',
}


@pytest.mark.parametrize("text", FALSELY_REFUSED.values(), ids=FALSELY_REFUSED.keys())
def test_a_train_that_accepts_meta_is_not_refused(plugins, text):  # noqa: F811
    write(plugins, "rules", "toy", text)
    assert registry.component("rules", "toy").__name__.endswith("toy")


def test_an_executor_forwarding_its_options_through_kwargs_keeps_the_contract():
    """An executor subclass that forwards its options (``def __init__(self, **kw): super().__init__(**kw)``)
    takes address, workers and cells_per_task, and ``Logged(workers=2)`` builds; the check says it
    does not take them (it reads ``inspect.signature(cls).parameters`` by name)."""
    from amsweep.pipeline import contracts
    from amsweep.pipeline.ray_executor import RayExecutor

    class Logged(RayExecutor):
        def __init__(self, **options):
            super().__init__(**options)

    assert Logged(workers=2, cells_per_task=3).workers == 2
    assert contracts.executor_problems(Logged) == []


def test_a_misspelled_read_beside_a_nested_function_with_its_own_params_is_refused(plugins):  # noqa: F811
    write(
        plugins,
        "rules",
        "toy",
        TOY.replace('params["scale"]', 'params["scale_"]').replace(
            "    return Model(", "    def step(params, g):\n        return params['lr'] * g\n    return Model("
        ),
    )
    with pytest.raises(PluginError, match="scale_"):
        registry.component("rules", "toy")


def test_a_misspelled_read_beside_a_nested_local_named_params_is_refused(plugins):  # noqa: F811
    """A helper inside train that builds its own local ``params`` dict (not an argument) counts as
    rebinding train's ``params`` (contracts.undeclared_reads: any Store of the name in ``_scope``),
    so train's misspelled ``params["scale_"]`` is not refused and every cell fails with KeyError."""
    nested = "    def defaults():\n        params = {'lr': 0.1}\n        return params\n    return Model("
    write(
        plugins, "rules", "toy", TOY.replace('params["scale"]', 'params["scale_"]').replace("    return Model(", nested)
    )
    with pytest.raises(PluginError, match="scale_"):
        registry.component("rules", "toy")
