"""The weekly summary as a Block Kit message (one per channel, on the weekly day).

Pure: a WeeklySummary in, a SlackMessage out. Names from AWS are escaped like the daily
digest's; the only mentions are the route's configured IDs.
"""
from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import HeaderBlock, PlainTextObject

from _util.alert_kinds import kind_of
from _util.slack.blocks import (
    HEADER_CHARS,
    SUMMARY_NAME_CHARS,
    change,
    clip,
    divider,
    money,
    mrkdwn_name,
    one_line,
    section,
    signed_money,
    strong,
)
from _util.slack.message import SlackMessage
from _util.weekly import WeeklySummary

# Episodes the message lists; the page has them all.
MAX_EPISODES = 15


def coverage_line(coverage) -> str | None:
    """The weekly message's line on tag coverage (a `TagCoverage`, or None when off)."""
    if coverage is None or coverage.mtd_pct is None:
        return None
    line = (f"*Tag coverage ({mrkdwn_name(coverage.tag, SUMMARY_NAME_CHARS)}):* "
            f"{coverage.mtd_pct:.1f}% of the month's spend is tagged")
    if coverage.change_30d_pts is not None:
        line += f", {coverage.change_30d_pts:+.1f} points over 30 days"
    return line


def _span(summary: WeeklySummary) -> str:
    first, last = summary.first_day, summary.last_day
    return f"{first:%a %d %b} – {last:%a %d %b %Y}"


def _folded(episodes) -> tuple[list, dict]:
    """Episodes as the daily digest shows alerts: a group's episode folded into its
    service's of the same kind when that one is there (named after it)."""
    services = {(e.kind, e.direction, e.service) for e in episodes if e.group is None}
    shown, folded = [], {}
    for e in episodes:
        key = (e.kind, e.direction, e.service)
        if e.group is not None and key in services:
            folded.setdefault(key, []).append(e.group)
        else:
            shown.append(e)
    return shown, folded


def build_weekly_message(summary: WeeklySummary, label: str | None = None,
                         mentions: str = "", page_url: str | None = None,
                         coverage: str | None = None) -> SlackMessage:
    """Last week's total against the week before and four weeks before, the top changes
    by service, tag coverage (`coverage`, a line, when the section is on) and the alerts
    of the week by episode; `page_url` is the weekly page (the Details button)."""
    title = f"AWS costs · week of {_span(summary)}"
    if label and one_line(label):
        title += f" · {one_line(label)}"
    blocks: list[dict[str, Any]] = [HeaderBlock(text=PlainTextObject(
        text=clip(title, HEADER_CHARS))).to_dict()]
    if mentions:
        blocks.append(section(f"For {mentions}"))
    s = summary
    blocks.append(section(
        f"*Last week:* {money(s.total_usd)}, {change(s.total_usd, s.previous_usd)} vs the week "
        f"before ({money(s.previous_usd)}), {change(s.total_usd, s.month_ago_usd)} vs the same "
        f"week four weeks ago ({money(s.month_ago_usd)})", page_url, button_text="Details",
        action_id="weekly_details"))
    if s.changes:
        lines = [f"{mrkdwn_name(c.service, SUMMARY_NAME_CHARS)}: {money(c.usd)} "
                 f"({signed_money(c.change_usd)})" for c in s.changes]
        blocks.append(section("*Largest changes against the week before*\n" + "\n".join(lines)))
    if coverage:
        blocks.append(section(coverage))
    blocks.append(divider())
    if s.episodes:
        shown, folded = _folded(s.episodes)
        lines = []
        for e in shown[:MAX_EPISODES]:
            where = mrkdwn_name(e.service, SUMMARY_NAME_CHARS)
            if e.group is not None:
                where += f" · {mrkdwn_name(e.group or '(untagged)', SUMMARY_NAME_CHARS)}"
            days = "1 day" if e.days == 1 else f"{e.days} days"
            when = (f"{e.first_day:%a %d %b}" if e.first_day == e.last_day
                    else f"{e.first_day:%a %d} – {e.last_day:%a %d %b}")
            moved = (f"7-day average {signed_money(e.peak_delta_usd)}/day vs 28-day" if e.per_day
                     else f"largest change {signed_money(e.peak_delta_usd)}")
            line = f"{kind_of(e.kind, e.direction).title}: {strong(where)}, {days} ({when}), {moved}"
            groups = folded.get((e.kind, e.direction, e.service))
            if e.group is None and groups:
                line += "; also in " + ", ".join(
                    mrkdwn_name(g or "(untagged)", SUMMARY_NAME_CHARS) for g in groups)
            lines.append(line)
        more = len(shown) - MAX_EPISODES
        if more > 0:
            lines.append(f"…and {more} more on the weekly page.")
        blocks.append(section(f"*Alerts this week ({len(shown)})*\n" + "\n".join(lines)))
    else:
        blocks.append(section("No alerts this week."))
    count = len(_folded(s.episodes)[0])
    text = (f"AWS costs, week of {_span(summary)}: {money(s.total_usd)}, "
            f"{change(s.total_usd, s.previous_usd)} vs the week before; "
            f"{count} {'alert' if count == 1 else 'alerts'}")
    return SlackMessage(text=f"{mentions} {text}" if mentions else text, blocks=blocks)
