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
also drops what is not a regular file, and editors' lock files (``.#name``): Emacs leaves one as a
dangling link while a buffer has unsaved edits (reading it raised FileNotFoundError, a traceback),
and a named pipe blocked the read for ever, before anything was said. It also holds a marker file
naming it, so two folders of equal content but different names can never share one Ray package.
A folder larger than Ray's package limit (``RAY_max_grpc_message_size``, 512 MiB) is refused in one
line (``too_large``): Ray's own advice, a ``.rayignore``, cannot apply to the staged copy.

A Ray this executor starts (or joins) gets the copies in the job's runtime environment, uploaded by
``ray.init``; where the caller had already connected Ray, or the folders changed since, the batches
get a task runtime environment instead, whose packages are uploaded here once per sweep (a task's
runtime environment takes only URIs).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import stat
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from amsweep.pipeline.errors import PluginError

__all__ = ["PREFIX", "Shipper", "Staged", "folder_digest", "stage", "too_large", "worker_path"]

PREFIX = "amsweep_shipped_"
MARKER = ".amsweep_shipped"


def folder_digest(folder: Path) -> str:
    """sha256 over the relative path and bytes of every file that is shipped, in path order."""
    h = hashlib.sha256()
    for path in sorted(_shipped_files(folder)):
        h.update(path.relative_to(folder).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


SKIPPED_DIRS = ("__pycache__", ".git")


def _ships(path: Path) -> bool:
    """Whether a file is shipped: a regular file (or a link to one), not byte code, an ignore file or
    an editor's lock file. ``os.stat`` never opens it, so a named pipe cannot block here."""
    name = path.name
    if name.endswith(".pyc") or name in (".gitignore", ".rayignore") or name.startswith(".#"):
        return False
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:  # a dangling link, or one we may not follow
        return False


def _shipped_files(folder: Path) -> list[Path]:
    files = []
    for root, dirs, names in os.walk(folder, followlinks=True):  # as copytree copies a linked folder
        dirs[:] = [d for d in dirs if d not in SKIPPED_DIRS]
        files += [Path(root, n) for n in names if _ships(Path(root, n))]
    return files


def _ignored(directory: str, names: list[str]) -> set[str]:
    """``copytree``'s ignore: exactly what ``_shipped_files`` leaves out, so the name covers the copy."""
    skipped = set()
    for name in names:
        path = Path(directory, name)
        if name in SKIPPED_DIRS or (not path.is_dir() and not _ships(path)):
            skipped.add(name)
    return skipped


def too_large(e: BaseException, folders: tuple[Path, ...]) -> PluginError | None:
    """The one line for Ray refusing a plug-in package over its size limit (None: not that error);
    it names the largest files, which are what to move out (data beside a dataset plug-in)."""
    seen: BaseException | None = e
    for _ in range(8):
        if seen is None:
            return None
        text = str(seen)
        if "exceeds the maximum size" in text:
            break
        seen = seen.__cause__ or seen.__context__
    else:
        return None
    said = next(line for line in text.splitlines() if "exceeds the maximum size" in line).strip()
    said = said[said.find("Package size") :] if "Package size" in said else said  # not the staged copy's path
    said = said.split(". To exclude")[0]
    files = sorted(((p.stat().st_size, p) for f in folders for p in _shipped_files(f)), reverse=True)[:3]
    largest = ", ".join(f"{p} ({size / 2**20:.1f} MiB)" for size, p in files)
    return PluginError(
        f"the plug-in folders on AMSWEEP_PLUGIN_PATH are too large to ship to Ray ({said}); largest files: "
        f"{largest}. Keep only code there and have a dataset read large files from a path its spec gives "
        "(ignore files such as .rayignore do not apply: the whole folder is shipped); nothing ran"
    )


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
            shutil.copytree(folder, target, ignore=_ignored)
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

    def __init__(self, inherited: list[str] | None = None) -> None:
        self.job: Staged | None = None
        self.inherited = list(inherited or [])  # a Ray job's own py_modules: a task's list replaces the job's
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
                    {"py_modules": self.inherited + staged.py_modules},
                    include_gitignore=False,
                    scratch_dir=str(staged.directory),
                )
            except Exception as e:
                refusal = too_large(e, folders)
                if refusal is None:
                    raise
                raise refusal from None
            finally:
                staged.remove()
            self._tasks[names] = {"py_modules": list(env["py_modules"])}
        return os.pathsep.join(names), self._tasks[names]
