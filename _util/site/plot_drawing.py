"""The plots themselves: small picklable jobs that draw one matplotlib figure each.

A job holds only the numbers its plot needs (never the history), so `run_jobs` can hand
jobs to forked worker processes cheaply. Which plots a report gets, and the pages around
them, are `procPlotting`'s business.
"""
from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import time
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.collections import PolyCollection  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.ticker import FuncFormatter  # noqa: E402

from _util.alert_kinds import DOWN, UP  # noqa: E402
from _util.atomic_files import replacing  # noqa: E402
from _util.money import current_currency, in_currency  # noqa: E402
from _util.names import one_line  # noqa: E402

log = logging.getLogger(__name__)

DPI = 100
LABEL_CHARS = 40
MIN_PARALLEL_JOBS = 4

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


MONEY = FuncFormatter(_money_tick)


def _style(ax) -> None:
    ax.yaxis.set_major_formatter(MONEY)
    ax.grid(axis="y", alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8)


def _date_axis(ax) -> None:
    locator = mdates.AutoDateLocator(maxticks=10)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator))


def _bars(ax, x: np.ndarray, height: np.ndarray, width: float, colour, bottom=None,
          label: str | None = None, alpha: float = 1.0) -> PolyCollection:
    """Vertical bars as one collection: ax.bar makes an artist per bar, ~1 ms each."""
    h = np.asarray(height, dtype=float)
    b = np.zeros_like(h) if bottom is None else np.asarray(bottom, dtype=float)
    left, right = x - width / 2, x + width / 2
    verts = np.stack([np.column_stack(p) for p in
                      ((left, b), (left, b + h), (right, b + h), (right, b))], axis=1)
    bars = PolyCollection(verts, facecolors=colour, edgecolors="none", linewidths=0,
                          label=label, alpha=alpha)
    ax.add_collection(bars, autolim=True)
    ax.autoscale_view()
    return bars


def _headroom(ax, top: float, bottom: float = 0.0) -> None:
    """Leave the upper fifth of a panel free for its legend."""
    ax.set_ylim(bottom=min(0.0, bottom), top=top * 1.25 if top > 0 else 1.0)


