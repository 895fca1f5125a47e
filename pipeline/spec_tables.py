"""The ``[datasets.*]``, ``[rules.*]`` and ``[dynamics.*]`` tables of a spec, as variants.

Each entry names a component kind (``amsweep.pipeline.registry``), its parameters are checked
against the component's declared ``PARAMS`` and its optional parts read through
``amsweep.pipeline.contracts``; lists sweep, so an entry expands into named variants, one value
of the cube's dataset or rule axis each. Kept apart from ``spec`` (the top level, the ``Sweep``
and its canonical form) because this is the part that talks to the plug-ins.
"""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from typing import Any, Iterator

from amsweep.pipeline import contracts, limits, registry
from amsweep.pipeline.errors import show
from amsweep.pipeline.params import Params, SpecError, count_of, float_list, int_list, resolve, table_of

__all__ = [
    "dataset_variants",
    "DatasetVariant",
    "dynamics_defaults",
    "ENTRY_NAME",
    "family_entries",
    "rule_variants",
    "RuleVariant",
    "Variant",
]

ENTRY_NAME = re.compile(r"[A-Za-z0-9_-]+")


@dataclass(frozen=True, kw_only=True)
class Variant:
    """One value of a variant axis of the cube: a component kind with its scalar parameters."""

    label: str
    entry: str  # the spec table it came from ([datasets.ENTRY], [rules.ENTRY])
    kind: str
    params: dict[str, Any]
    stream: str | None = None  # label its random streams are keyed by, if not ``label``

    @property
    def stream_label(self) -> str:
        """The first label of this variant: a relabelled variant keeps its random streams."""
        return self.stream or self.label


@dataclass(frozen=True, kw_only=True)
class DatasetVariant(Variant):
    """One value of the cube's ``dataset`` axis: a dataset kind, its sizes and loads."""

    N: tuple[int, ...]
    load: tuple[float, ...]
    P_test: int


@dataclass(frozen=True, kw_only=True)
class RuleVariant(Variant):
    """One value of the cube's ``rule`` axis: a learning rule plus the dynamics that retrieves."""

    dynamics: str
    dynamics_params: dict[str, Any]


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


def _component(where: str, family: str, kind: Any) -> Any:
    """The component a spec entry names; an unknown kind is a SpecError naming the entry."""
    try:
        return registry.component(family, kind)
    except KeyError as e:
        raise SpecError(f"{where}: {e.args[0]}") from None


def family_entries(family: str, value: Any) -> dict[str, Any]:
    """A family's entries; names are TOML bare keys, since they become the labels that --where,
    file names and figure titles use (a '[', ',' or newline in a name would break them)."""
    for entry in table_of(family, value):
        if not isinstance(entry, str) or not ENTRY_NAME.fullmatch(entry):
            raise SpecError(
                f"{family}: entry name {show(entry)} is not allowed; use letters, digits, '_' and '-' (a TOML bare key)"
            )
    return value


