"""Checks every dataset, rule and dynamics must pass, whoever wrote it.

As scikit-learn's ``check_estimator`` runs one suite over every estimator, ``tests/test_conformance.py``
runs these over every kind the registry finds (built in, on ``AMSWEEP_PLUGIN_PATH`` or from an entry
point), and ``amsweep.testing.plugin_tests`` over a plug-in author's folder, so a new component is
tested by existing. Each check takes a kind and raises AssertionError saying what is wrong. Cells
are small (N = 32 or the smallest N a dataset accepts, a few patterns) so the whole suite stays
fast; a component whose defaults are slow there declares ``QUICK`` (the settings used here). The
kit calls components as the cell does, with ``Params`` (read by key or attribute).
"""

from __future__ import annotations

import copy
import functools
import json
import re
from typing import Any, Callable

import numpy as np

from amsweep.pipeline import contracts, registry
from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.cell import CellResult, run_cell
from amsweep.pipeline.model import Data, Model, NotApplicable, Relaxation
from amsweep.pipeline.params import Params, coerce

__all__ = ["BY_FAMILY", "check_component", "checks", "COMMON", "module", "params_of", "spec_for"]

N_SMALL, P, P_TEST, BATCH, POTTS_Q = 32, 6, 4, 5, 3
CANDIDATE_N = (32, 36, 49, 64, 100, 196, 784)  # the first a dataset's check accepts is used
OWNER = {"datasets": "dataset", "rules": "rule", "dynamics": "dynamics"}  # as the cell names them
RETRIEVAL = {"train_starts": 3, "test_starts": 2, "random_starts": 2}


def module(family: str, kind: str) -> Any:
    return registry.component(family, kind)


def quick(family: str, kind: str) -> dict[str, Any]:
    """The settings the component declares for these small cells (its ``QUICK``)."""
    return dict(contracts.optional(module(family, kind), "QUICK"))


def params_of(family: str, kind: str) -> Params:
    """Every declared default, with the component's ``QUICK`` overrides, as the cell passes them."""
    defaults = {name: p.default for name, p in module(family, kind).PARAMS.items()}
    return Params({**defaults, **quick(family, kind)}, f"{OWNER[family]} {kind}")


def dataset_N(kind: str) -> int:
    """The dataset's own N, or the smallest candidate its ``check`` accepts."""
    mod, params = module("datasets", kind), params_of("datasets", kind)
    natural_N = contracts.optional(mod, "natural_N")
    if natural_N is not None:
        return int(natural_N(params))
    for N in CANDIDATE_N:
        try:
            mod.check(N, P, P_TEST, params)
        except ValueError:
            continue
        return N
    raise AssertionError(f"dataset {kind}: check refuses every N in {CANDIDATE_N} at P={P}, P_test={P_TEST}")


def make(kind: str, seed: int = 0) -> Data:
    return module("datasets", kind).make(
        dataset_N(kind), P, P_TEST, params_of("datasets", kind), np.random.default_rng(seed)
    )


def synthetic(q: int, meta_keys: tuple[str, ...] = (), seed: int = 1) -> Data:
    """Random patterns of alphabet q, or a dataset's data where the rule reads meta keys."""
    if meta_keys:
        kinds = [k for k in registry.kinds("datasets") if set(meta_keys) <= set(declared(k, "META"))]
        assert kinds, f"no registered dataset declares the meta keys {meta_keys} in its META"
        return make(kinds[0], seed)
    rng = np.random.default_rng(seed)
    X = rng.integers(0, q, size=(P + P_TEST, N_SMALL)).astype(np.int8)
    X = np.where(X == 0, -1, 1).astype(np.int8) if q == 2 else X
    return Data(train=X[:P], test=X[P:], q=q, meta={})


def declared(kind: str, name: str, family: str = "datasets") -> Any:
    return contracts.optional(module(family, kind), name)


def served_alphabets(family: str, kind: str) -> tuple[int, ...]:
    return (2, POTTS_Q) if declared(kind, "POTTS", family) else (2,)


def assert_states(name: str, S: Any, shape: tuple[int, ...], q: int) -> None:
    assert isinstance(S, np.ndarray) and S.shape == shape, f"{name}: expected a {shape} array, got {S!r:.80}"
    assert S.dtype == np.int8, f"{name}: expected int8 states, got {S.dtype}"
    allowed = (-1, 1) if q == 2 else tuple(range(q))
    assert np.isin(S, allowed).all(), f"{name}: states outside the alphabet {allowed}: {np.unique(S)}"


# ---- every family -----------------------------------------------------------------------------
def check_contract(family: str, kind: str) -> None:
    """Discovery loads the module and finds every required part (PluginError otherwise)."""
    assert contracts.problems(family, module(family, kind)) == []


