"""What a cube says about its own progress: counts by state, failures, throughput, ETA, its runs.

Throughput comes from the run history the driver keeps in the cube (``amsweep.storage.history``:
one record per run, rewritten at each flush), so ``amsweep status`` works from any machine that can
read the cube, while the sweep is running or after it stopped. ``status_data`` gathers everything
once; the text and ``--json`` are two renderings of that one dict, so they cannot disagree.
Identical failures are grouped (one line per distinct error, with a count and example
coordinates): a sweep where one rule fails everywhere printed thousands of the same line.
"""

from __future__ import annotations

import datetime as _dt
import math
from typing import Any

import numpy as np

from amsweep.storage import history
from amsweep.storage.cube import Cube
from amsweep.storage.schema import DONE, FAILED, NOT_APPLICABLE, PENDING, STATUS_NAMES

__all__ = ["counts", "group_failures", "render_history", "render_status", "status_data"]

EXAMPLES = 3  # example coordinates shown per distinct error


def counts(status: np.ndarray) -> dict[str, int]:
    return {STATUS_NAMES[s]: int(np.sum(status == s)) for s in (DONE, PENDING, FAILED, NOT_APPLICABLE)}


def group_failures(failures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Failures with the same error (its last line: the exception and message) as one group, largest
    first: ``error``, ``count``, the first few ``examples`` (coordinates) and the first full ``text``."""
    groups: dict[str, dict[str, Any]] = {}
    for f in failures:
        text = str(f.get("error", "")).strip()
        key = text.splitlines()[-1] if text else "(no error text)"
        group = groups.setdefault(key, {"error": key, "count": 0, "examples": [], "text": text})
        group["count"] += 1
        if len(group["examples"]) < EXAMPLES:
            group["examples"].append(f["coords"])
    return sorted(groups.values(), key=lambda g: -g["count"])  # stable: ties stay in task order


def _jsonable(value: Any) -> Any:
    """numpy scalars in coordinates become plain numbers (JSON and the text show the same values);
    a number that is not finite becomes null."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None  # json.dumps would write Infinity / NaN, which no strict JSON parser reads
    return value


def status_data(path: str, storage_options: dict | None = None) -> dict[str, Any]:
    """Everything ``amsweep status`` says about a cube, as JSON-safe data."""
    from amsweep.storage.lease import holder_of, stale_seconds

    cube = Cube.open(path, storage_options, mode="r")
    sweep = cube.sweep
    status = cube.status()
    c = counts(status)
    applicable = status.size - c["not applicable"]
    lost = 0
    if cube.format >= 3:  # every status chunk is stored from creation on: an absent or unreadable one was lost
        _, present, damaged = cube.read_variable("status")
        lost = int((~present | damaged).sum())
    holder = holder_of(cube.objects)
    writer = None
    if holder is not None:
        age = history.heartbeat_age(holder)
        writer = {
            "holder": holder.get("holder"),
            "command": holder.get("command"),
            "heartbeat_age_seconds": None if age == float("inf") else round(age, 1),
            "live": age <= stale_seconds(),
        }
    runs = [{**r, "state": history.state(r, holder)} for r in history.load_runs(cube.objects)]
    throughput = None
    rated = history.throughput_run(runs)
    rate = rated["done"] / rated["seconds"] if rated is not None else 0.0
    if rated is not None and rate > 0:
        todo = c["pending"] + c["failed"]
        throughput = {
            "run": rated.get("run"),
            "done": rated["done"],
            "seconds": rated["seconds"],
            "tasks_per_minute": rate * 60,
            "executor": rated.get("executor"),
            "updated": rated.get("updated"),
            "eta_seconds": round(todo / rate) if todo else 0,
        }
    records = cube.failures()
    failures = [f for f in records if f["state"] == STATUS_NAMES[FAILED]]
    skipped = [f for f in records if f["state"] == STATUS_NAMES[NOT_APPLICABLE]]
    return _jsonable(
        {
            "cube": path,
            "sweep": sweep.name,
            "spec_hash": sweep.spec_hash,
            "format": cube.format,
            "amsweep_version": cube.attrs.get("amsweep_version"),
            "created": cube.attrs.get("created"),
            "source_commit": cube.attrs.get("source_commit"),
            "source_dirty": cube.attrs.get("source_dirty"),
            "plugins": cube.attrs.get("plugins", {}),
            "axes": {
                "dataset": len(sweep.datasets),
                "N": len(sweep.N_values),
                sweep.load_axis: len(sweep.load_values),
                "rule": len(sweep.rules),
                "seed": len(sweep.seeds),
                "noise": len(sweep.noise),
            },
            "counts": {k.replace(" ", "_"): v for k, v in c.items()},
            "applicable": applicable,
            "status_lost": lost,
            "writer": writer,
            "throughput": throughput,
            "runs": runs,
            "run_totals": history.totals(runs),
            "failures": {"count": len(failures), "groups": group_failures(failures)},
            "not_applicable_at_run_time": {
                "count": len(skipped),
                "reasons": sorted({str(f["error"]) for f in skipped}),
            },
        }
    )


def render_status(
    path: str, show_errors: bool = False, storage_options: dict | None = None, data: dict[str, Any] | None = None
) -> str:
    """A short report for humans (``data``: ``status_data``'s, if already read)."""
    d = data if data is not None else status_data(path, storage_options)
    c = d["counts"]
    attrs_source = (
        f" (source {d['source_commit'][:10]}{', dirty' if d.get('source_dirty') else ''})"
        if d.get("source_commit")
        else ""
    )
    axes = d["axes"]
    load_axis = [k for k in axes if k not in ("dataset", "N", "rule", "seed", "noise")][0]
    lines = [
        f"cube {path}",
        f"sweep {d['sweep']!r}  spec {d['spec_hash']}  format {d['format']}  written by amsweep "
        f"{d['amsweep_version']} on {d['created']}" + attrs_source,
        f"axes: dataset {axes['dataset']} x N {axes['N']} x {load_axis} {axes[load_axis]} x rule {axes['rule']} "
        f"x seed {axes['seed']} (x noise {axes['noise']})",
        f"tasks: done {c['done']}, pending {c['pending']}, failed {c['failed']}, not applicable "
        f"{c['not_applicable']}  ({100.0 * c['done'] / max(d['applicable'], 1):.1f}% of {d['applicable']} applicable)",
    ]
    if d["status_lost"]:
        lines.append(
            f"warning: the status of {d['status_lost']} task(s) is lost (a status shard missing or damaged); they "
            "count as pending above: `amsweep check --repair` restores it from their data where they are intact"
        )
    w = d["writer"]
    if w is None:
        lines.append("writer: none (no driver holds the cube)")
    else:
        age = "?" if w["heartbeat_age_seconds"] is None else f"{w['heartbeat_age_seconds']:.0f}"
        state = "live" if w["live"] else "stale: the next run takes it over"
        lines.append(f"writer: {w['holder'] or '?'} ({w['command'] or '?'}), last heartbeat {age} s ago ({state})")
    if d["runs"]:
        last = d["runs"][-1]
        lines.append(
            f"runs: {len(d['runs'])} (last started {last.get('started') or '?'}: {last['state']}; "
            "`amsweep status --history` lists them)"
        )
    t = d["throughput"]
    if t is not None:
        lines.append(
            f"last run: {t['done']} tasks in {t['seconds']:.0f} s ({t['tasks_per_minute']:.1f} tasks/min, "
            f"{t['executor'] or '?'}, updated {t['updated'] or '?'}); ETA for the rest at that rate: "
            f"{_dt.timedelta(seconds=t['eta_seconds'])}"
        )
    f = d["failures"]
    if f["count"]:
        groups = f["groups"]
        lines.append(f"failures ({f['count']}, {len(groups)} distinct error(s)):")
        for g in groups if show_errors else groups[:10]:
            examples = "; ".join(_coords(x) for x in g["examples"])
            more = ", ..." if g["count"] > len(g["examples"]) else ""
            lines.append(f"  {g['count']} x {g['error']}  (e.g. {examples}{more})")
            if show_errors and g["text"] != g["error"]:
                lines.extend(f"      {line}" for line in g["text"].splitlines())
        if not show_errors and len(groups) > 10:
            lines.append(f"  ... {len(groups) - 10} more distinct error(s) (amsweep status --errors)")
        elif not show_errors:
            lines.append("  (amsweep status --errors prints each distinct error's full text)")
    na = d["not_applicable_at_run_time"]
    if na["count"]:
        lines.append(f"not applicable at run time ({na['count']}): " + "; ".join(na["reasons"][:3]))
    return "\n".join(lines)


def _coords(coords: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in coords.items())


def render_history(path: str, storage_options: dict | None = None, data: dict[str, Any] | None = None) -> str:
    """One line per run of the cube, oldest first, then totals."""
    d = data if data is not None else status_data(path, storage_options)
    runs = d["runs"]
    if not runs:
        return f"cube {path}: no run recorded"
    lines = [f"cube {path}: {len(runs)} run(s)"]
    for i, r in enumerate(runs, 1):
        cluster = r.get("cluster") if isinstance(r.get("cluster"), dict) else {}
        where = r.get("executor") or "?"
        if cluster:
            where += f" at {cluster.get('address') or 'local'}, {cluster.get('nodes', '?')} node(s)"
            used = cluster.get("nodes_used")
            if used:
                where += f" (used {', '.join(map(str, used))})"
        elif r.get("workers"):
            where += f" x{r['workers']}"
        version = r.get("amsweep_version") or "?"
        commit = f" {str(r['source_commit'])[:10]}" if r.get("source_commit") else ""
        plugins = f", plug-ins {len(r['plugins'])}" if isinstance(r.get("plugins"), dict) and r["plugins"] else ""
        seconds = r.get("seconds")
        took = f" in {seconds:.0f} s" if isinstance(seconds, (int, float)) else ""
        lines.append(
            f"  {i:>3}  {r.get('run')}  started {r.get('started') or '?'}  {r['state']}  "
            f"done {r.get('done', '?')}, failed {r.get('failed', '?')}, not applicable {r.get('not_applicable', '?')}"
            f"{took}  [{where} on {r.get('host') or '?'}, amsweep {version}{commit}{plugins}]"
        )
    t = d["run_totals"]
    lines.append(
        f"totals: {t['runs']} run(s), done {t['done']}, failed {t['failed']}, not applicable {t['not_applicable']}, "
        f"{t['seconds']:.0f} s; hosts {', '.join(t['hosts']) or '?'}; executors {', '.join(t['executors']) or '?'}"
    )
    return "\n".join(lines)
