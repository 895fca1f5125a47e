"""Sweep specs: TOML in, a validated, canonical, hashed ``Sweep`` out.

Everything a sweep will ever ask of a dataset, rule or dynamics is checked here, before any
work starts, so that a week-long run cannot die on a typo in hour three. The canonical form
(every default filled in, lists expanded into named variants) is what a cube records and
compares against when it is reopened.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from amsweep.pipeline import basin_bisection, limits, registry
from amsweep.pipeline.errors import show
from amsweep.pipeline.params import INT64_MAX, SpecError, coerce, resolve
from amsweep.pipeline.model import Param

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

TOP_KEYS = {
    "name",
    "description",
    "root_seed",
    "seeds",
    "noise",
    "P_test",
    "retrieval",
    "datasets",
    "rules",
    "dynamics",
}
ENTRY_NAME = re.compile(r"[A-Za-z0-9_-]+")
RETRIEVAL = {
    "train_starts": Param(100, int, "training examples corrupted per noise level (at most P)", low=1),
    "test_starts": Param(100, int, "test examples corrupted per noise level (at most P_test)", low=0),
    "random_starts": Param(20, int, "random initial states per task, to probe spurious attractors", low=0),
    "store_couplings": Param(
        False,
        bool,
        "also keep each task's trained couplings (or memories) in the "
        "cube's per-task store; N x N floats per task, so off by default",
    ),
    **basin_bisection.PARAMS,
}


@dataclass(frozen=True)
class DatasetVariant:
    """One value of the cube's ``dataset`` axis: a dataset kind with scalar parameters."""

    label: str
    entry: str
    kind: str
    params: dict[str, Any]
    N: tuple[int, ...]
    load: tuple[float, ...]
    P_test: int
    stream: str | None = None  # label its random streams are keyed by, if not ``label``

    @property
    def stream_label(self) -> str:
        """The first label of this variant: a relabelled variant keeps its random streams."""
        return self.stream or self.label


@dataclass(frozen=True)
class RuleVariant:
    """One value of the cube's ``rule`` axis: a learning rule plus the dynamics that retrieves."""

    label: str
    entry: str
    kind: str
    params: dict[str, Any]
    dynamics: str
    dynamics_params: dict[str, Any]
    stream: str | None = None  # label its random streams are keyed by, if not ``label``

    @property
    def stream_label(self) -> str:
        """The first label of this variant: a relabelled variant keeps its random streams."""
        return self.stream or self.label


@dataclass(frozen=True)
class Task:
    """One unit of work: train once on (dataset, N, P, rule, seed), evaluate every noise level."""

    dataset: DatasetVariant
    N: int
    load: float
    P: int
    rule: RuleVariant
    seed: int
    index: tuple[int, int, int, int, int]  # position on (dataset, N, load, rule, seed)


@dataclass(frozen=True)
class Sweep:
    """A validated sweep. ``canonical`` is the JSON-able form whose hash identifies it."""

    name: str
    description: str
    root_seed: int
    seeds: tuple[int, ...]
    noise: tuple[float, ...]
    load_axis: str  # "alpha" or "P"
    retrieval: dict[str, int]
    datasets: tuple[DatasetVariant, ...]
    rules: tuple[RuleVariant, ...]
    canonical: dict[str, Any]

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.canonical)

    @property
    def N_values(self) -> tuple[int, ...]:
        """The cube's N axis: sorted for a new spec; an extended cube appends new values."""
        return tuple(self.canonical["axes"]["N"])

    @property
    def load_values(self) -> tuple[float, ...]:
        return tuple(self.canonical["axes"]["load"])

    def P_of(self, N: int, load: float) -> int:
        """Training-set size of a cell: alpha * N rounded to the nearest integer (at least 1)."""
        return int(load) if self.load_axis == "P" else max(1, int(round(load * N)))

    def tasks(self) -> Iterator[Task]:
        """Every applicable task; (dataset, N, load) combinations a dataset does not list are skipped."""
        Ns, loads = self.N_values, self.load_values
        for i_d, d in enumerate(self.datasets):
            for N in d.N:
                for load in d.load:
                    for i_r, r in enumerate(self.rules):
                        for i_s, seed in enumerate(self.seeds):
                            yield Task(
                                d, N, load, self.P_of(N, load), r, seed, (i_d, Ns.index(N), loads.index(load), i_r, i_s)
                            )

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (len(self.datasets), len(self.N_values), len(self.load_values), len(self.rules), len(self.seeds))


