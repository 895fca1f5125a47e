"""The cube's Zarr documents, built in memory and committed by one write of the root ``zarr.json``.

Zarr-python builds every array's metadata document and encodes the coordinate chunks (into a
dict, not the cube), so what amsweep writes is Zarr's own format; amsweep then writes those
objects whole through ``amsweep.storage.objects`` and commits the cube by writing the root document last,
in one request: its attributes (spec, hash, provenance) *and* the consolidated metadata of every
array. Readers (amsweep and ``xr.open_zarr``) take the shapes from that one document, so a cube
changes from one state to the next in a single atomic write: a kill during creation, extension
or upgrade leaves the old cube (or a template recognised as interrupted), never a mixture.

Variables are sharded (``storage/shards.py``): a shard is a block of the task grid, an inner
chunk a seed row or more of it (format 3). Coordinate chunks are fixed and large (4,096
values): growing an axis rewrites the chunk with the old values as its prefix, so a reader
still holding the old root document reads the same values as before.

Reading needs no zarr-python: ``arrays_of`` keeps each array's stored JSON (``StoredArray``), which
gives the shard geometry, shape and fill value; zarr's metadata object is built on first use of
anything else (a write, ``check``). Its import was ~0.25-0.5 s of every ``amsweep status`` (issue 26).
"""

from __future__ import annotations

import contextlib
import json
import warnings
from dataclasses import dataclass
from typing import Any, Iterator, NoReturn

import numpy as np

from amsweep.pipeline.errors import CubeError
from amsweep.pipeline.spec import Sweep
from amsweep.storage import schema
from amsweep.storage.objects import Objects
from amsweep.storage.shards import ShardGeometry, choose_block_shape, choose_shard_shape

__all__ = [
    "build",
    "COORD_CHUNK",
    "COORD_CHUNK_2D",
    "CREATING",
    "DamagedArray",
    "creating_document",
    "arrays_of",
    "read_root",
    "StoredArray",
    "quiet_labels",
    "ROOT",
    "root_document",
    "shard_geometry",
    "Template",
]

ROOT = "zarr.json"
CREATING = "amsweep_creating"
COORD_CHUNK = 4096
COORD_CHUNK_2D = (64, 512)


@contextlib.contextmanager
def quiet_labels() -> Iterator[None]:
    """Silence zarr-python's note that fixed-width unicode is its own extension data type: the
    choice is deliberate (see ``_fixed_width``), and zarr repeats it on every metadata write."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have a Zarr V3 specification.*")
        yield


@dataclass
class Template:
    """Every object of a cube except data shards and the root document."""

    objects: dict[str, bytes]
    arrays: dict[str, Any]  # name -> zarr ArrayV3Metadata, for the consolidated root
    shard: tuple[int, ...]
    block: tuple[int, ...]


def build(sweep: Sweep, shard: tuple[int, ...] | None = None, block: tuple[int, ...] | None = None) -> Template:
    """Array documents and coordinate chunks of ``sweep``'s cube.

    ``shard`` and ``block`` (the inner chunk's task extent) are kept from an existing cube when
    it grows: shard keys and the bytes of written shards must not move.
    """
    shard = shard or choose_shard_shape(sweep.shape)
    block = block or choose_block_shape(shard)
    store: dict[str, Any] = {}
    with quiet_labels():
        return _build(sweep, shard, block, store)


def _build(sweep: Sweep, shard: tuple[int, ...], block: tuple[int, ...], store: dict[str, Any]) -> Template:
    import zarr
    from zarr.codecs import BytesCodec, Crc32cCodec, ZstdCodec

    group = zarr.open_group(zarr.storage.MemoryStore(store_dict=store), mode="w", zarr_format=3)
    coords = schema.coordinates(sweep)
    for c in coords:
        chunks = COORD_CHUNK_2D if len(c.dims) == 2 else (COORD_CHUNK,)
        dtype = _fixed_width(c.data) if c.data.dtype == object else c.dtype
        arr = group.create_array(
            c.name,
            shape=c.data.shape,
            chunks=chunks,
            dtype=dtype,
            dimension_names=list(c.dims),
            attributes=c.attrs,
            compressors=[ZstdCodec(), Crc32cCodec()],
        )
        arr[...] = c.data
    for v in schema.variables(sweep, [c.name for c in coords]):
        inner = (len(sweep.noise),) if v.per_noise else ()
        group.create_array(
            v.name,
            shape=sweep.shape + inner,
            chunks=block + inner,
            shards=shard + inner,
            dtype=v.dtype,
            fill_value=v.fill,
            dimension_names=list(v.dims),
            attributes=v.attrs,
            serializer=BytesCodec(),
            compressors=[Crc32cCodec()],
        )
    arrays = {name: node.metadata for name, node in group.members()}
    objects = {k: v.to_bytes() for k, v in store.items() if k != ROOT}
    return Template(objects, arrays, shard, block)


def _fixed_width(values: np.ndarray) -> np.dtype:
    """Labels are stored as fixed-width unicode (zarr-python's ``fixed_length_utf32``): dask can
    size fixed-width chunks, so ``xr.open_zarr(CUBE, chunks="auto")`` works. The width is a power
    of two of at least 64 characters, so that growing a cube rarely changes it.

    No Zarr v3 label type is read by xarray (as labels), zarr-python and tensorstore (0.1.86, re-checked
    for issue 26): tensorstore refuses ``string`` (vlen-utf8), ``fixed_length_utf32`` and
    ``null_terminated_bytes`` alike (so CF ``S1`` char arrays too: zarr stores ``S1`` as the latter);
    its only byte type, raw bits ``r<N>``, zarr-python 3.1 cannot open; a ``uint8`` char array opens
    everywhere but xarray decodes only ``S1`` to strings. Tensorstore reads every numeric array of a
    cube; tests/test_cube_format3.py's strict xfail notices the day it reads labels too."""
    longest = max((len(str(v)) for v in values.ravel()), default=1)
    return np.dtype(f"<U{max(64, 1 << (longest - 1).bit_length())}")


def root_document(attrs: dict[str, Any], arrays: dict[str, Any]) -> bytes:
    """The root ``zarr.json``: group attributes plus consolidated metadata of every array."""
    from zarr.core.buffer import default_buffer_prototype
    from zarr.core.group import ConsolidatedMetadata, GroupMetadata

    metadata = {name: m.metadata if isinstance(m, StoredArray) else m for name, m in arrays.items()}
    with quiet_labels():
        meta = GroupMetadata(attributes=attrs, consolidated_metadata=ConsolidatedMetadata(metadata=metadata))
        return meta.to_buffer_dict(default_buffer_prototype())[ROOT].to_bytes()


def creating_document() -> bytes:
    """The first object of a new cube: marks a template under construction (safe to rebuild)."""
    return json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {CREATING: True}}).encode()


