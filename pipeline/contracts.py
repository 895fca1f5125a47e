"""The plug-in contract: what a dataset, rule, dynamics or executor must offer, and what it may.

A dataset, rule or dynamics is a module found by ``amsweep.pipeline.registry`` (its file name is
the ``kind`` a spec names); an executor is a class in ``amsweep.pipeline.executors.EXECUTORS``.
The Protocols below list the required parts; ``OPTIONAL`` lists the optional ones, each with the
default a module that leaves it out gets. Why one module: the cell, the spec loader, the resource
estimate and the data shipping each read a few of these attributes, and each used to carry its
own ``getattr`` default, so nothing said what a new component must define and nothing checked it.
Now ``optional(module, name)`` is the one way to read an optional part, ``problems`` is what
discovery holds a module against, and ``not_applicable`` decides from declarations alone whether
a cell can run (a cell is recorded as not applicable without making data or training).
"""

from __future__ import annotations

import ast
import difflib
import inspect
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Protocol, runtime_checkable

import numpy as np

from amsweep.pipeline.errors import SpecError, show
from amsweep.pipeline.model import Data, Model, Param, Relaxation
from amsweep.pipeline.params import coerce, did_you_mean

__all__ = [
    "ATTRIBUTES",
    "DatasetModule",
    "dynamics_not_applicable",
    "DynamicsModule",
    "Executor",
    "EXECUTOR_OPTIONS",
    "executor_problems",
    "FAMILIES",
    "kind_of",
    "model_problems",
    "near_misses",
    "not_applicable",
    "OPTIONAL",
    "optional",
    "Part",
    "problems",
    "PROTOCOLS",
    "REPRESENTATIONS",
    "required",
    "rule_not_applicable",
    "RuleModule",
    "takes_meta",
    "undeclared_reads",
]

if TYPE_CHECKING:
    from amsweep.pipeline.spec import CellJob, Sweep

# What a trained Model can offer a dynamics (a rule's PROVIDES, a dynamics' NEEDS). The memory
# representations are Ising: on Potts data (q > 2) a model offers its couplings only.
REPRESENTATIONS = {
    "couplings": "Model.J: (N, N) float32 with zero diagonal, or (N, q, N, q) with zero diagonal blocks (Potts)",
    "memories": "Model.memories: (K, N) float32 stored states",
    "patterns": "memories that are +-1 patterns (TAP's Onsager term needs xi_i^2 = 1)",
    "mixture": "memories with an inverse temperature Model.params['beta'] (optional 'log_weights')",
}
FAMILIES = ("datasets", "rules", "dynamics")
EXECUTOR_OPTIONS = ("address", "workers", "cells_per_task")  # keywords the CLI may pass an executor


class DatasetModule(Protocol):
    """A dataset kind: ``amsweep.pipeline.datasets.<kind>`` or a plug-in ``datasets/<kind>.py``."""

    PARAMS: dict[str, Param]

    def check(self, N: int, P: int, P_test: int, params: dict[str, Any]) -> None:
        """check(N, P, P_test, params): raise ValueError (OSError for a data file) for a cell that
        cannot be drawn; the spec loader calls it for every cell, before anything runs."""

    def make(self, N: int, P: int, P_test: int, params: dict[str, Any], rng: np.random.Generator) -> Data:
        """make(N, P, P_test, params, rng) -> Data: (P, N) train and (P_test, N) test int8 examples
        in the declared alphabet (Q), the META keys in Data.meta; the same rng gives the same data."""


class RuleModule(Protocol):
    """A learning rule: ``amsweep.pipeline.rules.<kind>`` or a plug-in ``rules/<kind>.py``."""

    PARAMS: dict[str, Param]

    def train(self, X: np.ndarray, q: int, params: dict[str, Any], rng: np.random.Generator) -> Model:
        """train(X, q, params, rng) -> Model: what the (P, N) patterns X teach, as the declared
        PROVIDES; a rule with NEEDS_META also takes ``meta=``. Called only on data it serves."""


