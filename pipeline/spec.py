"""Sweep specs: TOML in, a validated, canonical, hashed ``Sweep`` out.

Everything a sweep will ever ask of a dataset, rule or dynamics is checked here, before any
work starts, so that a week-long run cannot die on a typo in hour three. The canonical form
(every default filled in, lists expanded into named variants, every list in one canonical order:
see ``canonical_order``) is what a cube records and compares against when it is reopened, and
what the spec hash is computed on, so the order of a list in a spec file never changes it.
The component tables (``[datasets.*]``, ``[rules.*]``, ``[dynamics.*]``) are read by
``amsweep.pipeline.spec_tables``; this module holds the top level, the ``Sweep`` and ``Task``
types and the canonical form.
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from amsweep.pipeline import basin_options, limits
from amsweep.pipeline.errors import QueryError, show
from amsweep.pipeline.model import Param
from amsweep.pipeline.params import SpecError, count_of, float_list, int_list, resolve, table_of
from amsweep.pipeline.spec_tables import (
    DatasetVariant,
    RuleVariant,
    dataset_variants,
    dynamics_defaults,
    family_entries,
    rule_variants,
)

__all__ = [
    "canonical_order",
    "CellJob",
    "from_canonical",
    "from_dict",
    "label_key",
    "load",
    "RETRIEVAL",
    "RetrievalOptions",
    "spec_hash",
    "Sweep",
    "Task",
    "TOP_KEYS",
]

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
    "store_magnetisations": Param(
        False,
        bool,
        "also keep each task's thermal states of the training starts (<s_i> of a thermal "
        "dynamics, else the final states), noise x starts x N float32, in the cube's per-task store",
    ),
    **basin_options.PARAMS,
}


@dataclass(frozen=True, kw_only=True)
class RetrievalOptions:
    """The ``[retrieval]`` table of a sweep, typed (``RETRIEVAL`` declares and validates it).

    Built from the canonical table, which alone is hashed: keys a spec leaves out of its
    canonical form (the basin keys when the metric is off, ``store_magnetisations`` when off)
    read as their declared defaults here, so every spec's hash and every result are unchanged."""

    train_starts: int
    test_starts: int
    random_starts: int
    store_couplings: bool
    store_magnetisations: bool
    basin_examples: int
    basin_trials: int
    basin_criterion: float
    basin_method: str

    @classmethod
    def from_table(cls, table: dict[str, Any]) -> "RetrievalOptions":
        unknown = sorted(set(table) - set(RETRIEVAL))
        if unknown:
            raise SpecError(f"retrieval: unknown key(s) {', '.join(map(repr, unknown))}")
        return cls(**{k: table.get(k, p.default) for k, p in RETRIEVAL.items()})


@dataclass(frozen=True, kw_only=True)
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
class CellJob:
    """What a worker needs to run one task: the task and the sweep-wide settings its result
    depends on (a cell's result depends only on these: coordinates, noise levels, options, seed)."""

    task: Task
    noise: tuple[float, ...]
    retrieval: RetrievalOptions
    root_seed: int


@dataclass(frozen=True, kw_only=True)
class Sweep:
    """A validated sweep. ``canonical`` is the JSON-able form whose hash identifies it."""

    name: str
    description: str
    root_seed: int
    seeds: tuple[int, ...]
    noise: tuple[float, ...]
    load_axis: str  # "alpha" or "P"
    retrieval: RetrievalOptions
    datasets: tuple[DatasetVariant, ...]
    rules: tuple[RuleVariant, ...]
    canonical: dict[str, Any]

    @property
    def spec_hash(self) -> str:
        return spec_hash(self.canonical)

    @property
    def N_values(self) -> tuple[int, ...]:
        """The cube's N axis, increasing (the canonical order, for new and extended cubes alike)."""
        return tuple(self.canonical["axes"]["N"])

    @property
    def load_values(self) -> tuple[float, ...]:
        return tuple(self.canonical["axes"]["load"])

    def P_of(self, N: int, load: float) -> int:
        """Training-set size of a cell: alpha * N rounded to the nearest integer (at least 1)."""
        return int(load) if self.load_axis == "P" else max(1, int(round(load * N)))

    def tasks(self, first_seed_only: bool = False) -> Iterator[Task]:
        """Every applicable task; (dataset, N, load) combinations a dataset does not list are skipped.
        ``first_seed_only``: one task per (dataset, N, load, rule), its first seed (the seeds of a
        shape need the same resources). P and the index are worked out once per shape, not per seed:
        the driver generates every pending task (issue 26: ~6 us a task before)."""
        Ns, loads = self.N_values, self.load_values
        seeds = list(enumerate(self.seeds))[: 1 if first_seed_only else None]
        for i_d, d in enumerate(self.datasets):
            for N in d.N:
                i_N = Ns.index(N)
                for load in d.load:
                    P, i_l = self.P_of(N, load), loads.index(load)
                    for i_r, r in enumerate(self.rules):
                        for i_s, seed in seeds:
                            yield Task(
                                dataset=d, N=N, load=load, P=P, rule=r, seed=seed, index=(i_d, i_N, i_l, i_r, i_s)
                            )

    def job(self, task: Task) -> CellJob:
        """The hand-off of one task to a worker."""
        return CellJob(task, self.noise, self.retrieval, self.root_seed)

    @property
    def shape(self) -> tuple[int, int, int, int, int]:
        return (len(self.datasets), len(self.N_values), len(self.load_values), len(self.rules), len(self.seeds))

    @property
    def axes(self) -> dict[str, list[Any]]:
        """The task axes' values by name, in cube order (dataset and rule by label)."""
        return {
            "dataset": [d.label for d in self.datasets],
            "N": list(self.N_values),
            self.load_axis: list(self.load_values),
            "rule": [r.label for r in self.rules],
            "seed": list(self.seeds),
        }

    def coords_of(self, index: tuple[int, ...]) -> dict[str, Any]:
        """A task's coordinate values from its position on the task grid."""
        return {name: values[i] for (name, values), i in zip(self.axes.items(), index)}

    def index_at(self, coords: dict[str, Any]) -> tuple[int, ...]:
        """A task's position on the task grid from its coordinate values (``coords_of`` inverted);
        a ``QueryError`` names what is missing or not on an axis."""
        axes = self.axes
        missing = [k for k in axes if k not in coords]
        if missing:
            raise QueryError(f"give a value for {missing}; a task is fixed by {list(axes)}")
        try:
            return tuple(axes[k].index(coords[k]) for k in axes)
        except ValueError:
            raise QueryError(f"no task at {coords}; axes are {axes}") from None


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
    root_seed = count_of("root_seed", raw.get("root_seed", 0))
    seeds = _seeds(raw["seeds"])
    noise = float_list("noise", raw["noise"], 0.0, 0.5)
    default_P_test = count_of("P_test", raw.get("P_test", 100))
    given_retrieval = table_of("retrieval", raw.get("retrieval", {}))
    retrieval = basin_options.canonical_retrieval(
        {k: v[0] for k, v in resolve("retrieval", RETRIEVAL, given_retrieval, sweepable=False).items()}, given_retrieval
    )
    if not retrieval["store_magnetisations"]:  # left out when off: every earlier spec keeps its hash
        del retrieval["store_magnetisations"]
    entries = family_entries("datasets", raw["datasets"])
    axes = {("P" if "P" in table_of(f"datasets.{k}", t) else "alpha") for k, t in entries.items()}
    load_axis = "P" if axes == {"P"} else "alpha"
    datasets = dataset_variants(entries, load_axis, default_P_test, retrieval["random_starts"])
    rules = rule_variants(raw["rules"], dynamics_defaults(raw.get("dynamics", {})))
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
    return from_canonical(canonical_order(canonical))


