"""Temporaries that interrupted writes leave behind (``*.partial-*`` beside a local cube's objects).

A local object is written to a temporary name and renamed into place (``storage.objects``); a
write killed before the rename, or one that failed on a full disk, leaves the temporary. It is
never read (listings skip it) but it takes space forever. Only the cube's writer may remove them
(a live writer's temporaries are in flight): ``check --repair`` does, and a driver can at start.
Object stores write each object in one request and leave none.
"""

from __future__ import annotations

import os
from pathlib import Path

from amsweep.storage.objects import PARTIAL, LocalObjects, Objects

__all__ = ["find", "remove"]


def find(objects: Objects) -> list[Path]:
    """The temporaries under a local cube (none on an object store)."""
    objects = getattr(objects, "inner", objects)  # a writer's fenced store wraps the folder
    if not isinstance(objects, LocalObjects) or not objects.root.is_dir():
        return []
    found = []
    for dirpath, _, files in os.walk(objects.root):
        found += [Path(dirpath, name) for name in files if PARTIAL in name]
    return sorted(found)


def remove(objects: Objects) -> int:
    """Delete every temporary; the caller holds the cube's lease. Returns how many were removed."""
    found = find(objects)
    for path in found:
        path.unlink(missing_ok=True)
    return len(found)