class DynamicsModule(Protocol):
    """A retrieval dynamics: ``amsweep.pipeline.dynamics.<kind>`` or a plug-in ``dynamics/<kind>.py``."""

    PARAMS: dict[str, Param]  # must declare max_sweeps: the cell's fixed-point check runs one sweep

    def relax(self, model: Model, states: np.ndarray, params: dict[str, Any], rng: np.random.Generator) -> Relaxation:
        """relax(model, states, params, rng) -> Relaxation: the (B, N) states relaxed (a new array
        in their alphabet, the input left untouched), with (B,) converged and sweeps."""


@runtime_checkable
class Executor(Protocol):
    """Where cells run (``amsweep.pipeline.executors.EXECUTORS``): one class and one table entry."""

    name: str  # recorded in the cube's run record
    workers: int  # cells that may run at once
    OPTIONS: ClassVar[tuple[str, ...]]  # which EXECUTOR_OPTIONS its constructor takes as keywords

    def capacity(self) -> tuple[float, float, str]:
        """capacity() -> (memory bytes, CPUs, what offers them): what one cell may use; the runner
        refuses a sweep with a cell that does not fit before anything runs."""

    def prepare(self, sweep: Sweep) -> int:
        """prepare(sweep) -> int: the data files shipped to the workers (0 where cells run here)."""

    def map_unordered(
        self, fn: Callable[..., Any], jobs: Iterable[CellJob], total: int | None = None
    ) -> Iterator[tuple[CellJob, Any]]:
        """map_unordered(fn, jobs, total=None) -> iterator of (job, outcome): as cells finish, an
        outcome being fn(*job), a Skipped or a Failed (``amsweep.pipeline.outcomes.guarded``)."""

    # Optional (``OPTIONAL["executors"]``): map_blocks(fn, jobs, total=None) -> iterator of ResultBlock.

    def describe(self) -> dict[str, Any]:
        """describe() -> dict: where cells run, JSON-safe and cheap (no remote call): executor, address
        (None for one started here), nodes, cpus, memory_bytes, nodes_used (sorted, those that ran cells)."""

    def shutdown(self) -> None:
        """shutdown(): release what the executor started (workers, a local cluster)."""


PROTOCOLS: dict[str, type] = {"datasets": DatasetModule, "rules": RuleModule, "dynamics": DynamicsModule}
ATTRIBUTES = {
    "PARAMS": "a dict of parameter name -> amsweep.pipeline.model.Param (may be empty)",
    "name": "the executor's name (a str class attribute)",
    "workers": "how many cells may run at once (an int)",
    "OPTIONS": f"the constructor keywords it takes, a tuple of {EXECUTOR_OPTIONS}",
}


@dataclass(frozen=True)
class Part:
    """An optional part of a component: the default it gets when absent, and what a value must be."""

    default: Any
    valid: Callable[[Any], bool]
    doc: str


def _flag(v: Any) -> bool:
    return isinstance(v, bool)


def _text(v: Any) -> bool:
    return isinstance(v, str) and bool(v)


def _function(v: Any) -> bool:
    return v is None or callable(v)


def _alphabet(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and 2 <= v <= 127  # states are int8


def _names(v: Any) -> bool:
    return isinstance(v, tuple) and all(isinstance(n, str) and n for n in v)


def _representations(v: Any) -> bool:
    return _names(v) and bool(v) and set(v) <= set(REPRESENTATIONS)


def _settings(v: Any) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) for k in v)


_QUICK = Part(
    {},
    _settings,
    "dict of parameter -> value the conformance kit (amsweep.testing) uses instead of a default that is slow at "
    "N = 32 (e.g. {'epochs': 20}); declared parameters only",
)


