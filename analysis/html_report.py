"""``amsweep report --html``: the live page's views as one self-contained HTML file (report.html).

One tab per value and facet, each the phase views of ``analysis.views`` (heatmaps per rule, the
line view, the class map), above the status of ``amsweep status``. The Bokeh and Panel JavaScript
is written inline, so the file opens offline, from an e-mail or a laptop without amsweep, and stays
interactive (hover shows mean, s.e. and seeds; zoom, pan, tabs) without a server. Values without
data in the cube are left out and listed at the end, as report.md lists figures not made.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import replace
from pathlib import Path

import xarray as xr

from amsweep.analysis import derived, views
from amsweep.analysis.meaningful import without_meaningless_tests
from amsweep.pipeline.errors import NoData, QueryError

__all__ = ["MAX_FACETS", "MAX_VALUES", "write_html"]

ICON_LINK = re.compile(r"<link rel=\"(?:icon|apple-touch-icon)\"[^>]*href=\"https?://[^\"]*\">")
CDN_SHEET = re.compile(
    r'\{"type":"object","name":"ImportedStyleSheet","id":"(?P<id>[^"]+)","attributes":\{"url":'
    r'"https://cdn\.holoviz\.org/panel/[^/]+/dist/(?P<path>[^"?]+)(?:\?[^"]*)?"\}\}'
)
MAX_VALUES = 6  # tabs of values: the first ones offered (m_train, m_test, class, gen_gap, ...)
MAX_FACETS = 4  # tabs per value over the other axes' values (N, dataset, ...), noise excepted


def _facets(choice: views.Choice, axes: dict[str, list], coords: frozenset[str]) -> list[views.Choice]:
    """The choice at up to MAX_FACETS combinations of the fixed axes (noise stays at its middle)."""
    keys = [k for k in choice.where if k != "noise"]
    combos = itertools.islice(itertools.product(*(axes[k] for k in keys)), MAX_FACETS)
    return [
        views.fix_others(replace(choice, where={**choice.where, **dict(zip(keys, c))}), axes, coords) for c in combos
    ]


def write_html(cube_path: str | Path, ds: xr.Dataset, status: dict, out_dir: str | Path) -> Path:
    """Write ``report.html`` into ``out_dir``; ``status`` is ``storage.status.status_data``'s."""
    import panel as pn
    from bokeh.resources import INLINE

    ds = without_meaningless_tests(ds)
    axes = views.axis_values(ds)
    tabs: list[tuple[str, object]] = []
    skipped: list[str] = []
    values = [v for v in views.offered_values(ds) if not derived.missing(ds, [v])][:MAX_VALUES]
    for value in values:
        own = axes if derived.per_noise(value) else {a: v for a, v in axes.items() if a != "noise"}
        for choice in _facets(views.default_choice(ds, value), own, views.dataset_coords(ds)):
            fixed = ", ".join(f"{k}={views.fmt(v)}" for k, v in choice.where.items())
            name = f"{value}" + (f" · {fixed}" if fixed else "")
            try:
                table = views.phase_table(ds, choice)
            except (NoData, QueryError) as e:
                skipped.append(f"{name}: {e}")
                continue
            parts: list[object] = [pn.pane.HoloViews(views.phase_layout(table, choice, grid=axes), linked_axes=False)]
            if value in derived.CATEGORICAL:
                parts.insert(0, pn.pane.Markdown(views.class_legend()))
            tabs.append((name, pn.Column(*parts)))
    page = pn.Column(
        pn.pane.Markdown(f"# {ds.attrs.get('title', 'sweep')}\n`{cube_path}`\n\n{ds.attrs.get('description', '')}"),
        pn.pane.Markdown(views.progress_markdown(status)),
        pn.Tabs(*tabs, dynamic=False) if tabs else pn.pane.Markdown("No done task has a value to draw yet."),
    )
    if skipped:
        page.append(pn.pane.Markdown("**Not drawn:**\n\n" + "\n".join(f"- {s}" for s in skipped)))
    out = Path(out_dir) / "report.html"
    with pn.config.set(inline=True):  # Panel's stylesheets too, not only the JavaScript (they come from a CDN)
        page.save(str(out), resources=INLINE, title=f"amsweep report: {ds.attrs.get('title', 'sweep')}")
    out.write_text(_offline(out.read_text(encoding="utf-8")), encoding="utf-8")
    return out


def _offline(html: str) -> str:
    """Panel 1.9 saves its widgets' stylesheets as links to its CDN (even with inline resources) and
    its page icons too: a browser fetches them when the file opens, and offline the page lost its
    styles. Each linked stylesheet becomes an inline one from the installed package's copy."""
    import json

    import panel as pn

    dist = Path(pn.__file__).parent / "dist"

    def inline(m: re.Match) -> str:
        local = dist / m.group("path")
        if not local.is_file():
            return m.group(0)
        css = json.dumps(local.read_text(encoding="utf-8")).replace("</", "<\\/")
        return f'{{"type":"object","name":"InlineStyleSheet","id":"{m.group("id")}","attributes":{{"css":{css}}}}}'

    return CDN_SHEET.sub(inline, ICON_LINK.sub("", html))
