"""A cell's batches of starts relaxed in their order, several in one call where the dynamics allows.

Why: a small cell (N = 32) relaxes ten batches (the fixed-point check, training and test starts
at four noise levels, random starts) of 3-100 states each; one ``relax`` call costs ~17 us of
Python, GEMM and numba dispatch whatever its size, ~0.4 ms of a ~1.6 ms cell. A dynamics that
declares ``relax_groups`` (``asynchronous``) takes consecutive batches in one call, with the
same draws and values as one call each (its docstring says why).
Batches are taken lazily and relaxations handed back as soon as they exist, and a call holds at
most ``max_rows`` states, so a large cell's working set stays that of one batch.
"""

from __future__ import annotations

from typing import Any, Iterable, Iterator

import numpy as np

from amsweep.pipeline import contracts
from amsweep.pipeline.model import Model, Relaxation

__all__ = ["Request", "relaxed_in_order"]

# (tag, dynamics module, states, params): the tag comes back with the relaxation
Request = tuple[Any, Any, np.ndarray, dict]


def relaxed_in_order(
    requests: Iterable[Request], model: Model, rng: np.random.Generator, max_rows: int
) -> Iterator[tuple[Any, Relaxation]]:
    """(tag, relaxation) of each request in order, each bit for bit ``module.relax(model, states,
    params, rng)`` called in that order: consecutive requests of one module that declares
    ``relax_groups`` share a call while they hold at most ``max_rows`` states together."""
    pending: list[Request] = []
    rows = 0
    for request in requests:
        _, module, states, _ = request
        if pending and (module is not pending[0][1] or rows + states.shape[0] > max_rows):
            yield from _relax(pending, model, rng)
            pending, rows = [], 0
        if contracts.optional(module, "relax_groups") is None:
            yield from _relax([request], model, rng)
            continue
        pending.append(request)
        rows += states.shape[0]
    yield from _relax(pending, model, rng)


def _relax(pending: list[Request], model: Model, rng: np.random.Generator) -> Iterator[tuple[Any, Relaxation]]:
    if not pending:
        return
    module = pending[0][1]
    if len(pending) == 1:
        tag, _, states, params = pending[0]
        yield tag, module.relax(model, states, params, rng)
        return
    relaxations = module.relax_groups(model, [(states, params) for _, _, states, params in pending], rng)
    yield from zip([tag for tag, *_ in pending], relaxations, strict=True)
