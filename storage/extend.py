"""Growing a cube: a spec that only adds coordinate values extends it in place.

Adding seeds, network sizes, loads, dataset variants or rule variants adds values to their axes,
which stay in the canonical order (``amsweep.pipeline.spec.canonical_order``: numbers increasing,
variants by label). Values that land after every old one append: existing shards keep their
keys and the cube grows in place. Values that land in the middle move done tasks to new
positions: the cube is rewritten, kill-safe and verified, by ``amsweep.storage.restage``. Any
other change (the root seed, a parameter of an existing variant, a removed value) would make old
and new results incomparable and is refused with the list of differences. Noise levels are not a
task axis: a task trains once and evaluates every level, so even an added level is refused, with
that reason (it would mean recomputing every done task: a new cube is no more work).

Sweeping a parameter that was a scalar (``lr = 1.0`` -> ``lr = [1.0, 0.5]``) renames the
existing variant ('plm' -> 'plm[lr=1.0]'): it is matched by its entry and parameters, keeps its
position and its data, and records its first label as ``stream``, which keys its random
streams, so the cells it has yet to run agree with the ones already done.
"""

from __future__ import annotations

import copy
from typing import Any

from amsweep.pipeline.spec import canonical_order

__all__ = ["FIXED", "GROWS", "merge", "NOT_CONTENT"]

FIXED = ("root_seed", "noise", "load_axis", "retrieval")
GROWS = {"datasets": ("N", "load"), "rules": ()}
NOT_CONTENT = ("label", "stream")


def _appended(old: list, new: list) -> list:
    return list(old) + [v for v in new if v not in old]


def _content(family: str, variant: dict[str, Any]) -> dict[str, Any]:
    """What makes a variant the same experiment: everything but its label and growing axes."""
    return {k: v for k, v in variant.items() if k not in NOT_CONTENT + GROWS[family]}


def _differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """'params.lr 1.0 -> 0.5' for each key (one level into parameter tables) that differs."""
    out = []
    for key in sorted(set(before) | set(after)):
        a, b = before.get(key), after.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{d}" for d in _differences(a, b)]
        elif a != b:
            out.append(f"{key} {a!r} -> {b!r}")
    return out


def _removed(family: str, before: dict[str, Any], new: list[dict[str, Any]]) -> str:
    """Why an existing variant has no counterpart in the new spec, with the closest candidate."""
    label, entry = before["label"], before["entry"]
    same_entry = [v for v in new if v["entry"] == entry]
    if not same_entry:
        return f"{family}: {label!r} removed (the new spec has no [{family}.{entry}] entry)"
    closest = min(same_entry, key=lambda v: len(_differences(_content(family, before), _content(family, v))))
    diff = "; ".join(_differences(_content(family, before), _content(family, closest)))
    return (
        f"{family}: {label!r} removed: no variant of [{family}.{entry}] keeps its parameters "
        f"(closest: {closest['label']!r}, {diff}); keep its values among the swept ones to grow the cube"
    )


def _merge_family(
    family: str, old: list[dict[str, Any]], new: list[dict[str, Any]], problems: list[str]
) -> list[dict[str, Any]]:
    merged = copy.deepcopy(old)
    old_labels = {v["label"] for v in old}
    new_by = {v["label"]: v for v in new}
    taken: set[str] = set()
    for target, before in zip(merged, old):
        variant = new_by.get(before["label"])
        if variant is None:  # renamed because a parameter is now swept?
            variant = next(
                (
                    v
                    for v in new
                    if v["label"] not in old_labels | taken
                    and v["entry"] == before["entry"]
                    and _content(family, v) == _content(family, before)
                ),
                None,
            )
            if variant is None:
                problems.append(_removed(family, before, new))
                continue
            target["stream"] = before.get("stream", before["label"])
            target["label"] = variant["label"]
        taken.add(variant["label"])
        changed = _differences(_content(family, before), _content(family, variant))
        if changed:
            problems.append(
                f"{family}: {before['label']!r} changed in "
                f"{', '.join(sorted({c.split(' ')[0].split('.')[0] for c in changed}))}: " + "; ".join(changed)
            )
        for k in GROWS[family]:
            lost = [x for x in before[k] if x not in variant[k]]
            if lost:
                problems.append(f"{family}: {before['label']!r} {k} values {lost} removed")
            target[k] = _appended(before[k], variant[k])
    merged += [copy.deepcopy(v) for v in new if v["label"] not in taken]
    streams: dict[str, str] = {}
    for v in merged:
        key = v.get("stream", v["label"])
        if key in streams:
            problems.append(
                f"{family}: {v['label']!r} would share the random streams of {streams[key]!r} "
                f"(first labelled {key!r}); give its entry another name"
            )
        streams[key] = v["label"]
    return merged


def _why_fixed(key: str, before: Any, after: Any) -> str:
    """Why a change to a sweep-wide setting cannot grow the cube, said for the change at hand."""
    if key == "noise" and set(before) < set(after):
        added = sorted(set(after) - set(before))
        return (
            f"adds noise level(s) {added}, but noise is not a task axis: every task trains once and then "
            "evaluates all noise levels inside the task, so a new level means recomputing every done task; "
            "write this spec to a new --out"
        )
    if key == "noise":
        return "noise levels are evaluated inside each task: results at other levels are another experiment"
    return "it changes every task's result, not only adds tasks"


def merge(old: dict[str, Any], new: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(merged canonical spec in canonical order, problems). No problems means ``new`` only adds
    values to ``old``; a variant keeps its identity (its ``stream`` label) wherever it lands."""
    problems: list[str] = []
    for key in FIXED:
        if old[key] != new[key]:
            problems.append(f"{key}: {old[key]!r} -> {new[key]!r} ({_why_fixed(key, old[key], new[key])})")
    removed_seeds = [s for s in old["seeds"] if s not in new["seeds"]]
    if removed_seeds:
        problems.append(f"seeds: {removed_seeds} removed")
    merged = copy.deepcopy(old)
    merged["seeds"] = _appended(old["seeds"], new["seeds"])
    for family in ("datasets", "rules"):
        merged[family] = _merge_family(family, old[family], new[family], problems)
    for axis in ("N", "load"):
        merged["axes"][axis] = _appended(old["axes"][axis], new["axes"][axis])
    return canonical_order(merged), problems