# ---------------------------------------------------------------- plot jobs


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
        fig = Figure(figsize=(10, 4.2), dpi=DPI)
        ax = fig.add_subplot()
        x = mdates.date2num(self.dates)
        upper = self.mean + self.z * self.std
        lower = self.mean - self.z * self.std
        colours = np.where(self.cost >= upper, HIGHLIGHT, BAR).astype(object)
        if self.direction == DOWN:
            colours[self.cost <= lower] = HIGHLIGHT
        mark = UP_COLOUR if self.direction == UP else DOWN_COLOUR
        if len(colours):
            colours[-1] = mark
        _bars(ax, x, self.cost, 1.0, list(colours), label="daily cost")
        ax.axhline(self.mean, color="#34495e", linestyle="--", linewidth=1.2,
                   label=f"baseline mean {label(_money_tick(self.mean))}")
        ax.axhline(upper, color=UP_COLOUR, linewidth=1.2, label=f"mean + {self.z:g}·std")
        if self.direction == DOWN and lower > 0:
            ax.axhline(lower, color=DOWN_COLOUR, linewidth=1.2, label=f"mean − {self.z:g}·std")
        if len(x):
            ax.plot([x[-1]], [self.cost[-1]], marker="^" if self.direction == UP else "v",
                    color=mark, markersize=9, linestyle="none", label="the day")
            ax.set_xlim(x[0] - 1, x[-1] + 4)
        _headroom(ax, max([upper, *self.cost]), min([0.0, *self.cost]))
        ax.set_title(self.title, loc="left", fontsize=10, y=1.0)
        ax.legend(loc="upper left", fontsize=8, ncol=5, framealpha=0.9, edgecolor="none")
        _style(ax)
        _date_axis(ax)
        fig.subplots_adjust(left=0.08, right=0.98, top=0.86, bottom=0.09)
        return fig


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
        fig = Figure(figsize=(10, 5.6), dpi=DPI)
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 2]})
        x = mdates.date2num(self.dates)
        mark = UP_COLOUR if self.direction == UP else DOWN_COLOUR
        bar_colours = [BAR] * len(x)
        if bar_colours:
            bar_colours[-1] = mark
        _bars(top, x, self.cost, 1.0, bar_colours, label="daily cost")
        top.plot(x, self.ema_fast, color=FAST_COLOUR, linewidth=1.5, label=f"EMA{fast}")
        top.plot(x, self.ema_slow, color=SLOW_COLOUR, linewidth=1.5, label=f"EMA{slow}")
        # The averages the materiality gate compares on the day.
        if self.mean7 is not None and self.mean28 is not None:
            top.plot(x, self.mean7, color=MEAN7_COLOUR, linewidth=1.2, linestyle="--",
                     label="7-day average")
            top.plot(x, self.mean28, color=MEAN28_COLOUR, linewidth=1.2, linestyle=":",
                     label="28-day average")
        diff = self.macd - self.signal
        _bars(bottom, x, diff, 1.0, np.where(diff >= 0, DOWN_COLOUR, UP_COLOUR).tolist(),
              label="MACD − signal", alpha=0.45)
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
            top.set_xlim(x[0] - 1, x[-1] + 1)
            _headroom(top, float(max(self.cost.max(), self.ema_fast.max(), self.ema_slow.max())),
                      float(self.cost.min()))
            low = float(min(self.macd.min(), self.signal.min(), diff.min()))
            high = float(max(self.macd.max(), self.signal.max(), diff.max()))
            bottom.set_ylim(low - 0.1 * (high - low), high + 0.45 * (high - low) + 1e-9)
        top.set_title(self.title, loc="left", fontsize=10, y=1.0)
        for ax in (top, bottom):
            ax.legend(loc="upper left", fontsize=8, ncol=4, framealpha=0.9, edgecolor="none")
            _style(ax)
        _date_axis(bottom)
        fig.subplots_adjust(left=0.08, right=0.98, top=0.89, bottom=0.07, hspace=0.08)
        return fig


