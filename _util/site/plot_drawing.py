"""The plots themselves: small picklable jobs that draw one matplotlib figure each.

A job holds only the numbers its plot needs (never the history), so `run_jobs` can hand
jobs to worker processes cheaply. Which plots a report gets, and the pages around them,
are `procPlotting`'s business.

Drawing is made cheap where matplotlib spends its time, without changing a pixel a
reader would notice (tests/test_plot_likeness.py compares every plot type with its
picture as drawn before):
- each process keeps one figure per plot type and size (`_frame`): its axes, ticks,
  fonts and renderer are made once; a plot removes what the previous one drew and adds
  its own artists; the figures of the plots a daily run draws most are made, with their
  ticks, before the plot workers are forked (`prepare_frames`);
- many bars are one collection, never an artist per bar;
- a fixed layout; the two summaries, whose size follows their names, are drawn on a
  canvas with room around and cropped where savefig's bbox_inches="tight" would crop,
  without its second drawing pass (`save_png`);
- date ticks are worked out once per plot, not on every drawing pass (`_date_ticks`,
  `_fix_ticks`), and an axis that never has a label does not measure its tick labels
  again to place one (`_unlabelled`);
- text, which Agg lays out and renders glyph by glyph on every drawing, is laid out once
  per string and each glyph rendered once per position within a pixel, by the canvas's
  renderer (`_canvas_class`), to the same pixels;
- a legend's boxes are measured once per drawing (`_legend`), not again for every level
  of boxes above them;
- PNGs are written as RGB (the background is opaque), rows unfiltered, at zlib level 3
  (`write_png`): smaller than matplotlib's RGBA through Pillow, in a third of the time.
matplotlib is imported on the first drawing, not with this module: the run's plot
workers (`plot_workers.PlotWorkers`) are forked from a process that imports it while the
run imports, fetches and detects, and take each plot as soon as it is planned, while the
pages are written (`Drawing`).
"""
from __future__ import annotations

import hashlib
import logging
import math
import os
import struct
import time
import warnings
import zlib
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cache, partial
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from _util.alert_kinds import DOWN, UP
from _util.atomic_files import replacing
from _util.money import current_currency, in_currency
from _util.names import one_line
from _util.site.plot_workers import MIN_PARALLEL_JOBS, PlotWorkers, WorkersGone

if TYPE_CHECKING:
    from concurrent.futures import Future

    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

DPI = 100
LABEL_CHARS = 40
PNG_COMPRESS_LEVEL = 3  # zlib: half the time of 6 for a plot, 5-10% larger
TIGHT_PAD_INCHES = 0.1  # matplotlib's savefig.pad_inches, around the summaries
MAX_FRAMES = 12  # figures a process keeps for reuse (types x sizes)
TIGHT_ROOM = (4.0, 1.0)  # inches around a summary's figure for its names and legend
PREPARED_MTD_ROWS = 13  # summaries.TOP_SERVICES and Other: the month-to-date plot's rows
PREPARED_TICKS = 17  # ticks made on each axis of a prepared figure (its plots draw 6-16)

# tab20 without its two greys, which are kept for "Other".
PALETTE = (
    "#1f77b4", "#aec7e8", "#ff7f0e", "#ffbb78", "#2ca02c", "#98df8a", "#d62728", "#ff9896",
    "#9467bd", "#c5b0d5", "#8c564b", "#c49c94", "#e377c2", "#f7b6d2", "#bcbd22", "#dbdb8d",
    "#17becf", "#9edae5",
)
OTHER = "Other"
OTHER_COLOUR = "#9a9a9a"
BAR = "#a9bcd3"
HIGHLIGHT = "#f0a04b"
UP_COLOUR = "#c0392b"
DOWN_COLOUR = "#1e8449"
FAST_COLOUR = "#1f77b4"
SLOW_COLOUR = "#ff7f0e"
MEAN7_COLOUR = "#6a3d9a"
MEAN28_COLOUR = "#2c3e50"
EPOCH = np.datetime64("1970-01-01", "D")  # matplotlib's date epoch: x = days since it


# ---------------------------------------------------------------- labels and colours


def label(text: str, limit: int = LABEL_CHARS) -> str:
    """A name as a plot shows it: one line, at most `limit` characters, '$' kept literal,
    bidirectional controls as visible markers (`_util/names.py`)."""
    flat = one_line(text) or "(untagged)"
    if len(flat) > limit:
        flat = flat[: limit - 1].rstrip() + "…"
    return flat.replace("$", r"\$")


def _stable_index(name: str, size: int) -> int:
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") % size


def service_colours(names: Sequence[str]) -> dict[str, str]:
    """A colour per service from a stable hash of its name, distinct within one plot.

    The same set of services always gets the same colours (both summary plots draw the
    same set); clashes move to the next free palette slot in a fixed order.
    """
    colours: dict[str, str] = {}
    taken: set[int] = set()
    for name in sorted(set(names), key=lambda n: (_stable_index(n, len(PALETTE)), n)):
        if name == OTHER:
            colours[name] = OTHER_COLOUR
            continue
        slot = _stable_index(name, len(PALETTE))
        if len(taken) < len(PALETTE):
            while slot in taken:
                slot = (slot + 1) % len(PALETTE)
        taken.add(slot)
        colours[name] = PALETTE[slot]
    return colours


def _money_tick(value: float, _pos: object = None) -> str:
    """A short amount for an axis or a bar label, in the run's currency: $1.2M, $120k,
    $120, $1.50 (€1.50, ¥120)."""
    currency = current_currency()
    sign = "−" if value < 0 else ""
    v = abs(value)
    symbol = currency.prefix()
    if v >= 1e6:
        return f"{sign}{symbol}{v / 1e6:,.1f}M"
    if v >= 1e5:
        return f"{sign}{symbol}{v / 1e3:,.0f}k"
    if v >= 100 or v == round(v) or currency.places == 0:
        return f"{sign}{symbol}{v:,.0f}"
    return f"{sign}{symbol}{v:,.2f}"


