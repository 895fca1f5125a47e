"""amsweep's own errors: what a user can fix is one of these, printed as one line by the CLI.

Anything else that escapes is a bug and keeps its traceback.
"""

from __future__ import annotations


class AmsweepError(Exception):
    """A problem the user can act on (bad spec, a cube that must not be touched, a bad query)."""


class SpecError(AmsweepError, ValueError):
    """A sweep spec that cannot run; the message names the key, the value and what is allowed."""


class CubeError(AmsweepError):
    """The path holds something this sweep must not touch, or the cube is damaged or busy."""


class QueryError(AmsweepError, KeyError):
    """A selection or metric that the cube does not have; the message lists what exists."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""