_NUMBER = re.compile(r"((?:(?<=[=\[,])-)?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)")


def label_key(label: str) -> tuple[tuple[str | float, ...], str]:
    """Sort key of a variant label: its text with every number in it read as a number.

    ``re.split`` with one group alternates text and numbers, so two keys compare text with text
    and numbers with numbers; the label itself breaks ties (``lr=1`` against ``lr=1.0``)."""
    parts = _NUMBER.split(label)
    return tuple(float(p) if i % 2 else p for i, p in enumerate(parts)), label


def canonical_order(canonical: dict[str, Any]) -> dict[str, Any]:
    """A copy of a canonical spec with every list in its one canonical order.

    The rule: numbers increase (seeds, noise, each dataset's N and loads, the cube's N and load
    axes) and variants (datasets, rules) go by label, the numbers inside a label compared as
    numbers (``label_key``: n200 < n1600, tap[beta=2.0] < tap[beta=10.0]). Cube axes then
    come out sorted whatever order a spec file or an extension gave, so label slices
    (``sel(alpha=slice(a, b))``) and group-bys are right, and the hash depends on content only.
    Random streams are keyed by coordinate values, so the order never changes a result.
    """
    out = copy.deepcopy(canonical)
    out["seeds"] = sorted(out["seeds"])
    out["noise"] = sorted(out["noise"])
    for d in out["datasets"]:
        d["N"], d["load"] = sorted(d["N"]), sorted(d["load"])
    out["datasets"] = sorted(out["datasets"], key=lambda v: label_key(v["label"]))
    out["rules"] = sorted(out["rules"], key=lambda v: label_key(v["label"]))
    out["axes"] = {axis: sorted(values) for axis, values in out["axes"].items()}
    return out


def _seeds(raw: Any) -> tuple[int, ...]:
    """``seeds = 3`` means seeds 0, 1, 2; a list gives the seeds themselves."""
    if isinstance(raw, int) and not isinstance(raw, bool):
        if raw < 1:
            raise SpecError(f"seeds = {show(raw)}: expected a count >= 1 or a non-empty list of integers >= 0")
        limits.check_count("seeds", raw, "seeds")
        raw = list(range(raw))
    return int_list("seeds", raw, 0)


def from_canonical(canonical: dict[str, Any]) -> Sweep:
    """Rebuild a Sweep from the canonical JSON a cube stores (no data files are touched)."""
    datasets = tuple(
        DatasetVariant(
            label=d["label"],
            entry=d["entry"],
            kind=d["kind"],
            params=d["params"],
            N=tuple(d["N"]),
            load=tuple(d["load"]),
            P_test=d["P_test"],
            stream=d.get("stream"),
        )
        for d in canonical["datasets"]
    )
    rules = tuple(
        RuleVariant(
            label=r["label"],
            entry=r["entry"],
            kind=r["kind"],
            params=r["params"],
            dynamics=r["dynamics"],
            dynamics_params=r["dynamics_params"],
            stream=r.get("stream"),
        )
        for r in canonical["rules"]
    )
    return Sweep(
        name=canonical["name"],
        description=canonical["description"],
        root_seed=canonical["root_seed"],
        seeds=tuple(canonical["seeds"]),
        noise=tuple(canonical["noise"]),
        load_axis=canonical["load_axis"],
        retrieval=RetrievalOptions.from_table(canonical["retrieval"]),
        datasets=datasets,
        rules=rules,
        canonical=canonical,
    )
