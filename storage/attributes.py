"""What a plain xarray user sees of a cube: short labels, CF units, names that shadow nothing.

Applied when a cube is read (``storage.backend``, ``storage.query.open_cube``), never written, so
cubes made before these rules read the same way and no stored value or attribute changes.

- ``long_name`` is a few words (at most ``LABEL_WIDTH`` characters): xarray's plot labels an axis
  or colour bar with ``long_name [units]`` wrapped at 30 characters, so the whole sentence it used
  to be ran to five lines. The sentence is in ``description``.
- Dimensionless quantities carry no ``units``: CF 1.13 section 3.1.1 reads "a variable with no
  units attribute is assumed to be dimensionless", and xarray prints ``units = "1"`` as "[1]" and
  ``"dimensionless"`` as "[dimensionless]" after every label; timings keep ``units = "s"``.
  String coordinates (labels, kinds) have no units at all.
- A per-variant parameter whose name is an attribute of ``xarray.Dataset`` or ``DataArray``
  (PLM's ``clip``) would be a coordinate that ``ds.clip`` cannot reach (it is the method): it is
  renamed ``<variant>_<name>`` (``rule_clip``). ``--where`` and ``query.select`` take either name.
"""

from __future__ import annotations

import re
from typing import Any

import xarray as xr

from amsweep.pipeline.metric_table import METRICS
from amsweep.storage import schema
from amsweep.storage.cube_view import VARIANTS as VARIANTS  # schema._variant_coords' prefixes, in its order
from amsweep.storage.cube_view import resolve as resolve  # the coordinate a key names (renamed on reading)

__all__ = ["AXIS_LABELS", "coordinate_name", "LABEL_WIDTH", "plain", "resolve", "SHADOWED", "VARIANTS"]

LABEL_WIDTH = 30  # xarray.plot wraps ``long_name [units]`` at 30 characters: one line below that
# Attribute names a coordinate must not take: ``ds.name`` / ``ds.m_train.name`` would be the method.
SHADOWED = frozenset(n for cls in (xr.Dataset, xr.DataArray) for n in dir(cls) if not n.startswith("_"))


# Short labels of the axes; their sentences are schema.AXIS_ATTRS' (or DESCRIPTIONS').
AXIS_LABELS = {
    "dataset": "dataset",
    "N": "neurons N",
    "alpha": "load α = P/N",
    "P": "training examples P",
    "rule": "learning rule",
    "seed": "seed",
    "noise": "noise (fraction of sites)",
    "dataset_kind": "dataset generator",
    "rule_kind": "learning rule kind",
    "dynamics": "retrieval dynamics",
}
DESCRIPTIONS = {
    "dataset_kind": "the generator of each dataset variant (random, mixture, mnist, ...), without its parameters",
    "rule_kind": "the learning rule of each rule variant (hebb, plm, ...), without its parameters",
    "dynamics": "the retrieval dynamics of each rule variant (asynchronous, glauber, tap, ...)",
}
_VARIANT_PARAMETER = re.compile(r"parameter '(?P<name>[^']+)' of the (?P<variant>\w+) variant")


def coordinate_name(name: str, variant: str) -> str:
    """The name a per-variant coordinate is read under: ``<variant>_<name>`` where ``name`` shadows."""
    return f"{variant}_{name}" if name in SHADOWED else name


def _variant_of(attrs: dict[str, Any]) -> tuple[str, str] | None:
    found = _VARIANT_PARAMETER.fullmatch(str(attrs.get("long_name", "")))
    return (found["name"], found["variant"]) if found else None


def _coordinate_attrs(name: str, var: xr.Variable) -> dict[str, Any]:
    stored = dict(var.attrs)
    numeric = var.dtype.kind in "iuf"
    variant = _variant_of(stored)
    if variant is not None:
        param, kind = variant
        out = {"long_name": f"{kind} {param}", "description": stored["long_name"]}
    elif name in AXIS_LABELS:
        sentence = DESCRIPTIONS.get(name) or schema.AXIS_ATTRS[name][0]
        out = {"long_name": AXIS_LABELS[name], "description": sentence}
    else:
        out = {k: v for k, v in stored.items() if k != "units"}
    units = stored.get("units", "")
    if numeric and units not in ("", "1"):
        out["units"] = units
    return out


def _variable_attrs(name: str, var: xr.Variable) -> dict[str, Any]:
    stored = {k: v for k, v in var.attrs.items() if k != "coordinates"}  # storage plumbing, stale once renamed
    metric = METRICS.get(name)
    if metric is not None:
        out = {"long_name": metric.long_name or metric.label, "description": metric.description}
        return out | ({"units": metric.units} if metric.units else {})
    if stored.get("units") == "1":
        del stored["units"]
    return stored


def plain(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` with the attributes and coordinate names above (values untouched, still lazy)."""
    renames: dict[str, str] = {}
    for name, coord in ds.coords.items():
        name = str(name)
        variant = _variant_of(coord.attrs)
        if variant is None or name in ds.dims or name not in SHADOWED:
            continue
        target = coordinate_name(name, variant[1])
        while target in ds.variables or target in renames.values():
            target += "_"
        renames[name] = target
    for name, var in ds.variables.items():
        make = _coordinate_attrs if name in ds.coords else _variable_attrs
        var.attrs = make(str(name), var)
    return ds.rename_vars(renames) if renames else ds
