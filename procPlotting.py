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
import datetime as dt
import json
import logging
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import numpy as np
import pandas as pd

import procAmzAlerts
from _util import paths
from _util.paths import report_dir
from _util.site import pages as site_pages
from _util.site.plot_drawing import (OTHER, DailyPlot, MtdPlot, PlotJob, SpikePlot, TrendPlot, label,
                                run_jobs, service_colours)
from _util.alert_kinds import SPIKE_PLOT, kind_of, side
from _util.report import Alert, Report, report_to_dict
from _util.site.pages import AlertEntry, IndexEntry, SummaryEntry, money, signed_money
from _util.site.slugs import unique_slugs

log = logging.getLogger(__name__)

TOP_SERVICES = 12
TREND_WINDOW_DAYS = 120
RECENT_DAYS = 14
TITLE_CHARS = 90
# Alert plots per run (COST_TRACKING_MAX_ALERT_PLOTS): at ~0.1-0.2 s a plot, a day with
# hundreds of alerts (a large account) would otherwise spend minutes drawing plots that
# nobody opens. The Slack message links at most ~45 alerts, so 50 covers every button.
DEFAULT_MAX_ALERT_PLOTS = 50
NOT_PLOTTED_ID = "not-plotted"
_PLACEHOLDER = re.compile(r"https://plots\.invalid/(\d+)\.html")
SUMMARY_SLUGS = {"daily_by_service": "daily-by-service", "mtd_by_service": "mtd-by-service"}
_DATE_DIR = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class Rendered:
    """What render wrote: the report with its URLs, the files to upload, and timings."""

    report: Report
    files: list[Path]
    plots_rendered: int
    plot_ms: list[float]
    plot_wall_ms: float = 0.0
    alerts_not_plotted: int = 0


# ---------------------------------------------------------------- building jobs and pages


def alert_slugs(alerts: Sequence[Alert]) -> dict[tuple[str, str, str, str | None], str]:
    """The file name (without .png/.html) of each alert's plot and page, by alert key."""
    return unique_slugs(a.key for a in alerts)


def public_url(site_url: str | None, rel_path: str) -> str | None:
    """The absolute URL of a site path, or None when there is no site URL (no broken links)."""
    if not site_url:
        return None
    return f"{site_url.rstrip('/')}/{quote(rel_path, safe='/')}"


def _plot_title(alert: Alert, report: Report, baseline_days: int) -> str:
    head = label(site_pages.alert_label(alert), TITLE_CHARS)
    day = report.day.isoformat()
    if kind_of(alert.kind, alert.direction).plot == SPIKE_PLOT:
        z = "—" if alert.zscore is None else f"{alert.zscore:.1f}"
        detail = (f"spike {alert.direction} on {day}: {money(alert.usd)}, z = {z}, "
                  f"{signed_money(alert.delta_usd)} vs the {baseline_days}-day mean")
    else:
        detail = (f"trend {alert.direction} on {day}: {money(alert.usd)}, MACD crossed "
                  f"{side(alert.direction)} "
                  f"its signal, {signed_money(alert.delta_usd)} vs the {baseline_days}-day mean")
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
                out: Path) -> _AlertPlan:
    """The plot job and page of one alert, drawn from the series detection evaluated."""
    rules = report.rules
    baseline_days = max(len(series) - 1, 0)
    title = _plot_title(alert, report, baseline_days)
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
        lines = procAmzAlerts.macd_lines(series, rules).iloc[-TREND_WINDOW_DAYS:]
        job = TrendPlot(out / image, title, _dates(lines.index), lines["cost"].to_numpy(float),
                        lines["ema_fast"].to_numpy(float), lines["ema_slow"].to_numpy(float),
                        lines["macd"].to_numpy(float), lines["signal"].to_numpy(float),
                        (rules.ema_fast, rules.ema_slow, rules.signal_span), alert.direction)
        headers = ["Date", "Cost", f"EMA{rules.ema_fast}", f"EMA{rules.ema_slow}", "MACD", "Signal"]
        rows = [[d.date().isoformat(), money(r.cost), money(r.ema_fast), money(r.ema_slow),
                 money(r.macd), money(r.signal)]
                for d, r in lines.iloc[-RECENT_DAYS:].iterrows()]
    html = site_pages.plot_page(
        title=f"{kind.name.capitalize()}: {site_pages.alert_label(alert)}",
        day=report.day,
        image=image,
        alt=title.replace("\\$", "$"),
        sentence=site_pages.alert_sentence(alert, report, baseline_days),
        numbers=site_pages.alert_numbers(alert, report, baseline_days),
        recent_headers=headers,
        recent_rows=rows[::-1],
        recent_title=f"The last {len(rows)} days",
    )
    return _AlertPlan(alert, slug, job, html)


def top_services(report: Report, limit: int = TOP_SERVICES) -> list[str]:
    """The services shown by name in summaries: the largest month to date, in order."""
    ranked = sorted(report.summary.mtd_by_service, key=lambda s: (-s.usd, s.service))
    if len(ranked) <= limit + 1:  # an "Other" of one service would hide a name for nothing
        return [s.service for s in ranked]
    return [s.service for s in ranked[:limit]]


