"""Run history: one record per driver run, kept in the cube as one object per run under ``_amsweep/runs/``.

The single ``run.json`` that earlier amsweeps rewrote at each flush kept only the last run: after an
initial run, a killed extension and a resume nobody could say which runs, machines, versions and
executors made a cube. Here each run writes only its own object (named by its start time and a
random id), rewritten whole at each flush through the cube's fenced store (the lease: a driver that
lost it writes nothing). A put replaces one object atomically, no run ever writes or deletes another
run's object, and nothing else in amsweep deletes under ``runs/`` (restage, upgrade and check rewrite
other keys in place), so a kill at any moment leaves every record as of its run's last flush.

A run that never wrote its end (killed, or its lease lost) still says ``running`` in its record;
``state`` tells the two apart with the lease: the run whose lease token holds a live lease is
running, any other stopped without recording its end (killed; or its lease was lost, or its store
failed, so that the end could not be written).

Record schema (``schema`` 1), one JSON object per run:
``run`` id, ``command`` (argv), ``started`` / ``updated`` / ``ended`` (UTC ISO; ``ended`` null until
the run ends), ``updated_epoch``, ``ending`` ("running", "finished", "interrupted" or "failed: <one
line>"), ``seconds`` (driver wall time), ``done`` / ``failed`` / ``not_applicable`` / ``remaining``
(this run's cells), ``executor``, ``workers``, ``cluster`` (the executor's ``describe()``: address,
nodes, cpus, memory_bytes, nodes_used; null where it has none), ``plugins`` (cube attribute: module
-> code hash), ``spec_hash``, ``lease`` (the lease token of this run), ``pid``, and the run
environment (``host``, ``python``, ``platform``, ``versions``, ``blas``, ``amsweep_version``,
``source_commit``, ``source_dirty``; ``amsweep.storage.provenance.run_environment``).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import logging
import math
import os
import sys
import time
import uuid
from typing import Any, Callable

from amsweep.pipeline.errors import AmsweepError
from amsweep.storage import provenance
from amsweep.storage.objects import Objects
from amsweep.storage.records import AMSWEEP_DIR, now
from amsweep.storage.store_errors import failure_types

__all__ = [
    "damaged_records",
    "LEGACY",
    "load_runs",
    "one_line",
    "RUNS",
    "RunLog",
    "SCHEMA",
    "heartbeat_age",
    "latest",
    "state",
    "throughput_run",
    "totals",
]

RUNS = f"{AMSWEEP_DIR}/runs"
LEGACY = f"{AMSWEEP_DIR}/run.json"  # the one record of an amsweep before the history
SCHEMA = 1
RUNNING = "running"
log = logging.getLogger(__name__)


def new_run_id() -> str:
    """Sortable by start time (so a listing is in run order), unique by its random tail."""
    return _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ") + "-" + uuid.uuid4().hex[:8]


class RunLog:
    """This run's record: built once, rewritten at each flush with the counts so far.

    ``describe`` is the executor's ``describe()`` (or None): called at each save, since the nodes
    that ran a batch grow during the run (the executor keeps it cheap)."""

    def __init__(
        self,
        cube: Any,
        executor: str,
        workers: int,
        describe: Callable[[], dict[str, Any]] | None = None,
        command: str | None = None,
    ) -> None:
        self.cube = cube
        self.id = new_run_id()
        self.key = f"{RUNS}/{self.id}.json"
        self.describe = describe
        self._t0 = time.monotonic()
        lease = getattr(cube, "lease", None)
        self.fixed: dict[str, Any] = {
            "schema": SCHEMA,
            "run": self.id,
            "command": (command or " ".join(sys.argv))[:300],
            "started": now(),
            "spec_hash": cube.sweep.spec_hash,
            "executor": executor,
            "workers": workers,
            "plugins": dict(cube.attrs.get("plugins", {}) or {}),
            "lease": lease.record.get("token") if lease is not None else None,
            # the lease generation this run holds: one above the run before it on any clock, so the
            # runs are listed in the order they took the cube (a driver's clock may be hours off)
            "generation": lease.record.get("generation") if lease is not None else None,
            "pid": os.getpid(),
            **provenance.run_environment(),
        }

    def record(self, counts: dict[str, int], ending: str = RUNNING) -> dict[str, Any]:
        cluster = None
        if self.describe is not None:
            try:
                cluster = self.describe()
            except Exception as e:  # provenance is best effort: it never stops a sweep
                log.warning("executor.describe() failed (%s); the run record says cluster: null", e)
        return {
            **self.fixed,
            "updated": now(),
            "updated_epoch": time.time(),
            "ended": None if ending == RUNNING else now(),
            "ending": ending,
            "seconds": time.monotonic() - self._t0,
            **{k: int(counts.get(k, 0)) for k in ("done", "failed", "not_applicable", "remaining")},
            "cluster": cluster,
        }

    def save(self, counts: dict[str, int], ending: str = RUNNING) -> None:
        """One fenced put of this run's object (whole: a reader never sees half a record)."""
        self.cube.objects.put(self.key, json.dumps(self.record(counts, ending), default=str).encode())

    def try_end(self, counts: dict[str, int], ending: str) -> None:
        """Record how a failed run ended if the store still takes it; a lost lease or a dead store
        refuses (the reader then sees a run that stopped without recording its end). A second
        Ctrl-C here ends nothing more than this write: the run is stopping anyway."""
        with contextlib.suppress(AmsweepError, KeyboardInterrupt, *failure_types()):
            self.save(counts, ending)


