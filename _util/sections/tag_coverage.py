"""The Tag coverage section: how much of the spend carries a cost-allocation tag
(COST_TRACKING_COVERAGE_TAG, e.g. Spend_Category), so untagged spend is noticed before a
month of it needs explaining.

`analyse` gets the day's rows (`_util/sources/tag_coverage.py`: from the stored costs
when the bot groups by that tag, else from a Cost Explorer request of its own, fetched
incrementally; only stored rows when the run does not fetch; nothing, in one log line,
from a source that cannot group by a tag apart from the costs, such as the Cost and Usage
Report) and computes the figures (`_util/tag_coverage.py`). It shows them as report.json's
`tag_coverage`, a digest section (the share, its change over 30 days, the five services
with the most untagged spend month to date, an alert line when the share dropped more
than COST_TRACKING_COVERAGE_DROP_PCT points below the mean of the 7 days before), and a
page with a plot of the last 90 days and a table of every service.

Route slices: `coverage_for(report.sections["tag_coverage"], services)` (re-exported
here from `_util/tag_coverage.py`) recomputes every figure for the services a predicate
picks, e.g. `coverage_for(coverage, lambda s: fnmatch(s, route.service))`; a route's
digest shows that slice with `coverage_blocks(slice, page_url)`.
"""
from __future__ import annotations

import datetime as dt
import logging
from typing import Any

import numpy as np
import pandas as pd

from _util.errors import SourceError
from _util.names import isolated, one_line
from _util.report import Report
from _util.sections.base import DayContext, Section, SiteContext, SitePart, SlackPart
from _util.site import pages
from _util.site.plot_drawing import CoveragePlot, label
from _util.slack.blocks import (
    SUMMARY_NAME_CHARS,
    day_label,
    divider,
    escape_mrkdwn,
    money,
    mrkdwn_name,
    section,
    strong,
)
from _util.sources.base import CostQuery
from _util.sources.tag_coverage import is_cost_explorer_like, refresh_coverage
from _util.store.tag_coverage import CoverageRow, load_coverage, tag_grouping
from _util.tag_coverage import (
    CHANGE_DAYS,
    COVERAGE_DAYS,
    TagCoverage,
    coverage_figures,
    coverage_for,
    rows_from_history,
)

__all__ = ["TagCoverageSection", "TagCoverage", "coverage_for", "coverage_blocks",
           "coverage_json"]

log = logging.getLogger(__name__)

NAME = "tag_coverage"
PAGE = "tag-coverage"  # its page and plot in the report's folder
TOP_UNTAGGED = 5  # services named in the digest and on the report page


# ---------------------------------------------------------------- getting the rows


def _coverage_rows(ctx: DayContext, tag: str) -> tuple[list[CoverageRow], str, str | None] | None:
    """The rows for the COVERAGE_DAYS days ending on the report's day, where they came
    from, and a note on what went wrong getting them; None when there are none to show.

    Nothing is fetched for a stale report (the source just failed) or a run that does not
    fetch; a failed coverage request leaves the stored rows to show, with a note, because
    the digest matters more than this one section."""
    s = ctx.settings
    day = ctx.job.report_day
    first = day - dt.timedelta(days=COVERAGE_DAYS - 1)
    if s.group_by == tag_grouping(tag):
        return rows_from_history(ctx.history, first, day, ctx.report.currency), "costs", None
    note = None
    if ctx.clients.fetches and not ctx.job.stale:
        source = ctx.clients.source
        if not is_cost_explorer_like(source):
            log.info("no tag coverage of %s: the %s source cannot group the spend by a tag "
                     "apart from the costs; set COST_TRACKING_GROUP_BY=TAG:%s to compute it "
                     "from them", tag, source.name, tag)
            return None
        query = CostQuery(s.metric, s.group_by, s.exclude_record_types)
        try:
            refresh = refresh_coverage(ctx.engine, source, query, tag, day=day,
                                       today=ctx.job.run_day + dt.timedelta(days=1))
            ctx.requests.add(NAME, refresh.requests)
        except SourceError as exc:
            ctx.requests.add(NAME, exc.requests)
            log.error("tag coverage of %s could not be fetched (%s); showing what is stored",
                      tag, exc)
            note = (f"Tag coverage could not be fetched for this run ({exc}); figures are "
                    "from what earlier runs stored.")
        else:
            rows = load_coverage(ctx.engine, s.metric, tag, first, day)
            return rows, "cost-explorer", None
    rows = load_coverage(ctx.engine, s.metric, tag, first, day)
    if not rows:
        log.info("no tag coverage of %s: nothing stored for %s..%s and nothing fetched in "
                 "this run", tag, first, day)
        return None
    return rows, "stored", note


