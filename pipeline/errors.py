"""amsweep's own error types: mistakes in what a user gave, as opposed to bugs.

The CLI prints an ``AmsweepError`` as one line (file, key, value, what is allowed) and exits
with status 2; any other exception is a bug and keeps its traceback. So user-input errors are
converted into one of these types where they are detected, never caught by a broad
``except ValueError`` at the top, which would hide real bugs behind a tidy message.
"""

from __future__ import annotations

__all__ = ["AmsweepError", "CubeError", "NoData", "PluginError", "QueryError", "show", "SpecError"]


class AmsweepError(Exception):
    """Base of every error caused by the user's input (spec, cube path, selection, flags)."""


class SpecError(AmsweepError, ValueError):
    """A sweep spec is invalid; the message names the key, the value and what is allowed.

    Also a ValueError, as it was before the hierarchy existed, so older callers still catch it.
    """


class CubeError(AmsweepError, RuntimeError):
    """The path holds something this sweep must not touch, or the cube is damaged."""


class PluginError(AmsweepError):
    """A dataset, rule or dynamics module (built in or from the plug-in path) breaks its contract
    (``amsweep.pipeline.contracts``); the message names the module and what it lacks."""


class QueryError(AmsweepError, KeyError, ValueError):
    """A selection names a coordinate, value or metric the cube does not have.

    Also a KeyError and a ValueError, as the query and analysis functions raised before the
    hierarchy existed, so that older callers keep working; amsweep itself catches only
    ``AmsweepError`` (the CLI) and ``NoData`` (the report), never the broad types.
    """

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class NoData(QueryError):
    """The selection holds no done value of what a table or figure needs (the metric or the
    coordinate is absent, or NaN for every done task): nothing to show, which is not a bug.
    The report lists such a figure as not made, with this message as the reason."""


def show(value: object, limit: int = 60) -> str:
    """``repr`` of a value for an error message, shortened: a message stays one readable line
    even when the offending value is a million-element list or a 400-digit integer."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + " ..."