@dataclass(frozen=True)
class MtdPlot:
    """Month-to-date spend per service: sorted horizontal bars, the rest as Other."""

    path: Path
    title: str
    names: tuple[str, ...]
    usd: tuple[float, ...]
    colours: tuple[str, ...]

    def draw(self) -> Figure:
        n = max(len(self.names), 1)
        fig = Figure(figsize=(10, 1.3 + 0.34 * n), dpi=DPI)
        ax = fig.add_subplot()
        ypos = np.arange(len(self.names))
        bars = ax.barh(ypos, self.usd, color=list(self.colours), height=0.7)
        ax.set_yticks(ypos, labels=[label(s) for s in self.names], fontsize=9)
        ax.invert_yaxis()
        ax.bar_label(bars, labels=[_money_tick(v) for v in self.usd], padding=3, fontsize=8)
        ax.xaxis.set_major_formatter(MONEY)
        ax.grid(axis="x", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(axis="x", labelsize=8)
        ax.margins(x=0.12)
        ax.set_title(self.title, loc="left", fontsize=10, y=1.0)
        return fig


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
        fig = Figure(figsize=(10, 5.2), dpi=DPI)
        ax = fig.add_subplot()
        x = mdates.date2num(self.dates)
        up = np.zeros(len(x))
        down = np.zeros(len(x))
        for name, row, colour in zip(self.names, self.matrix, self.colours):
            _bars(ax, x, row, 0.8, colour, bottom=np.where(row >= 0, up, down), label=label(name))
            up = up + np.clip(row, 0, None)
            down = down + np.clip(row, None, 0)
        handles, labels_ = ax.get_legend_handles_labels()
        ax.legend(handles[::-1], labels_[::-1], loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  fontsize=8, frameon=False)
        if len(x):
            ax.set_xlim(x[0] - 0.6, x[-1] + 0.6)
            _headroom(ax, float(up.max()) / 1.1, float(down.min()))
        ax.xaxis.set_major_locator(mdates.DayLocator(interval=max(1, math.ceil(len(x) / 16))))
        ax.xaxis.set_major_formatter(mdates.DateFormatter("%d"))
        if len(self.dates):
            ax.set_xlabel(pd.Timestamp(self.dates[-1]).strftime("%B %Y"), fontsize=9)
        _style(ax)
        ax.set_title(self.title, loc="left", fontsize=10, y=1.0)
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
        fig = Figure(figsize=(10, 4.2), dpi=DPI)
        ax = fig.add_subplot()
        x = mdates.date2num(self.dates)
        pct = np.asarray(self.pct, dtype=float)
        prev7 = pd.Series(pct).shift(1).rolling(7, min_periods=1).mean().to_numpy()
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
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f}%"))
        ax.grid(axis="y", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=8)
        ax.set_title(self.title, loc="left", fontsize=10, y=1.0)
        ax.legend(loc="upper left", fontsize=8, ncol=3, framealpha=0.9, edgecolor="none")
        _date_axis(ax)
        fig.subplots_adjust(left=0.08, right=0.98, top=0.86, bottom=0.09)
        return fig


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
        fig = Figure(figsize=(10, 4.2), dpi=DPI)
        ax = fig.add_subplot()
        x = mdates.date2num(self.dates)
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
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f}%"))
        ax.grid(axis="y", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=8)
        ax.set_title(self.title, loc="left", fontsize=10, y=1.0)
        ax.legend(loc="upper left", fontsize=8, ncol=4, framealpha=0.9, edgecolor="none")
        _date_axis(ax)
        fig.subplots_adjust(left=0.08, right=0.98, top=0.86, bottom=0.09)
        return fig


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
        rows = max(len(self.labels), 1)
        fig = Figure(figsize=(10, 1.3 + 0.22 * rows), dpi=DPI)
        ax = fig.add_subplot()
        for y, (spans, spot) in enumerate(zip(self.intervals, self.spot)):
            ax.broken_barh([(start, end - start) for start, end in spans], (y - 0.38, 0.76),
                           facecolors=SLOW_COLOUR if spot else FAST_COLOUR)
        running = [y for y, still in enumerate(self.still_running) if still]
        if running:
            ax.plot([24.15] * len(running), running, marker=">", color=UP_COLOUR,
                    linestyle="none", markersize=5, label="still running at 24:00")
        ax.bar([0], [0], color=FAST_COLOUR, label="on-demand")
        ax.bar([0], [0], color=SLOW_COLOUR, label="spot")
        ax.set_xlim(0, 24.5)
        ax.set_ylim(rows - 0.5, -0.5)
        ax.set_xticks(range(0, 25, 3), [f"{h:02d}:00" for h in range(0, 25, 3)])
        ax.set_yticks(range(len(self.labels)), list(self.labels))
        ax.grid(axis="x", alpha=0.3)
        ax.spines[["top", "right"]].set_visible(False)
        ax.tick_params(labelsize=7)
        ax.set_title(self.title, loc="left", fontsize=10)
        ax.legend(loc="lower right", bbox_to_anchor=(1.0, 1.0), fontsize=8, ncol=3,
                  frameon=False)
        fig.subplots_adjust(left=0.24, right=0.98, top=1 - 0.5 / fig.get_figheight(),
                            bottom=0.4 / fig.get_figheight())
        return fig


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
    network_mb: np.ndarray  # NaN on a day without a datapoint (always NaN for ECS/EKS)
    cpu_threshold_pct: float
    network_threshold_mb: float

    def draw(self) -> Figure:
        fig = Figure(figsize=(8, 3.6), dpi=DPI)
        cpu_ax, net_ax = fig.subplots(2, 1, sharex=True)
        x = mdates.date2num(self.dates)
        cpu = np.asarray(self.cpu_max_pct, dtype=float)
        net = np.asarray(self.network_mb, dtype=float)
        cpu_ax.plot(x, cpu, color=FAST_COLOUR, linewidth=1.5, marker="o", markersize=2.5)
        cpu_ax.axhline(self.cpu_threshold_pct, color=UP_COLOUR, linewidth=1.0, linestyle="--",
                       label=f"{self.cpu_threshold_pct:g}% CPU")
        cpu_ax.set_ylim(0, max(100.0, float(np.nanmax(cpu, initial=0.0)) * 1.05))
        cpu_ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos: f"{v:.0f}%"))
        cpu_ax.set_ylabel("max CPU", fontsize=8)
        net_ax.plot(x, net, color=SLOW_COLOUR, linewidth=1.5, marker="o", markersize=2.5)
        net_ax.axhline(self.network_threshold_mb, color=UP_COLOUR, linewidth=1.0,
                       linestyle="--", label=f"{self.network_threshold_mb:g} MB a day")
        top = float(np.nanmax(net, initial=0.0))
        net_ax.set_ylim(0, max(self.network_threshold_mb * 2.0, top * 1.1))
        net_ax.set_ylabel("network MB", fontsize=8)
        for ax in (cpu_ax, net_ax):
            ax.grid(axis="y", alpha=0.3)
            ax.spines[["top", "right"]].set_visible(False)
            ax.tick_params(labelsize=7)
            ax.legend(loc="upper right", fontsize=7, framealpha=0.9, edgecolor="none")
        if len(x):
            net_ax.set_xlim(x[0] - 0.5, x[-1] + 0.5)
        cpu_ax.set_title(self.title, loc="left", fontsize=9)
        _date_axis(net_ax)
        fig.subplots_adjust(left=0.1, right=0.98, top=0.9, bottom=0.1, hspace=0.15)
        return fig


