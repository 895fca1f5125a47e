"""Side records of a cube: why a task failed or was not applicable, stored one object per shard.

Format 1 kept one JSON object per failed task and listed the folder at every flush; a sweep with
thousands of failures then held thousands of objects and paid a listing per write. Here the
records of all tasks of one shard of the task grid live in one JSON object, rewritten whole
(read-modify-write by the single driver) only by flushes that change it, so the object count
stays bounded by the shard count and a flush without failures touches none of them.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

from amsweep.storage.objects import Objects

__all__ = ["ErrorRecords", "ERRORS", "now", "shard_record_key", "AMSWEEP_DIR", "task_key"]

AMSWEEP_DIR = "_amsweep"
ERRORS = f"{AMSWEEP_DIR}/errors"


def task_key(index: tuple[int, ...]) -> str:
    """Name of a task in per-task records: its position on (dataset, N, load, rule, seed)."""
    return "-".join(str(i) for i in index)


def shard_record_key(shard_index: tuple[int, ...]) -> str:
    return f"{ERRORS}/{task_key(shard_index)}.json"


def now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


class ErrorRecords:
    """Error texts by task, cached per shard for the writer (the lease makes it the only one)."""

    def __init__(self, objects: Objects) -> None:
        self.objects = objects
        self._shards: dict[tuple[int, ...], dict[str, Any]] = {}
        self._pending: dict[tuple[int, ...], dict[str, Any]] = {}

    def _load(self, shard_index: tuple[int, ...]) -> dict[str, Any]:
        if shard_index not in self._shards:
            data = self.objects.get(shard_record_key(shard_index))
            self._shards[shard_index] = json.loads(data) if data else {}
        return self._shards[shard_index]

    def updates(self, changes: dict[tuple[int, ...], dict[tuple[int, ...], dict[str, Any] | None]]) -> dict[str, bytes]:
        """Objects to write for ``{shard: {task index: record or None (clear)}}``; the cache is
        updated only by ``commit`` once the write succeeded."""
        out: dict[str, bytes] = {}
        self._pending = {}
        for shard_index, tasks in changes.items():
            records = dict(self._load(shard_index))
            before = dict(records)
            for index, record in tasks.items():
                if record is None:
                    records.pop(task_key(index), None)
                else:
                    records[task_key(index)] = record
            if records != before:
                out[shard_record_key(shard_index)] = json.dumps(records, sort_keys=True).encode()
                self._pending[shard_index] = records
        return out

    def commit(self) -> None:
        self._shards.update(self._pending)
        self._pending = {}

    def all(self) -> dict[str, dict[str, Any]]:
        """Every record of the cube, by task key (a handful of objects: one per shard with errors)."""
        out: dict[str, dict[str, Any]] = {}
        keys = [k for k in self.objects.list(ERRORS) if k.endswith(".json")]
        for data in self.objects.get_many(keys).values():
            if data:
                out.update(json.loads(data))
        return out
