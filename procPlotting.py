"""Render the report: matplotlib plots and plain HTML pages in the static site folder.

`render` draws one plot per alert (a spike plot or a trend plot, whichever rule fired)
and the two summary plots, in parallel processes; writes a page per plot, the day's
report page, report.json and the site index; and returns a copy of the report whose
alerts carry their public `plot_url`. Figures are drawn from small picklable jobs holding
only the numbers each plot needs (`_util/site/plot_drawing.py`), so worker processes never
see the whole history.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from markupsafe import Markup

import procAmzAlerts
from _util import paths
from _util.alert_kinds import SPIKE_PLOT, kind_of, side
from _util.alert_words import baseline_text
from _util.atomic_files import write_text
from _util.paths import report_dir
from _util.report import Alert, AlertKey, Report
from _util.sections import ec2_usage, report_json, report_page, site_parts
from _util.sections.alerts import NOT_PLOTTED_ID, weight
from _util.sections.base import Section, SiteContext
from _util.settings import DEFAULT_MAX_ALERT_PLOTS
from _util.site import pages as site_pages
from _util.site.pages import IndexEntry, money, signed_money
from _util.site.plot_drawing import Drawing, PlotJob, SpikePlot, TrendPlot, label
from _util.site.plot_workers import PlotWorkers
from _util.site.slugs import unique_slugs
from _util.slack.message import linked_alert_keys

log = logging.getLogger(__name__)

TREND_WINDOW_DAYS = 120
RECENT_DAYS = 14
TITLE_CHARS = 90
# Alerts planned together: their trend lines come from one walk (macd_lines_of), and the
# first plots go to the workers after one block, not after every alert's series.
PLAN_BLOCK = 16
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Rendered:
    """What render wrote: the report with its URLs, the files to upload, and timings."""

    report: Report
    files: list[Path]
    plots_rendered: int
    plot_ms: list[float]
    alerts_not_plotted: int = 0
    # Each plotted alert's page, relative to the report's folder, by alert key.
    alert_pages: dict = dataclasses.field(default_factory=dict)


# ---------------------------------------------------------------- building jobs and pages


def alert_slugs(alerts: Sequence[Alert]) -> dict[AlertKey, str]:
    """The file name (without .png/.html) of each alert's plot and page, by alert key."""
    return unique_slugs(a.key for a in alerts)


def _plot_title(alert: Alert, report: Report, baseline: str) -> str:
    head = label(site_pages.alert_label(alert, isolate=False), TITLE_CHARS)
    day = report.day.isoformat()
    if kind_of(alert.kind, alert.direction).plot == SPIKE_PLOT:
        z = "—" if alert.zscore is None else f"{alert.zscore:.1f}"
        detail = (f"spike {alert.direction} on {day}: {money(alert.usd)}, z = {z}, "
                  f"{signed_money(alert.delta_usd)} vs the mean of {baseline}")
    else:
        moved = signed_money(alert.delta_usd) + " vs the mean"
        if alert.mean7 is not None:
            moved = (f"7-day average {money(alert.mean7)}/day, "
                     f"{site_pages.percent(alert.move_pct)} against 28 days")
        detail = (f"trend {alert.direction} on {day}: MACD crossed {side(alert.direction)} "
                  f"its signal; {moved}")
    return f"{head}\n{label(detail, 200)}"


def _dates(index: pd.Index) -> np.ndarray:
    return pd.DatetimeIndex(index).to_numpy(dtype="datetime64[D]")


@dataclass
class _AlertPlan:
    alert: Alert
    slug: str
    job: PlotJob
    page_html: str


