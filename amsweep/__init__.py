"""amsweep: distributed parameter sweeps of associative-memory experiments.

``amsweep.run(spec, out=...)`` runs, resumes or extends a sweep and returns a ``RunSummary``;
``amsweep.open(cube)`` reads a cube as an ``xarray.Dataset``. The rest lives in the subpackages
(``amsweep.pipeline``, ``amsweep.storage``, ``amsweep.analysis``, ``amsweep.sweeps``). They are
imported on first use, so ``import amsweep`` stays cheap: no Ray, numba or zarr until a sweep runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from amsweep.sweeps.api import RunSummary, open, run

__all__ = ["open", "run", "RunSummary"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from amsweep.sweeps import api

        return getattr(api, name)
    raise AttributeError(f"module 'amsweep' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