def check_param_defaults(family: str, kind: str) -> None:
    """Every declared parameter has a doc, a supported type and a default its own schema accepts."""
    for name, p in module(family, kind).PARAMS.items():
        assert p.type in (int, float, str, bool), f"{kind}.PARAMS[{name!r}]: type {p.type} is not int/float/str/bool"
        assert p.doc, f"{kind}.PARAMS[{name!r}] has no doc"
        if not p.required:
            coerce(kind, name, p.default, p)  # raises SpecError naming the parameter


def spec_for(family: str, kind: str) -> dict[str, Any]:
    """The smallest spec that uses the kind with its defaults (and QUICK's overrides)."""
    raw: dict[str, Any] = {"name": "conformance", "seeds": 1, "noise": [0.1], "P_test": P_TEST}
    raw["retrieval"] = dict(RETRIEVAL)
    raw["datasets"] = {"random": {"N": [N_SMALL], "P": [P]}}
    raw["rules"] = {"hebb": {}}
    settings = quick(family, kind)
    if family == "datasets":
        table = {"kind": kind, "P": [P], **settings}
        if contracts.optional(module(family, kind), "natural_N") is None:
            table["N"] = [dataset_N(kind)]
        raw["datasets"] = {"data": table}
    elif family == "rules":
        raw["rules"] = {"rule": {"kind": kind, **settings}}
    else:
        raw["rules"] = {"rule": {"kind": provider(kind, 2), "dynamics": kind, "dynamics_params": settings}}
    return raw


def check_spec_hash_stable(family: str, kind: str) -> None:
    """Defaults written out (in any order) or left implicit, and a round trip through the cube's
    canonical JSON, all give the same hash: a resumed cube recognises its own spec."""
    raw = spec_for(family, kind)
    sweep = spec_mod.from_dict(copy.deepcopy(raw))
    assert re.fullmatch(r"[0-9a-f]{16}", sweep.spec_hash), sweep.spec_hash
    explicit = copy.deepcopy(raw)
    if family == "datasets":
        table = explicit["datasets"]["data"]
    elif family == "rules":
        table = explicit["rules"]["rule"]
    else:
        table = explicit["rules"]["rule"]["dynamics_params"]
    defaults = {name: p.default for name, p in module(family, kind).PARAMS.items() if not p.required}
    for name in reversed(list(defaults)):
        table.setdefault(name, defaults[name])
    assert spec_mod.from_dict(explicit).spec_hash == sweep.spec_hash, "explicit defaults change the spec hash"
    again = spec_mod.from_canonical(json.loads(json.dumps(sweep.canonical)))
    assert again.spec_hash == sweep.spec_hash and again.canonical == sweep.canonical


def check_cell_runs(family: str, kind: str) -> None:
    """A one-cell sweep runs end to end, or is not applicable exactly where the declarations say."""
    sweep = spec_mod.from_dict(spec_for(family, kind))
    task = next(sweep.tasks())
    reason = contracts.not_applicable(
        module("datasets", task.dataset.kind), module("rules", task.rule.kind), module("dynamics", task.rule.dynamics)
    )
    try:
        result = run_cell(sweep.job(task))
    except NotApplicable as e:
        assert reason is not None and str(e) == reason, f"not applicable without a declared reason: {e}"
        return
    assert reason is None, f"ran although the declarations say: {reason}"
    assert isinstance(result, CellResult) and result.values


# ---- datasets ---------------------------------------------------------------------------------
def check_make(kind: str) -> None:
    """Shapes, dtype, the declared alphabet (Q) and meta keys (META), disjoint from the rng's state."""
    N, q = dataset_N(kind), declared(kind, "Q")
    data = make(kind)
    assert isinstance(data, Data), f"make returned {type(data).__name__}, not Data"
    assert data.q == q, f"make returned q={data.q}, the module declares Q={q}"
    assert_states("train", data.train, (P, N), q)
    assert_states("test", data.test, (P_TEST, N), q)
    assert set(data.meta) == set(declared(kind, "META")), f"meta keys {sorted(data.meta)} != META"


def check_make_deterministic(kind: str) -> None:
    a, b = make(kind, seed=5), make(kind, seed=5)
    assert np.array_equal(a.train, b.train) and np.array_equal(a.test, b.test), "same rng seed, different data"


# ---- rules ------------------------------------------------------------------------------------
def train(kind: str, data: Data, seed: int = 0) -> Model:
    rule = module("rules", kind)
    reason = contracts.rule_not_applicable(rule, data.q, data.meta)
    assert reason is None, reason
    kwargs = {"meta": data.meta} if contracts.takes_meta(rule) else {}
    try:
        return rule.train(data.train, data.q, params_of("rules", kind), np.random.default_rng(seed), **kwargs)
    except NotApplicable as e:
        raise AssertionError(f"{kind} declares it serves q={data.q} but train raised NotApplicable: {e}") from e