def _plan_alert(alert: Alert, slug: str, series: pd.Series, report: Report,
                out: Path, trend_lines: pd.DataFrame | None) -> _AlertPlan:
    """The plot job and page of one alert, drawn from the series detection evaluated
    (for a trend, with `procAmzAlerts.macd_lines` of it: `trend_lines`)."""
    rules = report.rules
    baseline = baseline_text(rules, report.day, procAmzAlerts.baseline_days(series, rules))
    title = _plot_title(alert, report, baseline)
    image = f"{slug}.png"
    recent = series.iloc[-RECENT_DAYS:]
    kind = kind_of(alert.kind, alert.direction)
    if kind.plot == SPIKE_PLOT:
        job: PlotJob = SpikePlot(out / image, title, _dates(series.index), series.to_numpy(float),
                                 alert.baseline_mean, alert.baseline_std, rules.z, alert.direction)
        headers = ["Date", "Cost", "Against the mean"]
        rows = [[d.date().isoformat(), money(v), signed_money(v - alert.baseline_mean)]
                for d, v in recent.items()]
    else:
        lines = trend_lines.join(procAmzAlerts.moving_means(series))
        lines = lines.iloc[-TREND_WINDOW_DAYS:]
        job = TrendPlot(out / image, title, _dates(lines.index), lines["cost"].to_numpy(float),
                        lines["ema_fast"].to_numpy(float), lines["ema_slow"].to_numpy(float),
                        lines["macd"].to_numpy(float), lines["signal"].to_numpy(float),
                        (rules.ema_fast, rules.ema_slow, rules.signal_span), alert.direction,
                        lines["mean7"].to_numpy(float), lines["mean28"].to_numpy(float))
        headers = ["Date", "Cost", f"EMA{rules.ema_fast}", f"EMA{rules.ema_slow}", "MACD", "Signal"]
        recent_lines = lines.iloc[-RECENT_DAYS:]
        rows = [[d.date().isoformat(), *map(money, values)]
                for d, *values in zip(recent_lines.index, *(
                    recent_lines[name].tolist()
                    for name in ("cost", "ema_fast", "ema_slow", "macd", "signal")))]
    html = site_pages.plot_page(
        title=f"{kind.name.capitalize()}: {site_pages.alert_label(alert)}",
        day=report.day,
        image=image,
        alt=title.replace("\\$", "$"),
        sentence=site_pages.alert_sentence(alert, report, baseline),
        numbers=site_pages.alert_numbers(alert, report, baseline),
        recent_headers=headers,
        recent_rows=rows[::-1],
        recent_title=f"The last {len(rows)} days",
        links=_related_pages(alert, report),
    )
    return _AlertPlan(alert, slug, job, html)


def _related_pages(alert: Alert, report: Report) -> list[tuple[str, str]]:
    """Pages of the same day an alert's page links to: an EC2 alert's, the instances that
    ran (when the EC2 usage section has the day)."""
    if alert.service == ec2_usage.EC2_COMPUTE and report.sections.get(ec2_usage.NAME):
        return [(f"{ec2_usage.PAGE}.html", "The EC2 instances that ran on this day")]
    return []


