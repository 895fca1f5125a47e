"""Backups of the root ``zarr.json``, so that losing or damaging that one object never loses a cube.

The root document is the cube's commit point: it alone holds the spec, the spec hash, the cube id
and the consolidated metadata of every array. Every shard can be intact and the cube still be
unreachable without it. So each commit first writes a copy under ``_amsweep/root/`` (numbered,
newest last) and only then the root itself: the newest backup always describes a cube whose
arrays were all written (everything else a commit needs is written before it), and
``amsweep check --repair`` restores the root from it. The few newest copies are kept.
"""

from __future__ import annotations

import json
from typing import Any

from amsweep.pipeline.errors import CubeError
from amsweep.pipeline.spec import spec_hash
from amsweep.storage import zarr_documents
from amsweep.storage.objects import Objects
from amsweep.storage.records import AMSWEEP_DIR

__all__ = ["BACKUPS", "ensure", "KEEP", "latest", "problem", "read_root", "restore", "save"]

BACKUPS = f"{AMSWEEP_DIR}/root"
KEEP = 4  # copies kept: the committed root and a few before it


def _keys(objects: Objects) -> list[str]:
    """Backup keys, oldest first (names are zero-padded sequence numbers)."""
    return sorted(k for k in objects.list(BACKUPS) if k.endswith(".json"))


def save(objects: Objects, document: bytes) -> str:
    """Write ``document`` as the newest backup (before the root itself is written) and drop the
    oldest beyond ``KEEP``; returns its key."""
    keys = _keys(objects)
    last = int(keys[-1].rsplit("/", 1)[-1].split(".")[0]) if keys else 0
    if keys and objects.get(keys[-1]) == document:
        return keys[-1]  # the same commit again (a rerun of an interrupted one): one copy is enough
    key = f"{BACKUPS}/{last + 1:09d}.json"
    objects.put(key, document)
    for old in (keys + [key])[:-KEEP]:
        objects.delete(old)
    return key


def ensure(objects: Objects) -> None:
    """Back up the current root if no backup exists yet (a cube made before backups were kept);
    the caller holds the cube's lease."""
    if latest(objects) is None:
        root = objects.get(zarr_documents.ROOT)
        if valid(root) is not None:
            assert root is not None
            save(objects, root)


def valid(document: bytes | None) -> dict[str, Any] | None:
    """The parsed document if it is a finished amsweep root whose spec matches its hash, else None."""
    if document is None:
        return None
    try:
        doc = json.loads(document)
        attrs = doc.get("attributes") or {}
        ok = (
            doc.get("zarr_format") == 3
            and doc.get("node_type") == "group"
            and spec_hash(json.loads(attrs["amsweep_spec"])) == attrs.get("amsweep_spec_hash")
        )
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
    return doc if ok else None


def latest(objects: Objects) -> tuple[str, bytes] | None:
    """(key, bytes) of the newest backup that is a valid root document, None if there is none."""
    for key in reversed(_keys(objects)):
        data = objects.get(key)
        if valid(data) is not None:
            assert data is not None
            return key, data
    return None


def problem(objects: Objects) -> str | None:
    """Why the root document cannot be used while a backup can restore it; None if the root is
    fine (or there is no backup, so nothing of amsweep's is there to restore)."""
    try:
        data = objects.get(zarr_documents.ROOT)
    except OSError:
        return None  # the store itself is unreachable: the caller's own error says so
    if valid(data) is not None:
        return None
    if data is not None:
        attrs = _attributes(data)
        if attrs is not None and "amsweep_spec" not in attrs:
            return None  # an interrupted creation or a foreign group: not ours to restore
    if latest(objects) is None:
        return None
    state = "missing" if data is None else "damaged"
    return f"root document {zarr_documents.ROOT} {state}; `amsweep check --repair` restores it from its backup"


def _attributes(data: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(data)
        return dict(doc.get("attributes") or {}) if isinstance(doc, dict) else None
    except (ValueError, TypeError):
        return None


def read_root(objects: Objects, path: str) -> dict[str, Any] | None:
    """``zarr_documents.read_root``, refusing (with what to do) a lost or damaged root that a backup
    restores; a healthy root costs one GET, as before."""
    error: CubeError | None = None
    try:
        doc = zarr_documents.read_root(objects, path)
    except CubeError as e:
        doc, error = None, e
    if doc is not None:
        attrs = doc.get("attributes") or {}
        if "amsweep_spec" not in attrs or valid(json.dumps(doc).encode()) is not None:
            return doc  # a cube, an interrupted creation or a foreign group: the caller decides
    why = problem(objects)
    if why is not None:
        raise CubeError(f"{path}: {why}")
    if error is not None:
        raise error
    return doc


def restore(objects: Objects) -> str | None:
    """Put the newest valid backup back as the root document; returns its key (None: not needed,
    or no backup). The caller holds the cube's lease."""
    if problem(objects) is None:
        return None
    found = latest(objects)
    if found is None:
        return None
    key, data = found
    objects.put(zarr_documents.ROOT, data)
    return key
