"""Every plot type still looks as it did: each is drawn from fixed inputs and compared with
its PNG as drawn before the drawing code was made faster (tests/plot_references/).

Not byte for byte (anti-aliasing moves with matplotlib's version and with how a picture
is put together): each colour channel of both images is averaged over 4x4 pixel blocks,
and the mean absolute difference must stay under LIKENESS_LIMIT of full scale; no block
may differ by more than BLOCK_LIMIT (a legend, a line or a bar that moved or went
missing changes a few blocks a lot). The sizes must be equal. (When the references were
made, the faster drawing matched them pixel for pixel.) After a change meant to change
how a plot looks, rewrite the references with COST_TRACKING_TEST_UPDATE_PLOT_REFERENCES=1
and look at them first.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import os
import shutil
from collections import OrderedDict
from pathlib import Path

import matplotlib.image as mpimg
import numpy as np
import pytest

from _util.alert_kinds import DOWN, UP
from _util.site import plot_drawing
from _util.site.plot_drawing import (
    CommitmentPlot,
    CoveragePlot,
    DailyPlot,
    IdleMetricsPlot,
    MtdPlot,
    SpikePlot,
    TrendPlot,
    UsageTimelinePlot,
    draw_and_save,
    label,
    service_colours,
)

REFERENCES = Path(__file__).resolve().parent / "plot_references"
# Read at import: the clean_env fixture clears COST_TRACKING_* variables.
UPDATE = bool(os.environ.get("COST_TRACKING_TEST_UPDATE_PLOT_REFERENCES"))
BLOCK = 4
LIKENESS_LIMIT = 0.01  # mean absolute difference of the 4x4 block means, of full scale
BLOCK_LIMIT = 0.25  # the largest difference of one block, of full scale
DAY = dt.date(2026, 11, 21)


# ---------------------------------------------------------------- fixed inputs


def _days(n: int, last: dt.date = DAY) -> np.ndarray:
    return np.arange(np.datetime64(last) - np.timedelta64(n - 1, "D"),
                     np.datetime64(last) + np.timedelta64(1, "D"), dtype="datetime64[D]")


def _ema(values: np.ndarray, span: int) -> np.ndarray:
    alpha = 2.0 / (span + 1.0)
    out = np.empty_like(values)
    acc = values[0]
    for i, v in enumerate(values):
        acc = alpha * v + (1 - alpha) * acc
        out[i] = acc
    return out


def _title(*lines: str) -> str:
    return "\n".join(label(line, 200) for line in lines)


def plot_jobs(folder: Path, seed: int = 20) -> dict[str, plot_drawing.PlotJob]:
    """One job of every plot type, from inputs a seeded generator makes (the same on every
    machine), with the shapes a real run gives them: a year of daily cost for a spike, 120
    days for a trend, 12 services and Other for the summaries."""
    rng = np.random.default_rng(seed)
    jobs: dict[str, plot_drawing.PlotJob] = {}

    days = _days(365)
    weekly = 1.0 + 0.15 * (np.arange(365) % 7 < 5)
    cost = 180.0 * weekly * (1 + 0.06 * rng.standard_normal(365))
    cost[200:230] *= 1.3
    cost[-1] = 410.0
    base = cost[-29:-1]
    jobs["spike"] = SpikePlot(
        folder / "spike.png",
        _title("Amazon Elastic Compute Cloud - Compute · team-web",
               "spike up on 2026-11-21: $410.00, z = 6.1, +$205.12 vs the mean of 28 days"), days, cost, float(base.mean()),
        float(base.std()), 3.0, UP)
    low = cost.copy()
    low[-1] = 40.0
    jobs["spike_down"] = SpikePlot(
        folder / "spike_down.png",
        _title("Amazon S3", "spike down on 2026-11-21: $40.00, z = −5.2"),
        days, low, float(base.mean()), float(base.std()), 3.0, DOWN)

    t_days = _days(120)
    level = np.concatenate([np.full(80, 95.0), np.linspace(95.0, 150.0, 40)])
    t_cost = level * (1 + 0.05 * rng.standard_normal(120))
    fast, slow = _ema(t_cost, 12), _ema(t_cost, 26)
    macd = fast - slow
    signal = _ema(macd, 9)
    mean7 = np.convolve(t_cost, np.ones(7) / 7, mode="full")[:120]
    mean28 = np.convolve(t_cost, np.ones(28) / 28, mode="full")[:120]
    jobs["trend"] = TrendPlot(
        folder / "trend.png",
        _title("Amazon Relational Database Service",
               "trend up on 2026-11-21: MACD crossed above its signal; 7-day average "
               "$141.20/day, +18.3% against 28 days"),
        t_days, t_cost, fast, slow, macd, signal, (12, 26, 9), UP, mean7, mean28)

    names = [f"Amazon Service {chr(65 + i)}" for i in range(12)] + ["Other"]
    colours = service_colours(names)
    mtd = np.sort(rng.uniform(80.0, 9000.0, 13))[::-1]
    jobs["mtd"] = MtdPlot(folder / "mtd.png", _title("Month to date by service, 2026-11-01 "
                                                     "to 2026-11-21: $31,402.18"), tuple(names), tuple(float(v) for v in mtd),
                          tuple(colours[n] for n in names))
    d_days = _days(21)
    matrix = rng.uniform(0.2, 1.0, (13, 21)) * (mtd[:, None] / 21.0)
    matrix[5, 10] = -120.0  # a credit stacks down
    jobs["daily"] = DailyPlot(folder / "daily.png", "Daily spend by service, 2026-11-01 to "
                              "2026-11-21", d_days, tuple(names), matrix,
                              tuple(colours[n] for n in names))

    c_days = _days(90)
    pct = np.clip(88.0 + 2.0 * rng.standard_normal(90), 0, 100)
    pct[[30, 31]] = np.nan
    pct[-1] = 71.0
    jobs["coverage"] = CoveragePlot(folder / "coverage.png", "Share of spend tagged team, "
                                    "2026-08-24 to 2026-11-21: 71.0%", c_days, pct, True)

    util = np.clip(93.0 + 4.0 * rng.standard_normal(90), 0, 100)
    util[60:66] = [72.0, 70.5, 78.0, 79.9, 76.0, 74.0]
    util[10] = np.nan
    cover = np.clip(64.0 + 3.0 * rng.standard_normal(90), 0, 100)
    jobs["commitment"] = CommitmentPlot(folder / "commitment.png", "Savings Plans: "
                                        "utilisation and coverage, last 90 days", c_days,
                                        util, cover, 80.0)

    labels, intervals, spot, running = [], [], [], []
    for i in range(14):
        start = float(rng.uniform(0.0, 16.0))
        first = (start, min(24.0, start + float(rng.uniform(1.0, 9.0))))
        spans = (first,) if i % 3 else (first, (min(23.5, first[1] + 1.0), 24.0))
        labels.append(f"web-{i:02d} · eu-west-1" if i % 4 else f"i-0abc{i:04d}def · us-east-1")
        intervals.append(spans)
        spot.append(i % 5 == 2)
        running.append(spans[-1][1] >= 24.0)
    jobs["usage_timeline"] = UsageTimelinePlot(
        folder / "usage_timeline.png", "EC2 instances on 2026-11-21: 14 ran (4 spot)",
        tuple(labels), tuple(intervals), tuple(spot), tuple(running))

    i_days = _days(30)
    cpu = np.clip(3.0 + 1.5 * rng.standard_normal(30), 0.2, None)
    cpu[[4, 5]] = np.nan
    net = np.clip(12.0 + 5.0 * rng.standard_normal(30), 0.5, None)
    net[[4, 5, 17]] = np.nan
    jobs["idle_metrics"] = IdleMetricsPlot(
        folder / "idle_metrics.png", "i-0abc1234def (batch-runner) · eu-west-1: idle 28 of "
        "30 days", i_days, cpu, net, 5.0, 50.0)
    return jobs


def edge_jobs(folder: Path) -> dict[str, plot_drawing.PlotJob]:
    """Plots of little or no data (a series without history, an account without cost, a
    day without instances): scaled as on new axes, whatever was drawn before them."""
    none = np.array([], dtype="datetime64[D]")
    nothing = np.array([], dtype=float)
    day = np.array([np.datetime64(DAY)])
    one = np.array([12.5])
    return {
        "edge_spike_empty": SpikePlot(folder / "edge_spike_empty.png", "Vanished", none,
                                      nothing, 0.0, 0.0, 3.0, UP),
        "edge_trend_one_day": TrendPlot(folder / "edge_trend_one_day.png", "New", day, one,
                                        one, one, one - 12.0, one - 11.0, (12, 26, 9), DOWN),
        "edge_mtd_empty": MtdPlot(folder / "edge_mtd_empty.png", "Nothing yet", (), (), ()),
        "edge_daily_empty": DailyPlot(folder / "edge_daily_empty.png", "Nothing yet", none, (),
                                      np.zeros((0, 0)), ()),
        "edge_usage_timeline_empty": UsageTimelinePlot(
            folder / "edge_usage_timeline_empty.png", "No instances", (), (), (), ()),
    }


def all_jobs(folder: Path) -> dict[str, plot_drawing.PlotJob]:
    return {**plot_jobs(folder), **edge_jobs(folder)}


# ---------------------------------------------------------------- the measure


def colour_blocks(path: Path, block: int = BLOCK) -> np.ndarray:
    """The image's red, green and blue as 0..1, each `block` x `block` square averaged
    (edges that do not fill a block are dropped)."""
    image = mpimg.imread(path)  # PNG: float 0..1, RGB or RGBA
    rgb = image[..., :3]
    if image.shape[-1] == 4:  # composite on white, as a page shows it
        alpha = image[..., 3:4]
        rgb = rgb * alpha + (1.0 - alpha)
    h, w = (rgb.shape[0] // block) * block, (rgb.shape[1] // block) * block
    return rgb[:h, :w].reshape(h // block, block, w // block, block, 3).mean(axis=(1, 3))


@dataclasses.dataclass(frozen=True)
class Likeness:
    same_size: bool
    mean_diff: float  # of full scale
    max_block_diff: float

    @property
    def alike(self) -> bool:
        return (self.same_size and self.mean_diff < LIKENESS_LIMIT
                and self.max_block_diff < BLOCK_LIMIT)


def likeness(a: Path, b: Path) -> Likeness:
    """How alike two PNGs look (see the module's docstring)."""
    size_a, size_b = mpimg.imread(a).shape[:2], mpimg.imread(b).shape[:2]
    if size_a != size_b:
        return Likeness(False, 1.0, 1.0)
    diff = np.abs(colour_blocks(a) - colour_blocks(b))
    return Likeness(True, float(diff.mean()), float(diff.max()))


# ---------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("plots")
    out = {}
    for name, job in all_jobs(folder).items():
        draw_and_save(job)
        out[name] = job.path
        if UPDATE:
            REFERENCES.mkdir(exist_ok=True)
            shutil.copyfile(job.path, REFERENCES / f"{name}.png")
    return out


@pytest.mark.parametrize("name", sorted(all_jobs(Path("."))))
def test_each_plot_type_looks_as_it_did_before(drawn, name):
    reference = REFERENCES / f"{name}.png"
    assert reference.is_file(), f"no reference for {name}: run with " \
                                "COST_TRACKING_TEST_UPDATE_PLOT_REFERENCES=1"
    found = likeness(drawn[name], reference)
    assert found.same_size, (mpimg.imread(drawn[name]).shape, mpimg.imread(reference).shape)
    assert found.alike, found


def test_every_plot_type_has_a_reference():
    kinds = {type(job) for job in plot_jobs(Path(".")).values()}
    assert all((REFERENCES / f"{name}.png").is_file() for name in all_jobs(Path(".")))
    assert kinds == set(plot_drawing.PlotJob.__args__)


def test_the_measure_tells_a_different_series_apart(drawn, tmp_path):
    """The same costs, the summer's rise moved to the spring, in the same frame with the
    same legend and title: not alike. (Nor is another year of noise, seed 21.)"""
    job = plot_jobs(tmp_path)["spike"]
    cost = job.cost.copy()
    cost[:-1] = np.roll(cost[:-1], -90)
    moved = dataclasses.replace(job, cost=cost)
    draw_and_save(moved)
    assert likeness(drawn["spike"], drawn["spike"]).mean_diff == 0.0
    assert not likeness(moved.path, REFERENCES / "spike.png").alike
    noise = plot_jobs(tmp_path / "other", seed=21)["spike"]
    draw_and_save(noise)
    assert not likeness(noise.path, REFERENCES / "spike.png").alike


def test_the_measure_tells_a_missing_legend_entry_apart(tmp_path):
    """A small change a reader would notice: the trend plot without its 28-day average."""
    job = plot_jobs(tmp_path)["trend"]
    changed = dataclasses.replace(job, mean7=None, mean28=None)
    draw_and_save(changed)
    assert not likeness(changed.path, REFERENCES / "trend.png").alike


def test_the_measure_tells_a_resized_picture_apart(tmp_path):
    job = plot_jobs(tmp_path)["mtd"]
    fewer = dataclasses.replace(job, names=job.names[:-1], usd=job.usd[:-1],
                                colours=job.colours[:-1])
    draw_and_save(fewer)
    assert not likeness(fewer.path, REFERENCES / "mtd.png").same_size


def test_a_figure_drawn_again_after_other_plots_is_the_same_picture(tmp_path, monkeypatch):
    """Each process reuses one figure per plot type: nothing of a plot may stay behind
    for the next (a spike down's third line, a longer legend, other limits)."""
    monkeypatch.setattr(plot_drawing, "_FRAMES", OrderedDict())  # new figures first
    first = all_jobs(tmp_path / "first")
    for job in first.values():
        draw_and_save(job)
    for job in plot_jobs(tmp_path / "other", seed=5).values():
        other = dataclasses.replace(job, title="Another " + job.title)
        draw_and_save(other)
    again = all_jobs(tmp_path / "again")
    for name, job in reversed(again.items()):  # the edge cases right after full plots
        draw_and_save(job)
        assert mpimg.imread(job.path).tolist() == mpimg.imread(first[name].path).tolist(), name


def _long_title(job):
    return dataclasses.replace(job, title=label("A title longer than the figure " * 8, 200))


@pytest.mark.parametrize(("name", "change"), [("mtd", None), ("daily", None),
                                              ("mtd", _long_title)])
def test_a_summary_is_cropped_to_the_pixels_savefig_tight_gives(tmp_path, name, change):
    """The summaries' size follows what they draw: save_png crops the figure's canvas
    where savefig(bbox_inches="tight") would, without its second drawing pass (or calls
    it, for a plot wider than the room its canvas has)."""
    job = plot_jobs(tmp_path)[name]
    job = change(job) if change else job
    fig = job.draw()
    fig.savefig(tmp_path / "tight.png", format="png", dpi=plot_drawing.DPI,
                bbox_inches="tight")
    with open(tmp_path / "ours.png", "wb") as fh:
        plot_drawing.save_png(fig, fh, tight=True)
    ours, tight = mpimg.imread(tmp_path / "ours.png"), mpimg.imread(tmp_path / "tight.png")
    assert ours.shape[:2] == tight.shape[:2]
    assert np.abs(ours[..., :3] - tight[..., :3]).max() == 0.0


def test_a_png_written_by_write_png_reads_back_pixel_for_pixel_with_its_dpi(tmp_path):
    from PIL import Image

    rgb = np.random.default_rng(3).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    with open(tmp_path / "image.png", "wb") as fh:
        plot_drawing.write_png(fh, rgb[:, 1:-1])  # a view, as a crop of the canvas is
    with Image.open(tmp_path / "image.png") as image:
        image.load()  # checks every chunk's CRC and the data's length
        assert image.mode == "RGB" and image.info["dpi"] == pytest.approx((100, 100), abs=0.01)
        assert np.array_equal(np.asarray(image), rgb[:, 1:-1])
