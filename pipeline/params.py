"""Validate component parameters against their declared ``Param`` schema.

Kept apart from the spec loader so that every family (dataset, rule, dynamics) is checked by
one function with one style of error message: which key, which value, what is allowed. The
spec's own values (counts, lists of N, loads, noise) are checked here too, in the same style.
"""

from __future__ import annotations

import difflib
import math
from typing import Any, NoReturn

from amsweep.pipeline import limits
from amsweep.pipeline.errors import SpecError, show
from amsweep.pipeline.model import Param

__all__ = [
    "SpecError",
    "coerce",
    "did_you_mean",
    "resolve",
    "INT64_MAX",
    "Params",
    "table_of",
    "count_of",
    "int_list",
    "float_list",
]

INT64_MAX = 2**63 - 1  # integers travel through numpy and numba as int64


def did_you_mean(name: str, known: Any) -> str:
    """ "; did you mean 'x'?" for the closest of ``known`` to a mistyped ``name``, or ""."""
    close = difflib.get_close_matches(str(name), [str(k) for k in known], n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


class Params(dict):
    """A component's parameters as it receives them: read-only, by key or attribute.

    ``params["lr"]`` and ``params.lr`` both work (built-in components index, a plug-in may use
    either); a mistyped name raises a KeyError or AttributeError that names the declared ones and
    the closest, instead of a bare ``KeyError: 'lr_'`` from a worker. A dict subclass, not a
    Mapping, so that ``{**params, ...}``, ``dict(params)``, ``json.dumps`` and pickling keep
    working unchanged: the values are the spec's, so results are bit-identical. Read-only because
    a cell's parameters are its coordinates: a component that changed them would change what
    the next use of the same variant sees.
    """

    __slots__ = ("_owner",)

    def __init__(self, values: Any = (), owner: str = "component") -> None:
        super().__init__(values)
        object.__setattr__(self, "_owner", owner)

    def _unknown(self, name: Any, error: type[Exception]) -> NoReturn:
        declared = ", ".join(sorted(map(str, self))) or "none"
        raise error(f"{self._owner} has no parameter {name!r}; declared: {declared}{did_you_mean(name, self)}")

    def __missing__(self, name: Any) -> NoReturn:
        self._unknown(name, KeyError)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):  # copy, pickle and numpy probe dunders: not parameters
            raise AttributeError(name)
        if name in self:
            return self[name]
        self._unknown(name, AttributeError)

    def _frozen(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise TypeError(f"{self._owner}'s parameters are read-only: build a new dict, e.g. {{**params, 'x': 1}}")

    __setitem__ = __delitem__ = __setattr__ = __delattr__ = _frozen
    clear = pop = popitem = setdefault = update = __ior__ = _frozen

    def __reduce__(self) -> tuple[Any, ...]:
        return (Params, (dict(self), self._owner))

    def __repr__(self) -> str:
        return f"Params({dict.__repr__(self)})"


def _describe(p: Param) -> str:
    if p.choices is not None:
        return "one of " + ", ".join(repr(c) for c in p.choices)
    parts = [p.type.__name__ if p.type is not float else "finite float"]
    if p.low is not None:
        parts.append(f"{'>' if p.open_low else '>='} {p.low}")
    if p.high is not None:
        parts.append(f"{'<' if p.open_high else '<='} {p.high}")
    return " ".join(parts)


def coerce(where: str, name: str, value: Any, p: Param) -> Any:
    """One scalar value checked against its Param; ints are accepted where floats are.

    NaN and infinities are refused for every float (a NaN passes every range comparison and
    would reach a cell as a meaningless number), and integers must fit in int64.
    """
    ok_type = isinstance(value, p.type) and not (p.type is not bool and isinstance(value, bool))
    if p.type is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            value, ok_type = float(value), True
        except OverflowError:
            raise SpecError(
                f"{where}: parameter {name!r} = {show(value)} is too large for a float; allowed: {_describe(p)}"
            ) from None
    if not ok_type:
        raise SpecError(
            f"{where}: parameter {name!r} = {show(value)} has type {type(value).__name__}; "
            f"allowed: {_describe(p)} ({p.doc})"
        )
    if p.type is float and not math.isfinite(value):
        raise SpecError(f"{where}: parameter {name!r} = {show(value)} is not a finite number; allowed: {_describe(p)}")
    if p.type is int and not -INT64_MAX - 1 <= value <= INT64_MAX:
        raise SpecError(f"{where}: parameter {name!r} = {show(value)} does not fit in 64 bits; allowed: {_describe(p)}")
    if p.choices is not None and value not in p.choices:
        raise SpecError(f"{where}: parameter {name!r} = {show(value)}; allowed: {_describe(p)}")
    if p.low is not None and (value < p.low or (p.open_low and value == p.low)):
        raise SpecError(f"{where}: parameter {name!r} = {show(value)} is out of range; allowed: {_describe(p)}")
    if p.high is not None and (value > p.high or (p.open_high and value == p.high)):
        raise SpecError(f"{where}: parameter {name!r} = {show(value)} is out of range; allowed: {_describe(p)}")
    return value


def resolve(
    where: str,
    schema: dict[str, Param],
    given: dict[str, Any],
    sweepable: bool = True,
    structural: tuple[str, ...] = (),
) -> dict[str, list[Any]]:
    """Fill defaults and validate; every value becomes a list (a list in the spec sweeps it).

    ``sweepable=False`` is for tables that take one value per key (``[retrieval]``): a list
    there is refused rather than silently cut to its first value. ``structural`` names the
    table's other keys (``kind``, ``N`` ...), read by the caller, so the error lists them too.
    """
    unknown = sorted(set(given) - set(schema), key=repr)
    if unknown:
        allowed = [*structural, *sorted(schema)]
        raise SpecError(
            f"{where}: unknown parameter(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(allowed) or 'none'}"
            + did_you_mean(unknown[0], allowed)
        )
    out: dict[str, list[Any]] = {}
    for name, p in schema.items():
        if name not in given:
            if p.required:
                raise SpecError(f"{where}: parameter {name!r} is required ({p.doc}); allowed: {_describe(p)}")
            out[name] = [p.default]
            continue
        raw = given[name]
        if isinstance(raw, list) and not sweepable:
            raise SpecError(
                f"{where}: parameter {name!r} = {show(raw)} is a list, but this table takes one "
                f"value per key (it cannot be swept); allowed: {_describe(p)}"
            )
        values = raw if isinstance(raw, list) else [raw]
        if not values:
            raise SpecError(f"{where}: parameter {name!r} is an empty list; give a value or a non-empty list")
        checked = [coerce(where, name, v, p) for v in values]
        if len(set(map(repr, checked))) != len(checked):
            raise SpecError(f"{where}: parameter {name!r} lists a value twice: {show(raw)}")
        out[name] = checked
    return out


# ---- the spec's own values (seeds, noise, N, loads, counts), checked with the same messages
def table_of(where: str, value: Any) -> dict[str, Any]:
    """``value`` if it is a TOML table: a scalar where a table belongs is named, not indexed."""
    if not isinstance(value, dict):
        raise SpecError(f"{where}: expected a table, got {show(value)}")
    return value


def count_of(where: str, value: Any) -> int:
    """A count (seed, P_test): an int >= 0 that fits int64 (True is not 1 here)."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= INT64_MAX:
        raise SpecError(f"{where} = {show(value)}: expected an integer >= 0 (at most 2**63 - 1)")
    return value


def int_list(where: str, value: Any, low: int) -> tuple[int, ...]:
    """A non-empty list of distinct ints >= low (N, P, seeds): each becomes a cube coordinate."""
    values = value
    if not isinstance(values, list) or not values:
        raise SpecError(f"{where} = {show(value)}: expected a non-empty list of integers")
    limits.check_count(where, len(values), "values")
    for v in values:
        if isinstance(v, bool) or not isinstance(v, int) or v < low:
            raise SpecError(f"{where}: value {show(v)} is not an integer >= {low}")
        if v > INT64_MAX:
            raise SpecError(f"{where}: value {show(v)} does not fit in 64 bits (at most 2**63 - 1)")
    if len(set(values)) != len(values):
        raise SpecError(f"{where}: duplicate values in {show(values)}")
    return tuple(values)


def float_list(where: str, value: Any, low: float, high: float | None, open_low: bool = False) -> tuple[float, ...]:
    """A non-empty list of distinct finite floats in range (noise, alpha): cube coordinates."""
    if not isinstance(value, list) or not value:
        raise SpecError(f"{where} = {show(value)}: expected a non-empty list of numbers")
    limits.check_count(where, len(value), "values")
    bound = Param(None, float, where, low=low, high=high, open_low=open_low)
    values = tuple(coerce(where, where.split(".")[-1], v, bound) for v in value)
    if len(set(values)) != len(values):
        raise SpecError(f"{where}: duplicate values in {show(list(value))}")
    return values