def _percent_tick(value: float, _pos: object = None) -> str:
    return f"{value:.0f}%"


# ---------------------------------------------------------------- figures, made once


def _x(dates: np.ndarray) -> np.ndarray:
    """Dates as matplotlib's x (days since its epoch), without importing matplotlib.dates."""
    return (np.asarray(dates, dtype="datetime64[D]") - EPOCH).astype(float)


def _frame(key: tuple, figsize: tuple[float, float], setup: Callable[[Figure], None],
           room: tuple[float, float] = (0.0, 0.0)) -> Figure:
    """This process's figure for `key`: made and set up (axes, formatters, grid, layout)
    by `setup` the first time (or taken from those `prepare_frames` made before this
    process was forked), then reused with what the previous plot drew removed.
    Creating axes and their ticks, loading fonts and allocating the renderer is most of
    a small plot's time.

    `room` (inches, each side) makes the canvas larger than `figsize` while the axes stay
    where a figure of `figsize` has them: what a plot draws outside that figure (long
    names, a legend beside the axes) stays on the canvas for `save_png` to crop."""
    fig = _FRAMES.get(key)
    if fig is not None:
        _FRAMES.move_to_end(key)
        for ax in fig.axes:
            _clear(ax)
        return fig
    fig = _PREPARED.pop(key, None) or _new_frame(figsize, setup, room)
    _FRAMES[key] = fig
    while len(_FRAMES) > MAX_FRAMES:
        _FRAMES.popitem(last=False)
    return fig


