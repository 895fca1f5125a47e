"""A local write that fails while writing its temporary (a full disk: ENOSPC at write or close)
removes the temporary before the error goes on: no ``*.partial-*`` file is left behind."""

from __future__ import annotations

import errno
import os

import pytest

from amsweep.storage import objects as objects_mod
from amsweep.storage.objects import PARTIAL, LocalObjects
from tests.test_refusals import fill


def _partials(root) -> list:
    return [p for p in root.rglob("*") if PARTIAL in p.name]


@pytest.mark.parametrize("op", ["put", "create"])
def test_a_failing_write_of_the_temporary_leaves_no_partial(tmp_path, monkeypatch, op):
    real_open = open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            self.f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(objects_mod, "open", lambda path, mode="r": Full(real_open(path, mode)), raising=False)
    store = LocalObjects(tmp_path / "cube.zarr")
    with pytest.raises(OSError) as e:
        getattr(store, op)("m/c/0/0", b"x" * 4096)
    assert e.value.errno == errno.ENOSPC
    assert not _partials(tmp_path), _partials(tmp_path)
    assert store.get("m/c/0/0") is None


def test_a_real_full_disk_leaves_no_partial(tiny_disk):
    fill(tiny_disk, leave=8192)
    store = LocalObjects(tiny_disk / "cube.zarr")
    with pytest.raises(OSError) as e:
        store.put("m/c/0/0", os.urandom(1 << 20))
    assert e.value.errno == errno.ENOSPC
    assert not _partials(tiny_disk), _partials(tiny_disk)
