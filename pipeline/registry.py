"""Find datasets, rules and dynamics by name, and hold each to its contract.

A component is a public module of ``amsweep.pipeline.datasets``, ``.rules`` or ``.dynamics``, a
plain ``.py`` file in a ``datasets/``, ``rules/`` or ``dynamics/`` folder of a directory on
``AMSWEEP_PLUGIN_PATH`` (``dir1:dir2``, the platform's path separator), or a module named by an
entry point of the group ``amsweep.datasets``, ``amsweep.rules`` or ``amsweep.dynamics``. Its
file (or entry-point) name is the ``kind`` a sweep spec names; private modules (leading
underscore) hold shared code and are not components. Discovery by name keeps one way to add a
component: drop a file in a folder. A plug-in folder imports as a package,
``amsweep_plugins.<family>`` (its ``__path__`` is that family's folder of every directory on the
path), so a plug-in imports its own helpers as a package module would (``from ._helpers import
x``) and pickled references to it resolve on a worker that followed the same path. A module is
checked against ``amsweep.pipeline.contracts`` when first loaded, so a broken plug-in (a missing
part, a mistyped declaration, a read of an undeclared parameter) fails with a one-line
``PluginError`` naming it, not with an AttributeError in a worker hours later. A kind defined
twice is an error: a name means one module, on the driver and on every worker.

``code_hashes`` fingerprints the plug-in modules a sweep's components come from (sha256 over the
module's file and the sibling helpers it imports, named relative to their folder): a cube records
them, so a resume with edited plug-in code is caught, and the hash is the same on every machine
whatever folder the plug-in sits in. Built-in components are versioned with amsweep itself.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.machinery
import importlib.util
import os
import pkgutil
import sys
from dataclasses import dataclass
from functools import cache, partial
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Iterable

from amsweep.pipeline import contracts
from amsweep.pipeline.errors import PluginError
from amsweep.pipeline.params import did_you_mean

__all__ = [
    "clear",
    "code_hashes",
    "component",
    "ENV_VAR",
    "FAMILIES",
    "kinds",
    "PLUGIN_PACKAGE",
    "plugin_path",
    "Source",
    "sweep_code_hashes",
    "use_plugin_path",
]

FAMILIES = contracts.FAMILIES
ENV_VAR = "AMSWEEP_PLUGIN_PATH"
PLUGIN_PACKAGE = "amsweep_plugins"  # plug-in files import as amsweep_plugins.<family>.<kind>


@dataclass(frozen=True)
class Source:
    """Where a kind comes from (for messages) and how to import it."""

    origin: str
    load: Callable[[], ModuleType]
    module: str = ""  # the importable name of a plug-in (empty for a built-in component)


def plugin_path() -> tuple[Path, ...]:
    """The folders on ``AMSWEEP_PLUGIN_PATH``, absolute; a folder that does not exist is an error
    (a typo would otherwise make every plug-in in it silently unknown)."""
    folders = []
    for entry in os.environ.get(ENV_VAR, "").split(os.pathsep):
        if not entry:
            continue
        folder = Path(entry).expanduser().absolute()
        if not folder.is_dir():
            raise PluginError(f"{ENV_VAR}: {entry!r} is not a folder")
        folders.append(folder)
    return tuple(folders)


def use_plugin_path(value: str) -> None:
    """Make this process discover what a driver with ``AMSWEEP_PLUGIN_PATH=value`` discovers (a
    Ray worker before its cells run); the caches are cleared only when the value changes."""
    if os.environ.get(ENV_VAR, "") != value:
        os.environ[ENV_VAR] = value
        clear()


def _package(name: str, path: list[str]) -> ModuleType:
    """An importable package with no ``__init__`` code: a plug-in folder's own ``__init__.py``, if
    any, is not run (a folder of plug-ins is not a library with import-time side effects)."""
    spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
    spec.submodule_search_locations = path
    module = importlib.util.module_from_spec(spec)
    module.__path__ = path
    sys.modules[name] = module
    return module


def _install_packages(family: str, folders: tuple[Path, ...]) -> None:
    """``amsweep_plugins.<family>`` over the family's folder of each plug-in directory."""
    if PLUGIN_PACKAGE not in sys.modules:
        _package(PLUGIN_PACKAGE, [])
    path = [str(folder / family) for folder in folders if (folder / family).is_dir()]
    setattr(sys.modules[PLUGIN_PACKAGE], family, _package(f"{PLUGIN_PACKAGE}.{family}", path))


