"""Test-derived values only where a dataset's test examples mean something.

Why: the overlap from a test start measures generalization only when test examples share the
structure of the training set (digits, mixture components, hidden features). I.i.d. random
patterns share none: m_test there is the overlap of an unrelated pattern with whatever the
network does to it, and a figure or report drawing it suggests a quantity that does not exist.
A dataset declares this with ``TEST_MEANINGFUL`` (``pipeline/contracts.py``; default True);
``without_meaningless_tests`` masks the test-derived variables of the other datasets to NaN, so
every figure, table and summary sees no data there and skips the panels, as it does for a cube
without test examples.
"""

from __future__ import annotations

import xarray as xr

from amsweep.pipeline import contracts, registry
from amsweep.pipeline.errors import PluginError
from amsweep.pipeline.metric_table import METRICS
from amsweep.pipeline.metric_types import RANDOM, TEST
from amsweep.storage import query

__all__ = ["TEST_DERIVED", "meaningful_tests", "without_meaningless_tests"]

# Every metric computed from test examples: the TEST group, and random starts compared with them.
TEST_DERIVED = tuple(n for n, m in METRICS.items() if m.group == TEST) + tuple(
    n for n, m in METRICS.items() if m.group == RANDOM and "test" in n
)


def meaningful_tests(ds: xr.Dataset) -> dict[str, bool]:
    """Per dataset label of the cube's spec, whether its kind declares meaningful test examples.

    A kind no longer found (a plug-in not on the path) keeps the default: True, nothing hidden.
    """
    out = {}
    for d in query.stored_spec(ds)["datasets"]:
        try:
            module = registry.component("datasets", d["kind"])
        except (PluginError, KeyError):
            out[d["label"]] = True
            continue
        out[d["label"]] = bool(contracts.optional(module, "TEST_MEANINGFUL"))
    return out


def without_meaningless_tests(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with every test-derived variable NaN for datasets whose test examples mean nothing."""
    flags = meaningful_tests(ds)
    if all(flags.values()):
        return ds
    if "dataset" in ds.dims:
        keep = xr.DataArray([flags.get(str(label), True) for label in ds["dataset"].values], dims="dataset")
    else:  # a selection of one dataset: the coordinate names it
        keep = xr.DataArray(flags.get(str(ds["dataset"].item()), True) if "dataset" in ds.coords else False)
    out = ds.copy()
    for name in TEST_DERIVED:
        if name in out.data_vars:
            out[name] = out[name].where(keep)
    hidden = [label for label, ok in flags.items() if not ok]
    out.encoding[query.HIDDEN] = {name: hidden for name in TEST_DERIVED}  # to_frame reads the cube itself
    if query.WHOLE_NOISE in out.encoding:  # the class map reads it: the same datasets masked there
        out.encoding[query.WHOLE_NOISE] = without_meaningless_tests(out.encoding[query.WHOLE_NOISE])
    return out