def spec_hash(canonical: dict[str, Any]) -> str:
    """Hash of the scientific content (name and description excluded: renaming is not a new sweep)."""
    core = {k: v for k, v in canonical.items() if k not in ("name", "description")}
    return hashlib.sha256(json.dumps(core, sort_keys=True).encode()).hexdigest()[:16]


def load(path: str | Path) -> Sweep:
    """Read and validate a TOML spec file; every error names the file."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"spec file {str(path)!r} does not exist")
    if not path.is_file():
        raise SpecError(f"spec file {str(path)!r} is not a file")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise SpecError(
            f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset {e.start}); "
            "a spec is a TOML file in UTF-8"
        ) from None
    except OSError as e:
        raise SpecError(f"{path}: cannot read the spec file ({e.strerror or e})") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise SpecError(f"{path}: not valid TOML: {e}") from None
    raw.setdefault("name", path.stem)
    try:
        return from_dict(raw)
    except SpecError as e:
        raise SpecError(f"{path}: {e}") from None


def _int_list(where: str, value: Any, low: int) -> tuple[int, ...]:
    values = value
    if not isinstance(values, list) or not values:
        raise SpecError(f"{where} = {show(value)}: expected a non-empty list of integers")
    limits.check_count(where, len(values), "values")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise SpecError(f"{where}: value {show(v)} is not an integer >= {low}")
        if v > INT64_MAX:
            raise SpecError(f"{where}: value {show(v)} does not fit in 64 bits (at most 2**63 - 1)")
    if len(set(values)) != len(values):
        raise SpecError(f"{where}: duplicate values in {show(values)}")
    return tuple(values)


def _float_list(where: str, value: Any, low: float, high: float | None, open_low: bool = False) -> tuple[float, ...]:
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where} = {show(value)}: expected a non-empty list of numbers")
    limits.check_count(where, len(value), "values")
    bound = Param(None, float, where, low=low, high=high, open_low=open_low)
    values = tuple(coerce(where, where.split(".")[-1], v, bound) for v in value)
    if len(set(values)) != len(values):
        raise SpecError(f"{where}: duplicate values in {show(list(value))}")
    return values


def _variants(where: str, entry: str, params: dict[str, list[Any]]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Cartesian product of list-valued parameters; labels name only the swept ones."""
    names = list(params)
    swept = [n for n in names if len(params[n]) > 1]
    n = 1
    for name in swept:
        n *= len(params[name])
    limits.check_variants(where, n, " x ".join(f"{k}: {len(params[k])}" for k in swept))
    for combo in itertools.product(*(params[n] for n in names)):
        values = dict(zip(names, combo))
        label = entry if not swept else entry + "[" + ",".join(f"{n}={values[n]}" for n in swept) + "]"
        yield label, values


def _component(where: str, family: str, kind: Any):
    try:
        return registry.component(family, kind)
    except KeyError as e:
        raise SpecError(f"{where}: {e.args[0]}") from None


def _entries(family: str, value: Any) -> dict[str, Any]:
    """A family's entries; names are TOML bare keys, since they become the labels that --where,
    file names and figure titles use (a '[', ',' or newline in a name would break them)."""
    for entry in _table(family, value):
        if not isinstance(entry, str) or not ENTRY_NAME.fullmatch(entry):
            raise SpecError(
                f"{family}: entry name {show(entry)} is not allowed; use letters, digits, '_' and '-' (a TOML bare key)"
            )
    return value


