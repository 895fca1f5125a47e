"""Find datasets, rules and dynamics by name.

A component is a public module of ``amsweep.pipeline.datasets``, ``amsweep.pipeline.rules`` or
``amsweep.pipeline.dynamics``; its file name is the ``kind`` a sweep spec names. Private modules
(leading underscore) hold shared kernels and are not components. Discovery by module name
keeps one way to add a component: drop a file in the package.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from types import ModuleType

FAMILIES = ("datasets", "rules", "dynamics")


@cache
def kinds(family: str) -> tuple[str, ...]:
    """Names of the components of a family, sorted."""
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    package = importlib.import_module(f"amsweep.pipeline.{family}")
    return tuple(sorted(m.name for m in pkgutil.iter_modules(package.__path__) if not m.name.startswith("_")))


def component(family: str, kind: str) -> ModuleType:
    """The module implementing ``kind`` in ``family``; a clear error if there is none."""
    available = kinds(family)
    if kind not in available:
        raise KeyError(
            f"unknown {family[:-1] if family != 'dynamics' else 'dynamics'} kind {kind!r}; "
            f"available: {', '.join(available)}"
        )
    return importlib.import_module(f"amsweep.pipeline.{family}.{kind}")
