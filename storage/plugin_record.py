"""Which plug-in code wrote a cube: the ``plugins`` attribute ({module: "sha256:..."}).

Why a record: a resumed sweep whose plug-in module changed would mix results of two codes in
one cube without a trace. The hashes come from the sweeps layer (storage imports no plug-in
code); here they are compared with the cube's record (a change is refused unless allowed) and
merged into it (a change allowed is noted in ``plugins_changed`` and said on stderr).
"""

from __future__ import annotations

import sys
from typing import Any

from amsweep.pipeline.errors import CubeError
from amsweep.storage.records import now

__all__ = ["changed_plugins", "merged_record"]


def changed_plugins(
    path: str, attrs: dict[str, Any], plugins: dict[str, str] | None, allow: bool
) -> dict[str, list[str]]:
    """{module: [recorded hash, new hash]} for each plug-in module of both records whose code
    changed; refused in one line (before the lease: nothing is touched) unless ``allow``."""
    recorded = attrs.get("plugins") or {}
    changed = {m: [recorded[m], h] for m, h in (plugins or {}).items() if m in recorded and recorded[m] != h}
    if changed and not allow:
        what = "; ".join(f"{m} (recorded {old}, now {new})" for m, (old, new) in changed.items())
        raise CubeError(
            f"{path}: plug-in code changed since this cube was written: {what}; nothing was "
            "changed (run with --allow-changed-plugins to resume with the new code, the change is recorded; "
            "or use a new --out)"
        )
    return changed


def merged_record(
    path: str, attrs: dict[str, Any], plugins: dict[str, str], changed: dict[str, list[str]]
) -> dict[str, Any] | None:
    """The attributes to write when the record moves (new modules added, changed hashes replaced
    and noted), or None when it stays as it is (no root write)."""
    recorded = dict(attrs.get("plugins") or {})
    merged = dict(sorted({**recorded, **plugins}.items()))
    if merged == recorded and "plugins" in attrs:
        return None
    update: dict[str, Any] = {"plugins": merged}
    if changed:
        update["plugins_changed"] = [*attrs.get("plugins_changed", []), {"at": now(), "modules": changed}]
        for module, (old, new) in changed.items():
            print(f"amsweep: {path}: plug-in {module} changed ({old} -> {new}); recorded", file=sys.stderr)
    return update