def _daily_grid(report: Report, names: list[str]) -> pd.DataFrame:
    """Spend per (name, day) of the month; services outside `names` summed as Other."""
    days = pd.date_range(report.day.replace(day=1), report.day, freq="D")
    daily = pd.DataFrame(list(report.summary.daily_by_service), columns=["day", "service", "usd"])
    if daily.empty:
        return pd.DataFrame(0.0, index=names, columns=days)
    daily["day"] = pd.to_datetime(daily["day"])
    daily["name"] = daily["service"].astype(object).where(daily["service"].isin(names), OTHER)
    grid = daily.pivot_table(index="name", columns="day", values="usd", aggfunc="sum")
    return grid.reindex(index=names, columns=days).fillna(0.0)


def _summary_plans(report: Report, out: Path) -> list[tuple[str, PlotJob, str]]:
    """(key, plot job, page html) of the two summaries; one colour per service in both."""
    top = top_services(report)
    names = [*top, OTHER]
    colours = service_colours(names)
    span = f"{report.day.replace(day=1).isoformat()} to {report.day.isoformat()}"
    ranked = sorted(report.summary.mtd_by_service, key=lambda s: (-s.usd, s.service))
    total = sum(s.usd for s in ranked)
    rest = ranked[len(top):]
    bars = [*((s.service, s.usd) for s in ranked[: len(top)]),
            *([(OTHER, sum(s.usd for s in rest))] if rest else [])]
    mtd_title = f"Month to date by service, {span}: {money(total)}" + (
        f" (top {len(top)}, {len(rest)} more as Other)" if rest else "")
    mtd = MtdPlot(out / f"{SUMMARY_SLUGS['mtd_by_service']}.png", label(mtd_title, 200),
                  tuple(n for n, _ in bars), tuple(v for _, v in bars),
                  tuple(colours[n] for n, _ in bars))

    grid = _daily_grid(report, names)
    shown = [n for n in names if n != OTHER or bool((grid.loc[OTHER] != 0).any())]
    daily = DailyPlot(out / f"{SUMMARY_SLUGS['daily_by_service']}.png",
                      label(f"Daily spend by service, {span}", 200), _dates(grid.columns),
                      tuple(shown), grid.loc[shown].to_numpy(float),
                      tuple(colours[n] for n in shown))
    named = grid.loc[top] if top else grid.iloc[0:0]
    largest = [(d.date(), named[d].idxmax() if len(named) and named[d].max() > 0 else None,
                float(grid[d].sum())) for d in grid.columns]
    return [
        ("daily_by_service", daily,
         site_pages.daily_page(report, daily.path.name, len(top), largest)),
        ("mtd_by_service", mtd,
         site_pages.mtd_page(report, mtd.path.name, mtd_title, ranked)),
    ]


def _index_entries(site_dir: Path) -> list[IndexEntry]:
    """Every reports/<date>/ with a page, with its headline numbers where readable."""
    entries = []
    reports = paths.reports_dir(site_dir)
    for folder in sorted(reports.iterdir() if reports.is_dir() else []):
        if not (_DATE_DIR.match(folder.name) and (folder / "index.html").is_file()):
            continue
        entry = IndexEntry(day=folder.name, href=f"{paths.REPORTS}/{folder.name}/{paths.REPORT_PAGE}")
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
    path = Path(site_dir) / "index.html"
    path.write_text(site_pages.site_index(_index_entries(Path(site_dir))), encoding="utf-8")
    return path


def _linked_from_message(report: Report) -> list[tuple[str, str, str, str | None]]:
    """The keys of the alerts the Slack message would link to a plot, in its order.

    The message is built from a copy whose alerts carry placeholder URLs; whatever
    placeholders it contains are the alerts it shows with a button or an inline link.
    """
    from _util.slack import message as slack_message

    keys = list(dict.fromkeys(a.key for a in report.alerts))
    number = {key: i for i, key in enumerate(keys)}
    probe = dataclasses.replace(report, alerts=tuple(
        dataclasses.replace(a, plot_url=f"https://plots.invalid/{number[a.key]}.html")
        for a in report.alerts))
    payload = json.dumps(slack_message.build_message(probe).blocks)
    linked = dict.fromkeys(int(i) for i in _PLACEHOLDER.findall(payload))
    return [keys[i] for i in linked]


def _size(alert: Alert) -> float:
    d = abs(alert.delta_usd)
    return d if math.isfinite(d) else 0.0


def alerts_to_plot(report: Report, limit: int | None) -> set[tuple[str, str, str, str | None]]:
    """The keys of the alerts that get a plot: all of them when they are `limit` or fewer
    (None: no limit); otherwise those the Slack message links first, then the largest
    absolute dollar changes, `limit` in all."""
    keys = list(dict.fromkeys(a.key for a in report.alerts))
    if limit is None or len(keys) <= limit:
        return set(keys)
    by_change = sorted(report.alerts, key=lambda a: -_size(a))
    ranked = dict.fromkeys([*_linked_from_message(report), *(a.key for a in by_change)])
    return set(list(ranked)[:max(limit, 0)])