OPTIONAL: dict[str, dict[str, Part]] = {
    "datasets": {
        "Q": Part(2, _alphabet, "alphabet size: 2 = +-1 Ising data, q > 2 = Potts states 0..q-1 (int, <= 127)"),
        "META": Part((), _names, "tuple of the Data.meta keys every make() result carries (what NEEDS_META asks)"),
        "natural_N": Part(None, _function, "natural_N(params) -> int, the one N the data have (a spec may omit N)"),
        "data_files": Part(None, _function, "data_files(params) -> list of the files make() reads (Ray ships them)"),
        "with_data_folder": Part(
            None, _function, "with_data_folder(params, folder) -> params reading the shipped copies (with data_files)"
        ),
        "TEST_MEANINGFUL": Part(
            True,
            _flag,
            "bool: test examples share the training set's structure; False (i.i.d. random patterns): figures and "
            "reports leave out m_test and every test-derived value",
        ),
        "QUICK": _QUICK,
    },
    "rules": {
        "DEFAULT_DYNAMICS": Part("asynchronous", _text, "the dynamics kind a spec entry gets when it names none"),
        "POTTS": Part(False, _flag, "bool: also serves Potts data (q > 2), as (N, q, N, q) couplings"),
        "NEEDS_META": Part(
            (), _names, "tuple of Data.meta keys train reads (passed as meta=; a dataset declares them)"
        ),
        "READS_META": Part(
            (), _names, "tuple of Data.meta keys train uses when the dataset has them (passed as meta=; optional)"
        ),
        "PROVIDES": Part(("couplings",), _representations, f"non-empty tuple of {sorted(REPRESENTATIONS)}"),
        "memory_bytes": Part(
            None,
            _function,
            "memory_bytes(N, P, q, params) -> int, the bytes train holds at its peak on P patterns of N sites "
            "(alphabet q); amsweep.pipeline.resources uses it instead of its PLM-calibrated estimate",
        ),
        "QUICK": _QUICK,
    },
    "dynamics": {
        "POTTS": Part(False, _flag, "bool: also relaxes Potts states (q > 2)"),
        "NEEDS": Part(("couplings",), _representations, f"non-empty tuple of {sorted(REPRESENTATIONS)}"),
        "STOCHASTIC": Part(False, _flag, "bool: thermal, so fixed points are checked with the T = 0 dynamics"),
        "flip_count": Part(None, _function, "flip_count(N, rho) -> int, the sites a cue of noise rho has flipped"),
        "relax_groups": Part(
            None,
            _function,
            "relax_groups(model, [(states, params), ...], rng) -> [Relaxation, ...], bit for bit what relax gives "
            "for each group in turn, in fewer calls (a cell relaxes all its groups through it)",
        ),
        "QUICK": _QUICK,
    },
    "executors": {
        "map_blocks": Part(
            None,
            _function,
            "map_blocks(fn, jobs, total=None) -> iterator of amsweep.pipeline.outcomes.ResultBlock: map_unordered's "
            "outcomes a finished batch at a time, as columns; the runner takes these when the executor has it "
            "(issue 26: per-cell outcomes cost the driver ~18 us a cell), else map_unordered's cells one by one",
        ),
    },
}


def _by_name(tables: dict[str, dict[str, Part]]) -> dict[str, Part]:
    """The optional parts by name alone: a name two families share (POTTS) means the same in both."""
    out: dict[str, Part] = {}
    for table in tables.values():
        for name, part in table.items():
            if out.setdefault(name, part).default != part.default:
                raise TypeError(f"optional part {name!r} has two defaults")
    return out


_BY_NAME = _by_name(OPTIONAL)


def optional(module: Any, name: str) -> Any:
    """The module's optional part ``name``, or its declared default; an undeclared name is a
    KeyError, so a typo cannot silently read a default."""
    return getattr(module, name, _BY_NAME[name].default)


def kind_of(module: Any) -> str:
    """The kind a component module implements: the last part of its module name."""
    return str(getattr(module, "__name__", module)).rpartition(".")[2]


def required(protocol: type) -> dict[str, str]:
    """The required parts of a Protocol, name -> what it must be: its attributes, and its methods
    described by their docstrings' call form (what discovery's messages show)."""
    out = {name: ATTRIBUTES.get(name, "an attribute") for name in protocol.__dict__.get("__annotations__", {})}
    for name, member in vars(protocol).items():
        if callable(member) and not name.startswith("_"):
            out[name] = "a function " + (inspect.getdoc(member) or name).split(":")[0]
    return out


OPTIONAL_ARITY = {"memory_bytes": 4, "relax_groups": 3}  # optional functions called with this many positional arguments


