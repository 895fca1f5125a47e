"""A cube's standard report: every standard figure it supports plus a Markdown summary.

The figures are chosen from what the cube holds: only axes with more than one value are
plotted against, only metrics with data are shown, and only done tasks count, so the same call
works on a finished paper sweep, on a half-finished one and on a two-task smoke test. A figure
whose data are absent from its selection (``NoData``: the metric or coordinate is not there, or
no done task has a value) is listed with that reason; any other failure stops the report and
names the figure, because it is a bug, not a property of the cube.
"""

from __future__ import annotations

import re
from functools import partial
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import xarray as xr

from amsweep.analysis import classify, figures, summary, tables, theory_figures
from amsweep.analysis.meaningful import meaningful_tests, without_meaningless_tests
from amsweep.analysis.style import DEFAULT_STYLE, FigureStyle
from amsweep.pipeline.errors import NoData, QueryError
from amsweep.storage import query

__all__ = [
    "FigureFailed",
    "Figures",
    "GATED",
    "MAX_DATASETS",
    "MAX_N",
    "MAX_PHASE_FACETS",
    "slug",
    "standard_figures",
    "write_report",
]

MAX_DATASETS = 6  # panels of one line figure: datasets x N values
MAX_N = 3
MAX_PHASE_FACETS = 4  # (load x noise) heatmap figures, one per (dataset, N)
# Metrics that only some cubes hold data of (no test set, no features, no true couplings, basins
# off): their figures are drawn only where the cube has them, and not listed as missing elsewhere.
GATED = ("m_test", "test_best_train", "test_best_feature", "fixed_point_fraction", "coupling_similarity", "basin_mean")


class FigureFailed(RuntimeError):
    """A standard figure could not be drawn from data the cube does have: a bug, never skipped."""


@dataclass
class Figures:
    """Figures made so far (caption, PNG path) and those that could not be made (reason)."""

    out: Path
    made: list[tuple[str, Path]] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    look: FigureStyle = field(default_factory=FigureStyle)

    def add(self, caption: str, name: str, draw: Callable[[Path], Path]) -> None:
        try:
            with self.look.context():  # also for figures drawn without a ``look`` of their own
                self.made.append((caption, draw(self.out / slug(name))))
        except NoData as e:
            self.skipped.append(f"{caption}: {e}")
        except Exception as e:  # a bug in a figure the report chose: stop, naming it (and the cause)
            raise FigureFailed(f"report figure {name!r} ({caption}) failed: {type(e).__name__}: {e}") from e


def slug(text: str) -> str:
    """A file-name stem: letters, digits, '_', '-' and '='; a '.' would read as a suffix."""
    return re.sub(r"[^A-Za-z0-9_=-]+", "_", text.replace(".", "p")).strip("_")


def _spread(values: list, k: int) -> list:
    """At most k values, evenly spread and including both ends."""
    if len(values) <= k:
        return list(values)
    return [values[i] for i in np.unique(np.linspace(0, len(values) - 1, k).round().astype(int))]


def _facets(ds: xr.Dataset, frame: pd.DataFrame) -> tuple[xr.Dataset, list[str], list[tuple[str, int]]]:
    """Narrow to a readable number of (dataset, N) facets; the facet columns that vary."""
    datasets = _spread(list(dict.fromkeys(frame["dataset"])), MAX_DATASETS)
    Ns = _spread(sorted(frame["N"].unique().tolist()), MAX_N)
    ds = query.select(ds, {"dataset": datasets, "N": [str(n) for n in Ns]})
    pairs = [
        (d, int(n))
        for d, n in frame[["dataset", "N"]].drop_duplicates().itertuples(index=False)
        if d in datasets and n in Ns
    ]
    cols = [c for c, v in (("dataset", datasets), ("N", Ns)) if len(v) > 1]
    return ds, cols, pairs


def _dataset_coordinates(ds: xr.Dataset, frame: pd.DataFrame) -> list[str]:
    """Numeric per-variant dataset parameters that vary (alpha_D, temperature, ...)."""
    out = []
    for name, coord in ds.coords.items():
        if name in ds.dims or coord.dims != ("dataset",) or coord.dtype.kind not in "iuf":
            continue
        if name in frame.columns and frame[name].nunique() > 1:
            out.append(str(name))
    return out


