"""How a figure looks, apart from what it shows: style file, colour map and limits, size, dpi, fonts.

One ``FigureStyle`` travels from the command line (``amsweep phase`` / ``report`` flags) to every
drawing function, so a paper's figures can all be made at one size and font scale. Figures are
drawn inside ``FigureStyle.context()``: the packaged ``amsweep.mplstyle`` (text >= 9 pt at the
saved size: the issue-24 report measured ~8 pt before, too small for a paper), then the user's
style files in order, then the font scale. Options are checked before any cube is read, so a typo
in ``--cmap`` or a missing ``--style`` file is a one-line error, not a traceback after the work.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import matplotlib
import matplotlib.style
from matplotlib.figure import Figure

from amsweep.pipeline.errors import AmsweepError

__all__ = ["DEFAULT_STYLE", "FigureStyle", "STYLE_FILE", "StyleError", "parse_size"]

STYLE_FILE = Path(__file__).with_name("amsweep.mplstyle")
# rc keys holding a font size: --font-scale multiplies each (named sizes like "small" are
# relative to font.size, so scaling font.size scales them too).
_FONT_KEYS = (
    "font.size",
    "axes.titlesize",
    "axes.labelsize",
    "xtick.labelsize",
    "ytick.labelsize",
    "legend.fontsize",
    "legend.title_fontsize",
    "figure.titlesize",
)
# --font-scale bounds: 8x makes 9-pt text 72 pt (a poster title); 1000x ran over a minute rasterising
# 9000-pt glyphs (attack24). 0.25x is ~2 pt, below anything legible.
FONT_SCALE_RANGE = (0.25, 8.0)
# Largest saved figure: Agg allocates 4 bytes (RGBA) a pixel, so 2e8 px is an 800 MB buffer before
# the PNG encoder's copy; a 7x5 in paper figure at 600 dpi is 1.26e7 px, 16x below the cap.
MAX_PIXELS = 2e8
_DEFAULT_DPI = 150.0  # amsweep.mplstyle's savefig.dpi, for checking --size before the style is applied


class StyleError(AmsweepError, ValueError):
    """A figure option is invalid (unknown colour map, missing style file, vmin >= vmax, ...)."""


def parse_size(text: str) -> tuple[float, float]:
    """'W,H' in inches (``--size 7,3``) as a pair of positive numbers."""
    try:
        w, h = (float(v) for v in text.split(","))
    except ValueError:
        raise StyleError(f"--size {text!r}: expected W,H in inches, e.g. 7,3") from None
    if not (w > 0 and h > 0):
        raise StyleError(f"--size {text!r}: width and height must be positive")
    return w, h


@dataclass(frozen=True)
class FigureStyle:
    """Look of a figure; None leaves the choice to the figure (size from its panels) or the style."""

    cmap: str | None = None
    vmin: float | None = None
    vmax: float | None = None
    size: tuple[float, float] | None = None  # whole figure, inches
    dpi: float | None = None  # PNG resolution; None: the style's savefig.dpi
    font_scale: float = 1.0
    style: tuple[str, ...] = ()  # style files or matplotlib style names, applied after amsweep's

    def __post_init__(self) -> None:
        if self.cmap is not None and self.cmap not in matplotlib.colormaps:
            raise StyleError(f"--cmap {self.cmap!r}: not a matplotlib colour map (e.g. viridis, magma, cividis)")
        if self.vmin is not None and self.vmax is not None and not self.vmin < self.vmax:
            raise StyleError(f"--vmin {self.vmin:g} must be below --vmax {self.vmax:g}")
        if self.dpi is not None and not self.dpi > 0:
            raise StyleError(f"--dpi {self.dpi:g}: must be positive")
        low, high = FONT_SCALE_RANGE
        if not low <= self.font_scale <= high:
            raise StyleError(f"--font-scale {self.font_scale:g}: must be between {low:g} and {high:g}")
        if self.size is not None and not all(v > 0 for v in self.size):
            raise StyleError(f"--size {self.size}: width and height must be positive")
        if self.size is not None:
            self.check_pixels(self.size, self.dpi or _DEFAULT_DPI)
        for s in self.style:
            if not Path(s).is_file() and s not in matplotlib.style.available:
                raise StyleError(f"--style {s!r}: no such file or matplotlib style")

    @contextlib.contextmanager
    def context(self) -> Iterator[None]:
        """rcParams of amsweep's style, the user's styles and the font scale, for drawing inside."""
        with matplotlib.style.context([str(STYLE_FILE), *self.style]):
            scaled: Any = {}  # rc keys are typed as literals; these are read from _FONT_KEYS
            rc: Any = matplotlib.rcParams
            if self.font_scale != 1.0:
                for key in _FONT_KEYS:
                    value = rc[key]
                    if isinstance(value, (int, float)):
                        scaled[key] = value * self.font_scale
            with matplotlib.rc_context(scaled):
                yield

    def colour_limits(self, low: float, high: float) -> dict[str, Any]:
        """pcolormesh keywords: the data's range unless --vmin/--vmax fix an end."""
        # One limit given beyond the data (--vmin 2 alone, data <= 1): the other end is clipped to it,
        # so the map is drawn (all one colour) instead of matplotlib refusing vmin > vmax at draw time.
        vmin = low if self.vmin is None else self.vmin
        vmax = high if self.vmax is None else self.vmax
        if self.vmax is None:
            vmax = max(vmax, vmin)
        if self.vmin is None:
            vmin = min(vmin, vmax)
        return {"cmap": self.cmap or matplotlib.rcParams["image.cmap"], "vmin": vmin, "vmax": vmax}

    @staticmethod
    def check_pixels(size: tuple[float, float], dpi: float) -> None:
        """Refuse a figure whose saved raster would exceed MAX_PIXELS (Agg's bad_alloc otherwise)."""
        w, h = size
        if w * h * dpi * dpi > MAX_PIXELS:
            raise StyleError(
                f"figure {w:g}x{h:g} in at {dpi:g} dpi is {w * h * dpi * dpi:.3g} pixels, over {MAX_PIXELS:.0e}: "
                "lower --size or --dpi"
            )

    def figure_size(self, natural: tuple[float, float]) -> tuple[float, float]:
        return self.size or natural

    def save_dpi(self) -> float:
        return float(self.dpi or matplotlib.rcParams["savefig.dpi"])

    def apply_size(self, fig: Figure) -> None:
        """Set --size, then refuse a raster too large to allocate (before anything is drawn)."""
        if self.size is not None:
            fig.set_size_inches(*self.size)
        w, h = fig.get_size_inches()
        self.check_pixels((float(w), float(h)), self.save_dpi())


DEFAULT_STYLE = FigureStyle()  # amsweep.mplstyle alone: the default of every drawing function