def _callable_with(fn: Any, n: int, **keywords: Any) -> bool:
    """Whether ``fn`` accepts ``n`` positional arguments (checked at load: a wrong signature would
    otherwise fail every cell with a TypeError inside a worker)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # a builtin or C function: cannot tell, let the call decide
        return True
    try:
        sig.bind(*range(n), **keywords)
    except TypeError:
        return False
    return True


def _signature(fn: Any) -> str:
    try:
        return str(inspect.signature(fn))
    except (TypeError, ValueError):
        return "(...)"


def problems(family: str, module: Any) -> list[str]:
    """What a component module lacks or declares wrongly; empty when it keeps the contract."""
    out = []
    for name, what in required(PROTOCOLS[family]).items():
        value = getattr(module, name, None)
        if name == "PARAMS":
            if not (isinstance(value, dict) and all(isinstance(p, Param) for p in value.values())):
                out.append(f"lacks PARAMS, {what}" if value is None else f"PARAMS = {show(value)} is not {what}")
        elif not callable(value):
            out.append(f"lacks {name}, {what}")
        elif not (
            _callable_with(value, len(inspect.signature(getattr(PROTOCOLS[family], name)).parameters) - 1)
            or (name == "train" and takes_meta(module) and _callable_with(value, 4, meta=None))  # as the cell calls it
        ):
            out.append(f"{name}{_signature(value)} cannot be called as {what.removeprefix('a function ')}")
    for name, part in OPTIONAL[family].items():
        if hasattr(module, name) and not part.valid(getattr(module, name)):
            out.append(f"{name} = {show(getattr(module, name))} is not valid: {part.doc}")
        elif (
            name in OPTIONAL_ARITY
            and hasattr(module, name)
            and not _callable_with(getattr(module, name), OPTIONAL_ARITY[name])
        ):
            out.append(f"{name}{_signature(getattr(module, name))} cannot be called as {part.doc.split(' ->')[0]}")
    out += near_misses(family, module)
    if out:  # the checks below read what the ones above vouched for
        return out
    out += undeclared_reads(family, module)
    quick = optional(module, "QUICK")
    for name, value in quick.items():
        if name not in module.PARAMS:
            out.append(f"QUICK names {name!r}, which PARAMS does not declare{did_you_mean(name, module.PARAMS)}")
            continue
        try:
            coerce("QUICK", name, value, module.PARAMS[name])
        except SpecError as e:
            out.append(str(e))
    if family == "datasets":
        if (optional(module, "data_files") is None) != (optional(module, "with_data_folder") is None):
            out.append("declares only one of data_files and with_data_folder: shipping data files needs both")
    elif family == "rules":
        provides = set(optional(module, "PROVIDES"))
        if takes_meta(module) and not _callable_with(module.train, 4, meta=None):
            out.append("declares NEEDS_META or READS_META but its train takes no meta= keyword")
        if optional(module, "POTTS") and "couplings" not in provides:
            out.append("declares POTTS but does not provide couplings (a Potts model is its couplings)")
        if provides & {"patterns", "mixture"} and "memories" not in provides:
            out.append("provides patterns or a mixture but not memories (both are kinds of memories)")
    elif "max_sweeps" not in module.PARAMS:
        out.append("PARAMS lacks max_sweeps (the cell checks fixed points by running one sweep)")
    return out


def _declared_here(module: Any, name: str, value: Any) -> bool:
    """Whether a module-level name is the module's own (not an import such as ``np`` or ``Param``)."""
    if inspect.ismodule(value):
        return False
    origin = getattr(value, "__module__", None)
    return origin is None or origin == module.__name__ or not (inspect.isfunction(value) or inspect.isclass(value))


def near_misses(family: str, module: Any) -> list[str]:
    """Public module-level names that look like a mistyped contract name (``POTT``, ``PROVIDE``,
    ``Params``): a typo of an optional declaration would otherwise load and read as the default.

    Close means difflib's ratio >= 0.8, or the same name in another case; a helper of another
    name (``hebb_couplings``, ``relax_batch``) is not close to any contract name."""
    contract = [*required(PROTOCOLS[family]), *OPTIONAL[family]]
    out = []
    for name, value in vars(module).items():
        if name.startswith("_") or name in contract or not _declared_here(module, name, value):
            continue
        same_case = [c for c in contract if c.lower() == name.lower()]
        close = same_case or difflib.get_close_matches(name, contract, n=1, cutoff=0.8)
        if close:
            out.append(f"{name} is not a declaration; did you mean {close[0]}?")
    return out


