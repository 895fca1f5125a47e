"""The result cube on disk (or any fsspec store): template, writes, status.

Only the driver writes. Each task owns one chunk of every variable, its data is written before
its status, and a cube remembers the spec that made it, so that a crash loses at most the
results not yet flushed and a resume can never mix two experiments in one cube.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from importlib.metadata import PackageNotFoundError, version
from typing import Any, Iterable, Iterator

import fsspec
import numpy as np
import zarr

from pipeline.cell import CellResult
from pipeline.metrics import METRICS
from pipeline.spec import Sweep, Task, from_canonical, spec_hash
from storage import extend, layout
from storage.layout import DONE, FAILED, FORMAT_VERSION, NOT_APPLICABLE, PENDING


CREATING = "amsweep_creating"
Mark = tuple[tuple[int, ...], int, str]  # (task index, FAILED or NOT_APPLICABLE, error text)
SIDE = "_amsweep"


def _interrupted_template(path: str, storage_options: dict | None) -> bool:
    """True for a group whose template creation never finished (safe to rebuild)."""
    try:
        attrs = zarr.open_group(path, mode="r", storage_options=storage_options, zarr_format=3).attrs.asdict()
    except Exception:
        return False
    return attrs.get(CREATING) is True and "amsweep_spec" not in attrs


from pipeline.errors import CubeError  # noqa: E402  (the error hierarchy lives in pipeline.errors)


def package_version() -> str:
    try:
        return version("amsweep")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def filesystem(path: str, storage_options: dict | None):
    fs, root = fsspec.core.url_to_fs(path, **(storage_options or {}))
    return fs, root.rstrip("/")


def put_bytes(fs, key: str, data: bytes) -> None:
    """Write a small side file whole or not at all, so that a reader (``amsweep status`` while a
    sweep runs) or a killed driver never leaves half a record.

    Object stores replace an object in one request; on a local filesystem the bytes go to a
    temporary name in the same folder, then one rename (atomic in POSIX) puts them in place.
    Local folders must exist first.
    """
    parent = key.rsplit("/", 1)[0]
    if not fs.exists(parent):
        fs.makedirs(parent, exist_ok=True)
    if "file" not in fs.protocol:
        fs.pipe(key, data)
        return
    tmp = f"{key}.tmp-{os.getpid()}"
    fs.pipe(tmp, data)
    fs.mv(tmp, key)


def read_robust(arr, task_shape: tuple[int, ...], fill) -> tuple[np.ndarray, list[tuple[int, ...]]]:
    """The whole array in one read; if a chunk is damaged, cell by cell to find which."""
    try:
        return np.asarray(arr[...]), []
    except Exception:  # a truncated or garbled chunk somewhere: locate it below
        out = np.full(arr.shape, fill, dtype=arr.dtype)
    bad = []
    for index in np.ndindex(*task_shape):
        try:
            out[index] = arr[index]
        except Exception:
            bad.append(index)
    return out, bad



def task_key(index: tuple[int, ...]) -> str:
    """Name of a task's side entries: its position on (dataset, N, load, rule, seed)."""
    return "-".join(str(i) for i in index)