def _new_frame(figsize: tuple[float, float], setup: Callable[[Figure], None],
               room: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    (w, h), (rx, ry) = figsize, room
    fig = Figure(figsize=(w + 2 * rx, h + 2 * ry), dpi=DPI)
    _canvas_class()(fig)
    if rx or ry:
        sp = fig.subplotpars  # matplotlib's defaults, as fractions of `figsize`
        fig.subplots_adjust(left=(rx + sp.left * w) / (w + 2 * rx),
                            right=(rx + sp.right * w) / (w + 2 * rx),
                            bottom=(ry + sp.bottom * h) / (h + 2 * ry),
                            top=(ry + sp.top * h) / (h + 2 * ry))
    setup(fig)
    return fig


_FRAMES: OrderedDict[tuple, Figure] = OrderedDict()
_PREPARED: dict[tuple, Figure] = {}  # made by prepare_frames, never drawn


def prepare_frames() -> None:
    """The figures of the plots a daily run draws most (spike and trend alerts, the two
    summaries of an account of more than summaries.TOP_SERVICES services) made now, with
    their ticks, for the plot workers forked from this process afterwards: a worker's
    first plot of a type otherwise spends 30-60 ms making them, and a run's workers draw
    several types once each. Called by the process the workers are forked from
    (`plot_workers`); the run's early one does it while the run imports. Nothing is
    drawn, so no font is opened: fonts cannot be shared across a fork
    (`_forget_after_fork`), figures that never drew can. In a process that has made
    figures already, it does nothing."""
    if _FRAMES or _PREPARED:
        return
    _spike_frame()
    _trend_frame()
    _daily_frame()
    _mtd_frame(PREPARED_MTD_ROWS)
    for fig in _FRAMES.values():
        for ax in fig.axes:
            ax.xaxis.get_major_ticks(PREPARED_TICKS)
            ax.yaxis.get_major_ticks(PREPARED_TICKS)
    _PREPARED.update(_FRAMES)
    _FRAMES.clear()


@cache
def _canvas_class() -> type:
    """FigureCanvasAgg whose renderer remembers text it has drawn (made on first use, as
    matplotlib is imported then).

    Agg draws a text by laying out its string (HarfBuzz, via libraqm) and rendering each
    glyph with FreeType, every time; and lays out a line by reading the font's tables
    every time it is measured. Plots of one kind repeat most of their text (legends, tick
    labels) in the same places, so the renderer keeps:
    - each string's layout, per font, size and hinting (`_LAYOUTS`);
    - each glyph's bitmap, per font, size, rotation and position within a pixel (1/64):
      a glyph drawn a whole number of pixels away is the same bitmap moved (`_GLYPHS`);
    - each font's line metrics (`_get_font_height_metrics`, which matplotlib's Text asks
      a renderer for when it has it).
    The pixels are those RendererAgg draws (tests/test_plotting.py compares them)."""
    from matplotlib.backends.backend_agg import (
        FigureCanvasAgg,
        RendererAgg,
        get_hinting_flag,
    )
    from matplotlib.font_manager import fontManager, get_font
    from matplotlib.ft2font import RenderMode

    class Renderer(RendererAgg):
        def _get_font_height_metrics(self, prop):
            key = (prop.copy(), self.dpi)
            metrics = _LINE_METRICS.get(key)
            if metrics is None:
                metrics = _LINE_METRICS[key] = _line_metrics(
                    get_font(fontManager._find_fonts_by_props(prop)),
                    prop.get_size_in_points(), self.dpi)
            return metrics

        def draw_text(self, gc, x, y, s, prop, angle, ismath=False, mtext=None):
            if ismath:
                return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
            features = mtext.get_fontfeatures() if mtext is not None else None
            language = mtext.get_language() if mtext is not None else None
            flags = get_hinting_flag()
            key = (s, prop.copy(), self.dpi, flags, features, language)
            try:
                layout = _LAYOUTS.get(key)
            except TypeError:  # unhashable features or language: as Agg draws it
                return super().draw_text(gc, x, y, s, prop, angle, ismath, mtext)
            if layout is None:
                font = self._prepare_font(prop)
                items = font._layout(s, flags=flags, features=features, language=language)
                layout = _LAYOUTS[key] = tuple((item.ft_object, item.glyph_index, item.x,
                                                item.y) for item in items)
                if len(_LAYOUTS) > MAX_TEXT_CACHE:
                    _LAYOUTS.clear()
            self._draw_glyphs(gc, x, y, angle, prop.get_size_in_points(), layout, flags)

        def _draw_glyphs(self, gc, x, y, angle, size, layout, flags) -> None:
            """RendererAgg._draw_text_glyphs_and_boxes for a layout, each glyph's bitmap
            rendered once per position within a pixel."""
            cos = math.cos(math.radians(angle))
            sin = math.sin(math.radians(angle))
            matrix = (0x10000 * np.array([[cos, -sin], [sin, cos]])).round().astype(int)
            mode = RenderMode.NORMAL if gc.get_antialiased() else RenderMode.MONO
            shape = (tuple(matrix.ravel().tolist()), mode)
            height = self.height
            draw_image = self._renderer.draw_text_image
            for font, glyph_index, dx, dy in layout:  # dy is upwards.
                # FreeType's position, in 1/64 pixel; its y is upwards.
                px = round(0x40 * (x + dx * cos - dy * sin))
                py = round(0x40 * (height - y + dx * sin + dy * cos))
                key = (font, size, self.dpi, glyph_index, shape, flags, px & 63, py & 63)
                glyph = _GLYPHS.get(key)
                if glyph is None:
                    font.set_size(size, self.dpi)
                    font._set_transform(matrix, [px & 63, py & 63])
                    bitmap = font._render_glyph(glyph_index, flags, mode)
                    buffer = bitmap.buffer
                    if mode is RenderMode.MONO:
                        buffer *= 0xff
                    glyph = _GLYPHS[key] = (buffer, bitmap.left, bitmap.top)
                    if len(_GLYPHS) > MAX_GLYPH_CACHE:
                        _GLYPHS.clear()
                buffer, left, top = glyph
                # draw_text_image's y is downwards & the bitmap's bottom side.
                draw_image(buffer, left + (px >> 6),
                           int(height) - (top + (py >> 6)) + buffer.shape[0], 0, gc)

    class Canvas(FigureCanvasAgg):
        def get_renderer(self):
            w, h = self.get_width_height(physical=True)
            key = w, h, self.figure.dpi
            if self._lastKey != key:
                self.renderer = Renderer(w, h, self.figure.dpi)
                self._lastKey = key
            return self.renderer

    return Canvas


def _line_metrics(font, size: float, dpi: float) -> tuple:
    """A font's (ascent, descent, line gap) in pixels, as matplotlib's Text reads them
    from its tables (text.py, Text._get_layout); None x 3 when it has neither table."""
    for table_name, gap_key, ascent_key, descent_key in (
            ("OS/2", "sTypoLineGap", "sTypoAscender", "sTypoDescender"),
            ("hhea", "lineGap", "ascent", "descent")):
        table = font.get_sfnt_table(table_name)
        if table is None:
            continue
        scale = 1 / font.get_sfnt_table("head")["unitsPerEm"] * size * dpi / 72
        return table[ascent_key] * scale, -table[descent_key] * scale, table[gap_key] * scale
    return None, None, None


MAX_TEXT_CACHE = 4096  # strings laid out, kept (cleared when full)
MAX_GLYPH_CACHE = 50_000  # glyph bitmaps kept, ~100 bytes each (cleared when full)
_LAYOUTS: dict[tuple, tuple] = {}
_GLYPHS: dict[tuple, tuple] = {}
_LINE_METRICS: dict[tuple, tuple] = {}


def _forget_after_fork() -> None:
    """A forked plot worker starts without the parent's drawn figures and text caches:
    the layouts hold the parent's FreeType fonts, whose open font files share their read
    offset with the parent and the other workers, so two processes loading glyphs through
    them read each other's positions ("FT_Load_Glyph ... invalid outline"). matplotlib
    clears its own font cache at a fork for the same reason. Prepared figures, which have
    never drawn, are kept."""
    _LAYOUTS.clear()
    _GLYPHS.clear()
    _LINE_METRICS.clear()
    _FRAMES.clear()


os.register_at_fork(after_in_child=_forget_after_fork)


def _clear(ax: Axes) -> None:
    """Remove the data, labels and legend a plot added, keeping the axes' set-up, and
    put the limits, margins and autoscaling back as a new axes has them (a plot without
    data is scaled as on new axes, not left with the previous plot's limits)."""
    import matplotlib as mpl

    for container in list(ax.containers):
        container.remove()
    for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.texts]:
        artist.remove()
    if ax.get_legend() is not None:
        ax.get_legend().remove()
    ax.xaxis.label.set_text("")
    ax.relim()
    ax.set_xmargin(mpl.rcParams["axes.xmargin"])
    ax.set_ymargin(mpl.rcParams["axes.ymargin"])
    ax.viewLim  # noqa: B018 - the autoscaling new margins ask for, done now, not later
    ax.set_xlim(0.0, 1.0, auto=None)  # a new axes' view: (0, 1), not "mutated"
    ax.set_ylim(0.0, 1.0, auto=None)
    ax.set_autoscale_on(True)


def _style(ax: Axes, formatter: Callable = _money_tick) -> None:
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(formatter))
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)


def _unlabelled(axis) -> None:
    """For an axis that never has a label (an x- or y-axis, of a figure saved whole): its
    empty label stays put, so that a drawing does not measure every tick label a second
    time to place it. (A summary's crop would take an empty label's place into account.)"""
    axis.set_label_coords(0.5, 0.5)


def _date_ticks(ax: Axes) -> None:
    """The date ticks and labels AutoDateLocator and ConciseDateFormatter give the axis's
    limits (set them first), worked out once: left to them, every drawing pass would
    ask again, walking the calendar (rrule) several times."""
    import matplotlib.dates as mdates

    locator = mdates.AutoDateLocator(maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))
    _fix_ticks(ax.xaxis)


def _fix_ticks(axis) -> None:
    """The major ticks and labels `axis`'s locator and formatter give for its limits (set
    them first), fixed: left to them, every drawing pass and every measurement of the
    axis would work them out again."""
    from matplotlib.ticker import FixedFormatter, FixedLocator

    formatter = axis.get_major_formatter()
    locs = axis.get_majorticklocs()
    labels = FixedFormatter(formatter.format_ticks(locs))
    labels.set_offset_string(formatter.get_offset())
    axis.set_major_locator(FixedLocator(locs))
    axis.set_major_formatter(labels)