def _import_file(family: str, kind: str, path: Path) -> ModuleType:
    name = f"{PLUGIN_PACKAGE}.{family}.{kind}"
    try:
        module = importlib.import_module(name)  # a failed import leaves nothing in sys.modules
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # SystemExit too: a plug-in must not end (or "succeed") the run
        raise PluginError(f"{family} plug-in {kind!r} ({path}): importing it raised {_raised(e)}") from e
    if Path(module.__file__ or "") != path:  # a sibling folder on the path shadows it: never silent
        raise PluginError(f"{family} plug-in {kind!r} ({path}): imported {module.__file__} instead")
    return module


def _raised(e: BaseException) -> str:
    """What an import raised, for a one-line message; ``sys.exit(0)`` says so, as its text is "0"."""
    if isinstance(e, SystemExit):
        return f"SystemExit (it called sys.exit({e.code!r}); a plug-in module must not exit)"
    return f"{type(e).__name__}: {e}"


def _load_entry_point(family: str, kind: str, value: str, load: Callable[[], object]) -> ModuleType:
    try:
        module = load()
    except KeyboardInterrupt:
        raise
    except BaseException as e:  # SystemExit too, as for a plug-in file
        raise PluginError(f"{family} entry point {kind!r} ({value}): importing it raised {_raised(e)}") from e
    if not isinstance(module, ModuleType):
        raise PluginError(f"{family} entry point {kind!r} ({value}) names {type(module).__name__}, not a module")
    return module


@cache
def _sources(family: str) -> dict[str, Source]:
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; expected one of {FAMILIES}")
    package = importlib.import_module(f"amsweep.pipeline.{family}")
    found: dict[str, Source] = {}

    def add(kind: str, source: Source) -> None:
        if kind in found:
            raise PluginError(f"{family} kind {kind!r} is defined twice: {found[kind].origin} and {source.origin}")
        found[kind] = source

    for m in pkgutil.iter_modules(package.__path__):
        if not m.name.startswith("_"):
            module_name = f"amsweep.pipeline.{family}.{m.name}"
            add(m.name, Source(module_name, partial(importlib.import_module, module_name)))  # built in: no hash
    folders = plugin_path()
    _install_packages(family, folders)
    helpers: dict[str, Path] = {}  # one package over all folders: a helper name means one file
    for folder in folders:
        for path in sorted((folder / family).glob("*.py")):
            if path.name.startswith(".") or not path.is_file():
                continue  # an editor's lock or backup file (Emacs's `.#toy.py` is a dangling link), a fifo
            kind = path.stem
            if kind.startswith("_"):
                if kind != "__init__" and helpers.setdefault(kind, path) != path:
                    raise PluginError(
                        f"{family} helper {kind!r} is defined twice: {helpers[kind]} and {path} "
                        f"(both would import as {PLUGIN_PACKAGE}.{family}.{kind}); rename one"
                    )
                continue
            if not kind.isidentifier():
                raise PluginError(f"{family} plug-in {str(path)!r}: the file name must be a Python identifier")
            add(kind, Source(str(path), partial(_import_file, family, kind, path), f"{PLUGIN_PACKAGE}.{family}.{kind}"))
    for ep in entry_points(group=f"amsweep.{family}"):
        load = partial(_load_entry_point, family, ep.name, ep.value, ep.load)
        add(ep.name, Source(f"entry point {ep.value}", load, ep.value.split(":")[0].strip()))
    return found


def kinds(family: str) -> tuple[str, ...]:
    """Names of the components of a family, sorted (nothing is imported)."""
    return tuple(sorted(_sources(family)))


_imported: dict[tuple[str, str], str] = {}  # (family, kind) -> code hash of the plug-in as imported


