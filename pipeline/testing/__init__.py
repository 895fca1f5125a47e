"""The conformance kit, installed with the package as ``amsweep.testing`` (as ``zarr.testing`` is).

A plug-in author tests a folder of plug-ins with one line in a pytest file::

    from amsweep.testing import plugin_tests

    test_my_plugins = plugin_tests("/path/to/plugins")  # one test per (component, check)

or, with nothing written, ``AMSWEEP_PLUGIN_PATH=/path/to/plugins pytest --pyargs amsweep.testing``
(``path_tests``: the components of the folders on the path), or ``check_plugins(folder)`` from
any test or script (the first failure raises). The checks are
those ``tests/test_conformance.py`` runs over every built-in component (``amsweep.testing.suite``);
a folder's components are discovered as a sweep would (``AMSWEEP_PLUGIN_PATH``), so a mistyped
declaration or an undeclared parameter read fails here with discovery's one-line message.

Why the folder lives at ``pipeline/testing`` (mapped to ``amsweep.testing`` in pyproject.toml):
the kit tests the compute side's plug-in contract and imports only it and the declarations, so
it sits beside them in the compute layer; the short public name is what an author imports.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Callable, Iterator

from amsweep.pipeline import registry
from amsweep.pipeline.errors import PluginError
from amsweep.testing.suite import check_component, checks

__all__ = [
    "check_component",
    "check_plugins",
    "checks",
    "component_tests",
    "path_tests",
    "plugin_kinds",
    "plugin_tests",
]


@contextlib.contextmanager
def plugin_path(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Discover ``folder``'s plug-ins (besides the built-ins) while inside; the caller's
    ``AMSWEEP_PLUGIN_PATH`` and discovery are restored after."""
    path = Path(folder).expanduser().absolute()
    before = os.environ.get(registry.ENV_VAR)
    registry.use_plugin_path(str(path))
    try:
        yield path
    finally:
        if before is None:
            os.environ.pop(registry.ENV_VAR, None)
        else:
            os.environ[registry.ENV_VAR] = before
        registry.clear()


def plugin_kinds(folder: str | os.PathLike[str]) -> list[tuple[str, str]]:
    """(family, kind) of every component file in the folder (``rules/toy.py`` -> ("rules", "toy"));
    files with a leading underscore are helpers, not components."""
    root = Path(folder).expanduser()
    kinds = [
        (family, path.stem)
        for family in registry.FAMILIES
        for path in sorted((root / family).glob("*.py"))
        if not path.stem.startswith("_")
    ]
    if not kinds:  # a mistyped folder, or its rules/ subfolder: a kit that checks nothing is a failure
        raise PluginError(
            f"{root}: no plug-in there (a plug-in folder holds {', '.join(f'{f}/' for f in registry.FAMILIES)} "
            "subfolders of .py files; give the folder above them)"
        )
    return kinds


def check_plugins(folder: str | os.PathLike[str]) -> None:
    """Run every check on every component of the folder; the first failure raises (an
    AssertionError saying what is wrong, or discovery's PluginError)."""
    with plugin_path(folder):
        for family, kind in plugin_kinds(folder):
            check_component(family, kind)


def _parametrized(cases: list[tuple[str, str, str]], folder: Path | None) -> Callable[..., None]:
    import pytest  # a test dependency: imported only when a test module asks for the tests

    def test_component(family: str, kind: str, check: str) -> None:
        with plugin_path(folder) if folder is not None else contextlib.nullcontext():
            dict(checks(family))[check](kind)

    ids = [f"{family}-{kind}-{check.removeprefix('check_')}" for family, kind, check in cases]
    return pytest.mark.parametrize("family, kind, check", cases, ids=ids)(test_component)


def plugin_tests(folder: str | os.PathLike[str]) -> Any:
    """A pytest test function parametrised over every (component, check) of the folder: assign it
    to a ``test_`` name in a test module."""
    path = Path(folder).expanduser().absolute()
    cases = [(family, kind, name) for family, kind in plugin_kinds(path) for name, _ in checks(family)]
    return _parametrized(cases, path)


def path_tests() -> Any:
    """The same over the components of every folder on ``AMSWEEP_PLUGIN_PATH`` (none when it is
    unset): what ``pytest --pyargs amsweep.testing`` runs (``test_plugin_path.py``)."""
    cases = [
        (family, kind, name)
        for folder in registry.plugin_path()
        for family, kind in plugin_kinds(folder)
        for name, _ in checks(family)
    ]
    return _parametrized(cases, None)


def component_tests() -> Any:
    """The same over every kind the registry finds now (built in, ``AMSWEEP_PLUGIN_PATH``, entry
    points): what ``tests/test_conformance.py`` runs."""
    cases = [
        (family, kind, name)
        for family in registry.FAMILIES
        for kind in registry.kinds(family)
        for name, _ in checks(family)
    ]
    return _parametrized(cases, None)