def analyse_coverage(ctx: DayContext, tag: str, drop_threshold_pts: float) -> TagCoverage | None:
    """The day's coverage of `tag` (rows fetched and stored first when needed), or None."""
    found = _coverage_rows(ctx, tag)
    if found is None:
        return None
    rows, source, note = found
    coverage = coverage_figures(rows, tag, ctx.job.report_day, drop_threshold_pts,
                                source=source, note=note)
    log.info("tag coverage of %s on %s: %s of the spend (month to date %s)%s", tag,
             coverage.day, _pct(coverage.day_pct), _pct(coverage.mtd_pct),
             f"; dropped {coverage.drop_pts:.1f} points below the 7 days before"
             if coverage.drop_alert else "")
    return coverage


# ---------------------------------------------------------------- words and numbers


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _points(value: float) -> str:
    return f"{value:+.1f} points"


def _then(coverage: TagCoverage) -> dt.date:
    return coverage.day - dt.timedelta(days=CHANGE_DAYS)


def drop_text(coverage: TagCoverage, day: str) -> str:
    """The alert's words (without the tag's name): what dropped, by how much, against what."""
    return (f"Coverage dropped: {_pct(coverage.day_pct)} of the spend on {day} carried the "
            f"tag, {coverage.drop_pts:.1f} points below the mean of the 7 days before "
            f"({_pct(coverage.prev7_mean_pct)}; an alert beyond "
            f"{coverage.drop_threshold_pts:g} points).")


def _change_text(coverage: TagCoverage, day: str) -> str:
    if coverage.change_30d_pts is None:
        return f"no share to compare with on {day} ({CHANGE_DAYS} days before)"
    return (f"{_points(coverage.change_30d_pts)} over the last {CHANGE_DAYS} days "
            f"({_pct(coverage.pct_30d_ago)} on {day})")


def coverage_json(coverage: TagCoverage | None,
                  page_url: str | None = None) -> dict[str, Any] | None:
    """report.json's `tag_coverage` (null when off or when there is nothing to show)."""
    if coverage is None:
        return None
    totals = coverage.day_totals
    return {
        "tag": coverage.tag,
        "day_pct": coverage.day_pct,
        "mtd_pct": coverage.mtd_pct,
        "change_30d_pts": coverage.change_30d_pts,
        "prev7_mean_pct": coverage.prev7_mean_pct,
        "drop_pts": coverage.drop_pts,
        "drop_threshold_pts": coverage.drop_threshold_pts,
        "drop_alert": coverage.drop_alert,
        "day_usd": totals.tagged_usd + totals.untagged_usd,
        "day_untagged_usd": totals.untagged_usd,
        "mtd_usd": coverage.mtd_tagged_usd + coverage.mtd_untagged_usd,
        "mtd_untagged_usd": coverage.mtd_untagged_usd,
        "by_service": [{"service": s.service, "untagged_usd": s.untagged_usd,
                        "tagged_pct": s.tagged_pct, "day_untagged_usd": s.day_untagged_usd,
                        "day_tagged_pct": s.day_tagged_pct} for s in coverage.by_service],
        "source": coverage.source,
        "note": coverage.note,
        "page_url": page_url,
    }


# ---------------------------------------------------------------- Slack


def coverage_blocks(coverage: TagCoverage, page_url: str | None) -> list[dict[str, Any]]:
    """The digest's blocks for a coverage (the whole account's, or a route's slice)."""
    day = day_label(coverage.day)
    lines = [strong(f"Tag coverage: {mrkdwn_name(coverage.tag, SUMMARY_NAME_CHARS)}")]
    if coverage.drop_alert:
        lines.append(f":warning: *{escape_mrkdwn(drop_text(coverage, day))}*")
    if coverage.day_pct is None:
        lines.append(f"No spend stored for {day}.")
    else:
        lines.append(f"{_pct(coverage.day_pct)} of the spend on {day} carried the tag "
                     f"({money(coverage.day_totals.untagged_usd)} untagged); month to date "
                     f"{_pct(coverage.mtd_pct)}")
        lines.append(f"Change: {_change_text(coverage, day_label(_then(coverage)))}")
    untagged = [s for s in coverage.by_service if s.untagged_usd > 0][:TOP_UNTAGGED]
    if untagged:
        lines.append(f"Most untagged spend in {coverage.day:%B}:")
        lines += [f"• {mrkdwn_name(s.service, SUMMARY_NAME_CHARS)}: {money(s.untagged_usd)} "
                  f"untagged ({_pct(s.tagged_pct)} tagged)" for s in untagged]
    if coverage.note:
        lines.append(f"_{escape_mrkdwn(one_line(coverage.note))}_")
    return [section("\n".join(lines), page_url, button_text="Coverage",
                    action_id="tag_coverage"), divider()]


