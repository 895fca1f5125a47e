"""The not-applicable mask, set per (dataset, N, load) block, equals a walk over every task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from amsweep.pipeline import spec as spec_mod
from amsweep.storage.schema import not_applicable_mask

SPECS = sorted(Path(spec_mod.__file__).resolve().parents[1].joinpath("sweeps").glob("*.toml"))


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_the_mask_equals_the_cells_no_task_covers(path):
    sweep = spec_mod.load(path)
    walked = np.ones(sweep.shape, dtype=bool)
    for task in sweep.tasks():
        walked[task.index] = False
    np.testing.assert_array_equal(not_applicable_mask(sweep), walked)


def test_bundled_specs_include_grids_with_inapplicable_cells():
    """Guards the test above against only ever seeing full grids."""
    assert sum(bool(not_applicable_mask(spec_mod.load(p)).any()) for p in SPECS) >= 3