def _table(where: str, value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected a table, got {show(value)}")
    return value


def _count(where: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        raise SpecError(f"{where} = {show(value)}: expected an integer >= 0 (at most 2**63 - 1)")
    return value


def _datasets(
    raw: dict[str, Any], load_axis: str, default_P_test: int, random_starts: int
) -> tuple[DatasetVariant, ...]:
    out: list[DatasetVariant] = []
    for entry, table in _entries("datasets", raw).items():
        where = f"datasets.{entry}"
        table = dict(_table(where, table))
        kind = table.pop("kind", entry)
        module = _component(f"{where}.kind", "datasets", kind)
        other_axis = "P" if load_axis == "alpha" else "alpha"
        if other_axis in table:
            raise SpecError(
                f"{where}: uses {other_axis!r} but another entry uses {load_axis!r}; one sweep has one load axis"
            )
        if load_axis not in table:
            raise SpecError(f"{where}: missing {load_axis!r} (the list of loads)")
        loads = (
            _int_list(f"{where}.P", table.pop("P"), 1)
            if load_axis == "P"
            else _float_list(f"{where}.alpha", table.pop("alpha"), 0.0, None, open_low=True)
        )
        P_test = _count(f"{where}.P_test", table.pop("P_test", default_P_test))
        raw_N = table.pop("N", None)
        params = resolve(where, module.PARAMS, table, structural=("kind", "N", load_axis, "P_test"))
        if "path" in params:  # workers may start elsewhere: data paths travel as absolute paths
            params["path"] = [
                os.path.abspath(os.path.expanduser(p)) if p and "://" not in p else p for p in params["path"]
            ]
        for label, values in _variants(where, entry, params):
            if raw_N is None:
                if not hasattr(module, "natural_N"):
                    raise SpecError(f"{where}: missing 'N' (list of network sizes)")
                try:
                    Ns = (int(module.natural_N(values)),)
                except (ValueError, OSError) as e:  # the data file is part of the spec
                    raise SpecError(f"{where} ({label}): {e}") from None
            else:
                Ns = _int_list(f"{where}.N", raw_N, 2)
            variant = DatasetVariant(label, entry, kind, values, tuple(sorted(Ns)), tuple(sorted(loads)), P_test)
            limits.check_count(where, len(variant.N) * len(variant.load), "(N, load) cells")
            for N in variant.N:
                for x in variant.load:
                    at = f"{where} ({label}) at N={N}, {load_axis}={x}"
                    P = limits.patterns(at, load_axis, x, N)
                    limits.check_cell_size(at, N, P, P_test, random_starts)
                    try:
                        module.check(N, P, P_test, values)
                    except (ValueError, OSError) as e:
                        raise SpecError(
                            f"{where} ({label}) at N={N}, {load_axis}={x} (P={P}, P_test={P_test}): {e}"
                        ) from None
            out.append(variant)
    if not out:
        raise SpecError("datasets: the spec defines no dataset; add a [datasets.NAME] table")
    return tuple(out)


def _dynamics_defaults(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``[dynamics.KIND]`` tables: known kinds only, each a table of that kind's parameters."""
    out = {}
    for kind, table in _entries("dynamics", raw).items():
        module = _component(f"dynamics.{kind}", "dynamics", kind)
        out[kind] = _table(f"dynamics.{kind}", table)
        resolve(f"dynamics.{kind}", module.PARAMS, out[kind])  # unknown keys, bad values
    return out


def _rules(raw: dict[str, Any], dyn_defaults: dict[str, dict[str, Any]]) -> tuple[RuleVariant, ...]:
    out: list[RuleVariant] = []
    for entry, table in _entries("rules", raw).items():
        where = f"rules.{entry}"
        table = dict(_table(where, table))
        kind = table.pop("kind", entry)
        module = _component(f"{where}.kind", "rules", kind)
        dyn_kind = table.pop("dynamics", getattr(module, "DEFAULT_DYNAMICS", "asynchronous"))
        dyn_module = _component(f"{where}.dynamics", "dynamics", dyn_kind)
        dyn_given = {
            **dyn_defaults.get(dyn_kind, {}),
            **_table(f"{where}.dynamics_params", table.pop("dynamics_params", {})),
        }
        rule_params = resolve(where, module.PARAMS, table, structural=("kind", "dynamics", "dynamics_params"))
        dyn_params = resolve(f"{where}.dynamics_params ({dyn_kind})", dyn_module.PARAMS, dyn_given)
        both = {**{k: v for k, v in rule_params.items()}, **{f"dynamics.{k}": v for k, v in dyn_params.items()}}
        for label, values in _variants(where, entry, both):
            label = label.replace("dynamics.", "")
            rp = {k: v for k, v in values.items() if not k.startswith("dynamics.")}
            dp = {k[len("dynamics.") :]: v for k, v in values.items() if k.startswith("dynamics.")}
            out.append(RuleVariant(label, entry, kind, rp, dyn_kind, dp))
    if not out:
        raise SpecError("rules: the spec defines no rule; add a [rules.NAME] table")
    unused = sorted(set(dyn_defaults) - {r.dynamics for r in out})
    if unused:
        raise SpecError(
            f"dynamics.{unused[0]}: no rule uses this dynamics, so its defaults would be "
            f"ignored; dynamics used by the rules: {', '.join(sorted({r.dynamics for r in out}))}"
        )
    return tuple(out)


def from_dict(raw: dict[str, Any]) -> Sweep:
    """Validate a parsed spec; raise SpecError naming the first problem found."""
    unknown = sorted(set(raw) - TOP_KEYS)
    if unknown:
        raise SpecError(
            f"unknown top-level key(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(sorted(TOP_KEYS))}"
        )
    for key in ("datasets", "rules", "noise", "seeds"):
        if key not in raw:
            raise SpecError(f"missing top-level key {key!r}")
    name = raw.get("name", "sweep")
    if not isinstance(name, str) or not name:
        raise SpecError(f"name = {show(name)}: expected a non-empty string")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"description = {show(description)}: expected a string")
    root_seed = _count("root_seed", raw.get("root_seed", 0))
    seeds = _seeds(raw["seeds"])
    noise = _float_list("noise", raw["noise"], 0.0, 0.5)
    default_P_test = _count("P_test", raw.get("P_test", 100))
    given_retrieval = _table("retrieval", raw.get("retrieval", {}))
    retrieval = basin_bisection.canonical_retrieval(
        {k: v[0] for k, v in resolve("retrieval", RETRIEVAL, given_retrieval, sweepable=False).items()}, given_retrieval
    )
    entries = _entries("datasets", raw["datasets"])
    axes = {("P" if "P" in _table(f"datasets.{k}", t) else "alpha") for k, t in entries.items()}
    load_axis = "P" if axes == {"P"} else "alpha"
    datasets = _datasets(entries, load_axis, default_P_test, retrieval["random_starts"])
    rules = _rules(raw["rules"], _dynamics_defaults(raw.get("dynamics", {})))
    for family, variants in (("dataset", datasets), ("rule", rules)):
        labels = [v.label for v in variants]
        if len(set(labels)) != len(labels):
            raise SpecError(
                f"{family}s: two variants share the label(s) "
                f"{sorted({l for l in labels if labels.count(l) > 1})}; rename an entry"
            )
    n_N, n_load = len({n for d in datasets for n in d.N}), len({x for d in datasets for x in d.load})
    limits.check_count(
        "datasets, rules, seeds",
        len(datasets) * n_N * n_load * len(rules) * len(seeds),
        f"tasks ({len(datasets)} dataset variants x {n_N} N x {n_load} {load_axis} x "
        f"{len(rules)} rule variants x {len(seeds)} seeds)",
    )
    canonical = {
        "name": name,
        "description": description,
        "root_seed": root_seed,
        "seeds": list(seeds),
        "noise": list(noise),
        "load_axis": load_axis,
        "retrieval": retrieval,
        "datasets": [
            {
                "label": d.label,
                "entry": d.entry,
                "kind": d.kind,
                "params": d.params,
                "N": list(d.N),
                "load": list(d.load),
                "P_test": d.P_test,
            }
            for d in datasets
        ],
        "rules": [
            {
                "label": r.label,
                "entry": r.entry,
                "kind": r.kind,
                "params": r.params,
                "dynamics": r.dynamics,
                "dynamics_params": r.dynamics_params,
            }
            for r in rules
        ],
        "axes": {
            "N": sorted({n for d in datasets for n in d.N}),
            "load": sorted({x for d in datasets for x in d.load}),
        },
    }
    return Sweep(
        name, canonical["description"], root_seed, seeds, noise, load_axis, retrieval, datasets, rules, canonical
    )


def _seeds(raw: Any) -> tuple[int, ...]:
    """``seeds = 3`` means seeds 0, 1, 2; a list gives the seeds themselves."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise SpecError(f"seeds = {show(raw)}: expected a count >= 1 or a non-empty list of integers >= 0")
        limits.check_count("seeds", raw, "seeds")
        raw = list(range(raw))
    return _int_list("seeds", raw, 0)


def from_canonical(canonical: dict[str, Any]) -> Sweep:
    """Rebuild a Sweep from the canonical JSON a cube stores (no data files are touched)."""
    datasets = tuple(
        DatasetVariant(
            d["label"],
            d["entry"],
            d["kind"],
            d["params"],
            tuple(d["N"]),
            tuple(d["load"]),
            d["P_test"],
            d.get("stream"),
        )
        for d in canonical["datasets"]
    )
    rules = tuple(
        RuleVariant(
            r["label"], r["entry"], r["kind"], r["params"], r["dynamics"], r["dynamics_params"], r.get("stream")
        )
        for r in canonical["rules"]
    )
    return Sweep(
        canonical["name"],
        canonical["description"],
        canonical["root_seed"],
        tuple(canonical["seeds"]),
        tuple(canonical["noise"]),
        canonical["load_axis"],
        canonical["retrieval"],
        datasets,
        rules,
        canonical,
    )