@cache
def _checked(family: str, kind: str) -> ModuleType:
    source = _sources(family)[kind]
    module = source.load()
    if source.module:
        _imported[(family, kind)] = _hash(family, source, module)
    lacks = contracts.problems(family, module)
    if not lacks and family == "rules":
        lacks = _default_dynamics_problems(module)
    if lacks:
        raise PluginError(f"{family} kind {kind!r} ({source.origin}) breaks its contract: {'; '.join(lacks)}")
    return module


def _default_dynamics_problems(rule: ModuleType) -> list[str]:
    """What PROVIDES promises, held against what the rule's DEFAULT_DYNAMICS NEEDS: a spec entry
    that names no dynamics gets it, so a mismatch would refuse every such cell as not applicable."""
    name = contracts.optional(rule, "DEFAULT_DYNAMICS")
    if name not in kinds("dynamics"):
        known = kinds("dynamics")
        return [f"DEFAULT_DYNAMICS = {name!r} is not a dynamics kind; known: {', '.join(known)}"]
    reason = contracts.dynamics_not_applicable(_checked("dynamics", name), rule, 2)
    return [] if reason is None else [f"its DEFAULT_DYNAMICS cannot relax what it PROVIDES: {reason}"]


def component(family: str, kind: str) -> ModuleType:
    """The module implementing ``kind`` in ``family``, checked against its contract; KeyError if
    there is none (the spec loader names the entry), PluginError if it is broken."""
    # the cached mapping: a small cell asks ~6 times (no sort); a kind a spec wrote as a list or a
    # table is unknown like any other (a dict lookup would raise TypeError: tests/test_fuzz_inputs.py)
    if not isinstance(kind, str) or kind not in _sources(family):
        available = kinds(family)
        now, hint = os.environ.get(ENV_VAR, ""), did_you_mean(kind, available)
        raise KeyError(
            f"unknown {family[:-1] if family != 'dynamics' else 'dynamics'} kind {kind!r}; "
            f"available: {', '.join(available)}{hint}{' Or a' if hint else '; a'} plug-in? put {kind}.py in "
            f"{family}/ under a folder on {ENV_VAR} (now: {now or 'unset'})"
        )
    return _checked(family, kind)


def clear() -> None:
    """Forget what was discovered and imported from the plug-in path (tests write plug-ins, a
    worker follows its driver's path); built-in modules stay imported."""
    _sources.cache_clear()
    _checked.cache_clear()
    _imported.clear()
    for name in [n for n in sys.modules if n == PLUGIN_PACKAGE or n.startswith(PLUGIN_PACKAGE + ".")]:
        del sys.modules[name]


def sweep_code_hashes(sweep: Any) -> dict[str, str]:
    """``code_hashes`` of the components a sweep's variants name: its datasets, its rules and the
    dynamics each rule retrieves with (a plug-in the sweep does not use does not matter)."""
    used = {("datasets", d.kind) for d in sweep.datasets}
    used |= {("rules", r.kind) for r in sweep.rules} | {("dynamics", r.dynamics) for r in sweep.rules}
    return code_hashes(sorted(used))


def code_hashes(used: Iterable[tuple[str, str]]) -> dict[str, str]:
    """{plug-in module: "sha256:..."} for the (family, kind) components that are plug-ins (files on
    ``AMSWEEP_PLUGIN_PATH`` or entry points); built-in kinds are left out."""
    hashes: dict[str, str] = {}
    for family, kind in used:
        source = _sources(family)[kind]
        if not source.module:
            continue
        module = None if source.module.startswith(PLUGIN_PACKAGE + ".") else component(family, kind)
        digest = _hash(family, source, module)
        if digest:
            hashes[source.module] = digest
    return dict(sorted(hashes.items()))


def _hash(family: str, source: Source, module: ModuleType | None) -> str:
    """A plug-in's code hash ("" for an entry point without a source file: nothing to hash)."""
    if source.module.startswith(PLUGIN_PACKAGE + "."):
        folders = [folder / family for folder in plugin_path() if (folder / family).is_dir()]
        main = Path(source.origin)
    else:  # an entry point: its module's file, and its siblings it imports relatively
        file = getattr(module, "__file__", None)
        if file is None:
            return ""
        main = Path(file)
        folders = [main.parent]
    try:
        return _digest(main, folders)
    except OSError:
        return ""  # the file went away: importing it again says so