def _one_axes(left: float, right: float, top: float, bottom: float,
              formatter: Callable = _money_tick) -> Callable[[Figure], None]:
    """The set-up of a figure with one styled axes at a fixed position."""
    def setup(fig: Figure) -> None:
        ax = fig.add_subplot()
        _style(ax, formatter)
        _unlabelled(ax.xaxis)
        _unlabelled(ax.yaxis)
        fig.subplots_adjust(left=left, right=right, top=top, bottom=bottom)
    return setup


def _bars(ax: Axes, x: np.ndarray, height: np.ndarray, width: float, colour, bottom=None,
          label: str | None = None, alpha: float = 1.0, autoscale: bool = True,
          autolim: bool = True):
    """Vertical bars as one collection: ax.bar makes an artist per bar, ~1 ms each.
    `autolim`: False leaves the data limits to the caller (adding a collection with
    them first autoscales the axes for the one added before)."""
    from matplotlib.collections import PolyCollection

    h = np.asarray(height, dtype=float)
    b = np.zeros_like(h) if bottom is None else np.asarray(bottom, dtype=float)
    left, right = x - width / 2, x + width / 2
    verts = np.stack([np.column_stack(p) for p in
                      ((left, b), (left, b + h), (right, b + h), (right, b))], axis=1)
    bars = PolyCollection(verts, facecolors=colour, edgecolors="none", linewidths=0,
                          label=label, alpha=alpha)
    ax.add_collection(bars, autolim=autolim)
    if autoscale:
        ax.autoscale_view()
    return bars


def _headroom(ax: Axes, top: float, bottom: float = 0.0) -> None:
    """Leave the upper fifth of a panel free for its legend."""
    ax.set_ylim(bottom=min(0.0, bottom), top=top * 1.25 if top > 0 else 1.0)


def _title(ax: Axes, text: str, fontsize: float = 10, y: float | None = 1.0) -> None:
    ax.set_title(text, loc="left", fontsize=fontsize, y=y)


def _legend(ax: Axes, *args, **kwargs) -> None:
    """ax.legend(...), whose boxes are measured once per drawing (`_MeasuredOnce`)."""
    _MeasuredOnce(ax.legend(*args, **kwargs))


class _MeasuredOnce:
    """A legend whose boxes are measured once per drawing of it, not once per level above
    them: matplotlib's legend is a tree of packed boxes, and each box asks its children
    for their sizes, then draws them, and each child asks its own children again (and
    lays its text out again). A legend's sizes cannot change while it is drawn, so each
    box's answer is kept for that drawing: a tenth of a trend plot's time, the same
    pixels (tests/test_plotting.py). A legend without the private box tree this
    relies on (another matplotlib) is drawn as it is."""

    def __init__(self, legend) -> None:
        from matplotlib.offsetbox import OffsetBox

        self._sizes: dict[int, object] | None = None
        root = getattr(legend, "_legend_box", None)
        if not isinstance(root, OffsetBox) or not hasattr(root, "_get_bbox_and_child_offsets"):
            return
        boxes = [root]
        while boxes:
            box = boxes.pop()
            boxes.extend(child for child in box.get_children() if isinstance(child, OffsetBox))
            # A packer's size is its children's packed; a leaf (text, a handle) has its own.
            name = ("_get_bbox_and_child_offsets" if type(box).get_bbox is OffsetBox.get_bbox
                    else "get_bbox")
            setattr(box, name, self._kept(box, getattr(box, name)))
        self._draw = legend.draw
        legend.draw = self.draw

    def _kept(self, box, measure: Callable) -> Callable:
        def kept(renderer):
            if self._sizes is None:
                return measure(renderer)
            size = self._sizes.get(id(box))
            if size is None:
                size = self._sizes[id(box)] = measure(renderer)
            return size
        return kept

    def draw(self, renderer) -> None:
        self._sizes = {}
        try:
            self._draw(renderer)
        finally:
            self._sizes = None


# ---------------------------------------------------------------- plot jobs


def _spike_frame() -> Figure:
    return _frame(("spike",), (10, 4.2), _one_axes(left=0.08, right=0.98, top=0.86,
                                                     bottom=0.09))


@dataclass(frozen=True)
class SpikePlot:
    """Daily cost bars over the window, D marked, the baseline mean and mean ± Z·std."""

    path: Path
    title: str
    dates: np.ndarray
    cost: np.ndarray
    mean: float
    std: float
    z: float
    direction: str

    def draw(self) -> Figure:
        fig = _spike_frame()
        (ax,) = fig.axes
        x = _x(self.dates)
        upper = self.mean + self.z * self.std
        lower = self.mean - self.z * self.std
        colours = np.where(self.cost >= upper, HIGHLIGHT, BAR).astype(object)
        if self.direction == DOWN:
            colours[self.cost <= lower] = HIGHLIGHT
        mark = UP_COLOUR if self.direction == UP else DOWN_COLOUR
        if len(colours):
            colours[-1] = mark
        # Limits first: the artists added after them need no autoscaling.
        if len(x):
            ax.set_xlim(x[0] - 1, x[-1] + 4)
        _headroom(ax, max([upper, *self.cost]), min([0.0, *self.cost]))
        _bars(ax, x, self.cost, 1.0, list(colours), label="daily cost", autoscale=not len(x))
        ax.axhline(self.mean, color="#34495e", linestyle="--", linewidth=1.2,
                   label=f"baseline mean {label(_money_tick(self.mean))}")
        ax.axhline(upper, color=UP_COLOUR, linewidth=1.2, label=f"mean + {self.z:g}·std")
        if self.direction == DOWN and lower > 0:
            ax.axhline(lower, color=DOWN_COLOUR, linewidth=1.2, label=f"mean − {self.z:g}·std")
        if len(x):
            ax.plot([x[-1]], [self.cost[-1]], marker="^" if self.direction == UP else "v",
                    color=mark, markersize=9, linestyle="none", label="the day")
        _title(ax, self.title)
        _legend(ax, loc="upper left", fontsize=8, ncol=5, framealpha=0.9, edgecolor="none")
        _date_ticks(ax)
        return fig