PlotJob = (SpikePlot | TrendPlot | MtdPlot | DailyPlot | CoveragePlot | CommitmentPlot
           | UsageTimelinePlot | IdleMetricsPlot)


def draw_and_save(job: PlotJob, currency: str = "USD") -> float:
    """Draw one plot into its PNG, its amounts in `currency`; the milliseconds it took
    (runs in a worker process, which does not share the run's currency context)."""
    start = time.perf_counter()
    with warnings.catch_warnings(), in_currency(currency):
        # Emoji and CJK names lack glyphs in the default font; the page has the exact name.
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        fig = job.draw()
        tight = isinstance(job, (MtdPlot, DailyPlot))
        with replacing(job.path, "wb") as fh:
            fig.savefig(fh, format="png", dpi=DPI, bbox_inches="tight" if tight else None,
                        metadata={"Software": None})
    return (time.perf_counter() - start) * 1000.0


def run_jobs(jobs: Sequence[PlotJob], workers: int) -> list[float]:
    """Render jobs in `workers` processes (serially for a few), keeping their order, in
    the currency the caller formats amounts in."""
    draw = partial(draw_and_save, currency=current_currency().code)
    if workers <= 1 or len(jobs) < MIN_PARALLEL_JOBS:
        return [draw(job) for job in jobs]
    methods = multiprocessing.get_all_start_methods()
    # fork: workers inherit imported matplotlib instead of importing it again (~1 s each).
    context = multiprocessing.get_context("fork" if "fork" in methods else None)
    try:
        with ProcessPoolExecutor(max_workers=min(workers, len(jobs)), mp_context=context) as pool:
            return list(pool.map(draw, jobs))
    except (BrokenProcessPool, OSError) as exc:
        log.warning("parallel plotting failed (%s); plotting serially", exc)
        return [draw(job) for job in jobs]
