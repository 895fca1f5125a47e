"""Publication figures (issue 24): panels over any dimension, titles that state N and the selection,
one axis scale for heatmaps and lines, the look options and style files, and a class map that a
one-seed fluctuation does not flip.

One tiny two-N cube (Hebb and PLM, 2 seeds, ~2 s serial) serves the figure tests; the class rule
is checked on constructed seed values, where the outcome is known exactly.
"""

from __future__ import annotations

import matplotlib.image
import pandas as pd
import pytest
from matplotlib.collections import QuadMesh

from amsweep.analysis import classify, tables
from amsweep.analysis.classify import ELSEWHERE, MEMORIZING
from amsweep.analysis.phase import phase_figure, phase_plot
from amsweep.analysis.report import write_report
from amsweep.analysis.style import FigureStyle, StyleError
from amsweep.pipeline.errors import QueryError
from amsweep.storage import query
from amsweep.sweeps.cli import main
from tests.test_analysis import run_cube

ALPHA = [0.05, 0.2, 0.5, 1.0]  # spans 20: a log axis


@pytest.fixture(scope="module")
def two_n_cube(tmp_path_factory) -> str:
    raw = {
        "name": "twoN",
        "root_seed": 3,
        "seeds": 2,
        "noise": [0.0, 0.1, 0.2],
        "P_test": 5,
        "retrieval": {"train_starts": 5, "test_starts": 5, "random_starts": 2},
        "datasets": {"random": {"N": [30, 40], "alpha": ALPHA}},
        "rules": {"hebb": {}, "plm": {"epochs": 5, "lr": 1.0}},
    }
    return run_cube(tmp_path_factory.mktemp("twoN") / "c.zarr", raw)


def texts(fig) -> list:
    return [t for t in fig.findobj(lambda a: hasattr(a, "get_fontsize") and hasattr(a, "get_text")) if t.get_text()]


def test_col_n_draws_one_panel_per_n_and_titles_state_n_and_the_selection(two_n_cube):
    """Before: 'the selection still varies along N ... make it an axis or a panel', with no flag for panels."""
    ds = query.open_cube(two_n_cube)
    with FigureStyle().context():
        fig = phase_plot(ds, "m_train", "alpha", "noise", col="N", row="rule")
        titles = [ax.get_title() for ax in fig.axes if ax.get_visible()]
        assert {"hebb, N=30", "hebb, N=40", "plm, N=30", "plm, N=40"} <= set(titles)
        assert "hebb, noise = 0.1" in titles and "plm, noise = 0.1" in titles  # one line panel per row
        line_labels = fig.axes[2].get_legend_handles_labels()[1]
        assert line_labels == ["N=30", "N=40"]
        assert "dataset=random" in fig.get_suptitle()
        # a selection: the fixed N and the user's --where text are in the title
        sel = query.select(ds, query.parse_where("N=30,rule=plm"))
        fig = phase_plot(sel, "m_train", "alpha", "noise", where="rule=plm")  # N=30 selected before
        assert fig.get_suptitle().split("\n")[1] == "dataset=random, N=30; where rule=plm"
        with pytest.raises(QueryError, match="--col/--row"):
            phase_plot(ds, "m_train", "alpha", "noise")  # N varies and is neither axis nor panel
        with pytest.raises(QueryError, match="--col 'M'"):
            phase_plot(ds, "m_train", "alpha", "noise", col="M")


def test_heatmaps_and_line_panels_share_the_load_scale(two_n_cube):
    """Before: the heatmaps' load axis was logarithmic, the line panel's linear."""
    ds = query.select(query.open_cube(two_n_cube), {"N": ["30"]})
    with FigureStyle().context():
        fig = phase_plot(ds, "m_train", "alpha", "noise")
        visible = [ax for ax in fig.axes if ax.get_visible() and ax.get_xlabel()]
        assert len(visible) == 3 and {ax.get_xscale() for ax in visible} == {"log"}


def test_look_options_reach_the_saved_png(two_n_cube, tmp_path):
    ds = query.select(query.open_cube(two_n_cube), {"N": ["30"]})
    look = FigureStyle(cmap="magma", vmin=0.2, vmax=0.9, size=(6.0, 3.0), dpi=50)
    png = phase_figure(ds, "m_train", "alpha", "noise", tmp_path / "p.png", look=look)
    assert matplotlib.image.imread(png).shape[:2] == (150, 300)  # 3 x 6 inches at 50 dpi
    with look.context():
        fig = phase_plot(ds, "m_train", "alpha", "noise", look=look)
        meshes = fig.findobj(QuadMesh)
        assert meshes and all(m.get_clim() == (0.2, 0.9) and m.get_cmap().name == "magma" for m in meshes)
    with FigureStyle().context():  # the packaged style: every text of a figure >= 9 pt at the saved size
        sizes = [t.get_fontsize() for t in texts(phase_plot(ds, "m_train", "alpha", "noise"))]
        assert min(sizes) >= 9
    # the same flags on the command line, through to the file
    out = tmp_path / "cli.png"
    argv = ["phase", two_n_cube, "--col", "N", "--size", "4,3", "--dpi", "40", "--cmap", "cividis", "-o", str(out)]
    assert main(argv) == 0 and matplotlib.image.imread(out).shape[:2] == (120, 160)


