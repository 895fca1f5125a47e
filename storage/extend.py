"""Growing a cube: a spec that only adds coordinate values extends it in place.

Adding seeds, network sizes, loads, dataset variants or rule variants appends values at the end
of their axes, so every existing chunk keeps its key and every done task keeps its data. Any
other change (noise levels, the root seed, a parameter of an existing variant, a removed value)
would make old and new results incomparable and is refused with the list of differences.
"""

from __future__ import annotations

import copy
from typing import Any

FIXED = ("root_seed", "noise", "load_axis", "retrieval")


def _appended(old: list, new: list) -> list:
    return list(old) + [v for v in new if v not in old]


def merge(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(merged canonical spec, problems). No problems means ``new`` only adds values to ``old``."""
    problems: list[str] = []
    for key in FIXED:
        if old[key] != new[key]:
            problems.append(f"{key}: {old[key]!r} -> {new[key]!r} (only additions can extend a cube)")
    removed_seeds = [s for s in old["seeds"] if s not in new["seeds"]]
    if removed_seeds:
        problems.append(f"seeds: {removed_seeds} removed")
    merged = copy.deepcopy(old)
    merged["seeds"] = _appended(old["seeds"], new["seeds"])
    for family in ("datasets", "rules"):
        old_by = {v["label"]: v for v in old[family]}
        new_by = {v["label"]: v for v in new[family]}
        for label in old_by:
            if label not in new_by:
                problems.append(f"{family}: {label!r} removed")
        for label, variant in new_by.items():
            if label not in old_by:
                merged[family].append(copy.deepcopy(variant))
                continue
            before = old_by[label]
            grows = ("N", "load") if family == "datasets" else ()
            changed = [k for k in variant if k not in grows and variant[k] != before.get(k)]
            if changed:
                problems.append(f"{family}: {label!r} changed in {', '.join(changed)}: " + "; ".join(
                    f"{k} {before.get(k)!r} -> {variant[k]!r}" for k in changed))
            for k in grows:
                lost = [x for x in before[k] if x not in variant[k]]
                if lost:
                    problems.append(f"{family}: {label!r} {k} values {lost} removed")
                target = next(v for v in merged[family] if v["label"] == label)
                target[k] = _appended(before[k], variant[k])
    for axis in ("N", "load"):
        merged["axes"][axis] = _appended(old["axes"][axis], new["axes"][axis])
    return merged, problems