def dataset_variants(
    raw: dict[str, Any], load_axis: str, default_P_test: int, random_starts: int
) -> tuple[DatasetVariant, ...]:
    """Every dataset variant, each of its cells checked by the dataset (``check``) before any runs."""
    out: list[DatasetVariant] = []
    for entry, table in family_entries("datasets", raw).items():
        where = f"datasets.{entry}"
        table = dict(table_of(where, table))
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
            int_list(f"{where}.P", table.pop("P"), 1)
            if load_axis == "P"
            else float_list(f"{where}.alpha", table.pop("alpha"), 0.0, None, open_low=True)
        )
        P_test = count_of(f"{where}.P_test", table.pop("P_test", default_P_test))
        raw_N = table.pop("N", None)
        params = resolve(where, module.PARAMS, table, structural=("kind", "N", load_axis, "P_test"))
        if "path" in params:  # workers may start elsewhere: data paths travel as absolute paths
            params["path"] = [
                os.path.abspath(os.path.expanduser(p)) if p and "://" not in p else p for p in params["path"]
            ]
        for label, values in _variants(where, entry, params):
            if raw_N is None:
                natural_N = contracts.optional(module, "natural_N")
                if natural_N is None:
                    raise SpecError(f"{where}: missing 'N' (list of network sizes)")
                try:
                    Ns: tuple[int, ...] = (int(natural_N(Params(values, f"dataset {kind}"))),)
                except (ValueError, OSError) as e:  # the data file is part of the spec
                    raise SpecError(f"{where} ({label}): {e}") from None
            else:
                Ns = int_list(f"{where}.N", raw_N, 2)
            variant = DatasetVariant(
                label=label,
                entry=entry,
                kind=kind,
                params=values,
                N=tuple(sorted(Ns)),
                load=tuple(sorted(loads)),
                P_test=P_test,
            )
            limits.check_count(where, len(variant.N) * len(variant.load), "(N, load) cells")
            for N in variant.N:
                for x in variant.load:
                    at = f"{where} ({label}) at N={N}, {load_axis}={x}"
                    P = limits.patterns(at, load_axis, x, N)
                    limits.check_cell_size(at, N, P, P_test, random_starts)
                    try:
                        module.check(N, P, P_test, Params(values, f"dataset {kind}"))
                    except (ValueError, OSError) as e:
                        raise SpecError(
                            f"{where} ({label}) at N={N}, {load_axis}={x} (P={P}, P_test={P_test}): {e}"
                        ) from None
            out.append(variant)
    if not out:
        raise SpecError("datasets: the spec defines no dataset; add a [datasets.NAME] table")
    return tuple(out)


def dynamics_defaults(raw: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ``[dynamics.KIND]`` tables: known kinds only, each a table of that kind's parameters."""
    out = {}
    for kind, table in family_entries("dynamics", raw).items():
        module = _component(f"dynamics.{kind}", "dynamics", kind)
        out[kind] = table_of(f"dynamics.{kind}", table)
        resolve(f"dynamics.{kind}", module.PARAMS, out[kind])  # unknown keys, bad values
    return out


def rule_variants(raw: dict[str, Any], dyn_defaults: dict[str, dict[str, Any]]) -> tuple[RuleVariant, ...]:
    """Every rule variant with its dynamics; dynamics parameters sweep like the rule's own."""
    out: list[RuleVariant] = []
    for entry, table in family_entries("rules", raw).items():
        where = f"rules.{entry}"
        table = dict(table_of(where, table))
        kind = table.pop("kind", entry)
        module = _component(f"{where}.kind", "rules", kind)
        dyn_kind = table.pop("dynamics", contracts.optional(module, "DEFAULT_DYNAMICS"))
        dyn_module = _component(f"{where}.dynamics", "dynamics", dyn_kind)
        dyn_given = {
            **dyn_defaults.get(dyn_kind, {}),
            **table_of(f"{where}.dynamics_params", table.pop("dynamics_params", {})),
        }
        rule_params = resolve(where, module.PARAMS, table, structural=("kind", "dynamics", "dynamics_params"))
        dyn_params = resolve(f"{where}.dynamics_params ({dyn_kind})", dyn_module.PARAMS, dyn_given)
        both = {**{k: v for k, v in rule_params.items()}, **{f"dynamics.{k}": v for k, v in dyn_params.items()}}
        for label, values in _variants(where, entry, both):
            label = label.replace("dynamics.", "")
            rp = {k: v for k, v in values.items() if not k.startswith("dynamics.")}
            dp = {k[len("dynamics.") :]: v for k, v in values.items() if k.startswith("dynamics.")}
            out.append(
                RuleVariant(label=label, entry=entry, kind=kind, params=rp, dynamics=dyn_kind, dynamics_params=dp)
            )
    if not out:
        raise SpecError("rules: the spec defines no rule; add a [rules.NAME] table")
    unused = sorted(set(dyn_defaults) - {r.dynamics for r in out})
    if unused:
        raise SpecError(
            f"dynamics.{unused[0]}: no rule uses this dynamics, so its defaults would be "
            f"ignored; dynamics used by the rules: {', '.join(sorted({r.dynamics for r in out}))}"
        )
    return tuple(out)
