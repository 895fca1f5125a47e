"""The few object-store operations a cube needs, each all-or-nothing, on local disk and on fsspec.

A cube is a set of named objects (Zarr metadata documents, shards, side records). Format 2
writes them whole: a reader, or a driver killed mid-write, sees either the old object or the new
one, never a torn one. Object stores give that per request (one PUT replaces an object); on a
local filesystem the bytes go to a temporary name in the same folder and one ``os.replace``
(atomic in POSIX) puts them in place. Conditional writes (create-if-absent, replace-if-unchanged)
back the cube's lease: S3 has them natively (If-None-Match / If-Match, moto implements both);
on local disk a hard link creates atomically and an advisory lock guards compare-and-swap.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import uuid
from pathlib import Path
from typing import Any, Iterable, Protocol

import fsspec

__all__ = ["FsspecObjects", "LocalObjects", "Objects", "objects_at", "PARTIAL"]

PARTIAL = ".partial-"  # marks a local temporary; never a cube key


class Objects(Protocol):
    """Keys are '/'-separated paths relative to the cube's root."""

    url: str

    def get(self, key: str) -> bytes | None: ...
    def get_many(self, keys: Iterable[str]) -> dict[str, bytes | None]: ...
    def put(self, key: str, data: bytes) -> None: ...
    def put_many(self, items: dict[str, bytes]) -> None: ...
    def create(self, key: str, data: bytes) -> bool: ...
    def version(self, key: str) -> Any: ...
    def replace_if(self, key: str, data: bytes, version: Any) -> bool: ...
    def delete(self, key: str) -> None: ...
    def list(self, prefix: str = "") -> list[str]: ...
    def root_exists(self) -> bool: ...


