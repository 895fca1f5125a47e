"""A store that fails (a full disk, lost permissions, an S3 endpoint gone) is not a bug: one line.

The user fixes the space or the network and runs the same command again; the cube keeps what
was written before and the next run recomputes the rest. So every storage call a driver makes
(opening, creating, flushing) goes through ``store_boundary``, which turns such failures into a
``CubeError`` naming the cube and the cause, where the CLI prints it as one line (exit 2);
anything else keeps its traceback. botocore and aiohttp come only with the s3 extra, and an
exception of theirs can only have been raised once they are imported, so their types are taken
from ``sys.modules`` rather than imported here.
"""

from __future__ import annotations

import contextlib
import sys
from typing import Iterator

from amsweep.pipeline.errors import CubeError

__all__ = ["cause", "failure_types", "missing_bucket", "no_bucket_message", "store_boundary", "WRITING"]

WRITING = "writing results"  # what a flush does: its message says the unwritten tasks stay pending

# botocore: the endpoint cannot be reached or answered mid-request (EndpointConnectionError,
# ConnectTimeoutError, ReadTimeoutError, ConnectionClosedError, ...), or there are no credentials.
# aiohttp (under s3fs): the connection failed or broke. Other errors of theirs are bugs here.
_OPTIONAL = {
    "botocore.exceptions": ("ConnectionError", "HTTPClientError", "NoCredentialsError"),
    "aiohttp": ("ClientConnectionError", "ServerTimeoutError"),
}


def failure_types() -> tuple[type[BaseException], ...]:
    """OSError (disk full, permissions, ...) and the connection errors of the loaded S3 stack."""
    types: list[type[BaseException]] = [OSError]
    for module, names in _OPTIONAL.items():
        loaded = sys.modules.get(module)
        if loaded is not None:
            types.extend(t for t in (getattr(loaded, n, None) for n in names) if isinstance(t, type))
    return tuple(types)


def cause(e: BaseException) -> str:
    """The failure in one line: its type and message (no traceback, no newlines)."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def missing_bucket(e: BaseException | None) -> str | None:
    """The bucket an S3 request found missing (botocore's ``NoSuchBucket`` anywhere in the chain
    of causes: s3fs re-raises it as a bare FileNotFoundError), else None. Told apart because
    "fix the permissions or the space" sends the user looking in the wrong place."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        response = getattr(e, "response", None)
        error = response.get("Error") if isinstance(response, dict) else None
        if isinstance(error, dict) and error.get("Code") == "NoSuchBucket":
            return str(error.get("BucketName") or "")
        e = e.__cause__ or e.__context__
    return None


def no_bucket_message(path: str, bucket: str) -> str:
    bucket = bucket or path.split("://", 1)[-1].split("/", 1)[0]
    return (
        f"{path}: bucket {bucket!r} does not exist; create it (`aws s3 mb s3://{bucket}`) or correct the "
        "URL, then run again (nothing was written)"
    )


@contextlib.contextmanager
def store_boundary(path: str, doing: str) -> Iterator[None]:
    """Turn a failing store inside the block into a one-line ``CubeError`` about ``path``;
    a ``CubeError`` raised inside (already one line) passes through unchanged."""
    try:
        yield
    except CubeError:
        raise
    except BaseException as e:
        if not isinstance(e, failure_types()):
            raise
        bucket = missing_bucket(e)
        if bucket is not None:
            raise CubeError(no_bucket_message(path, bucket)) from e
        if doing == WRITING:
            after = (
                "Tasks marked done before are intact; the unwritten ones stay pending and the next run recomputes them."
            )
        else:
            after = "Nothing written before is lost; fix the space, permissions or network, then run again."
        raise CubeError(f"{path}: {doing} failed ({cause(e)}). {after}") from e
