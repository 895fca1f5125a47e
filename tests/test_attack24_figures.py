"""attack24 (issue 24, figures): findings as strict xfails. One tiny two-N cube (~3 s), shared."""

from __future__ import annotations

import pytest

from amsweep.analysis.phase import phase_plot
from amsweep.analysis.style import FigureStyle
from amsweep.pipeline.errors import QueryError
from amsweep.storage import query
from amsweep.sweeps.cli import main
from tests.test_analysis import run_cube


@pytest.fixture(scope="module")
def two_n(tmp_path_factory) -> str:
    raw = {
        "name": "twoN",
        "root_seed": 3,
        "seeds": 2,
        "noise": [0.0, 0.2],
        "P_test": 5,
        "retrieval": {"train_starts": 5, "test_starts": 5, "random_starts": 2},
        "datasets": {"random": {"N": [30, 40], "alpha": [0.1, 0.5]}},  # P = 3, 4 (N=30,40) and 15, 20
        "rules": {"hebb": {}},
    }
    return run_cube(tmp_path_factory.mktemp("a24fig") / "c.zarr", raw)


def _all_titles(fig) -> str:
    return "\n".join([fig.get_suptitle(), *(ax.get_title() for ax in fig.axes if ax.get_visible())])


@pytest.mark.parametrize("layout", [{"x": "P"}, {"col": "P"}])
def test_p_as_axis_or_panel_on_two_n_either_refuses_or_says_n(two_n, layout):
    """Without P, the same cube is refused ('the selection still varies along N'). With P as the
    x axis, one heatmap draws P=3 (N=30) beside P=4 (N=40) as one curve of load; with --col P each
    panel is one N but its title ('P=3') does not say which. Issue 24: titles state N."""
    ds = query.open_cube(two_n)
    x = layout.get("x", "alpha")
    try:
        with FigureStyle().context():
            fig = phase_plot(ds, "m_train", x, "noise", col=layout.get("col"))
    except QueryError as e:
        assert "N" in str(e)
        return
    assert "N=" in _all_titles(fig), _all_titles(fig)


def test_a_figure_too_large_for_memory_is_a_one_line_error(two_n, tmp_path, capsys):
    """--size 1000,1000 at the default 150 dpi (150000 px square) or --dpi 100000: the options are
    checked for sign only; Agg's std::bad_alloc comes back as 'this is a bug in amsweep'."""
    for option in (["--size", "1000,1000"], ["--dpi", "100000"]):  # the second: the figure's own size
        rc = main(["phase", two_n, "--where", "N=30", *option, "-o", str(tmp_path / "big.png")])
        err = capsys.readouterr().err
        assert rc == 2 and "bug in amsweep" not in err and len(err.strip().splitlines()) == 1, err
        assert "pixels" in err and not (tmp_path / "big.png").exists(), err


@pytest.fixture(scope="module")
def clip_cube(tmp_path_factory) -> str:
    import copy

    from tests.conftest import SMALL

    raw = copy.deepcopy(SMALL)
    raw["rules"]["plm"]["clip"] = [0.0, 1.0]  # rule_clip: NaN for hebb, 0 and 1 for the two plm variants
    return run_cube(tmp_path_factory.mktemp("a24clip") / "c.zarr", raw)


def test_panels_by_a_per_variant_coordinate_with_nan_draw_or_refuse(clip_cube, tmp_path, capsys):
    """--col over 'any dimension': rule_clip is the renamed per-variant coordinate issue 24 made;
    hebb has none (NaN). phase_plot's panel order is a dict keyed by value, and NaN != NaN:
    KeyError ('hebb', nan), 'a bug in amsweep'. Expected: panels (hebb's labelled) or a one-line error."""
    rc = main(["phase", clip_cube, "--col", "rule_clip", "-o", str(tmp_path / "c.png")])
    err = capsys.readouterr().err
    assert rc in (0, 2) and "bug in amsweep" not in err, err


@pytest.mark.parametrize("limit", [["--vmin", "2"], ["--vmax", "-1"]])
def test_one_colour_limit_beyond_the_data_is_a_one_line_error_or_drawn(clip_cube, tmp_path, capsys, limit):
    """--vmin 1 --vmax 0 is refused in one line, but --vmin 2 alone (m_train <= 1) leaves vmax at
    the data's maximum: Normalize(2, 1) -> 'minvalue must be less than or equal to maxvalue', a bug
    (raised at draw time, with three rule panels; a one-rule cube happened to draw)."""
    rc = main(["phase", clip_cube, *limit, "-o", str(tmp_path / "v.png")])
    err = capsys.readouterr().err
    assert rc in (0, 2) and "bug in amsweep" not in err, err


def test_an_absurd_font_scale_is_refused_or_drawn_quickly(two_n, tmp_path):
    """--font-scale is checked for sign only: 100 draws in 3 s, 1000 ran > 60 s (16 s user, 44 s
    system: glyph rasters of 9000 pt) before being killed. Bounded here at 15 s."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "amsweep.sweeps.cli", "phase", two_n, "--where", "N=30"]
    cmd += ["--font-scale", "1000", "-o", str(tmp_path / "f.png")]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=15)
    except subprocess.TimeoutExpired:
        pytest.fail("amsweep phase --font-scale 1000 still drawing after 15 s")
    assert done.returncode in (0, 2) and "bug in amsweep" not in done.stderr, done.stderr