def _trend_setup(fig: Figure) -> None:
    top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
    for ax in (top, bottom):
        _style(ax)
        _unlabelled(ax.xaxis)
        _unlabelled(ax.yaxis)
    fig.subplots_adjust(left=0.08, right=0.98, top=0.89, bottom=0.07, hspace=0.08)


def _trend_frame() -> Figure:
    return _frame(("trend",), (10, 5.6), _trend_setup)


@dataclass(frozen=True)
class TrendPlot:
    """Cost with fast and slow EMAs above; MACD, signal and their difference below."""

    path: Path
    title: str
    dates: np.ndarray
    cost: np.ndarray
    ema_fast: np.ndarray
    ema_slow: np.ndarray
    macd: np.ndarray
    signal: np.ndarray
    spans: tuple[int, int, int]
    direction: str
    mean7: np.ndarray | None = None
    mean28: np.ndarray | None = None

    def draw(self) -> Figure:
        fast, slow, span = self.spans
        fig = _trend_frame()
        top, bottom = fig.axes
        x = _x(self.dates)
        mark = UP_COLOUR if self.direction == UP else DOWN_COLOUR
        bar_colours = [BAR] * len(x)
        if bar_colours:
            bar_colours[-1] = mark
        diff = self.macd - self.signal
        # Limits first: the artists added after them need no autoscaling.
        if len(x):
            top.set_xlim(x[0] - 1, x[-1] + 1)
            _headroom(top, float(max(self.cost.max(), self.ema_fast.max(), self.ema_slow.max())),
                      float(self.cost.min()))
            low = float(min(self.macd.min(), self.signal.min(), diff.min()))
            high = float(max(self.macd.max(), self.signal.max(), diff.max()))
            bottom.set_ylim(low - 0.1 * (high - low), high + 0.45 * (high - low) + 1e-9)
        _bars(top, x, self.cost, 1.0, bar_colours, label="daily cost", autoscale=not len(x))
        top.plot(x, self.ema_fast, color=FAST_COLOUR, linewidth=1.5, label=f"EMA{fast}")
        top.plot(x, self.ema_slow, color=SLOW_COLOUR, linewidth=1.5, label=f"EMA{slow}")
        # The averages the materiality gate compares on the day.
        if self.mean7 is not None and self.mean28 is not None:
            top.plot(x, self.mean7, color=MEAN7_COLOUR, linewidth=1.2, linestyle="--",
                     label="7-day average")
            top.plot(x, self.mean28, color=MEAN28_COLOUR, linewidth=1.2, linestyle=":",
                     label="28-day average")
        _bars(bottom, x, diff, 1.0, np.where(diff >= 0, DOWN_COLOUR, UP_COLOUR).tolist(),
              label="MACD − signal", alpha=0.45, autoscale=not len(x))
        bottom.plot(x, self.macd, color=FAST_COLOUR, linewidth=1.4, label="MACD")
        bottom.plot(x, self.signal, color=SLOW_COLOUR, linewidth=1.4,
                    label=f"signal ({span}-day EWM)")
        bottom.axhline(0, color="#555555", linewidth=0.8)
        if len(x):
            for ax in (top, bottom):
                ax.axvline(x[-1], color=mark, alpha=0.5, linewidth=0.8, linestyle=":")
            bottom.plot([x[-1]], [self.macd[-1]], marker="^" if self.direction == UP else "v",
                        color=mark, markersize=10, linestyle="none",
                        label="crossed " + ("above" if self.direction == UP else "below"))
        _title(top, self.title)
        for ax in (top, bottom):
            _legend(ax, loc="upper left", fontsize=8, ncol=4, framealpha=0.9, edgecolor="none")
        _date_ticks(bottom)
        return fig


def _mtd_setup(fig: Figure) -> None:
    from matplotlib.ticker import FuncFormatter

    ax = fig.add_subplot()
    ax.xaxis.set_major_formatter(FuncFormatter(_money_tick))
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(axis="x", labelsize=8)


def _mtd_frame(rows: int) -> Figure:
    return _frame(("mtd", rows), (10, 1.3 + 0.34 * rows), _mtd_setup, TIGHT_ROOM)


@dataclass(frozen=True)
class MtdPlot:
    """Month-to-date spend per service: sorted horizontal bars, the rest as Other."""

    path: Path
    title: str
    names: tuple[str, ...]
    usd: tuple[float, ...]
    colours: tuple[str, ...]

    def draw(self) -> Figure:
        fig = _mtd_frame(max(len(self.names), 1))
        (ax,) = fig.axes
        ypos = np.arange(len(self.names))
        bars = ax.barh(ypos, self.usd, color=list(self.colours), height=0.7)
        ax.set_yticks(ypos, labels=[label(s) for s in self.names], fontsize=9)
        ax.yaxis.set_inverted(True)  # (this scales the axes, before the wider margin)
        ax.bar_label(bars, labels=[_money_tick(v) for v in self.usd], padding=3, fontsize=8)
        ax.margins(x=0.12)
        _title(ax, self.title)
        return fig


def _daily_setup(fig: Figure) -> None:
    _style(fig.add_subplot())


def _daily_frame() -> Figure:
    return _frame(("daily",), (10, 5.2), _daily_setup, TIGHT_ROOM)