def reload_changed() -> bool:
    """Forget the plug-ins imported in this process if any one's code changed since (a notebook:
    run, fix the plug-in file, run again), so the next use imports the code as it is now: the code
    that runs is the code whose hash the cube records. An entry-point module is dropped from
    ``sys.modules`` too. True if anything was forgotten."""
    changed = []
    for (family, kind), digest in list(_imported.items()):
        source = _sources(family).get(kind)
        module = sys.modules.get(source.module) if source is not None else None
        if source is None or _hash(family, source, module) != digest:
            changed.append(source.module if source is not None else "")
    if not changed:
        return False
    for name in changed:
        if name and not name.startswith(PLUGIN_PACKAGE + "."):
            sys.modules.pop(name, None)
    clear()
    return True


def _digest(main: Path, folders: list[Path]) -> str:
    """sha256 over each file's name (its path relative to its folder) and bytes, in name order: the
    module and, transitively, the sibling modules and packages it imports (``from ._helpers import x``)."""
    files: dict[str, Path] = {}
    todo = [main]
    while todo:
        path = todo.pop()
        name = _relative(path, folders).as_posix()
        if name in files:
            continue
        files[name] = path
        todo.extend(_sibling_imports(path, folders))
    h = hashlib.sha256()
    for name in sorted(files):
        h.update(name.encode() + b"\0" + files[name].read_bytes() + b"\0")
    return f"sha256:{h.hexdigest()}"


def _relative(path: Path, folders: list[Path]) -> Path:
    """``path`` relative to the package folder holding it (its bare name if none does): the hash must
    not depend on where the plug-in folder sits."""
    for folder in folders:
        if path.is_relative_to(folder):
            return path.relative_to(folder)
    return Path(path.name)


def _sibling_imports(path: Path, folders: list[Path]) -> list[Path]:
    """The files of the modules ``path`` imports from its own package, found in the package's folders.

    Every form Python accepts is followed, because a missed one let a helper edit resume silently
    (attack23a): relative imports at any depth (``from ._x import y``, ``from . import _x``, ``from
    ._lib.core import y``, ``from .. import _x`` inside a helper package) and absolute ones through
    ``amsweep_plugins.<family>`` (``import amsweep_plugins.rules._x``, ``from amsweep_plugins.rules
    import _x``). A name that is a helper *package* (``_lib/``) brings every ``.py`` file under it:
    its modules import one another in ways not worth following one by one, and a package is small.
    A module imported dynamically (``importlib``) is not seen; ``--allow-changed-plugins`` is not
    needed for it, but neither is it protected. Helpers the module does not import are left out, so
    adding an unrelated helper does not refuse a resume.
    """
    try:
        tree = ast.parse(path.read_bytes(), filename=str(path))
    except SyntaxError:
        return []  # importing it fails with the error; its own bytes are hashed all the same
    depth = len(_relative(path, folders).parts) - 1  # 0: a module of the family folder itself
    family = folders[0].name if folders else ""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level > 0:
            if node.level <= depth:
                names.add(_relative(path, folders).parts[0])  # within its own helper package
            elif node.level == depth + 1:
                names.update([node.module.split(".")[0]] if node.module else [a.name for a in node.names])
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                parts = module.split(".")
                if len(parts) < 2 or parts[0] != PLUGIN_PACKAGE or parts[1] != family:
                    continue
                if len(parts) >= 3:
                    names.add(parts[2])
                elif isinstance(node, ast.ImportFrom):  # from amsweep_plugins.rules import _helpers
                    names.update(a.name for a in node.names)
    found: list[Path] = []
    for name in sorted(names):
        for folder in folders:
            if (folder / f"{name}.py").is_file():
                found.append(folder / f"{name}.py")
                break
            if name.isidentifier() and (folder / name).is_dir():
                found += sorted(
                    p for p in (folder / name).rglob("*.py") if "__pycache__" not in p.parts and p.is_file()
                )
                break
    return found
