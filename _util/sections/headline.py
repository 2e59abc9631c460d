"""The headline: the day's total, month to date and projection, and notes on the data."""
from __future__ import annotations

import datetime as dt
from typing import Any

import pandas as pd
from slack_sdk.models.blocks import (
    ContextBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
)

from _util.alert_kinds import CONTINUING
from _util.alert_words import partial_text
from _util.report import Report
from _util.sections.base import Section, SiteContext, SitePart, SlackPart
from _util.site import pages
from _util.slack.blocks import (
    HEADER_CHARS,
    SECTION_CHARS,
    SUMMARY_NAME_CHARS,
    change,
    clip,
    clip_mrkdwn,
    day_label,
    divider,
    escape_mrkdwn,
    money,
    mrkdwn_name,
    one_line,
    section,
)


def _previous_month_name(day: dt.date) -> str:
    return f"{day.replace(day=1) - dt.timedelta(days=1):%B}"


def _header(report: Report, account_label: str | None) -> dict[str, Any]:
    text = f"AWS costs · {day_label(report.day)}"
    if account_label and one_line(account_label):
        text += f" · {one_line(account_label)}"
    return HeaderBlock(text=PlainTextObject(text=clip(text, HEADER_CHARS))).to_dict()


def _all_continuing(report: Report) -> int:
    """How many alerts the digest shows when every one of them continues an episode."""
    visible = report.visible_alerts
    return len(visible) if visible and all(a.status == CONTINUING for a in visible) else 0


def _headline(report: Report) -> dict[str, Any]:
    h = report.summary.headline
    lines = [
        f"*Total on {day_label(report.day)}:* {money(h.day_usd)}, "
        f"{change(h.day_usd, h.prev7_mean_usd)} vs the previous 7-day mean of "
        f"{money(h.prev7_mean_usd)}",
        f"*Month to date:* {money(h.mtd_usd)}, {change(h.mtd_usd, h.prev_mtd_usd)} vs "
        f"{money(h.prev_mtd_usd)} on the same days of {_previous_month_name(report.day)}",
        f"*Month-end projection:* {money(h.projection_usd)}",
    ]
    partial = partial_text(h, day_label(report.day), money,
                           lambda name: mrkdwn_name(name, SUMMARY_NAME_CHARS))
    if partial:
        lines.insert(0, f":warning: *Partial data:* {partial}")
    continuing = _all_continuing(report)
    if continuing:
        noun = "alert" if continuing == 1 else "alerts"
        lines.append(f"No new alerts today; {continuing} {noun} continuing from "
                     "previous days.")
    return section("\n".join(lines))


def _context(report: Report) -> dict[str, Any]:
    notes = []
    if report.stale:
        notes.append(":warning: Cost Explorer could not be reached: data may be stale "
                     "(figures are from the database as last fetched).")
    if report.estimated:
        notes.append(f"Figures for {report.day.isoformat()} are still Estimated by AWS "
                     "and may change.")
    notes.append(f"{escape_mrkdwn(one_line(report.metric))} by service and "
                 f"{escape_mrkdwn(one_line(report.group_by))}.")
    elements = [MarkdownTextObject(text=clip_mrkdwn(n, SECTION_CHARS), verbatim=True)
                for n in notes]
    return ContextBlock(elements=elements).to_dict()


class HeadlineSection(Section):
    name = "headline"

    def json_part(self, report: Report) -> dict[str, Any]:
        h = report.summary.headline
        return {"totals": {
            "day": h.day_usd,
            "prev7_mean": h.prev7_mean_usd,
            "mtd": h.mtd_usd,
            "prev_mtd": h.prev_mtd_usd,
            "projection": h.projection_usd,
            "not_in_yet": [{"service": m.service, "usual": m.usd} for m in h.not_in_yet],
        }}

    def site_part(self, report: Report, history: pd.DataFrame, site: SiteContext) -> SitePart:
        return SitePart(html=pages.report_header(report))

    def slack_part(self, report: Report, account_label: str | None) -> SlackPart:
        return SlackPart(blocks=[_header(report, account_label), _headline(report),
                                 _context(report), divider()])