def _not_plotted_note(missing: int, limit: int | None) -> str:
    noun = "alert has" if missing == 1 else "alerts have"
    return (f'<p class="note" id="{NOT_PLOTTED_ID}">{missing} {noun} no plot: a run draws '
            f"at most {limit} alert plots (COST_TRACKING_MAX_ALERT_PLOTS), those the Slack "
            "message links first, then the largest dollar changes. Their numbers are in "
            "report.json (and in the tables above, up to "
            f"{site_pages.SECTION_MAX_ROWS} a section).</p>\n")


def render(
    report: Report, history: pd.DataFrame, site_dir: Path, site_url: str | None,
    workers: int = 2, max_alert_plots: int | None = DEFAULT_MAX_ALERT_PLOTS,
) -> Rendered:
    """Plots, pages, report.json and the site index for the report's day.

    Returns a copy of the report with each alert's `plot_url`, the `summary_urls` and the
    `report_url` (absolute under `site_url`; None and {} without one), and every file
    written, for upload. The day's `slack.html` is linked but written by the Slack stage.

    At most `max_alert_plots` alerts get a plot and a page (None: every alert; see
    `alerts_to_plot`); the report page still lists them (up to SECTION_MAX_ROWS a section,
    plotted ones always), and those without a plot link to a note that says why (their `plot_url` is None, so Slack shows no button).
    """
    site_dir = Path(site_dir)
    out = report_dir(site_dir, report.day)
    out.mkdir(parents=True, exist_ok=True)
    rel_dir = paths.report_rel_dir(report.day)

    slugs = alert_slugs(report.alerts)
    chosen = alerts_to_plot(report, max_alert_plots)
    first = {}  # one plot per alert key, should the report hold a key twice
    for alert in report.alerts:
        if alert.key in chosen:
            first.setdefault(alert.key, alert)
    relevant = history[history["service"].isin({a.service for a in first.values()})]
    plans = [_plan_alert(a, slugs[key], procAmzAlerts.series_of(
                 relevant, report.day, report.rules, a.service, a.group), report, out)
             for key, a in first.items()]
    summaries = _summary_plans(report, out)
    jobs = [*(job for _, job, _ in summaries), *(p.job for p in plans)]

    start = time.perf_counter()
    plot_ms = run_jobs(jobs, workers)
    wall_ms = (time.perf_counter() - start) * 1000.0
    files: list[Path] = [job.path for job in jobs]
    for plan in plans:
        files.append(_write(out / f"{plan.slug}.html", plan.page_html))
    for key, _, html in summaries:
        files.append(_write(out / f"{SUMMARY_SLUGS[key]}.html", html))

    def url(name: str) -> str | None:
        return public_url(site_url, f"{rel_dir}/{name}")

    final = dataclasses.replace(
        report,
        alerts=tuple(dataclasses.replace(
            a, plot_url=url(f"{slugs[a.key]}.html") if a.key in first else None)
            for a in report.alerts),
        summary_urls={k: url(f"{s}.html") for k, s in SUMMARY_SLUGS.items()} if site_url else {},
        report_url=url("index.html"),
    )
    entries = [AlertEntry(a, f"{slugs[a.key]}.html", plotted=True) if a.key in first
               else AlertEntry(a, f"#{NOT_PLOTTED_ID}", plotted=False) for a in final.alerts]
    cards = [SummaryEntry(k, site_pages.SUMMARY_TITLES[k], f"{s}.html", f"{s}.png")
             for k, s in SUMMARY_SLUGS.items()]
    page = site_pages.report_page(final, entries, cards)
    missing = len({a.key for a in report.alerts} - set(first))
    if missing:
        body, end, rest = page.rpartition("</main>")
        page = body + _not_plotted_note(missing, max_alert_plots) + end + rest
        log.info("%d alerts without a plot (at most %s alert plots a run)", missing,
                 max_alert_plots)
    files.append(_write(out / "index.html", page))
    files.append(write_report_json(site_dir, final))
    files.append(write_site_index(site_dir))
    log.info("rendered %d plots in %.0f ms (median %.0f ms per plot, %d workers)",
             len(jobs), wall_ms, float(np.median(plot_ms)) if plot_ms else 0.0, workers)
    return Rendered(report=final, files=files, plots_rendered=len(jobs), plot_ms=plot_ms,
                    plot_wall_ms=wall_ms, alerts_not_plotted=missing)


def write_report_json(site_dir: Path, report: Report) -> Path:
    """report.json of the report's day: the one place it is written (the site index
    reads it back for the day's figures)."""
    path = paths.report_dir(site_dir, report.day) / paths.REPORT_JSON
    return _write(path, json.dumps(report_to_dict(report), indent=2, ensure_ascii=False) + "\n")


def _write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path