# ---------------------------------------------------------------- the site


def _sentence(coverage: TagCoverage, day: str) -> str:
    tag = isolated(coverage.tag)
    if coverage.day_pct is None:
        return f"No spend is stored for {day}, so no share of it carried {tag}."
    totals = coverage.day_totals
    return (f"On {day}, {_pct(coverage.day_pct)} of the spend carried the tag {tag} "
            f"({pages.money(totals.untagged_usd)} of "
            f"{pages.money(totals.tagged_usd + totals.untagged_usd)} had no value); month to "
            f"date {_pct(coverage.mtd_pct)} ({pages.money(coverage.mtd_untagged_usd)} "
            f"untagged). Change: "
            f"{_change_text(coverage, _then(coverage).isoformat())}.")


def _service_rows(coverage: TagCoverage, limit: int | None = None) -> list[list[str]]:
    shown = coverage.by_service if limit is None else coverage.by_service[:limit]
    return [[s.service, pages.money(s.untagged_usd), _pct(s.tagged_pct),
             pages.money(s.day_untagged_usd), _pct(s.day_tagged_pct)] for s in shown]


def coverage_site(coverage: TagCoverage, site: SiteContext) -> SitePart:
    """The plot, its page (every service) and the section of the report page."""
    day = coverage.day.isoformat()
    image, page = f"{PAGE}.png", f"{PAGE}.html"
    first = coverage.daily[0].day.isoformat() if coverage.daily else day
    title = label(f"Share of spend tagged {coverage.tag}, {first} to {day}: "
                  f"{_pct(coverage.day_pct)} on the day", 200)
    plot = CoveragePlot(
        site.out / image, title,
        np.array([d.day for d in coverage.daily], dtype="datetime64[D]"),
        np.array([np.nan if d.pct is None else d.pct for d in coverage.daily], dtype=float),
        coverage.drop_alert)
    alert = drop_text(coverage, day) if coverage.drop_alert else None
    sentence = _sentence(coverage, day)
    alt = title.replace("\\$", "$")
    headers = ["Service", "Untagged month to date", "Tagged month to date",
               f"Untagged on {day}", f"Tagged on {day}"]
    numbers = [("Tag", coverage.tag), (f"Tagged on {day}", _pct(coverage.day_pct)),
               ("Tagged month to date", _pct(coverage.mtd_pct)),
               (f"Tagged on {_then(coverage).isoformat()}", _pct(coverage.pct_30d_ago)),
               ("Mean of the 7 days before", _pct(coverage.prev7_mean_pct)),
               ("Alert when below that mean by more than",
                f"{coverage.drop_threshold_pts:g} points")]
    page_html = pages.plot_page(
        title=f"Tag coverage: {isolated(coverage.tag)}, {day}", day=coverage.day, image=image,
        alt=alt, sentence=f"{alert} {sentence}" if alert else sentence, numbers=numbers,
        recent_headers=headers, recent_rows=_service_rows(coverage),
        recent_title="Every service, most untagged spend first")
    html = pages.render_partial(
        "report/tag_coverage.html", tag=coverage.tag, alert=alert, note=coverage.note,
        sentence=sentence, page=page, image=image, alt=alt,
        headers=headers[:3], rows=[r[:3] for r in _service_rows(coverage, TOP_UNTAGGED)])
    url = site.url(page)
    return SitePart(html=html, jobs=[plot], pages={page: page_html},
                    urls={NAME: url} if url else {})


# ---------------------------------------------------------------- the section


class TagCoverageSection(Section):
    """Tag coverage: off unless COST_TRACKING_COVERAGE_TAG names a tag."""

    name = NAME

    def analyse(self, ctx: DayContext) -> TagCoverage | None:
        tag = ctx.settings.coverage_tag
        if not tag:
            return None
        return analyse_coverage(ctx, tag, ctx.settings.coverage_drop_pct)

    def json_part(self, report: Report) -> dict[str, Any]:
        return {"tag_coverage": coverage_json(report.sections.get(self.name),
                                              report.page_urls.get(NAME))}

    def site_part(self, report: Report, history: pd.DataFrame, site: SiteContext) -> SitePart:
        coverage = report.sections.get(self.name)
        return SitePart() if coverage is None else coverage_site(coverage, site)

    def slack_part(self, report: Report, account_label: str | None) -> SlackPart:
        coverage = report.sections.get(self.name)
        if coverage is None:
            return SlackPart()
        return SlackPart(blocks=coverage_blocks(coverage, report.page_urls.get(NAME)))