def one_line(error: BaseException) -> str:
    """An error as the record keeps it: amsweep's own errors are one line already; anything else is
    named by its type and first line."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    if not (isinstance(error, AmsweepError) and first):
        first = f"{type(error).__name__}: {first}".rstrip(": ")
    return first[:400]


UNREADABLE = "unreadable record"
NOT_A_RUN = "not a run record"
_COUNTS = ("done", "failed", "not_applicable", "remaining", "workers", "seconds", "updated_epoch", "generation")


def _parse(key: str, data: bytes | None) -> dict[str, Any] | None:
    if data is None:
        return None
    try:
        record = json.loads(data)
    except ValueError:
        record = None
    name = key.rsplit("/", 1)[-1].removesuffix(".json")
    if not isinstance(record, dict):
        return {"run": name, "ending": UNREADABLE, "started": None, "damaged": True}
    if key != LEGACY and not isinstance(record.get("run"), str):  # a stray JSON object: no run of ours
        return {"run": name, "ending": NOT_A_RUN, "started": None, "damaged": True}
    return _clean(record)


def _clean(record: dict[str, Any]) -> dict[str, Any]:
    """A record as readers may trust it: a field of the wrong type (a foreign or hand-edited
    record) is dropped, a number that is not finite too (JSON's 1e309 reads as inf: a zero rate,
    and output no strict JSON parser takes). Dropped reads as unknown ("?")."""
    out = dict(record)
    for name in _COUNTS:
        if name in out and not (_is_number(out[name]) and math.isfinite(out[name])):
            del out[name]
    if not isinstance(out.get("cluster"), dict):
        out["cluster"] = None
    elif not isinstance(out["cluster"].get("nodes_used", []), list):
        out["cluster"] = {k: v for k, v in out["cluster"].items() if k != "nodes_used"}
    if not isinstance(out.get("plugins", {}), dict):
        out["plugins"] = {}
    for name in ("started", "updated", "ended", "ending", "host", "executor", "command"):
        if name in out and out[name] is not None and not isinstance(out[name], str):
            out[name] = str(out[name])
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _order(key: str, record: dict[str, Any]) -> tuple[int, str]:
    """Runs in the order they took the cube: the lease generation each held (one above the run
    before it, clock-free), then the key (start time, for runs of one lease or before generations
    were recorded). A driver whose clock is an hour ahead no longer lists its run last."""
    generation = record.get("generation")
    return (generation if isinstance(generation, int) and not isinstance(generation, bool) else 0, key)


def load_runs(objects: Objects) -> list[dict[str, Any]]:
    """Every run's record in the order the runs took the cube (``_order``); an old cube's
    ``run.json`` comes first as one legacy record (it described its last run only). Records that
    cannot be read, or are no run record, come first, marked ``damaged``: never "the last run"."""
    keys = sorted(k for k in objects.list(RUNS) if k.endswith(".json"))
    got = objects.get_many([LEGACY, *keys])
    runs = []
    legacy = _parse(LEGACY, got.pop(LEGACY))
    if legacy is not None:
        runs.append({**legacy, "run": "legacy", "legacy": True, "ending": legacy.get("ending", "unknown (legacy)")})
    parsed = [(key, _parse(key, got.get(key))) for key in keys]
    found = [(key, r) for key, r in parsed if r is not None]
    damaged = [r for _, r in found if r.get("damaged")]
    runs += damaged + [r for key, r in sorted(found, key=lambda kr: _order(*kr)) if not r.get("damaged")]
    return runs


def damaged_records(objects: Objects) -> list[str]:
    """One line per run record that cannot be read or is no run record, naming its object."""
    return [
        f"run record {RUNS}/{r['run']}.json: {r['ending']} (status lists it as such; remove it if it is not wanted)"
        for r in load_runs(objects)
        if r.get("damaged")
    ]


def latest(objects: Objects) -> dict[str, Any] | None:
    """The record of the run that started last (None before any run)."""
    runs = load_runs(objects)
    return runs[-1] if runs else None


def _lease_live(holder: dict[str, Any] | None, token: Any) -> bool:
    """Whether ``token``'s driver still holds the cube: its lease is the stored one, its heartbeat is
    fresh, and (on this machine) its process is alive."""
    from amsweep.storage import lease

    if not holder or not token or holder.get("token") != token:
        return False
    if heartbeat_age(holder) > lease.stale_seconds():
        return False
    if holder.get("host") == lease.HOST and holder.get("machine") == lease.MACHINE:
        return lease._alive(holder.get("pid"), holder.get("pid_start"))
    return True


def heartbeat_age(holder: dict[str, Any]) -> float:
    """Seconds since the lease's last heartbeat (inf where unreadable: as good as stale)."""
    try:
        return time.time() - float(holder.get("heartbeat_epoch"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return float("inf")


def state(record: dict[str, Any], holder: dict[str, Any] | None) -> str:
    """How a run ended, as recorded; for a record still saying "running", whether it is (the lease)."""
    ending = str(record.get("ending") or "unknown")
    if ending != RUNNING or record.get("legacy"):
        return ending
    heard = record.get("updated", "?")
    if _lease_live(holder, record.get("lease")):
        return f"running (last heard at {heard})"
    return f"killed or failed without recording its end (last heard at {heard})"


def throughput_run(runs: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The latest run that finished cells (a run just started has none yet): the ETA's rate."""
    for record in reversed(runs):
        if _number(record.get("seconds")) > 0 and _number(record.get("done")) > 0:
            return record
    return None


def totals(runs: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "runs": len(runs),
        **{k: int(sum(_number(r.get(k)) for r in runs)) for k in ("done", "failed", "not_applicable")},
        "seconds": float(sum(_number(r.get("seconds")) for r in runs)),
        "hosts": sorted({str(r["host"]) for r in runs if r.get("host")}),
        "executors": sorted({str(r["executor"]) for r in runs if r.get("executor")}),
    }


def _number(value: Any) -> float:
    return float(value) if _is_number(value) and math.isfinite(value) else 0.0