def rule_data(kind: str, q: int) -> Data:
    return synthetic(q, declared(kind, "NEEDS_META", "rules"))


def check_train(kind: str) -> None:
    """On every alphabet it declares: a Model of that alphabet with what PROVIDES promises."""
    provides = set(declared(kind, "PROVIDES", "rules"))
    for q in served_alphabets("rules", kind):
        data = rule_data(kind, q)
        N = data.N
        model = train(kind, data)
        assert isinstance(model, Model) and model.q == q, f"q={q}: train returned {model!r:.80}"
        if "couplings" in provides or q > 2:
            J = model.J
            shape = (N, N) if q == 2 else (N, q, N, q)
            assert isinstance(J, np.ndarray) and J.shape == shape, f"q={q}: J should be {shape}, got {J!r:.60}"
            assert J.dtype == np.float32 and np.isfinite(J).all(), f"q={q}: J must be finite float32 ({J.dtype})"
            diagonal = np.diagonal(J) if q == 2 else J[np.arange(N), :, np.arange(N), :]
            assert not diagonal.any(), f"q={q}: the (block) diagonal of J is not zero"
        if q == 2 and "memories" in provides:
            M = model.memories
            assert isinstance(M, np.ndarray) and M.ndim == 2 and M.shape[1] == N and M.shape[0] >= 1
            assert M.dtype == np.float32 and np.isfinite(M).all(), "memories must be finite float32"
            assert "patterns" not in provides or np.isin(M, (-1.0, 1.0)).all(), "patterns must be +-1"
            assert "mixture" not in provides or np.isfinite(float(model.params["beta"])), "mixture needs beta"


def check_train_deterministic(kind: str) -> None:
    for q in served_alphabets("rules", kind):
        data = rule_data(kind, q)
        a, b = train(kind, data, seed=3), train(kind, data, seed=3)
        for part in ("J", "memories"):
            x, y = getattr(a, part), getattr(b, part)
            assert (x is None) == (y is None) and (x is None or np.array_equal(x, y)), f"q={q}: {part} differs"


def check_declared_applicability(kind: str) -> None:
    """What the rule does not serve is said by the declaration check (NotApplicable comes from it,
    not from train), naming the rule; its default dynamics can relax its model."""
    rule = module("rules", kind)
    needs = declared(kind, "NEEDS_META", "rules")
    for q in (2, POTTS_Q):
        for meta in {(), needs}:
            served = (q == 2 or declared(kind, "POTTS", "rules")) and set(needs) <= set(meta)
            reason = contracts.rule_not_applicable(rule, q, meta)
            assert (reason is None) == served, f"q={q}, meta {meta}: {reason}"
            assert served or kind in str(reason)
    dynamics = module("dynamics", declared(kind, "DEFAULT_DYNAMICS", "rules"))
    assert contracts.dynamics_not_applicable(dynamics, rule, 2) is None, "its DEFAULT_DYNAMICS cannot relax it"


# ---- dynamics ---------------------------------------------------------------------------------
def provider(kind: str, q: int) -> str:
    """A registered rule whose model the dynamics relaxes on alphabet q (one naming it as its
    default first), from data that need no meta."""
    dynamics = module("dynamics", kind)
    fits = [
        r
        for r in registry.kinds("rules")
        if not declared(r, "NEEDS_META", "rules")
        and contracts.rule_not_applicable(module("rules", r), q, ()) is None
        and contracts.dynamics_not_applicable(dynamics, module("rules", r), q) is None
    ]
    assert fits, f"no registered rule provides {declared(kind, 'NEEDS', 'dynamics')} on q={q}"
    defaults = [r for r in fits if declared(r, "DEFAULT_DYNAMICS", "rules") == kind]
    return (defaults or fits)[0]


def relax_case(kind: str, q: int) -> tuple[Model, np.ndarray, Params, Callable[[int], Relaxation]]:
    """A model to relax, cues (half-corrupted training patterns and random states) and a relax."""
    data = synthetic(q)
    model = train(provider(kind, q), data)
    rng = np.random.default_rng(7)
    cues = np.concatenate([data.train[:3], data.test[: BATCH - 3]])
    flip = rng.random(cues.shape) < 0.2
    cues = np.where(flip, -cues if q == 2 else (cues + 1) % q, cues).astype(np.int8)
    params = params_of("dynamics", kind)
    dynamics = module("dynamics", kind)
    return model, cues, params, lambda seed: dynamics.relax(model, cues, params, np.random.default_rng(seed))