class StoredArray:
    """One array's metadata as the root document stores it (Zarr v3 JSON), read without zarr-python:
    ``shape``, ``fill_value`` and (``shard_geometry``) the shards are read from the JSON; anything
    else (``to_dict``, ``to_buffer_dict``, ...) is zarr's ``ArrayV3Metadata``, built on first use."""

    def __init__(self, doc: dict[str, Any], name: str = "", where: str = "") -> None:
        self.doc = doc
        self.name = name  # for errors: the array and the cube (``where``) whose root document holds it
        self.where = where
        self._metadata: Any = None

    @classmethod
    def read(cls, doc: Any, name: str, where: str) -> "StoredArray":
        """The entry ``name`` of ``where``'s root document, checked: the fields amsweep reads from
        the JSON (shape, data type, chunk grid, codecs, fill value) are present and well formed, so
        that a damaged entry is one ``DamagedArray`` line naming the array, not a KeyError from deep
        inside a read (attack26). Costs microseconds per array: no zarr import."""
        if not isinstance(doc, dict):
            raise DamagedArray(f"{where}/{ROOT}: array {name!r}: its entry is not a JSON object")
        array = cls(doc, name, where)
        if not _ints(doc.get("shape")):
            array.damaged(f"shape {doc.get('shape')!r} is not a list of non-negative integers")
        grid: Any = _config(doc.get("chunk_grid")).get("chunk_shape")
        if not _ints(grid) or len(grid) != len(doc["shape"]):
            array.damaged(f"chunk grid {doc.get('chunk_grid')!r} does not match its shape")
        codecs = doc.get("codecs")
        if not isinstance(codecs, list) or not codecs or not all(isinstance(c, dict) for c in codecs):
            array.damaged(f"codecs {codecs!r} is not a list of codecs")
        if codecs[0].get("name") == "sharding_indexed" and not _ints(_config(codecs[0]).get("chunk_shape")):
            array.damaged(f"sharding codec {codecs[0]!r} has no inner chunk shape")
        if "data_type" not in doc:
            array.damaged("no data_type")
        if "fill_value" not in doc:
            array.damaged("no fill_value")
        try:  # a numeric one parsed here, so that no read meets a bad one (others are zarr's, on first use)
            if _numeric(doc["data_type"]) is not None:
                array.fill_value  # noqa: B018
        except (KeyError, ValueError, TypeError, OverflowError) as e:
            array.damaged(f"fill_value {doc['fill_value']!r} is not a value of data type {doc['data_type']!r} ({e!r})")
        return array

    def damaged(self, what: str) -> NoReturn:
        """Refuse this array: ``what`` is wrong with its entry in the root document."""
        raise DamagedArray(
            f"{self.where}/{ROOT}: array {self.name!r}: {what}; the cube's root document is damaged "
            "(edited by hand, or written by a broken tool)"
        )

    @property
    def metadata(self) -> Any:
        """zarr-python's ``ArrayV3Metadata`` of this array (imports zarr)."""
        if self._metadata is None:
            from zarr.core.metadata.v3 import ArrayV3Metadata

            with quiet_labels():
                self._metadata = ArrayV3Metadata.from_dict(dict(self.doc))
        return self._metadata

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.doc["shape"])

    @property
    def fill_value(self) -> Any:
        """As zarr reads it: a scalar of the array's data type (``"NaN"``, ``"Infinity"``, ``"-Infinity"``
        and ``"0x..."`` bit patterns as the Zarr v3 specification writes special floats)."""
        dtype = _numeric(self.doc["data_type"])
        if dtype is None:
            return self.metadata.fill_value
        value = self.doc["fill_value"]
        if isinstance(value, str) and value.startswith("0x"):
            return np.frombuffer(bytes.fromhex(value[2:]), dtype=dtype.newbyteorder(">"))[0].astype(dtype)
        if isinstance(value, str):
            value = {"NaN": "nan", "Infinity": "inf", "-Infinity": "-inf"}[value]  # else KeyError: ``read``
        if dtype.kind in "iub" and not isinstance(value, (int, bool)):
            raise TypeError(f"{value!r} is not an integer")  # numpy would truncate 1.5 or read 'nan' silently
        return dtype.type(value)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy and pickle probe for hooks before __init__ has run
            raise AttributeError(name)
        return getattr(self.metadata, name)