@dataclass
class Cube:
    """An open cube and the sweep it belongs to."""

    path: str
    group: zarr.Group
    sweep: Sweep
    storage_options: dict | None = None

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str, storage_options: dict | None = None, mode: str = "r+") -> "Cube":
        """Open an existing amsweep cube; its sweep is rebuilt from the stored canonical spec."""
        fs, root = filesystem(path, storage_options)
        if not fs.exists(root):
            raise CubeError(f"{path}: no cube there (nothing exists at this path)")
        try:
            group = zarr.open_group(path, mode=mode, storage_options=storage_options, zarr_format=3)
        except Exception as e:  # zarr raises several types for a non-group path
            raise CubeError(f"{path}: exists but is not a Zarr v3 group ({type(e).__name__}: {e}); "
                            "refusing to touch it") from None
        attrs = group.attrs.asdict()
        if "amsweep_spec" not in attrs:
            raise CubeError(f"{path}: a Zarr group that was not written by amsweep (no amsweep_spec "
                            "attribute); refusing to touch it")
        if attrs.get("amsweep_format") != FORMAT_VERSION:
            raise CubeError(f"{path}: cube format {attrs.get('amsweep_format')!r}, this amsweep reads "
                            f"format {FORMAT_VERSION}")
        canonical = json.loads(attrs["amsweep_spec"])
        if spec_hash(canonical) != attrs.get("amsweep_spec_hash"):
            raise CubeError(f"{path}: stored spec does not match its stored hash; the cube attributes "
                            "were edited or damaged")
        missing = [n for n in ("status", SIDE, *METRICS) if n not in group]
        if missing:
            raise CubeError(f"{path}: cube lacks variable(s) {missing}; it was written by another "
                            "amsweep version or is damaged")
        return cls(path, group, from_canonical(canonical), storage_options)

    @classmethod
    def create_or_open(cls, path: str, sweep: Sweep, storage_options: dict | None = None) -> "Cube":
        """Resume the cube of this spec, create it if absent, grow it if the spec only adds values,
        and refuse it (touching nothing) if the spec changes anything else."""
        fs, root = filesystem(path, storage_options)
        if not fs.exists(root) or _interrupted_template(path, storage_options):
            return cls._create(path, sweep, storage_options)
        cube = cls.open(path, storage_options)
        if cube.sweep.spec_hash == sweep.spec_hash:
            return cube
        merged, problems = extend.merge(cube.sweep.canonical, sweep.canonical)
        if problems:
            raise CubeError(
                f"{path} was written by another spec (hash {cube.sweep.spec_hash}, this spec "
                f"{sweep.spec_hash}); nothing was changed. Differences:\n  " + "\n  ".join(problems)
                + "\nA spec may only add values (seeds, N, loads, datasets, rules) to extend a cube; "
                "use a new --out path for a new experiment.")
        if merged == cube.sweep.canonical:
            return cube  # the same content listed in another order
        cube._grow(from_canonical(merged))
        return cube

    def _grow(self, merged: Sweep) -> None:
        """Append coordinate values; new cells start pending, done cells are not touched.

        Idempotent, and the spec attributes are replaced last, so an interrupted extension is
        simply redone by the next run of the same spec.
        """
        group = self.group
        coords = layout.coordinates(merged)
        sizes = {c.name: c.values.shape[0] for c in coords if c.dims == (c.name,)}
        for v in layout.variables(merged, [c.name for c in coords]):
            arr = group[v.name]
            arr.resize(tuple(sizes[d] for d in v.dims))
            arr.attrs.update(v.attrs)
        for c in coords:
            arr = group.create_array(c.name, shape=c.values.shape, chunks=c.values.shape, dtype=c.dtype,
                                     dimension_names=list(c.dims), attributes=c.attrs, overwrite=True)
            arr[...] = c.values
        status = group["status"]
        current = np.asarray(status[...])
        grown = np.where(layout.not_applicable_mask(merged) & (current == PENDING), NOT_APPLICABLE, current)
        status[...] = grown.astype(np.int8)  # done chunks are rewritten with their own value
        history = list(group.attrs.get("extended", [])) + [
            _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")]
        group.attrs.update({"amsweep_spec": json.dumps(merged.canonical, sort_keys=True),
                            "amsweep_spec_hash": merged.spec_hash, "extended": history})
        self.sweep = merged

    @classmethod
    def _create(cls, path: str, sweep: Sweep, storage_options: dict | None) -> "Cube":
        attrs = {
            "amsweep_format": FORMAT_VERSION,
            "amsweep_spec": json.dumps(sweep.canonical, sort_keys=True),
            "amsweep_spec_hash": sweep.spec_hash,
            "amsweep_version": package_version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "title": sweep.name,
            "description": sweep.description,
        }
        # The spec attributes are written last: a template interrupted half-way has none, and
        # is recognised (CREATING) and rebuilt, since no result can have reached it.
        group = zarr.open_group(path, mode="w", storage_options=storage_options, zarr_format=3,
                                attributes={CREATING: True})
        coords = layout.coordinates(sweep)
        for c in coords:
            arr = group.create_array(c.name, shape=c.values.shape, chunks=c.values.shape, dtype=c.dtype,
                                     dimension_names=list(c.dims), attributes=c.attrs)
            arr[...] = c.values
        for v in layout.variables(sweep, [c.name for c in coords]):
            shape = tuple(group[d].shape[0] for d in v.dims)
            chunks = tuple(group[d].shape[0] if d == "noise" else 1 for d in v.dims)
            group.create_array(v.name, shape=shape, chunks=chunks, dtype=v.dtype, fill_value=v.fill,
                               dimension_names=list(v.dims), attributes=v.attrs)
        group.create_group(SIDE)  # side files (failure records, run record) live in this group
        mask = layout.not_applicable_mask(sweep)
        if mask.any():  # one write; chunks equal to the fill (pending) are not stored at all
            group["status"][...] = np.where(mask, NOT_APPLICABLE, PENDING).astype(np.int8)
        group.attrs.put(attrs)
        return cls(path, group, sweep, storage_options)

    # ---- status --------------------------------------------------------------------------
    def status(self) -> np.ndarray:
        """The int8 status grid over (dataset, N, load, rule, seed); an unreadable chunk counts
        as pending, so a damaged status can cost a recomputation but never a crash or a loss."""
        return read_robust(self.group["status"], self.sweep.shape, PENDING)[0]

    def pending(self, retry_failed: bool = True) -> Iterator[Task]:
        """Tasks still to run, lazily in task order: pending, and failed ones unless told otherwise."""
        status = self.status()
        todo = {PENDING, FAILED} if retry_failed else {PENDING}
        return (t for t in self.sweep.tasks() if status[t.index] in todo)

    def count_pending(self, retry_failed: bool = True) -> int:
        status = self.status()
        return int(np.isin(status, [PENDING, FAILED] if retry_failed else [PENDING]).sum())

    # ---- writes --------------------------------------------------------------------------
    def ensure_writable(self) -> None:
        """Fail before any work if the cube cannot be written (read-only path, no permission)."""
        fs, root = filesystem(self.path, self.storage_options)
        probe = f"{root}/{SIDE}/write-probe"
        try:
            put_bytes(fs, probe, b"ok")
            fs.rm(probe)
        except OSError as e:
            raise CubeError(f"{self.path}: cannot write to the cube ({e}); its results are intact. "
                            "Fix the permissions or the space, then run again.") from None

    def write(self, results: Iterable[CellResult], marks: Iterable[Mark] = ()) -> None:
        """One flush: each result's data, then (after all data) their status; ``marks`` records
        failed and not-applicable tasks (index, state, error text) in the same flush."""
        try:
            self._write(list(results))
            for index, state, error in marks:
                self.mark(index, state, error)
        except OSError as e:  # full disk, lost permission, unreachable store
            raise CubeError(f"{self.path}: writing results failed ({e}). Tasks marked done before "
                            "are intact; the unwritten ones stay pending and the next run recomputes "
                            "them.") from None

    def _write(self, results: list[CellResult]) -> None:
        arrays = {name: self.group[name] for name in METRICS}
        for r in results:
            if r.couplings is not None:
                self._write_couplings(r.index, r.couplings)
            for name, value in r.values.items():
                target = r.index + ((slice(None),) if METRICS[name].per_noise else ())
                arrays[name][target] = value
        status = self.group["status"]
        for r in results:
            status[r.index] = DONE
        self._clear_failures([r.index for r in results])

    def _write_couplings(self, index: tuple[int, ...], J: np.ndarray) -> None:
        """Per-task arrays have a shape of their own (ragged N), so each is its own array."""
        store = self.group.require_group(f"{SIDE}/couplings")
        store.create_array(task_key(index), shape=J.shape, chunks=J.shape, dtype=J.dtype,
                           overwrite=True)[...] = J

    def couplings(self, index: tuple[int, ...]) -> np.ndarray:
        """The stored couplings (or memories) of one done task."""
        key = f"{SIDE}/couplings/{task_key(index)}"
        if key not in self.group:
            raise KeyError(f"no couplings stored for {self.coords_of(index)}; the spec must set "
                           "[retrieval] store_couplings = true before the task runs")
        return np.asarray(self.group[key][...])

    def mark(self, index: tuple[int, ...], state: int, error: str | None = None) -> None:
        """Record a failed or not-applicable task; the error text goes to a side file."""
        if state not in (FAILED, NOT_APPLICABLE):
            raise ValueError(f"mark() records failures and not-applicable tasks, not state {state}")
        if error is not None:
            fs, root = filesystem(self.path, self.storage_options)
            record = {"index": list(index), "state": layout.STATUS_NAMES[state], "error": error,
                      "time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            put_bytes(fs, self._failure_key(root, index), json.dumps(record).encode())
        self.group["status"][index] = state

    def failures(self) -> list[dict[str, Any]]:
        """Side records of failed and not-applicable tasks, with their coordinates."""
        fs, root = filesystem(self.path, self.storage_options)
        folder = f"{root}/{SIDE}/failures"
        if not fs.exists(folder):
            return []
        out = []
        for key in sorted(fs.ls(folder, detail=False)):
            if not key.endswith(".json"):  # a temporary left by a driver killed mid-write
                continue
            record = json.loads(fs.cat(key))
            record["coords"] = self.coords_of(tuple(record["index"]))
            out.append(record)
        return out

    def coords_of(self, index: tuple[int, ...]) -> dict[str, Any]:
        s = self.sweep
        i_d, i_n, i_l, i_r, i_s = index
        return {"dataset": s.datasets[i_d].label, "N": s.N_values[i_n], s.load_axis: s.load_values[i_l],
                "rule": s.rules[i_r].label, "seed": s.seeds[i_s]}

    def _failure_key(self, root: str, index: tuple[int, ...]) -> str:
        return f"{root}/{SIDE}/failures/{task_key(index)}.json"

    def _clear_failures(self, indices: list[tuple[int, ...]]) -> None:
        """Drop the failure records of tasks now done (one listing per batch, not one per task)."""
        fs, root = filesystem(self.path, self.storage_options)
        folder = f"{root}/{SIDE}/failures"
        if not indices or not fs.exists(folder):
            return
        present = {p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(folder, detail=False)}
        for index in indices:
            if f"{task_key(index)}.json" in present:
                fs.rm(self._failure_key(root, index))