# Which argument of each contract function is the component's parameters (``Params``).
PARAMS_ARGUMENT = {
    "check": 3,
    "make": 3,
    "natural_N": 0,
    "data_files": 0,
    "with_data_folder": 0,
    "train": 2,
    "memory_bytes": 3,
    "relax": 2,
}
_MAPPING_METHODS = frozenset(n for n in dir(dict) if not n.startswith("_"))


def _read_key(node: ast.AST, name: str) -> str | None:
    """The parameter a node reads from the variable ``name``: ``name["k"]``, ``name.k`` or
    ``name.get("k", ...)``; None for anything else."""
    if isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == name:
        key = node.slice
        return key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else None
    if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == name:
        return None if node.attr in _MAPPING_METHODS else node.attr
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "get"
        and isinstance(node.func.value, ast.Name)
        and node.func.value.id == name
        and node.args
        and isinstance(node.args[0], ast.Constant)
        and isinstance(node.args[0].value, str)
    ):
        return node.args[0].value
    return None


def _scope(fn: ast.FunctionDef, name: str) -> Iterator[ast.AST]:
    """The nodes of ``fn`` where ``name`` is still its argument: a nested function or lambda that
    binds the same name itself (``def step(params, grad)`` over weights, or a local ``params = ...``)
    is skipped."""
    stack: list[ast.AST] = [*fn.args.defaults, *fn.body]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            own = [*a.posonlyargs, *a.args, *a.kwonlyargs, *(x for x in (a.vararg, a.kwarg) if x is not None)]
            local = any(
                isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store) for n in ast.walk(node)
            )
            if name in {x.arg for x in own} or local:
                continue  # its own ``name`` (an argument or a local): not the component's parameters
        yield node
        stack.extend(ast.iter_child_nodes(node))


def undeclared_reads(family: str, module: Any) -> list[str]:
    """Parameters the module's contract functions read by a literal name that PARAMS does not
    declare (``params["lr_"]``, ``params.lr_``): found in the source at load, since the spec can
    never set such a key and the read would otherwise be a KeyError inside a worker. Reads through
    a helper, or after the name is rebound, are not followed (``Params`` names them at run time)."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError, SyntaxError):  # no source (a compiled or generated module)
        return []
    contract = {*required(PROTOCOLS[family]), *OPTIONAL[family]}
    declared = module.PARAMS
    out = []
    for fn in tree.body:
        if not (isinstance(fn, ast.FunctionDef) and fn.name in PARAMS_ARGUMENT and fn.name in contract):
            continue
        arguments = [*fn.args.posonlyargs, *fn.args.args]
        if len(arguments) <= PARAMS_ARGUMENT[fn.name]:
            continue
        name = arguments[PARAMS_ARGUMENT[fn.name]].arg
        nodes = list(_scope(fn, name))
        if any(isinstance(n, ast.Name) and n.id == name and isinstance(n.ctx, ast.Store) for n in nodes):
            continue  # rebound: what it holds is no longer the declared parameters alone
        for node in nodes:
            key = _read_key(node, name)
            if key is not None and key not in declared:
                out.append(
                    f"{fn.name} reads {name}[{key!r}], which PARAMS does not declare "
                    f"(declared: {', '.join(declared) or 'none'}){did_you_mean(key, declared)}"
                )
    return list(dict.fromkeys(out))


def _array(a: Any) -> str:
    return f"a {a.dtype} array of shape {a.shape}" if isinstance(a, np.ndarray) else show(a)


def model_problems(rule: Any, model: Any, q: int, N: int) -> list[str]:
    """Where a trained model lacks what the rule's PROVIDES promises (shapes and dtypes, not
    values): the cell checks each model before any dynamics reads it, so a rule that breaks its
    declaration fails its cell naming the part, not inside a numba kernel."""
    if not isinstance(model, Model):
        return [f"train returned {type(model).__name__}, not a Model"]
    provides, out = set(optional(rule, "PROVIDES")), []
    if model.q != q:
        out.append(f"train returned a model of q={model.q} for data of q={q}")
    if "couplings" in provides or q > 2:
        shape = (N, N) if q == 2 else (N, q, N, q)
        J = model.J
        if not (isinstance(J, np.ndarray) and J.shape == shape and J.dtype == np.float32):
            out.append(f"it PROVIDES couplings but Model.J is {_array(J)}, not float32 of shape {shape}")
    if q == 2 and "memories" in provides:
        M = model.memories
        if not (isinstance(M, np.ndarray) and M.ndim == 2 and M.shape[1] == N and M.dtype == np.float32):
            out.append(f"it PROVIDES memories but Model.memories is {_array(M)}, not float32 (K, {N})")
        if "mixture" in provides and "beta" not in model.params:
            out.append("it PROVIDES a mixture but Model.params has no 'beta'")
    return out


def takes_meta(rule: Any) -> bool:
    """Whether the cell passes the dataset's meta to train: it needs keys or reads them if present."""
    return bool(optional(rule, "NEEDS_META") or optional(rule, "READS_META"))