def _numeric(data_type: Any) -> np.dtype | None:
    """The numpy type of a Zarr v3 core data type (bool, intN, uintN, floatN, complexN), else None."""
    if not isinstance(data_type, str):
        return None
    try:
        dtype = np.dtype(data_type)
    except TypeError:
        return None
    return dtype if dtype.kind in "biufc" and dtype.name == data_type else None


class DamagedArray(CubeError):
    """An array's entry in the root document cannot be read: ``check`` reports it as a problem."""


def _ints(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value)


def _config(value: Any) -> dict[str, Any]:
    config = value.get("configuration") if isinstance(value, dict) else None
    return config if isinstance(config, dict) else {}


def arrays_of(doc: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Array metadata (``StoredArray``, each entry checked: ``StoredArray.read``) from a parsed root
    document's consolidated metadata; ``where``: the cube, named by a ``DamagedArray``."""
    found = (doc.get("consolidated_metadata") or {}).get("metadata") or {}
    return {
        name: StoredArray.read(m, name, where)
        for name, m in found.items()
        if not isinstance(m, dict) or m.get("node_type") == "array"
    }


def shard_geometry(meta: Any, headed: bool = True) -> ShardGeometry:
    """The shard geometry of a variable, read from its Zarr metadata; ``headed``: its shards carry
    the identity header (format 3; format-2 shards have none, and one-task inner chunks)."""
    if isinstance(meta, StoredArray):  # the same fields, read from the JSON (no zarr import)
        doc = meta.doc
        names = doc.get("dimension_names") or ()
        ndim = len(names) or len(doc["shape"])
        task_ndim = ndim - (1 if names and names[-1] == "noise" else 0)
        chunk = tuple(_config(doc["codecs"][0]).get("chunk_shape") or ())  # sharding_indexed (checked by ``read``)
        shard = tuple(doc["chunk_grid"]["configuration"]["chunk_shape"])
        dtype = _numeric(doc["data_type"])
        if doc["codecs"][0].get("name") == "sharding_indexed" and dtype is not None:
            return ShardGeometry(shard[:task_ndim], shard[task_ndim:], dtype, chunk[:task_ndim], headed)
        if doc["codecs"][0].get("name") != "sharding_indexed":  # every variable is sharded
            meta.damaged(f"first codec {doc['codecs'][0].get('name')!r}, not 'sharding_indexed': it is not sharded")
        try:  # not a sharded numeric array: let zarr say what it is
            meta = meta.metadata
        except (ValueError, TypeError, KeyError) as e:  # zarr refuses the entry (an unknown data_type)
            meta.damaged(f"zarr-python cannot read it ({e})")
    codec = meta.codecs[0]  # sharding_indexed
    ndim = len(meta.dimension_names or ()) or len(meta.shape)
    task_ndim = ndim - (1 if meta.dimension_names and meta.dimension_names[-1] == "noise" else 0)
    chunk = tuple(codec.chunk_shape)
    shard = tuple(meta.chunk_grid.chunk_shape)
    dtype = np.dtype(meta.data_type.to_native_dtype())
    return ShardGeometry(shard[:task_ndim], shard[task_ndim:], dtype, chunk[:task_ndim], headed)


def read_root(objects: Objects, path: str) -> dict[str, Any] | None:
    """The root document (attrs and consolidated metadata: the commit point), None if absent;
    a CubeError if it is unreadable or not a Zarr v3 group."""
    try:
        data = objects.get(ROOT)
    except OSError as e:
        raise CubeError(f"{path}: cannot read {ROOT} ({e})") from None
    if data is None:
        return None
    try:
        doc = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CubeError(
            f"{path}/{ROOT}: not valid JSON ({e}); the cube's root document is damaged or this is not an amsweep cube"
        ) from None
    if not isinstance(doc, dict) or doc.get("zarr_format") != 3 or doc.get("node_type") != "group":
        raise CubeError(f"{path}: exists but is not a Zarr v3 group; refusing to touch it")
    return doc