@dataclass(frozen=True)
class DailyPlot:
    """Daily spend for the month as stacked bars; positives stack up, credits down."""

    path: Path
    title: str
    dates: np.ndarray
    names: tuple[str, ...]
    matrix: np.ndarray  # (len(names), len(dates))
    colours: tuple[str, ...]

    def draw(self) -> Figure:
        import matplotlib.dates as mdates

        fig = _daily_frame()
        (ax,) = fig.axes
        x = _x(self.dates)
        up = np.zeros(len(x))
        down = np.zeros(len(x))
        stacks = []
        for name, row, colour in zip(self.names, self.matrix, self.colours):
            stacks.append(_bars(ax, x, row, 0.8, colour, bottom=np.where(row >= 0, up, down),
                                label=label(name), autoscale=False, autolim=False))
            up = up + np.clip(row, 0, None)
            down = down + np.clip(row, None, 0)
        if stacks:  # the data limits of them all at once, then one autoscaling
            ax.update_datalim(np.concatenate([bars.get_datalim(ax.transData).get_points()
                                              for bars in stacks]))
            ax.autoscale_view()
        handles, labels_ = ax.get_legend_handles_labels()
        _legend(ax, handles[::-1], labels_[::-1], loc="upper left",
                bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
        if len(x):
            ax.set_xlim(x[0] - 0.6, x[-1] + 0.6)
            _headroom(ax, float(up.max()) / 1.1, float(down.min()))
        ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, math.ceil(len(x) / 16))))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d"))
        _fix_ticks(ax.xaxis)
        if len(self.dates):
            last = np.datetime64(self.dates[-1], "D").astype(object)
            ax.set_xlabel(last.strftime("%B %Y"), fontsize=9)
        _title(ax, self.title)
        return fig


@dataclass(frozen=True)
class CoveragePlot:
    """The daily share of spend carrying a tag: the share, the mean of the 7 days before
    each day (what a drop is measured against), and the report's day marked (red when its
    drop is an alert)."""

    path: Path
    title: str
    dates: np.ndarray
    pct: np.ndarray  # NaN on a day without spend
    dropped: bool

    def draw(self) -> Figure:
        fig = _frame(("coverage",), (10, 4.2), _one_axes(
            left=0.08, right=0.98, top=0.86, bottom=0.09, formatter=_percent_tick))
        (ax,) = fig.axes
        x = _x(self.dates)
        pct = np.asarray(self.pct, dtype=float)
        prev7 = _mean_of_days_before(pct, 7)
        ax.plot(x, pct, color=FAST_COLOUR, linewidth=1.6, label="share of spend tagged")
        ax.plot(x, prev7, color=MEAN28_COLOUR, linewidth=1.1, linestyle="--",
                label="mean of the 7 days before")
        shown = pct[np.isfinite(pct)]
        if len(x):
            mark = UP_COLOUR if self.dropped else FAST_COLOUR
            if np.isfinite(pct[-1]):
                ax.plot([x[-1]], [pct[-1]], marker="v" if self.dropped else "o", color=mark,
                        markersize=9, linestyle="none",
                        label="the day: dropped" if self.dropped else "the day")
            ax.set_xlim(x[0] - 1, x[-1] + 2)
        low = max(0.0, float(shown.min()) - 5.0) if len(shown) else 0.0
        high = min(100.0, float(shown.max()) + 2.0) if len(shown) else 100.0
        ax.set_ylim(low, high + 0.3 * (high - low) + 1.0)
        _title(ax, self.title)
        _legend(ax, loc="upper left", fontsize=8, ncol=3, framealpha=0.9, edgecolor="none")
        _date_ticks(ax)
        return fig


def _mean_of_days_before(values: np.ndarray, days: int) -> np.ndarray:
    """For each day, the mean of the finite values among the `days` days before it (NaN
    when there are none): pandas' shift(1).rolling(days, min_periods=1).mean()."""
    finite = np.isfinite(values)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, values, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    end = np.arange(len(values))  # the window is [end - days, end)
    start = np.maximum(end - days, 0)
    n = counts[end] - counts[start]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[end] - sums[start]) / np.maximum(n, 1), np.nan)


@dataclass(frozen=True)
class CommitmentPlot:
    """A plan's, a reservation's or a kind's utilisation and its kind's coverage over the
    last 90 days, with the utilisation threshold (COST_TRACKING_MIN_UTILISATION_PCT, 80%
    by default) as a line: days below it are commitment paid and not used."""

    path: Path
    title: str
    dates: np.ndarray
    utilisation: np.ndarray  # percent, NaN on a day without figures
    coverage: np.ndarray  # percent, NaN on a day without figures
    threshold_pct: float

    def draw(self) -> Figure:
        fig = _frame(("commitment",), (10, 4.2), _one_axes(
            left=0.08, right=0.98, top=0.86, bottom=0.09, formatter=_percent_tick))
        (ax,) = fig.axes
        x = _x(self.dates)
        util = np.asarray(self.utilisation, dtype=float)
        cover = np.asarray(self.coverage, dtype=float)
        ax.plot(x, util, color=FAST_COLOUR, linewidth=1.6, label="utilisation")
        ax.plot(x, cover, color=MEAN28_COLOUR, linewidth=1.3, label="coverage")
        ax.axhline(self.threshold_pct, color=UP_COLOUR, linewidth=1.0, linestyle="--",
                   label=f"{self.threshold_pct:g}% utilisation")
        low = util < self.threshold_pct
        if low.any():
            ax.plot(x[low], util[low], marker="o", color=UP_COLOUR, markersize=4,
                    linestyle="none", label="below the line")
        if len(x):
            ax.set_xlim(x[0] - 1, x[-1] + 2)
        ax.set_ylim(0, 119)
        _title(ax, self.title)
        _legend(ax, loc="upper left", fontsize=8, ncol=4, framealpha=0.9, edgecolor="none")
        _date_ticks(ax)
        return fig


def _timeline_setup(fig: Figure) -> None:
    ax = fig.add_subplot()
    ax.set_xlim(0, 24.5)
    ax.set_xticks(range(0, 25, 3), [f"{h:02d}:00" for h in range(0, 25, 3)])
    ax.grid(axis="x", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=7)
    _unlabelled(ax.xaxis)
    _unlabelled(ax.yaxis)
    fig.subplots_adjust(left=0.24, right=0.98, top=1 - 0.5 / fig.get_figheight(),
                        bottom=0.4 / fig.get_figheight())


