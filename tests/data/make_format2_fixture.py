"""Writes tests/data/format2_tiny.zarr with the last format-2 amsweep (run at commit 4b6d03b).

A format-2 cube whose axes are in insertion order, as main's extensions stored them: seeds
[0, 2] grown by 1, alpha [0.05, 0.3] grown by 0.1, rules written plm before hebb; couplings
stored, one failure recorded by hand, two tasks left pending. ``amsweep upgrade`` is tested on it.
Usage (from a checkout of 4b6d03b): python tests/data/make_format2_fixture.py OUT
"""

import copy
import shutil
import sys

from amsweep.pipeline import spec as spec_mod
from amsweep.pipeline.executors import SerialExecutor
from amsweep.pipeline.runner import run
from amsweep.storage.cube import Cube
from amsweep.storage.schema import FAILED

RAW = {
    "name": "format2_fixture",
    "root_seed": 11,
    "seeds": [0, 2],
    "noise": [0.0, 0.15],
    "P_test": 6,
    "retrieval": {"train_starts": 8, "test_starts": 6, "random_starts": 3, "store_couplings": True},
    "datasets": {"random": {"N": [16], "alpha": [0.05, 0.3]}},
    "rules": {"plm": {"epochs": 30, "lr": 5.0}, "hebb": {}},
}


class StopAfter(SerialExecutor):
    def __init__(self, k: int) -> None:
        self.k = k

    def map_unordered(self, fn, jobs, total=None):
        for i, item in enumerate(super().map_unordered(fn, jobs, total)):
            if i == self.k:
                raise KeyboardInterrupt
            yield item


def main(out: str) -> None:
    shutil.rmtree(out, ignore_errors=True)
    run(Cube.create_or_open(out, spec_mod.from_dict(RAW)), SerialExecutor(), progress=False)
    grown = copy.deepcopy(RAW)
    grown["seeds"] = [0, 2, 1]
    grown["datasets"]["random"]["alpha"] = [0.05, 0.3, 0.1]
    cube = Cube.create_or_open(out, spec_mod.from_dict(grown))
    run(cube, StopAfter(4), progress=False, flush_every=1)
    cube = Cube.create_or_open(out, spec_mod.from_dict(grown))
    cube.write([], [((0, 0, 1, 0, 2), FAILED, "recorded by hand for the upgrade test")])
    cube.release()


if __name__ == "__main__":
    main(sys.argv[1])