def standard_figures(
    ds: xr.Dataset, out: Path, look: FigureStyle = DEFAULT_STYLE, col: str | None = None, row: str | None = None
) -> Figures:
    """Draw every standard figure the cube supports into ``out``.

    Test-derived values of datasets whose test examples carry no structure (``TEST_MEANINGFUL =
    False``: random patterns) are masked first, so their m_test panels are not drawn at all.
    ``col`` / ``row`` (``report --col N``) make the phase heatmaps' panels: one figure holds every
    value of them (beside the rules) instead of one figure per (dataset, N).
    """
    tests_mean = meaningful_tests(ds)
    ds = without_meaningless_tests(ds)
    figs = Figures(out, look=look)
    line = partial(figures.line_figure, look=look)
    heat = partial(figures.heatmap_figure, look=look)
    load = tables.load_axis(ds)
    base = tables.tidy(ds, ["m_train"])
    has = {m: tables.has_data(ds, m) for m in GATED}
    sel, panel, pairs = _facets(ds, base)
    rho, clean = summary.reference_noise(ds), summary.clean_noise(ds)
    multi_load = base[load].nunique() > 1
    multi_noise = base["noise"].nunique() > 1
    at_clean = {"noise": clean}
    overlaps = ["m_train", "m_test"] if has["m_test"] else ["m_train"]
    ref = figures.reference_rule(sel)  # true couplings: drawn as the reference line, not a rule
    reference = (ref, overlaps[-1]) if ref else None
    learned = sel.sel(rule=[r for r in sel["rule"].values.tolist() if r != ref]) if ref else sel
    if multi_load:
        for level in dict.fromkeys([clean, rho]):
            figs.add(
                f"Final overlap from training (solid) and test (dashed) starts against {load}, "
                f"noise {level:g}" + (f"; dashed black: {overlaps[-1]} with the {ref} rule" if ref else ""),
                f"overlaps_vs_load_noise{level:g}",
                partial(line, sel, overlaps, panel=panel, at={"noise": level}, reference=reference),
            )
        if multi_noise:
            figs.add(
                f"Basin size 1 - m_in* against {load}, threshold crossing interpolated between noise "
                "levels (mean and standard error over seeds)",
                "basin_vs_load",
                lambda p: line(sel, "basin_interp", p, panel=panel),
            )
        if has["basin_mean"]:
            figs.add(
                f"Basin size 2 k*/N per training example by bisection on the number of flipped sites, "
                f"mean over examples against {load} (mean and standard error over seeds)",
                "basin_bisection_vs_load",
                lambda p: line(sel, "basin_mean", p, panel=panel),
            )
        if has["fixed_point_fraction"]:
            figs.add(
                f"Fraction of training examples that are fixed points against {load}",
                "fixed_points_vs_load",
                lambda p: line(sel, "fixed_point_fraction", p, panel=panel),
            )
        if has["m_test"] and has["test_best_train"]:
            figs.add(
                f"Generalization gap m_test - best overlap with a training example, noise {clean:g} "
                "(> 0: test starts end nearer their own example)",
                "gen_gap_vs_load",
                lambda p: line(sel, "gen_gap", p, panel=panel, at=at_clean),
            )
        if has["test_best_feature"]:
            figs.add(
                f"Test starts: best |overlap| of the attractor with a hidden feature, noise {clean:g}",
                "feature_overlap_vs_load",
                lambda p: line(sel, "test_best_feature", p, panel=panel, at=at_clean),
            )
        if has["coupling_similarity"]:
            figs.add(
                "Cosine similarity of learned and true couplings against " + load,
                "coupling_similarity_vs_load",
                lambda p: line(learned, "coupling_similarity", p, panel=panel),
            )
    elif multi_noise:
        figs.add(
            "Final overlap from training (solid) and test (dashed) starts against noise",
            "overlaps_vs_noise",
            lambda p: line(sel, overlaps, p, x="noise", panel=panel),
        )
    if multi_load and multi_noise:
        chosen = [d for d in (row, col) if d]
        # --col/--row as a grid (rows x columns); the rules take the free side, or a third level
        r, c = row, col
        if "rule" not in chosen and (r is None) != (c is None):
            r, c = (r or "rule"), (c or "rule")
        panels = [d for d in (r, c) if d] + (["rule"] if "rule" not in (r, c) else [])
        as_grid = r is not None and c is not None and len(panels) == 2
        facets = list(
            dict.fromkeys(tuple((k, v) for k, v in (("dataset", d), ("N", n)) if k not in chosen) for d, n in pairs)
        )
        for facet in facets[:MAX_PHASE_FACETS]:
            where = dict(facet)
            tag = "_".join(f"{v}" if k == "dataset" else f"{k}{v}" for k, v in facet) or "all"
            shown = ", ".join(f"{v}" if k == "dataset" else f"{k}={v}" for k, v in facet)
            with_test = has["m_test"] and has["test_best_train"] and tests_mean.get(str(where.get("dataset", "")), True)
            for value in ["m_train"] + (["m_test", "class"] if with_test else []):
                figs.add(
                    f"{value} over ({load}, noise)"
                    + (f", {shown}" if shown else "")
                    + (f", panels by {', '.join(chosen)}" if chosen else ""),
                    f"phase_{value}_{tag}",
                    partial(heat, ds, value, load, "noise", at=where, panel=panels, grid_columns=as_grid),
                )
        if len(facets) > MAX_PHASE_FACETS:
            figs.skipped.append(
                f"phase heatmaps of {len(facets) - MAX_PHASE_FACETS} more (dataset, N) "
                "pairs: draw them with amsweep.analysis.figures.heatmap_figure"
            )
    _coordinate_heatmaps(ds, base, figs, has, load, clean, multi_load, heat)
    if any(theory_figures.dynamics_temperature(ds)):  # not a dataset's sample temperature
        figs.add(
            "Thermal overlap over (load, temperature T) by each dynamics and by replica-symmetric "
            "theory, with the line T_M(alpha)",
            "temperature_phase",
            lambda p: theory_figures.temperature_figure(ds, p),
        )
        figs.add(
            "Thermal overlap against T at a few loads: each dynamics and the replica-symmetric solution",
            "temperature_lines",
            lambda p: theory_figures.temperature_lines_figure(ds, p),
        )
    if load == "P" and base["N"].nunique() > 1 and tables.has_data(ds, "success_train"):
        figs.add(
            "Capacity (largest P retrieved from noisy starts) against N",
            "capacity_vs_N",
            lambda p: theory_figures.capacity_figure(ds, p),
        )
    return figs