def test_a_style_file_and_the_font_scale_override_the_packaged_style(two_n_cube, tmp_path, capsys):
    ds = query.select(query.open_cube(two_n_cube), {"N": ["30"]})
    mine = tmp_path / "mine.mplstyle"
    mine.write_text("axes.labelsize: 17\naxes.facecolor: ffeeee\n")
    with FigureStyle(style=(str(mine),)).context():
        ax = phase_plot(ds, "m_train", "alpha", "noise").axes[0]
        assert ax.xaxis.label.get_fontsize() == 17 and ax.get_facecolor()[:3] == pytest.approx(
            (1, 0xEE / 255, 0xEE / 255)
        )
    with FigureStyle(font_scale=2.0).context():
        assert phase_plot(ds, "m_train", "alpha", "noise").axes[0].xaxis.label.get_fontsize() == 20  # 10 pt x 2
    with pytest.raises(StyleError, match="--style"):
        FigureStyle(style=(str(tmp_path / "absent.mplstyle"),))
    with pytest.raises(StyleError, match="--vmin 1 must be below --vmax 0"):
        FigureStyle(vmin=1, vmax=0)
    # refused in one line before the cube is read (the cube path does not exist)
    assert main(["phase", str(tmp_path / "none.zarr"), "--cmap", "nope"]) == 2
    assert "--cmap 'nope': not a matplotlib colour map" in capsys.readouterr().err


def seeds_frame(best: dict[float, list[float]]) -> pd.DataFrame:
    """Retrieved training starts, test starts far from their own examples (m_test 0.08) and near a
    training example by the given test_best_train per seed: memorizing where best >= 0.5."""
    rows = [
        {"rule": "hebb", "noise": rho, "seed": s, "m_train": 1.0, "m_test": 0.08, "test_best_train": b}
        for rho, values in best.items()
        for s, b in enumerate(values)
    ]
    return pd.DataFrame(rows)


def test_class_map_does_not_flip_on_a_one_seed_fluctuation_but_follows_a_real_change():
    """The quickstart's Hebb at alpha 0.05: at rho 0.1 two of three seeds fall just under 0.5
    (mean 0.488 +- 0.023), so the majority vote said 'elsewhere' between two 'memorizing'."""
    frame = seeds_frame(
        {
            0.0: [0.557, 0.573, 0.540],
            0.1: [0.524, 0.444, 0.495],  # mean 0.488: under 0.5 by half a standard error
            0.2: [0.547, 0.507, 0.527],
            0.3: [0.30, 0.32, 0.28],  # mean 0.30, sem 0.012: a real change
        }
    )
    frame["class_seed"] = classify.classify(frame["m_train"], frame["m_test"], frame["test_best_train"])
    old = tables.seed_mode(frame, "class_seed", ["noise"])["class_seed"].tolist()
    assert old == [MEMORIZING, ELSEWHERE, MEMORIZING, ELSEWHERE]  # the flip the old rule drew
    new = classify.class_map(frame, ["rule"]).sort_values("noise")
    assert new["class"].tolist() == [MEMORIZING, MEMORIZING, MEMORIZING, ELSEWHERE]
    assert new["firm"].tolist() == [True, False, True, True]
    # an open comparison at the first noise level has no history: the means decide
    start = classify.class_map(seeds_frame({0.0: [0.524, 0.444, 0.495]}), ["rule"])
    assert start["class"].tolist() == [ELSEWHERE]
    # one seed: no standard error, the seed's own class (as before)
    one = classify.class_map(seeds_frame({0.0: [0.6], 0.1: [0.49], 0.2: [0.6]}), ["rule"])
    assert one["class"].tolist() == [MEMORIZING, ELSEWHERE, MEMORIZING]


def test_report_takes_the_panel_and_look_options_and_says_how_classes_are_decided(two_n_cube, tmp_path):
    md = write_report(two_n_cube, tmp_path / "rep", look=FigureStyle(dpi=30), col="N")
    text = md.read_text()
    assert "phase_m_train_random_N30" not in text and "phase_m_train_random.png" in text  # N in panels
    assert "standard error" in text and "previous noise level" in text
    png = tmp_path / "rep" / "phase_m_train_random.png"
    assert matplotlib.image.imread(png).shape[:2] == (2 * 108, 2 * 126)  # rules x N panels of 4.2 x 3.6 in at 30 dpi
    with pytest.raises(QueryError, match="--col 'M'"):
        write_report(two_n_cube, tmp_path / "rep2", col="M")