@dataclass(frozen=True)
class UsageTimelinePlot:
    """A day of EC2 instances: one bar per instance over the UTC hours 0-24, a segment per
    interval it ran (spot and on-demand in two colours), an arrow at 24:00 for one still
    running; the longest run at the top."""

    path: Path
    title: str
    labels: tuple[str, ...]
    intervals: tuple[tuple[tuple[float, float], ...], ...]  # hours of the day, per instance
    spot: tuple[bool, ...]
    still_running: tuple[bool, ...]

    def draw(self) -> Figure:
        from matplotlib.collections import PolyCollection

        rows = max(len(self.labels), 1)
        fig = _frame(("usage_timeline", rows), (10, 1.3 + 0.22 * rows), _timeline_setup)
        (ax,) = fig.axes
        # One collection of every interval, coloured by the instance's kind.
        verts, colours = [], []
        for y, (spans, spot) in enumerate(zip(self.intervals, self.spot)):
            for start, end in spans:
                verts.append([(start, y - 0.38), (start, y + 0.38), (end, y + 0.38),
                              (end, y - 0.38)])
                colours.append(SLOW_COLOUR if spot else FAST_COLOUR)
        ax.add_collection(PolyCollection(verts, facecolors=colours), autolim=False)
        running = [y for y, still in enumerate(self.still_running) if still]
        if running:
            ax.plot([24.15] * len(running), running, marker=">", color=UP_COLOUR,
                    linestyle="none", markersize=5, label="still running at 24:00")
        ax.bar([0], [0], color=FAST_COLOUR, label="on-demand")
        ax.bar([0], [0], color=SLOW_COLOUR, label="spot")
        ax.set_xlim(0, 24.5)
        ax.set_ylim(rows - 0.5, -0.5)
        ax.set_yticks(range(len(self.labels)), list(self.labels))
        _title(ax, self.title, y=None)
        _legend(ax, loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, ncol=3,
                frameon=False)
        return fig


def _idle_setup(fig: Figure) -> None:
    from matplotlib.ticker import FuncFormatter

    cpu_ax, net_ax = fig.subplots(2, 1, sharex=True)
    cpu_ax.yaxis.set_major_formatter(FuncFormatter(_percent_tick))
    cpu_ax.set_ylabel("max CPU", fontsize=8)
    for ax in (cpu_ax, net_ax):
        _unlabelled(ax.xaxis)
        ax.grid(axis="y", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.1, hspace=0.15)


@dataclass(frozen=True)
class IdleMetricsPlot:
    """An idle resource's last 30 days: its daily maximum CPU above, its network in+out a
    day below, each with the threshold under which a day counts as idle as a dashed line
    (COST_TRACKING_IDLE_CPU_PCT, COST_TRACKING_IDLE_NETWORK_MB); a day without data is a
    gap."""

    path: Path
    title: str
    dates: np.ndarray
    cpu_max_pct: np.ndarray  # NaN on a day without a datapoint
    network_mb: np.ndarray  # NaN on a day without a datapoint (every day for ECS)
    cpu_threshold_pct: float
    network_threshold_mb: float
    network_label: str = "network MB"  # the lower panel's axis label

    def draw(self) -> Figure:
        from matplotlib.ticker import AutoLocator, NullLocator

        fig = _frame(("idle_metrics",), (8, 3.6), _idle_setup)
        cpu_ax, net_ax = fig.axes
        x = _x(self.dates)
        cpu = np.asarray(self.cpu_max_pct, dtype=float)
        net = np.asarray(self.network_mb, dtype=float)
        cpu_ax.plot(x, cpu, color=FAST_COLOUR, linewidth=1.5, marker="o", markersize=2.5)
        cpu_ax.axhline(self.cpu_threshold_pct, color=UP_COLOUR, linewidth=1.0, linestyle="--",
                       label=f"{self.cpu_threshold_pct:g}% CPU")
        # Scaled to what it shows, not to 100%: an idle series at 1-5% is not flat on the
        # axis, and a day at 4.9% is told from the 5% line.
        cpu_top = float(np.nanmax(cpu, initial=0.0))
        cpu_ax.set_ylim(0, max(self.cpu_threshold_pct * 2.0, cpu_top * 1.1, 1.0))
        net_ax.set_ylabel(self.network_label, fontsize=8)
        legends = [cpu_ax]
        if np.isnan(net).all():
            # An ECS service has no network metric: say so rather than draw an empty panel.
            net_ax.set_ylim(0, 1)
            net_ax.yaxis.set_major_locator(NullLocator())
            net_ax.text(0.5, 0.5, "no network metric", transform=net_ax.transAxes,
                        ha="center", va="center", fontsize=8, color=OTHER_COLOUR)
        else:
            net_ax.yaxis.set_major_locator(AutoLocator())  # the frame may be an ECS plot's
            net_ax.plot(x, net, color=SLOW_COLOUR, linewidth=1.5, marker="o", markersize=2.5)
            net_ax.axhline(self.network_threshold_mb, color=UP_COLOUR, linewidth=1.0,
                           linestyle="--", label=f"{self.network_threshold_mb:g} MB a day")
            top = float(np.nanmax(net, initial=0.0))
            net_ax.set_ylim(0, max(self.network_threshold_mb * 2.0, top * 1.1))
            legends.append(net_ax)
        for ax in legends:
            _legend(ax, loc="upper right", fontsize=7, framealpha=0.9, edgecolor="none")
        if len(x):
            net_ax.set_xlim(x[0] - 0.5, x[-1] + 0.5)
        _title(cpu_ax, self.title, fontsize=9, y=None)
        _date_ticks(net_ax)
        return fig


PlotJob = (SpikePlot | TrendPlot | MtdPlot | DailyPlot | CoveragePlot | CommitmentPlot
           | UsageTimelinePlot | IdleMetricsPlot)
# The summaries' size follows their names: their bounding box is measured (see save_png).
TIGHT = (MtdPlot, DailyPlot)


# ---------------------------------------------------------------- drawing and saving