def _index_entries(site_dir: Path) -> list[IndexEntry]:
    """Every reports/<date>/ with a page, with its headline numbers where readable."""
    entries = []
    reports = paths.reports_dir(site_dir)
    for folder in sorted(reports.iterdir() if reports.is_dir() else []):
        if not (_DATE_DIR.match(folder.name) and (folder / paths.REPORT_PAGE).is_file()):
            continue
        href = f"{paths.REPORTS}/{folder.name}/{paths.REPORT_PAGE}"
        entry = IndexEntry(day=folder.name, href=href)
        try:
            data = json.loads((folder / paths.REPORT_JSON).read_text(encoding="utf-8"))
            entry = dataclasses.replace(
                entry, total_usd=data["totals"]["day"], mtd_usd=data["totals"]["mtd"],
                alerts=len(data["alerts"]), estimated=bool(data.get("estimated")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("site index: no figures for %s (%s)", folder.name, exc)
        entries.append(entry)
    return entries


def write_site_index(site_dir: Path) -> Path:
    """Rebuild site_dir/index.html from the report folders present, latest first."""
    path = paths.site_index(site_dir)
    write_text(path, site_pages.site_index(_index_entries(Path(site_dir))))
    return path


def alerts_to_plot(report: Report, limit: int | None,
                   sections: Sequence[Section] | None = None) -> set[AlertKey]:
    """The keys of the alerts that get a plot: all of them when they are `limit` or fewer
    (None: no limit); otherwise those the Slack message links first, then the largest
    absolute dollar changes, `limit` in all."""
    keys = list(dict.fromkeys(a.key for a in report.alerts))
    if limit is None or len(keys) <= limit:
        return set(keys)
    by_change = sorted(report.alerts, key=lambda a: -weight(a))
    ranked = dict.fromkeys([*linked_alert_keys(report, sections), *(a.key for a in by_change)])
    return set(list(ranked)[:max(limit, 0)])


def _not_plotted_note(missing: int, limit: int | None) -> Markup:
    return site_pages.render_partial("report/not_plotted.html", id=NOT_PLOTTED_ID,
                                     missing=missing, limit=limit,
                                     rows=site_pages.SECTION_MAX_ROWS)


def render(
    report: Report, history: pd.DataFrame, site_dir: Path, site_url: str | None,
    workers: int = 2, max_alert_plots: int | None = DEFAULT_MAX_ALERT_PLOTS,
    sections: Sequence[Section] | None = None, pool: PlotWorkers | None = None,
) -> Rendered:
    """Plots, pages, report.json and the site index for the report's day.

    Returns a copy of the report with each alert's `plot_url`, the sections' `page_urls`
    and the `report_url` (absolute under `site_url`; None and {} without one), and every
    file written, for upload. The day's `slack.html` is linked but written by the Slack
    stage.

    The alerts' plots and pages are drawn here; each section (`_util/sections`) adds its
    own plots and pages and its part of the report page. At most `max_alert_plots`
    alerts get a plot and a page (None: every alert; see `alerts_to_plot`); the report
    page still lists them (up to SECTION_MAX_ROWS a section, plotted ones always), and
    those without a plot link to a note that says why (their `plot_url` is None, so
    Slack shows no button). The plots are drawn by `pool`, the run's plot workers when
    it has started them, else by `workers` processes started here.
    """
    site_dir = Path(site_dir)
    out = report_dir(site_dir, report.day)
    out.mkdir(parents=True, exist_ok=True)
    rel_dir = paths.report_rel_dir(report.day)

    slugs = alert_slugs(report.alerts)
    chosen = alerts_to_plot(report, max_alert_plots, sections)
    first = {}  # one plot per alert key, should the report hold a key twice
    for alert in report.alerts:
        if alert.key in chosen:
            first.setdefault(alert.key, alert)
    relevant = history[history["service"].isin({a.service for a in first.values()})]
    # Each plot is handed to the workers as soon as it is planned; the pages are made
    # while they draw.
    start = time.perf_counter()
    drawing = Drawing(pool, workers)
    plans = []
    keys = list(first)
    for lo in range(0, len(keys), PLAN_BLOCK):
        block = keys[lo:lo + PLAN_BLOCK]
        series = {key: procAmzAlerts.series_of(relevant, report.day, report.rules,
                                               first[key].service, first[key].group)
                  for key in block}
        trends = [key for key in block if kind_of(first[key].kind, first[key].direction).plot
                  != SPIKE_PLOT]
        trend_lines = dict(zip(trends, procAmzAlerts.macd_lines_of(
            [series[key] for key in trends], report.rules)))
        for key in block:
            plans.append(_plan_alert(first[key], slugs[key], series[key], report, out,
                                     trend_lines.get(key)))
            drawing.add([plans[-1].job])

    site = SiteContext(out, rel_dir, site_url, {key: f"{slugs[key]}.html" for key in first})
    final = dataclasses.replace(
        report,
        alerts=tuple(dataclasses.replace(a, plot_url=site.url(site.alert_pages[a.key])
                                         if a.key in first else None)
                     for a in report.alerts),
        report_url=site.url(paths.REPORT_PAGE),
    )
    parts = site_parts(final, history, site, sections)
    drawing.add(job for p in parts for job in p.jobs)
    final = dataclasses.replace(final, page_urls={k: v for p in parts for k, v in p.urls.items()})
    jobs = [*(job for p in parts for job in p.jobs), *(p.job for p in plans)]

    files: list[Path] = [job.path for job in jobs]
    for plan in plans:
        files.append(_write(out / f"{plan.slug}.html", plan.page_html))
    for part in parts:
        files.extend(_write(out / name, html) for name, html in part.pages.items())

    missing = len({a.key for a in report.alerts} - set(first))
    footer = []
    if missing:
        # Where the alerts without a plot link to, at the end of the page.
        footer.append(_not_plotted_note(missing, max_alert_plots))
        log.info("%d alerts without a plot (at most %s alert plots a run)", missing,
                 max_alert_plots)
    files.append(_write(out / paths.REPORT_PAGE, report_page(final, parts, footer)))
    files.append(write_report_json(site_dir, final, sections))
    files.append(write_site_index(site_dir))
    ms_by_job = dict(zip(map(id, drawing.jobs), drawing.finish()))
    plot_ms = [ms_by_job[id(job)] for job in jobs]
    wall_ms = (time.perf_counter() - start) * 1000.0
    log.info("planned and rendered %d plots and their pages in %.0f ms (median %.0f ms "
             "per plot, %d workers)",
             len(jobs), wall_ms, float(np.median(plot_ms)) if plot_ms else 0.0, workers)
    return Rendered(report=final, files=files, plots_rendered=len(jobs), plot_ms=plot_ms,
                    alerts_not_plotted=missing, alert_pages=dict(site.alert_pages))


def write_report_json(site_dir: Path, report: Report,
                      sections: Sequence[Section] | None = None) -> Path:
    """report.json of the report's day: the one place it is written (the site index
    reads it back for the day's figures)."""
    path = paths.report_dir(site_dir, report.day) / paths.REPORT_JSON
    document = report_json(report, sections)
    return _write(path, json.dumps(document, indent=2, ensure_ascii=False) + "\n")


def _write(path: Path, text: str) -> Path:
    return write_text(path, text)