def check_relax(kind: str) -> None:
    """Shape and alphabet kept, input untouched, flags per state, thermal averages in [-1, 1]."""
    for q in served_alphabets("dynamics", kind):
        model, cues, params, relax = relax_case(kind, q)
        before = cues.copy()
        r = relax(0)
        assert isinstance(r, Relaxation), f"relax returned {type(r).__name__}"
        assert np.array_equal(cues, before), "relax changed its input states (the cell reuses them)"
        assert_states("final", r.final, cues.shape, q)
        assert r.converged.shape == (len(cues),) and r.converged.dtype == np.bool_, "converged: (B,) bool"
        assert r.sweeps.shape == (len(cues),) and np.issubdtype(r.sweeps.dtype, np.integer), "sweeps: (B,) int"
        assert (0 <= r.sweeps).all() and (r.sweeps <= params["max_sweeps"]).all(), f"sweeps {r.sweeps}"
        if r.magnetisation is not None:
            m = r.magnetisation
            assert q == 2 and m.shape == cues.shape, "magnetisation: (B, N) and Ising only"
            assert np.isfinite(m).all() and (np.abs(m) <= 1 + 1e-9).all(), "magnetisation outside [-1, 1]"


def check_relax_deterministic(kind: str) -> None:
    for q in served_alphabets("dynamics", kind):
        relax = relax_case(kind, q)[3]
        a, b = relax(11), relax(11)
        for part in ("final", "converged", "sweeps", "magnetisation"):
            x, y = getattr(a, part), getattr(b, part)
            assert (x is None) == (y is None) and (x is None or np.array_equal(x, y)), f"q={q}: {part} differs"


def check_one_sweep(kind: str) -> None:
    """max_sweeps = 1 (the cell's fixed-point check) runs and keeps the alphabet."""
    for q in served_alphabets("dynamics", kind):
        model, cues, params, _ = relax_case(kind, q)
        one = Params({**params, "max_sweeps": 1}, f"dynamics {kind}")
        r = module("dynamics", kind).relax(model, cues, one, np.random.default_rng(0))
        assert_states("final", r.final, cues.shape, q)
        assert (r.sweeps <= 1).all()


def check_flip_count(kind: str) -> None:
    """A declared flip count is an int in [0, N] that grows with the noise."""
    flip_count = declared(kind, "flip_count", "dynamics")
    if flip_count is None:
        return
    for N in (32, 200):
        counts = [flip_count(N, rho) for rho in (0.0, 0.05, 0.1, 0.25, 0.5)]
        assert all(isinstance(c, int) and 0 <= c <= N for c in counts), counts
        assert counts == sorted(counts) and counts[0] == 0, counts


def check_relax_groups(kind: str) -> None:
    """A declared ``relax_groups`` gives, bit for bit, one ``relax`` per group in turn (the cell
    trusts it with every batch), budgets of 1 and an empty group included, the rng left alike."""
    relax_groups = declared(kind, "relax_groups", "dynamics")
    if relax_groups is None:
        return
    for q in served_alphabets("dynamics", kind):
        model, cues, params, _ = relax_case(kind, q)
        one = Params({**params, "max_sweeps": 1}, f"dynamics {kind}")
        groups = [(cues[:2], one), (cues[2:2], params), (cues[2:], params), (cues[:3], params)]
        a, b = np.random.default_rng(5), np.random.default_rng(5)
        apart = [module("dynamics", kind).relax(model, states, p, a) for states, p in groups]
        together = relax_groups(model, groups, b)
        assert len(together) == len(groups), f"q={q}: {len(together)} relaxations for {len(groups)} groups"
        for i, (x, y) in enumerate(zip(apart, together)):
            for part in ("final", "converged", "sweeps", "magnetisation"):
                u, v = getattr(x, part), getattr(y, part)
                same = (u is None) == (v is None) and (u is None or (u.dtype == v.dtype and np.array_equal(u, v)))
                assert same, f"q={q}, group {i}: relax_groups' {part} differs from relax's"
        assert a.random() == b.random(), f"q={q}: relax_groups drew from the rng differently"


# ---- the suite --------------------------------------------------------------------------------
COMMON = (check_contract, check_param_defaults, check_spec_hash_stable, check_cell_runs)
BY_FAMILY: dict[str, tuple[Callable[[str], None], ...]] = {
    "datasets": (check_make, check_make_deterministic),
    "rules": (check_train, check_train_deterministic, check_declared_applicability),
    "dynamics": (check_relax, check_relax_deterministic, check_one_sweep, check_flip_count, check_relax_groups),
}


def checks(family: str) -> list[tuple[str, Callable[[str], None]]]:
    """(name, check of a kind) for every check a component of the family must pass."""
    common = [(c.__name__, functools.partial(c, family)) for c in COMMON]
    return common + [(c.__name__, c) for c in BY_FAMILY[family]]


def check_component(family: str, kind: str) -> None:
    """Every check, in order: what a plug-in author runs on a new component."""
    for _, check in checks(family):
        check(kind)
