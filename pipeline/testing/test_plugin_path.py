"""``AMSWEEP_PLUGIN_PATH=/path/to/plugins pytest --pyargs amsweep.testing``: the conformance checks
over every component in the folders on the plug-in path (the built-ins are tested by the
project's own suite). Collected only when pytest is pointed at this package."""

from __future__ import annotations

from amsweep.testing import path_tests

__all__ = ["test_plugin"]

test_plugin = path_tests()
