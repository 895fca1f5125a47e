"""Fencing: the writer's view of a cube's store, through which every one of its writes goes.

A driver paused (SIGSTOP, a long GC, a partitioned VM) past the lease's stale timeout wakes up
believing it still holds the cube; whatever it then writes comes from a stale view. So a writer
never writes the store directly: ``Cube.acquire`` wraps it in ``FencedObjects``, bound to the
lease, and reads pass through while writes are fenced.

**Local disk (exact).** A batch of writes (one ``put_many``: one variable's shards, the error
records, the status shards, the run record) lands under the flock that guards the lease's
compare-and-swap, after ``Lease.verify`` found the stored record still this holder's token and
generation. A takeover's swap takes the same lock, so once it happened no write of the old holder
lands: its next batch fails with ``LeaseLost`` and writes nothing.

**S3 (no multi-object transaction).** Each flush starts with a conditional heartbeat
(``Lease.prove``: If-Match on the lease's ETag), and so does any batch of writes while the heartbeat
is overdue (the process was paused: ``Lease.confirm``). Every write is conditional on the ETag this
writer last read or wrote for that object (If-Match), or on its absence (If-None-Match) for
objects it saw absent or never read. A refused precondition makes the writer prove the lease
again: lost, it raises ``LeaseLost`` (one line); still held, the object was written by a stale
driver in the gap below. If the object merges the writer's view with its results (a status or
data shard, an error record: the cube says which, ``merged``), it raises ``StaleView`` so that
``Cube.write`` re-reads the store and merges (the union of done results) instead of overwriting;
other objects it never read (run record, a task's array, template documents: content that
does not come from a view of results) it replaces, conditional on the ETag it finds.

*The gap.* Between its last proof (or in-time heartbeat) and its PUTs - one batch, when the
process freezes right after ``confirm`` - a stale writer can still complete PUTs on objects
nobody wrote since it last read or wrote them, and create objects that do not exist yet. Each
such PUT holds exactly the stored content (the ETag matched what its view was built from) plus
its own results, which are valid (a cell's result depends only on its coordinates and seed);
data shards precede status in a flush and each is conditional, so a status it lands only marks
tasks whose data landed. No finished work is lost: the new holder's later conditional PUT on
such an object fails, and it merges. Objects this writer never read (run record, task arrays of
one task, the root document) are fenced by the flush-start proof alone: the run record is
informational, a task array's content depends only on its task, and the root document is
written only while creating or growing a cube.

*Deletes.* Locally they are a batch like any other (under the lock, after ``verify``). On S3 each
is a conditional DeleteObject (If-Match: AWS has had conditional deletes on general purpose
buckets since 2025, botocore sends ``IfMatch``, moto's server checks it) on the ETag this writer
last saw, or on one read *before* the lease is confirmed: a writer frozen after that read and
taken over sends an ETag that the new holder's writes changed, S3 refuses the delete, and the
proof that follows raises ``LeaseLost``. An ETag condition matches any object with the same
bytes, so the writers that delete also make sure a later holder never writes those bytes back
(rather than overwrite with an "empty" object, which the same match would let land): a restage's
swap (``restage.finish``) overwrites every key of the new layout in place (conditional on what it
read there) and deletes only keys the new layout lacks, and each restage gives the cube a new
id, which every shard's header names, so no shard written after a swap has the bytes of one from
before it; ``check --repair`` deletes only unreadable shards, which no writer produces. What
remains: objects whose bytes a later holder may write again - an array document or coordinate
chunk (a function of key and spec; deleted only where the new layout lacks the key, which later
extensions, adding values only, never bring back), a task's array at a key a moved task left
(the same bytes only if the new task's result equals the old one's), a staged object (a later
restage's ``READY`` lists its staged copy, and ``finish`` refuses, changing nothing, if any of it
is missing).

Other fsspec stores have no conditional writes: a lease check before each batch.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable

from amsweep.pipeline.errors import CubeError
from amsweep.storage.lease import KEY, Lease
from amsweep.storage.objects import CONFLICT, Objects

__all__ = ["FencedObjects", "StaleView"]

_UNREAD = object()  # an object this writer never read nor wrote


class StaleView(CubeError):
    """S3: objects this writer (still the lease holder) had read were rewritten by a stale driver."""

    def __init__(self, url: str, keys: list[str]) -> None:
        super().__init__(f"{url}: {len(keys)} object(s) changed since this driver read them (first {keys[0]})")
        self.keys = keys


class FencedObjects:
    """The writer's store: reads pass through (on S3 remembering ETags), writes are fenced by ``lease``."""

    def __init__(self, inner: Objects, lease: Lease, merged: Callable[[str], bool] = lambda key: True) -> None:
        self.inner, self.lease, self.url = inner, lease, inner.url
        self.merged = merged  # keys whose content is the writer's view plus its results (status, data)
        self.s3 = bool(getattr(inner, "s3", False))
        self.local = hasattr(inner, "put_fenced")
        self._etags: dict[str, str | None] = {}  # S3: the ETag last read or written (None: absent)
        self._listed: dict[str, set[str]] = {}  # S3: shard prefix -> keys under it when listed (or read since)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)  # create, version, replace_if, list, root_exists, root, ...

    # ---- reads -------------------------------------------------------------------------
    def get(self, key: str) -> bytes | None:
        return self.get_many([key])[key] if self.s3 else self.inner.get(key)

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        if not self.s3:
            return self.inner.get_many(keys)
        keys = list(keys)
        out: dict[str, bytes | None] = {}
        for key in self._absent(keys):
            self._etags[key], out[key] = None, None  # absent in this writer's view, as a 404 would say
        for key, (data, etag) in self.inner.get_tagged([k for k in keys if k not in out]).items():  # type: ignore[attr-defined]
            self._etags[key] = etag
            out[key] = data
        return {k: out[k] for k in keys}

    def _absent(self, keys: list[str]) -> list[str]:
        """Shard keys (of merged objects) absent in this writer's view: seen absent (a 404, a
        delete), or never read and absent when their variable's shards were listed (once per
        variable for the writer's lifetime). Safe as the writer's view: a PUT on a key seen absent
        is conditional on its absence (If-None-Match), so a shard another writer created since
        conflicts, and the flush re-reads it (``_seen``) and merges."""
        shards = [k for k in keys if "/c/" in k and self.merged(k) and self._etags.get(k, _UNREAD) in (None, _UNREAD)]
        unread = [k for k in shards if k not in self._etags]
        new = {_prefix(k) for k in unread} - self._listed.keys()
        if new:
            self._listed.update(self.inner.listed(sorted(new)))  # type: ignore[attr-defined]
        return [k for k in shards if k in self._etags or k not in self._listed[_prefix(k)]]

    def _seen(self, key: str) -> None:
        """``key`` may exist whatever this writer saw or listed: read it next time."""
        self._etags.pop(key, None)
        if "/c/" in key and _prefix(key) in self._listed:
            self._listed[_prefix(key)].add(key)

    # ---- writes ------------------------------------------------------------------------
    def begin_flush(self) -> None:
        """S3: prove the lease now (a conditional heartbeat); elsewhere the batches' fence suffices."""
        if self.s3:
            self.lease.prove()
        else:
            self.lease.check()

    def put(self, key: str, data: bytes) -> None:
        self.put_many({key: data})

    def delete(self, key: str) -> None:
        self.delete_many([key])

    def delete_many(self, keys: Iterable[str]) -> None:
        """Remove ``keys``, fenced like a batch of writes. On S3 each delete is conditional
        (If-Match) on the ETag this writer last saw, or on one read *before* the lease is
        confirmed: a process frozen anywhere after that read sends ETags a takeover's writes
        have changed, and S3 refuses the delete."""
        keys = list(keys)
        if not keys:
            return
        if self.local:
            self.inner.put_fenced(dict.fromkeys(keys), KEY, self.lease.verify)  # type: ignore[attr-defined]
            return
        if not self.s3:
            self.lease.confirm()
            for key in keys:
                self.inner.delete(key)
            return
        known = {k: self._etags.get(k, _UNREAD) for k in keys}
        looked = self.inner.tags([k for k, e in known.items() if not isinstance(e, str)])  # type: ignore[attr-defined]
        etags = {k: e if isinstance(e, str) else looked[k] for k, e in known.items()}
        self.lease.confirm()
        done = self.inner.delete_conditional({k: e for k, e in etags.items() if e is not None})  # type: ignore[attr-defined]
        for key in keys:
            if done.get(key) is not CONFLICT:
                self._etags[key] = None
        refused = [k for k, r in done.items() if r is CONFLICT]
        if refused:
            self.lease.prove()  # LeaseLost if a takeover happened: we are the stale one
            for key in refused:
                self._seen(key)
            raise StaleView(self.url, refused)  # still held: a stale driver wrote them in its gap; re-read

    def put_many(self, items: dict[str, bytes]) -> None:
        if not items:
            return
        if self.local:
            self.inner.put_fenced(items, KEY, self.lease.verify)  # type: ignore[attr-defined]
        elif self.s3:
            self.lease.confirm()
            self._put_s3(items)
        else:
            self.lease.confirm()
            self.inner.put_many(items)

    def _put_s3(self, items: dict[str, bytes]) -> None:
        conditions = {k: self._etags.get(k, _UNREAD) for k in items}
        first = {k: (v, None if conditions[k] is _UNREAD else conditions[k]) for k, v in items.items()}
        done = self._conditional(first)
        refused = [k for k in items if done[k] is CONFLICT]
        if not refused:
            return
        self.lease.prove()  # LeaseLost if a takeover happened: we are the stale one
        stale = [k for k in refused if conditions[k] is not _UNREAD or self.merged(k)]
        unread = [k for k in refused if k not in stale]
        if unread:  # never part of our view (run record, a task's array, template documents): replace
            again = self._conditional({k: (items[k], self.inner.version(k)) for k in unread})
            stale += [k for k in unread if again[k] is CONFLICT]
        if stale:
            for k in stale:
                self._seen(k)
            raise StaleView(self.url, stale)

    def _conditional(self, items: dict[str, tuple[bytes, Any]]) -> dict[str, Any]:
        done = self.inner.put_conditional(items)  # type: ignore[attr-defined]
        for key, etag in done.items():
            if etag is not CONFLICT:
                self._etags[key] = etag
        return done


def _prefix(key: str) -> str:
    """A shard key's variable prefix: ``name/c/`` of ``name/c/0/1/...``."""
    return key.split("/c/", 1)[0] + "/c/"