class LocalObjects:
    """A folder on a local (or POSIX network) filesystem."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        return self.root / key

    def get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        return {k: self.get(k) for k in keys}

    def _temporary(self, path: Path, data: bytes) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}{PARTIAL}{uuid.uuid4().hex[:12]}")
        with open(tmp, "wb") as f:
            f.write(data)
        return tmp

    def put(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = self._temporary(path, data)
        try:
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def put_many(self, items: dict[str, bytes]) -> None:
        for key, data in items.items():
            self.put(key, data)

    def create(self, key: str, data: bytes) -> bool:
        """Create ``key`` with ``data`` unless it exists: a complete temporary is hard-linked to
        the name, which fails atomically if the name is taken."""
        path = self._path(key)
        tmp = self._temporary(path, data)
        try:
            os.link(tmp, path)
            return True
        except FileExistsError:
            return False
        finally:
            tmp.unlink(missing_ok=True)

    def version(self, key: str) -> Any:
        try:
            st = self._path(key).stat()
        except FileNotFoundError:
            return None
        return (st.st_ino, st.st_mtime_ns, st.st_size)

    def replace_if(self, key: str, data: bytes, version: Any) -> bool:
        """Replace ``key`` only if it is still at ``version`` (an advisory lock makes the
        compare-and-swap atomic between processes of this filesystem)."""
        if version is None:
            return self.create(key, data)
        path = self._path(key)
        lock = path.with_name(path.name + ".lock")
        lock.parent.mkdir(parents=True, exist_ok=True)
        with open(lock, "a") as fd:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if self.version(key) != version:
                    return False
                self.put(key, data)
                return True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix else self.root
        if not base.is_dir():
            return []
        out = []
        for dirpath, _, files in os.walk(base):
            for name in files:
                if PARTIAL not in name and not name.endswith(".lock"):
                    out.append(str(Path(dirpath, name).relative_to(self.root)).replace(os.sep, "/"))
        return sorted(out)

    def root_exists(self) -> bool:
        return self.root.exists()


class FsspecObjects:
    """Any fsspec filesystem; S3 (s3fs) gets native conditional writes."""

    def __init__(self, url: str, storage_options: dict | None = None) -> None:
        self.url = url
        self.fs, root = fsspec.core.url_to_fs(url, **(storage_options or {}))
        self.base = root.rstrip("/")
        self.s3 = "s3" in self.fs.protocol or "s3a" in self.fs.protocol

    def _path(self, key: str) -> str:
        return f"{self.base}/{key}"

    def get(self, key: str) -> bytes | None:
        try:
            return self.fs.cat_file(self._path(key))
        except FileNotFoundError:
            return None

    def get_many(self, keys: Iterable[str]) -> dict[str, bytes | None]:
        """Concurrent GETs where the filesystem batches them (s3fs does)."""
        keys = list(keys)
        if not keys:
            return {}
        found = self.fs.cat([self._path(k) for k in keys], on_error="omit")
        prefix = len(self.base) + 1
        got = {p[prefix:] if p.startswith(self.base) else p.split("/", 1)[-1]: v for p, v in found.items()}
        return {k: got.get(k) for k in keys}

    def put(self, key: str, data: bytes) -> None:
        self.fs.pipe_file(self._path(key), data)

    def put_many(self, items: dict[str, bytes]) -> None:
        """Concurrent PUTs, each whole (one request per object)."""
        if items:
            self.fs.pipe({self._path(k): v for k, v in items.items()})

    def create(self, key: str, data: bytes) -> bool:
        path = self._path(key)
        if self.s3:
            try:
                self.fs.pipe_file(path, data, mode="create")
                return True
            except (FileExistsError, OSError) as e:
                if _precondition_failed(e):
                    return False
                raise
        if self.fs.exists(path):  # no conditional write in this protocol: best effort
            return False
        self.fs.pipe_file(path, data)
        return True

    def version(self, key: str) -> Any:
        try:
            info = self.fs.info(self._path(key), refresh=True) if self.s3 else self.fs.info(self._path(key))
        except FileNotFoundError:
            return None
        return info.get("ETag") or (info.get("mtime"), info.get("size"))

    def replace_if(self, key: str, data: bytes, version: Any) -> bool:
        if version is None:
            return self.create(key, data)
        if self.s3:
            bucket, obj, _ = self.fs.split_path(self._path(key))
            try:
                self.fs.call_s3("put_object", Bucket=bucket, Key=obj, Body=data, IfMatch=version)
                self.fs.invalidate_cache(self._path(key))
                return True
            except (FileNotFoundError, OSError) as e:
                if _precondition_failed(e) or isinstance(e, FileNotFoundError):
                    return False
                raise
        if self.version(key) != version:
            return False
        self.put(key, data)
        return True

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):  # already gone: the goal of a delete
            self.fs.rm_file(self._path(key))

    def list(self, prefix: str = "") -> list[str]:
        base = self._path(prefix) if prefix else self.base
        self.fs.invalidate_cache(base)
        try:
            found = self.fs.find(base)
        except FileNotFoundError:
            return []
        start = len(self.base) + 1
        return sorted(p[start:] for p in found)

    def root_exists(self) -> bool:
        self.fs.invalidate_cache(self.base)
        return self.fs.exists(self.base) and bool(self.fs.ls(self.base, detail=False)) or self.fs.isdir(self.base)


def _precondition_failed(e: BaseException | None) -> bool:
    """A conditional write refused: 412 PreconditionFailed (or 409 ConditionalRequestConflict, a
    concurrent conditional write). s3fs re-raises botocore's ClientError as a bare OSError whose
    text has neither, so the chained cause is inspected."""
    while e is not None:
        response = getattr(e, "response", None)
        if isinstance(response, dict):
            code = response.get("Error", {}).get("Code")
            status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                return True
        if isinstance(e, FileExistsError) or "PreconditionFailed" in f"{type(e).__name__} {e}":
            return True
        e = e.__cause__ or e.__context__
    return False


def objects_at(path: str, storage_options: dict | None = None) -> Objects:
    """The store behind a cube path: a local folder, or an fsspec URL (``s3://bucket/key.zarr``)."""
    if "://" not in path or path.startswith("file://"):
        return LocalObjects(os.path.abspath(path.removeprefix("file://")))
    return FsspecObjects(path, storage_options)