def save_png(fig: Figure, fh: IO[bytes], tight: bool = False) -> None:
    """`fig` as an RGB PNG into `fh`; `tight`: only what it draws, plus TIGHT_PAD_INCHES
    around, as savefig's bbox_inches="tight" would save it, measured once on the figure's
    canvas (made with room for it by `_frame`) instead of in a drawing pass of its own."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else _canvas_class()(fig)
    crop = (slice(None), slice(None))
    if tight:
        for ax in fig.axes:  # where the previous plot's crop moved them from
            ax.set_position(ax.get_subplotspec().get_position(fig))
        box = fig.get_tightbbox(canvas.get_renderer()).padded(TIGHT_PAD_INCHES)
        # Whole pixels, as savefig's (rounded first: the room around adds float error).
        width, height = int(round(box.width * DPI, 6)), int(round(box.height * DPI, 6))
        x0, y0 = box.x0 * DPI, box.y0 * DPI
        left, bottom = math.floor(x0), math.floor(y0)
        top = int(fig.bbox.height) - bottom - height
        if left < 0 or bottom < 0 or left + width > fig.bbox.width or top < 0:
            # Beyond the room left for it: savefig grows the canvas (slower).
            fig.savefig(fh, format="png", dpi=DPI, bbox_inches=box,
                        metadata={"Software": None},
                        pil_kwargs={"compress_level": PNG_COMPRESS_LEVEL})
            return
        # Move what is drawn by the box's fraction of a pixel, so that the crop starts on a
        # whole pixel where savefig's starts on a fraction: the same pixels.
        for ax in fig.axes:
            ax.set_position(ax.get_position().translated((left - x0) / fig.bbox.width,
                                                         (bottom - y0) / fig.bbox.height))
        crop = (slice(top, top + height), slice(left, left + width))
    canvas.draw()
    write_png(fh, np.asarray(canvas.buffer_rgba())[crop[0], crop[1], :3])


def write_png(fh: IO[bytes], rgb: np.ndarray, dpi: int = DPI) -> None:
    """An RGB image (height x width x 3, uint8) as a PNG: every row unfiltered, all of
    them deflated at zlib level PNG_COMPRESS_LEVEL. For a plot's flat colours that is no
    larger than Pillow's PNG (a filter chosen for each row), and written in half the
    time."""
    height, width, _ = rgb.shape
    rows = np.empty((height, 1 + 3 * width), dtype=np.uint8)
    rows[:, 0] = 0  # the row's filter: none
    # The pixels, copied once from wherever they are (a crop of an RGBA canvas, say).
    np.ndarray((height, width, 3), np.uint8, rows, 1, (rows.strides[0], 3, 1))[...] = rgb

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data)))

    per_metre = round(dpi / 0.0254)
    fh.write(b"\x89PNG\r\n\x1a\n"
             + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
             + chunk(b"pHYs", struct.pack(">IIB", per_metre, per_metre, 1))
             + chunk(b"IDAT", zlib.compress(rows, PNG_COMPRESS_LEVEL))
             + chunk(b"IEND", b""))


def draw_and_save(job: PlotJob, currency: str = "USD") -> float:
    """Draw one plot into its PNG, its amounts in `currency`; the milliseconds it took
    (runs in a worker process, which does not share the run's currency context)."""
    start = time.perf_counter()
    with warnings.catch_warnings(), in_currency(currency):
        # Emoji and CJK names lack glyphs in the default font; the page has the exact name.
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        fig = job.draw()
        with replacing(job.path, "wb") as fh:
            save_png(fig, fh, tight=isinstance(job, TIGHT))
    return (time.perf_counter() - start) * 1000.0


def import_matplotlib() -> None:
    """What drawing needs of matplotlib, imported now (by the process the plot workers are
    forked from, see `plot_workers`), not on the first drawing."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.backends.backend_agg  # noqa: F401
    import matplotlib.collections  # noqa: F401
    import matplotlib.dates  # noqa: F401
    import matplotlib.figure  # noqa: F401
    import matplotlib.ticker  # noqa: F401


class Drawing:
    """Plots drawn while their caller goes on: each job `add`ed goes to the run's workers
    at once (when it has them), so the caller writes its pages meanwhile. `finish` waits
    for them, draws what is left (no workers, or workers that failed) as `run_jobs` does
    without workers, and returns the milliseconds of each plot, in the order added. The
    amounts read in the currency current when the drawing was made."""

    def __init__(self, pool: PlotWorkers | None, workers: int) -> None:
        self._pool, self._workers = pool, workers
        self._currency = current_currency().code
        self._draw = partial(draw_and_save, currency=self._currency)
        self.jobs: list[PlotJob] = []
        self._futures: list[Future | None] = []

    def add(self, jobs: Iterable[PlotJob]) -> None:
        for job in jobs:
            self.jobs.append(job)
            self._futures.append(None if self._pool is None
                                 else self._pool.submit(self._draw, job))

    def finish(self) -> list[float]:
        done: list[float | None] = []
        broken = None
        for future in self._futures:
            try:
                done.append(None if future is None else future.result())
            except WorkersGone as exc:
                broken = exc
                done.append(None)
        if broken is not None:
            log.warning("the plot workers failed (%s); plotting in the run's process", broken)
        # Left by workers that failed: in the run's process (another pool may fail alike).
        workers = 1 if self._pool is not None else self._workers
        with in_currency(self._currency):
            left = iter(run_jobs([job for job, ms in zip(self.jobs, done) if ms is None],
                                 workers))
        return [next(left) if ms is None else ms for ms in done]


def run_jobs(jobs: Sequence[PlotJob], workers: int,
             pool: PlotWorkers | None = None) -> list[float]:
    """Render jobs, keeping their order, in the currency the caller formats amounts in:
    in `pool`'s workers when given (the run's, started early), else in `workers` new
    processes (serially for a few)."""
    if pool is not None:
        drawing = Drawing(pool, workers)
        drawing.add(jobs)
        return drawing.finish()
    if workers <= 1 or len(jobs) < MIN_PARALLEL_JOBS:
        draw = partial(draw_and_save, currency=current_currency().code)
        return [draw(job) for job in jobs]
    transient = PlotWorkers(min(workers, len(jobs))).start(take_early=False)
    try:
        return run_jobs(jobs, 1, transient)
    finally:
        transient.close()
