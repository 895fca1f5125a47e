"""Dataset files every node can read: fsspec URLs fetched once per node, driver-local files
shipped once per sweep through Ray's object store.

A dataset's ``path`` may be a local path or any fsspec URL (``s3://``, ``gs://``, ``https://``).
A URL is read through a per-node cache (``$AMSWEEP_CACHE/remote``), fetched at most once per
process and URL (a file replaced during a sweep is not noticed: inputs are immutable). A file
that exists only on the driver is put in Ray's object store once per sweep (``ship``); a worker
writes it once per node into ``$AMSWEEP_CACHE/shipped/<sha256>/`` and reads that copy
(``localize``), so workers on other machines never need the driver's filesystem, and a copy
is never stale (its folder is named by the content's hash). Files bundled with the package
are installed on every node and are not shipped.

A dataset module that reads files offers ``data_files(params) -> list[str]`` (local paths or
URLs) and ``with_data_folder(params, folder) -> params`` (the same data read from a folder
holding those files under their own names).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import fsspec

from amsweep.pipeline import contracts, registry
from amsweep.pipeline.datasets._cache import cache_dir
from amsweep.pipeline.params import Params
from amsweep.pipeline.spec import CellJob

__all__ = ["exists", "files_to_ship", "is_url", "join", "local", "localize", "PACKAGE", "ship", "Shipped"]

PACKAGE = Path(__file__).resolve().parent


def is_url(path: str | os.PathLike) -> bool:
    """True for fsspec URLs other than local files (``file://`` counts as local)."""
    text = str(path)
    return "://" in text and not text.startswith("file://")


def join(base: str | os.PathLike, name: str) -> str:
    """``base/name`` for a URL or a local path."""
    return f"{str(base).rstrip('/')}/{name}" if is_url(base) else str(Path(base) / name)


def exists(path: str | os.PathLike) -> bool:
    """Whether a file exists at a local path or URL."""
    if not is_url(path):
        return Path(path).is_file()
    fs, key = fsspec.core.url_to_fs(str(path))
    try:
        return fs.isfile(key)
    except OSError:
        return False


def _atomic_write(target: Path, data: bytes) -> None:
    """Write whole or not at all: a concurrent reader never sees half a file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), 0o644)
            f.write(data)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


@lru_cache(maxsize=64)
def local(path: str) -> Path:
    """A local file with the content of ``path``: itself, or the node's cached copy of a URL."""
    if not is_url(path):
        return Path(path)
    fs, key = fsspec.core.url_to_fs(path)
    info = fs.info(key)
    stamp = {k: str(info.get(k)) for k in ("size", "ETag", "etag", "mtime", "LastModified") if k in info}
    name = hashlib.sha256(repr((path, sorted(stamp.items()))).encode()).hexdigest()[:24]
    target = cache_dir() / "remote" / name / path.rstrip("/").rsplit("/", 1)[-1]
    if not target.is_file():
        _atomic_write(target, fs.cat_file(key))
    return target


# ---- shipping driver-local files -------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Shipped:
    """The files of one dataset variant, in the object store: folder name and (name, ref) pairs."""

    digest: str
    files: tuple[tuple[str, Any], ...]


def files_to_ship(variant: Any) -> list[Path]:
    """Driver-local files a dataset variant reads (URLs and files bundled in the package excluded)."""
    data_files = contracts.optional(registry.component("datasets", variant.kind), "data_files")
    if data_files is None:
        return []
    paths = [Path(p).resolve() for p in data_files(Params(variant.params, f"dataset {variant.kind}")) if not is_url(p)]
    return [p for p in paths if PACKAGE not in p.parents]


def ship(sweep: Any, put: Callable[[bytes], Any]) -> dict[str, Shipped]:
    """Put every driver-local data file of the sweep in the object store (``put`` = ray.put),
    once per distinct file: {dataset label: Shipped}."""
    out: dict[str, Shipped] = {}
    refs: dict[Path, tuple[str, Any]] = {}
    for variant in sweep.datasets:
        paths = files_to_ship(variant)
        if not paths:
            continue
        for p in paths:
            if p not in refs:
                data = p.read_bytes()
                refs[p] = (hashlib.sha256(data).hexdigest(), put(data))
        digest = hashlib.sha256("".join(refs[p][0] + p.name for p in paths).encode()).hexdigest()[:24]
        out[variant.label] = Shipped(digest, tuple((p.name, refs[p][1]) for p in paths))
    return out


_localized: dict[tuple[str, str], Any] = {}


def _folder(shipped: Shipped, get: Callable[[Any], bytes]) -> Path:
    folder = cache_dir() / "shipped" / shipped.digest
    for name, ref in shipped.files:
        if not (folder / name).is_file():
            _atomic_write(folder / name, get(ref))
    return folder


def localize(jobs: list[CellJob], shipped: dict[str, Shipped], get: Callable[[Any], bytes]) -> list[CellJob]:
    """Worker side: jobs whose dataset reads the shipped copies (written once per node)."""
    out = []
    for job in jobs:
        task = job.task
        entry = shipped.get(task.dataset.label)
        if entry is None:
            out.append(job)
            continue
        key = (task.dataset.label, entry.digest)
        if key not in _localized:
            module = registry.component("datasets", task.dataset.kind)
            params = module.with_data_folder(
                Params(task.dataset.params, f"dataset {task.dataset.kind}"), _folder(entry, get)
            )
            _localized[key] = dataclasses.replace(task.dataset, params=params)
        out.append(dataclasses.replace(job, task=dataclasses.replace(task, dataset=_localized[key])))
    return out
