"""Plug-in folders shipped to every Ray node through the runtime environment's ``py_modules``.

Before, each batch carried the driver's ``AMSWEEP_PLUGIN_PATH`` and a worker imported the plug-ins
from those folders, so they had to exist at the same path on every node (a shared file system, or a
copy kept in step by hand: an edit on the driver alone ran old code elsewhere). Now the driver
copies each folder into a staging directory under a name made from its content
(``amsweep_shipped_<sha256 prefix>``) and hands the copies to Ray as ``py_modules``: Ray uploads each
once (its package URI is a hash of the content, so an unchanged folder is not uploaded again) and
unpacks it on every node before a worker starts, with the unpacked folder's parent on the worker's
``sys.path``. A batch then carries only the shipped names; the worker finds each on its own
``sys.path`` (``worker_path``) and follows that, never the driver's path.

The copy drops ``__pycache__`` and ignore files (``.gitignore``, ``.rayignore``): Ray would skip
ignored files, and a name that is a hash of what is shipped must cover exactly what is shipped. It
also holds a marker file naming it, so two folders of equal content but different names can never
share one Ray package.

A Ray this executor starts (or joins) gets the copies in the job's runtime environment, uploaded by
``ray.init``; where the caller had already connected Ray, or the folders changed since, the batches
get a task runtime environment instead, whose packages are uploaded here once per sweep (a task's
runtime environment takes only URIs).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amsweep.pipeline.errors import PluginError

__all__ = ["PREFIX", "Shipper", "Staged", "folder_digest", "stage", "worker_path"]

PREFIX = "amsweep_shipped_"
MARKER = ".amsweep_shipped"
IGNORED = ("__pycache__", "*.pyc", ".gitignore", ".rayignore", ".git")


def folder_digest(folder: Path) -> str:
    """sha256 over the relative path and bytes of every file that is shipped, in path order."""
    h = hashlib.sha256()
    for path in sorted(_shipped_files(folder)):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _shipped_files(folder: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in ("__pycache__", ".git")]
        files += [Path(root, n) for n in names if not n.endswith(".pyc") and n not in (".gitignore", ".rayignore")]
    return files


@dataclass(frozen=True)
class Staged:
    """Copies of the plug-in folders, ready for ``py_modules``, and the names workers look for."""

    folders: tuple[Path, ...]  # the driver's folders, in path order
    names: tuple[str, ...]  # one shipped package name per folder, same order
    directory: Path  # the staging directory holding the copies (``remove`` deletes it)

    @property
    def py_modules(self) -> list[str]:
        return [str(self.directory / name) for name in dict.fromkeys(self.names)]

    @property
    def path_value(self) -> str:
        """What a batch carries: the shipped names, in the driver's path order."""
        return os.pathsep.join(self.names)

    def remove(self) -> None:
        shutil.rmtree(self.directory, ignore_errors=True)


def names_of(folders: tuple[Path, ...]) -> tuple[str, ...]:
    return tuple(f"{PREFIX}{folder_digest(folder)[:20]}" for folder in folders)


def stage(folders: tuple[Path, ...]) -> Staged | None:
    """Copy each folder under its content name into a new staging directory (None: no folders)."""
    if not folders:
        return None
    directory = Path(tempfile.mkdtemp(prefix="amsweep-plugins-"))
    names = names_of(folders)
    for folder, name in zip(folders, names):
        target = directory / name
        if not target.exists():  # two folders of equal content: one package serves both
            shutil.copytree(folder, target, ignore=shutil.ignore_patterns(*IGNORED))
            (target / MARKER).write_text(name + "\n")
    return Staged(folders, names, directory)


def worker_path(value: str) -> str:
    """On a worker: the batch's plug-in path with each shipped name replaced by the folder Ray
    unpacked it to (found on this process's ``sys.path``); other entries are kept as given."""
    entries = []
    for entry in value.split(os.pathsep):
        if entry.startswith(PREFIX):
            entries.append(str(_find(entry)))
        elif entry:
            entries.append(entry)
    return os.pathsep.join(entries)


def _find(name: str) -> Path:
    for base in sys.path:
        candidate = Path(base or ".", name)
        if (candidate / MARKER).is_file():
            return candidate
    raise PluginError(
        f"plug-in folder {name} was not shipped to this worker (it is on no folder of its sys.path); "
        "was the sweep's runtime environment (py_modules) replaced?"
    )


class Shipper:
    """The driver's side: what goes into ``ray.init``'s runtime environment, and what each sweep's
    batches carry (a path value, and a task runtime environment when the job's does not fit)."""

    def __init__(self) -> None:
        self.job: Staged | None = None
        self._tasks: dict[tuple[str, ...], dict[str, Any]] = {}

    def job_modules(self, folders: tuple[Path, ...]) -> list[str]:
        """Stage ``folders`` for the job's runtime environment; the ``py_modules`` list (may be empty)."""
        self.job = stage(folders)
        return self.job.py_modules if self.job else []

    def uploaded(self) -> None:
        """``ray.init`` has uploaded the job's packages: the staged copies are no longer needed."""
        if self.job is not None:
            self.job.remove()

    def for_batches(self, folders: tuple[Path, ...]) -> tuple[str, dict[str, Any] | None]:
        """(plug-in path value for ``_worker_setup``, task runtime environment or None)."""
        if not folders:
            return "", None
        names = names_of(folders)
        if self.job is not None and self.job.names == names:
            return os.pathsep.join(names), None
        if names not in self._tasks:
            staged = stage(folders)
            assert staged is not None
            try:
                from ray._private.runtime_env.py_modules import upload_py_modules_if_needed

                env = upload_py_modules_if_needed(
                    {"py_modules": staged.py_modules}, include_gitignore=False, scratch_dir=str(staged.directory)
                )
            finally:
                staged.remove()
            self._tasks[names] = {"py_modules": list(env["py_modules"])}
        return os.pathsep.join(names), self._tasks[names]