def _coordinate_heatmaps(
    ds: xr.Dataset,
    base: pd.DataFrame,
    figs: Figures,
    has: dict[str, bool],
    load: str,
    noise: float,
    multi_load: bool,
    heat: Callable[..., Path] = figures.heatmap_figure,
) -> None:
    """Heatmaps over (load, c) at one noise level for a swept numeric dataset parameter c (alpha_D)."""
    values = ["m_train"] + (["m_test", "gen_gap", "class"] if has["m_test"] and has["test_best_train"] else [])
    values += ["test_best_feature"] if has["test_best_feature"] else []
    for c in _dataset_coordinates(ds, base):
        others = [o for o in _dataset_coordinates(ds, base) if o != c]
        defined = base[np.isfinite(base[c].to_numpy(dtype=float))]  # datasets without c have no such axis
        groups = defined.drop_duplicates(subset=["dataset_entry", "N", *others])
        for _, g in groups.head(MAX_PHASE_FACETS).iterrows():
            where = {
                "dataset_entry": g["dataset_entry"],
                "N": int(g["N"]),
                **{o: g[o] for o in others if np.isfinite(g[o])},
            }
            x, y = (load, c) if multi_load else (c, "noise")
            fixed = {**where, "noise": noise} if multi_load else where
            tag = slug("_".join(f"{k}{v}" for k, v in where.items()))
            for value in values:
                figs.add(
                    f"{value} over ({x}, {y}), " + ", ".join(f"{k}={v}" for k, v in fixed.items()),
                    f"{value}_{x}_{y}_{tag}",
                    partial(heat, ds, value, x, y, at=fixed),
                )


def _markdown_table(frame: pd.DataFrame) -> str:
    def cell(v) -> str:
        if isinstance(v, (float, np.floating)):
            return "—" if not np.isfinite(v) else f"{v:.3g}" if abs(v) >= 1e-3 or v == 0 else f"{v:.1e}"
        return str(v)

    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    rule = "|" + "|".join("---" for _ in frame.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, rule, *rows])


def _axes_lines(ds: xr.Dataset) -> list[str]:
    def show(values) -> str:
        values = list(values)
        text = ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in values[:12])
        return text + (f", ... ({len(values)} values)" if len(values) > 12 else "")

    load = tables.load_axis(ds)
    return [f"- {dim}: {show(ds[dim].values.tolist())}" for dim in ("dataset", "N", load, "rule", "noise")] + [
        f"- seeds: {len(ds['seed'])}"
    ]


