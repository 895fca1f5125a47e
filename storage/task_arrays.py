"""Per-task arrays (``_amsweep/couplings/<task>.npy``, ``magnetisations``) bound to their cube,
kind and task, like the shards are (storage/shards.py).

Why: without an identity or checksum another task's file copied over a key, or a zeroed tail,
was read silently as the task's values and ``check`` said ok. Each object is now
``MAGIC + len(identity) (4 bytes LE) + identity JSON + BLAKE2b-16(identity + payload) + payload``,
where the payload is exactly the ``np.save`` bytes written before (the values are unchanged).
An object without the magic (cubes written before this header) is still read as plain ``.npy``:
those cannot be verified, only parsed.
"""

from __future__ import annotations

import hashlib
import io
import json

import numpy as np

__all__ = ["MAGIC", "TaskArrayError", "decode", "encode", "rebind"]

MAGIC = b"AMSWEEP_TASKARRAY"
_DIGEST = 16


class TaskArrayError(ValueError):
    """A task array that is not the one its key names, or whose bytes were damaged."""


def _identity(cube: str, kind: str, task: str) -> bytes:
    return json.dumps({"cube": cube, "kind": kind, "task": task}, sort_keys=True).encode()


def encode(array: np.ndarray, cube: str, kind: str, task: str) -> bytes:
    """The stored bytes of ``array`` as ``kind`` of task key ``task`` in cube ``cube``."""
    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    return _headed(buf.getvalue(), cube, kind, task)


def _headed(payload: bytes, cube: str, kind: str, task: str) -> bytes:
    ident = _identity(cube, kind, task)
    digest = hashlib.blake2b(ident + payload, digest_size=_DIGEST).digest()
    return MAGIC + len(ident).to_bytes(4, "little") + ident + digest + payload


def _payload(data: bytes, cube: str, kind: str, task: str) -> bytes:
    """The verified ``.npy`` bytes of ``data`` (a headerless object is returned as it is)."""
    if not data.startswith(MAGIC):
        return data  # written before the identity header: cannot be verified
    start = len(MAGIC) + 4
    if len(data) < start:
        raise TaskArrayError("header cut short")
    n = int.from_bytes(data[len(MAGIC) : start], "little")
    ident, digest, payload = data[start : start + n], data[start + n : start + n + _DIGEST], data[start + n + _DIGEST :]
    if len(digest) < _DIGEST:
        raise TaskArrayError("header cut short")
    if hashlib.blake2b(ident + payload, digest_size=_DIGEST).digest() != digest:
        raise TaskArrayError("checksum mismatch")
    if ident != _identity(cube, kind, task):
        try:
            d = json.loads(ident)
            found = f"{d['kind']} of task {d['task']} in cube {d['cube']}"
        except (ValueError, KeyError, TypeError):
            found = "an unreadable identity"
        raise TaskArrayError(f"holds the {found}")
    return payload


def decode(data: bytes, cube: str, kind: str, task: str) -> np.ndarray:
    """The array stored in ``data``, verified against its identity; ``TaskArrayError`` if not."""
    try:
        return np.load(io.BytesIO(_payload(data, cube, kind, task)), allow_pickle=False)
    except TaskArrayError:
        raise
    except (ValueError, EOFError, OSError) as e:  # cut short or not an array
        raise TaskArrayError(str(e)) from None


def rebind(data: bytes, old: tuple[str, str], new: tuple[str, str], kind: str) -> bytes:
    """``data`` (verified as ``kind`` of (cube, task) ``old``) re-headed for (cube, task) ``new``."""
    payload = _payload(data, old[0], kind, old[1])
    if not data.startswith(MAGIC):
        decode(payload, old[0], kind, old[1])  # unverifiable, but at least a whole array: never bless a cut one
    return _headed(payload, new[0], kind, new[1])