def executor_problems(cls: type) -> list[str]:
    """What an executor class lacks (``workers`` may be set per instance, so it is not checked here)."""
    out = []
    for name, what in required(Executor).items():
        value = getattr(cls, name, None)
        if what.startswith("a function") and not callable(value):
            out.append(f"lacks {name}, {what}")
    if not isinstance(getattr(cls, "name", None), str):
        out.append(f"lacks name, {ATTRIBUTES['name']}")
    for name, part in OPTIONAL["executors"].items():
        if hasattr(cls, name) and not part.valid(getattr(cls, name)):
            out.append(f"{name} = {show(getattr(cls, name))} is not valid: {part.doc}")
    options = getattr(cls, "OPTIONS", None)
    if not (isinstance(options, tuple) and set(options) <= set(EXECUTOR_OPTIONS)):
        out.append(f"OPTIONS = {show(options)} is not {ATTRIBUTES['OPTIONS']}")
    else:
        takes = inspect.signature(cls).parameters
        forwards = any(p.kind is p.VAR_KEYWORD for p in takes.values())  # ``**options`` passed on
        out += [
            f"OPTIONS names {o!r}, which its constructor does not take"
            for o in options
            if o not in takes and not forwards
        ]
    return out


def rule_not_applicable(rule: Any, q: int, meta_keys: Iterable[str], source: str = "its dataset") -> str | None:
    """Why the rule cannot serve data of alphabet q whose meta has ``meta_keys``; None if it can."""
    if q > 2 and not optional(rule, "POTTS"):
        return f"{kind_of(rule)} is Ising-only (q=2)"
    missing = [k for k in optional(rule, "NEEDS_META") if k not in set(meta_keys)]
    if missing:
        return f"{kind_of(rule)} needs meta {', '.join(map(repr, missing))}, which {source} does not provide"
    return None


def dynamics_not_applicable(dynamics: Any, rule: Any, q: int) -> str | None:
    """Why the dynamics cannot relax what the rule trains on data of alphabet q; None if it can."""
    name = kind_of(dynamics)
    if q > 2 and not optional(dynamics, "POTTS"):
        return f"{name} dynamics is Ising-only (q=2)"
    offered = set(optional(rule, "PROVIDES")) & ({"couplings"} if q > 2 else set(REPRESENTATIONS))
    for need in optional(dynamics, "NEEDS"):
        if need not in offered:
            return (
                f"{name} dynamics needs {need} ({REPRESENTATIONS[need]}); {kind_of(rule)} provides "
                f"{', '.join(sorted(offered)) or 'none of them'}" + (" on Potts data" if q > 2 else "")
            )
    return None


def not_applicable(dataset: Any, rule: Any, dynamics: Any) -> str | None:
    """Why a cell of these components cannot run, decided from their declarations; None if it can."""
    q = optional(dataset, "Q")
    source = f"dataset {kind_of(dataset)}"
    return rule_not_applicable(rule, q, optional(dataset, "META"), source) or dynamics_not_applicable(dynamics, rule, q)
