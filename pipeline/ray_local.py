"""A private local Ray started light: workers that Ray prestarts do the work, no autoscaler monitor.

Measured on this project's 2-core VM (Ray 2.60, ``/tmp/rayh`` scripts of issue 26, load 4-6):

- Thread pins given as the job's ``runtime_env`` ``env_vars`` make every task need workers started
  for that runtime env: the workers Ray prestarts at ``ray.init`` (one per CPU, ~0.5 s of CPU each)
  were never used and killed, and the first two tasks came back 3.1-3.7 s after ``ray.init`` against
  0.9-2.1 s with the pins in the environment the raylet (and so every worker it forks) inherits.
- The autoscaler monitor, useless on a private fixed-size node, costs ~0.5 s of CPU while Ray
  starts, and ``ray.shutdown()`` waited ~1 s for it to exit on SIGTERM: 1.41 s with it, 0.35 s without.

The raylet inherits the environment of the process that starts it (Ray forks it), so the pins
reach every worker; ``RayParams.no_monitor`` is a Ray internal (``ray start --no-monitor``'s): where a
Ray release lacks it, the node starts with its monitor, as before.
"""

from __future__ import annotations

import contextlib
import inspect
import os
from typing import Any, Iterator, Mapping

__all__ = ["init", "light_params", "pinned_environ"]


@contextlib.contextmanager
def pinned_environ(pins: Mapping[str, str]) -> Iterator[None]:
    """``pins`` in this process's environment while the raylet is started, restored after, so the
    driver's own settings are untouched and every worker the raylet forks starts pinned."""
    saved = {name: os.environ.get(name) for name in pins}
    os.environ.update(pins)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


@contextlib.contextmanager
def light_params(ray: Any) -> Iterator[bool]:
    """While open, the node ``ray.init`` starts has no autoscaler monitor; yields whether that could be
    arranged (False: this Ray has no ``RayParams.no_monitor``, and it starts as usual)."""
    parameter = getattr(getattr(ray, "_private", None), "parameter", None)
    original = getattr(parameter, "RayParams", None)
    try:
        takes = original is not None and "no_monitor" in inspect.signature(original).parameters
    except (TypeError, ValueError):
        takes = False
    if not takes or parameter is None:
        yield False
        return

    class NoMonitor(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.no_monitor = True

    parameter.RayParams = NoMonitor
    try:
        yield True
    finally:
        parameter.RayParams = original


def init(ray: Any, kwargs: dict[str, Any], pins: Mapping[str, str]) -> bool:
    """``ray.init(**kwargs)`` for a private local Ray with the thread ``pins`` in every worker's
    environment (not in ``runtime_env``: see the module note), without the autoscaler monitor
    where this Ray allows; whether it did."""
    with light_params(ray) as light, pinned_environ(pins):
        ray.init(**kwargs)
    return light
