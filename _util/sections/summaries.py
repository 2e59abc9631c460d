"""The summaries: month-to-date and daily spend by service, as plots with their pages,
thumbnails on the report page and two lines of the digest."""
from __future__ import annotations

import datetime as dt
from typing import Any, Sequence

import pandas as pd

from _util.report import Report, ServiceAmount
from _util.sections.base import Section, SiteContext, SitePart, SlackPart
from _util.site import pages
from _util.site.pages import SummaryEntry
from _util.site.plot_drawing import OTHER, DailyPlot, MtdPlot, label, service_colours
from _util.slack.blocks import (
    SUMMARY_NAME_CHARS,
    day_label,
    divider,
    money,
    mrkdwn_name,
    section,
)

TOP_SERVICES = 12  # services named in the plots; the rest are summed as Other
SUMMARY_TOP = 3  # services named in each line of the digest
SUMMARY_TITLE = "AWS Services Summary"
DAILY = "daily_by_service"
MTD = "mtd_by_service"
TITLES = {DAILY: "Daily Spend x Service", MTD: "Month to Date Spend x Service"}
SLUGS = {DAILY: "daily-by-service", MTD: "mtd-by-service"}


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


def mtd_page(report: Report, image: str, alt: str, ranked: Sequence[ServiceAmount]) -> str:
    """The month-to-date plot's page: every service's spend and share, not just the top."""
    h = report.summary.headline
    total = sum(s.usd for s in ranked)
    start = report.day.replace(day=1).isoformat()
    biggest = (f" The largest is {ranked[0].service} at {pages.money(ranked[0].usd)}."
               if ranked else "")
    rows = [[s.service, pages.money(s.usd), f"{100 * s.usd / total:.1f}%" if total > 0 else "—"]
            for s in ranked]
    return pages.plot_page(
        title=f"{TITLES[MTD]}, {report.day.isoformat()}",
        day=report.day, image=image, alt=alt,
        sentence=f"From {start} to {report.day.isoformat()} the account spent {pages.money(total)} "
                 f"across {len(ranked)} services.{biggest}",
        numbers=[("Month to date", pages.money(h.mtd_usd)),
                 ("Same days last month", pages.money(h.prev_mtd_usd)),
                 ("Month-end projection", pages.money(h.projection_usd))],
        recent_headers=["Service", "Month to date", "Share"], recent_rows=rows,
        recent_title="Every service",
    )


def daily_page(report: Report, image: str, named: int,
               days: Sequence[tuple[dt.date, str | None, float]]) -> str:
    """The daily plot's page; `days` are (day, largest named service or None, total)."""
    h = report.summary.headline
    day = report.day.isoformat()
    estimated = " (still estimated)" if h.estimated else ""
    rows = [[d.isoformat(), pages.money(total), service or "—"]
            for d, service, total in reversed(days)]
    return pages.plot_page(
        title=f"{TITLES[DAILY]}, {day}",
        day=report.day, image=image,
        alt=f"Daily spend by service, {report.day.replace(day=1).isoformat()} to {day}",
        sentence=f"Spend per day this month, stacked by service: the {named} largest services "
                 f"month to date by name, the rest as Other. On {day} the account spent "
                 f"{pages.money(h.day_usd)}{estimated}.",
        numbers=[(f"Spend on {day}", pages.money(h.day_usd)),
                 ("Mean of the 7 days before", pages.money(h.prev7_mean_usd))],
        recent_headers=["Date", "Total", "Largest named service"], recent_rows=rows,
        recent_title="Day by day",
    )



def summary_site(report: Report, site: SiteContext) -> SitePart:
    """The two summary plots and their pages; one colour per service in both."""
    out = site.out
    top = top_services(report)
    names = [*top, OTHER]
    colours = service_colours(names)
    span = f"{report.day.replace(day=1).isoformat()} to {report.day.isoformat()}"
    ranked = sorted(report.summary.mtd_by_service, key=lambda s: (-s.usd, s.service))
    total = sum(s.usd for s in ranked)
    rest = ranked[len(top):]
    bars = [*((s.service, s.usd) for s in ranked[: len(top)]),
            *([(OTHER, sum(s.usd for s in rest))] if rest else [])]
    mtd_title = f"Month to date by service, {span}: {pages.money(total)}" + (
        f" (top {len(top)}, {len(rest)} more as Other)" if rest else "")
    mtd = MtdPlot(out / f"{SLUGS[MTD]}.png", label(mtd_title, 200),
                  tuple(n for n, _ in bars), tuple(v for _, v in bars),
                  tuple(colours[n] for n, _ in bars))

    grid = _daily_grid(report, names)
    shown = [n for n in names if n != OTHER or bool((grid.loc[OTHER] != 0).any())]
    daily = DailyPlot(out / f"{SLUGS[DAILY]}.png",
                      label(f"Daily spend by service, {span}", 200),
                      pd.DatetimeIndex(grid.columns).to_numpy(dtype="datetime64[D]"),
                      tuple(shown), grid.loc[shown].to_numpy(float),
                      tuple(colours[n] for n in shown))
    named = grid.loc[top] if top else grid.iloc[0:0]
    largest = [(d.date(), named[d].idxmax() if len(named) and named[d].max() > 0 else None,
                float(grid[d].sum())) for d in grid.columns]
    cards = [SummaryEntry(k, TITLES[k], f"{s}.html", f"{s}.png") for k, s in SLUGS.items()]
    return SitePart(
        html=pages.report_summaries(SUMMARY_TITLE, cards),
        jobs=[daily, mtd],
        pages={f"{SLUGS[DAILY]}.html": daily_page(report, daily.path.name, len(top),
                                                        largest),
               f"{SLUGS[MTD]}.html": mtd_page(report, mtd.path.name, mtd_title, ranked)},
        urls={k: url for k, s in SLUGS.items() if (url := site.url(f"{s}.html"))},
    )


def _top_services_text(pairs: list[tuple[str, float]]) -> str:
    top = sorted(pairs, key=lambda p: -p[1])[:SUMMARY_TOP]
    if not top:
        return "no spend recorded"
    return " · ".join(f"{mrkdwn_name(s, SUMMARY_NAME_CHARS)} {money(u)}" for s, u in top)


class SummariesSection(Section):
    name = "summaries"

    def json_part(self, report: Report) -> dict[str, Any]:
        return {
            "mtd_by_service": [
                {"service": s.service, "usd": s.usd} for s in report.summary.mtd_by_service
            ],
            "daily_totals": [
                {"date": d.day.isoformat(), "usd": d.usd} for d in report.summary.daily_totals
            ],
            "summary_urls": {k: report.page_urls[k] for k in SLUGS if k in report.page_urls},
        }

    def site_part(self, report: Report, history: pd.DataFrame, site: SiteContext) -> SitePart:
        return summary_site(report, site)

    def slack_part(self, report: Report, account_label: str | None) -> SlackPart:
        summary = report.summary
        daily = [(s, u) for d, s, u in summary.daily_by_service if d == report.day]
        mtd = [(s.service, s.usd) for s in summary.mtd_by_service]
        return SlackPart(blocks=[
            section(f"*{SUMMARY_TITLE}*"),
            section(f"*{TITLES[DAILY]}*\nTop on {day_label(report.day)}: "
                    f"{_top_services_text(daily)}",
                    report.page_urls.get(DAILY), action_id="summary_daily"),
            section(f"*{TITLES[MTD]}*\nTop so far in {report.day:%B}: "
                    f"{_top_services_text(mtd)}",
                    report.page_urls.get(MTD), action_id="summary_mtd"),
            divider(),
        ])