def write_report(
    cube_path: str | Path,
    out_dir: str | Path,
    look: FigureStyle = DEFAULT_STYLE,
    col: str | None = None,
    row: str | None = None,
    html: bool = False,
) -> Path:
    """Write the figures and ``report.md`` of a cube into ``out_dir``; return the Markdown path.

    ``look`` and the phase heatmaps' panels (``col``, ``row``) as ``standard_figures`` takes them.
    ``html``: also ``report.html``, the same views interactive (``analysis.html_report``)."""
    ds = query.open_cube(str(cube_path))
    for flag, dim in (("--col", col), ("--row", row)):
        if dim is not None and dim not in ds.coords and dim not in ds.dims:
            raise QueryError(
                f"{flag} {dim!r}: no such dimension or coordinate; available: {', '.join(map(str, ds.coords))}"
            )
    unstructured = [label for label, meaningful in meaningful_tests(ds).items() if not meaningful]
    ds = without_meaningless_tests(ds)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    counts = tables.status_counts(ds)
    lines = [
        f"# {ds.attrs.get('title', 'sweep')}",
        "",
        ds.attrs.get("description", ""),
        "",
        f"- cube: `{cube_path}`",
        f"- spec hash: `{ds.attrs.get('amsweep_spec_hash')}` (amsweep {ds.attrs.get('amsweep_version')}, "
        f"created {ds.attrs.get('created')})",
        "- tasks: "
        + ", ".join(f"{k} {v}" for k, v in counts.items())
        + " (only done tasks enter the numbers and figures below)",
        "",
        "## Axes",
        "",
        *_axes_lines(ds),
        "",
    ]
    if unstructured:
        lines += [
            f"Test examples of {', '.join(f'`{d}`' for d in unstructured)} carry no structure of the training set "
            "(TEST_MEANINGFUL = False in its dataset module): m_test and every test-derived value are left out.",
            "",
        ]
    if counts["done"] == 0:
        lines += ["No task is done yet: nothing to summarise."]
    else:
        lines += _results(ds, out, look, col, row)
    if html:  # the interactive views, self-contained (needs the `view` extra: Panel, HoloViews)
        from amsweep.analysis.html_report import write_html
        from amsweep.storage.status import status_data

        page = write_html(cube_path, ds, status_data(str(cube_path)), out)
        lines[1:1] = ["", f"Interactive version (hover, zoom, one tab per value): [{page.name}]({page.name})"]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


def _results(ds: xr.Dataset, out: Path, look: FigureStyle, col: str | None, row: str | None) -> list[str]:
    load = tables.load_axis(ds)
    rho, clean = summary.reference_noise(ds), summary.clean_noise(ds)
    keys = summary.key_numbers(ds, rho, clean)
    lines = ["## Key numbers", "", "Means over seeds.", ""]
    lines += [
        _markdown_table(keys),
        "",
        f"- `{load}_retrieval`: largest {load} up to which every grid point has mean m_train >= 0.99 "
        f"from starts at noise {rho:g} (initial overlap {1 - 2 * rho:g});",
        f"- `{load}_fixed_points`: the same for the fraction of training examples that are fixed points;",
        f"- `{load}_generalizing`: smallest {load} whose class (decided as below) is generalizing, at noise {clean:g};",
        f"- `...@max`: value at the largest {load} with data, at noise {clean:g}; `class@max`: its class.",
        f"- Classes (analysis/classify.py): generalizing = m_test >= {classify.SPECIFIC} and "
        f"m_test >= test_best_train + {classify.MARGIN}; memorizing = m_train >= {classify.RETRIEVED}, "
        f"test_best_train >= {classify.SPECIFIC} and test_best_train >= m_test + {classify.MARGIN}. "
        "Each grid point is classified from the seed means of these metrics; a comparison whose mean is "
        f"within {classify.Z:g} standard error of its threshold is open, and where the open comparisons "
        "could change the class, the point keeps the class of the previous noise level (if they allow it), "
        "so a one-seed fluctuation does not draw a phase. With one seed the thresholds alone decide.",
        "",
    ]
    if ds["noise"].size > 1:
        basin = summary.basin_table(ds)
        if not basin.empty:
            lines += [
                "## Basin size",
                "",
                "`1 - m_in*`, with `m_in*` the smallest initial overlap from which the mean final overlap "
                "is still >= 0.99, the 0.99 crossing interpolated linearly between the last retrieved "
                "noise level and the next; mean ± standard error over seeds. "
                f"A basin of 2 x max(noise) = {2 * float(ds['noise'].max()):g} means retrieval at every "
                "noise level of the grid: the true basin may be wider.",
                "",
                _markdown_table(basin),
                "",
            ]
    figs = standard_figures(ds, out, look, col, row)
    lines += ["## Figures", ""]
    for caption, png in figs.made:
        caption = caption.replace("*", r"\*")
        alt = caption.replace("[", "(").replace("]", ")")  # brackets would end the alt text early
        lines += [
            f"### {caption}",
            "",
            f"![{alt}]({png.name})",
            "",
            f"Vector version: [{png.with_suffix('.svg').name}]({png.with_suffix('.svg').name})",
            "",
        ]
    if figs.skipped:
        lines += ["## Figures not made", "", *[f"- {s}" for s in figs.skipped], ""]
    return lines
