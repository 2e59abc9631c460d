"""The daily digest as a Block Kit message, assembled from the digest's sections.

Each section (`_util/sections/`) gives the blocks it always shows and the units (its
alerts) that may be left out; this module puts them in the sections' order and, when
everything would be more than Slack's 50 blocks, keeps the units with the largest dollar
changes and closes with a line that points to the full report. Pure: a Report in, a
SlackMessage out.
"""
from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import Any, Sequence

from _util.alert_kinds import CONTINUING
from _util.report import AlertKey, Report
from _util.sections import current
from _util.sections.base import Section, SlackPart
from _util.slack.blocks import (
    FALLBACK_CHARS,
    MAX_BLOCKS,
    change,
    clip_mrkdwn,
    money,
    mrkdwn_name,
    section,
    usable_url,
)


@dataclass(frozen=True)
class SlackMessage:
    """What chat.postMessage gets: a notification/fallback text and the blocks."""

    text: str
    blocks: list[dict[str, Any]]

    def payload(self, channel: str) -> dict[str, Any]:
        return {"channel": channel, "text": self.text, "blocks": self.blocks}


def without_links(report: Report) -> Report:
    """The report with every site URL removed, for when the site could not be published:
    the message then has no buttons rather than buttons to pages that do not exist."""
    alerts = tuple(dataclasses.replace(a, plot_url=None) for a in report.alerts)
    return dataclasses.replace(report, alerts=alerts, page_urls={}, report_url=None)


def _parts(report: Report, account_label: str | None,
           sections: Sequence[Section] | None) -> list[SlackPart]:
    """Every section's part; the buttons of numbered units get plot_1, plot_2, ... in
    order (an action id is unique within a message)."""
    parts = [s.slack_part(report, account_label) for s in current(sections)]
    number = 0
    for unit in (u for p in parts for u in p.units if u.numbered):
        number += 1
        if "accessory" in unit.block:
            unit.block = copy.deepcopy(unit.block)
            unit.block["accessory"]["action_id"] = f"plot_{number}"
    return parts


def _choose(parts: list[SlackPart], budget: int) -> tuple[set[int], bool]:
    """The ids of the units that fit `budget` blocks (a part's title counts once, when
    one of its units is chosen), largest changes first; and whether any was left out."""
    units = [(i, u) for i, p in enumerate(parts) for u in p.units]
    titles = {i for i, _ in units if parts[i].title is not None}
    if len(units) + len(titles) <= budget:
        return {id(u) for _, u in units}, False
    budget -= 1  # the closing "full report" line
    chosen: set[int] = set()
    opened: set[int] = set()
    for part, unit in sorted(units, key=lambda pu: pu[1].weight, reverse=True):
        cost = 1 + (part in titles and part not in opened)
        if cost <= budget:
            chosen.add(id(unit))
            opened.add(part)
            budget -= cost
    return chosen, True


def _fitting(report: Report, account_label: str | None, sections: Sequence[Section] | None,
             extra_blocks: int = 0) -> tuple[list[SlackPart], set[int], bool]:
    parts = _parts(report, account_label, sections)
    fixed = sum(len(p.blocks) for p in parts) + extra_blocks
    chosen, truncated = _choose(parts, MAX_BLOCKS - fixed)
    return parts, chosen, truncated


def linked_alert_keys(report: Report, sections: Sequence[Section] | None = None) -> list[AlertKey]:
    """The keys of the alerts the message links to their plot page, in its order: the
    alerts that must get a plot whatever the run's plot budget.

    It is asked before the plots exist, so every alert counts as having a page (a URL of
    a plot page's length: how many continuing alerts a line names depends on it)."""
    report = dataclasses.replace(report, alerts=tuple(
        dataclasses.replace(a, plot_url=a.plot_url or f"https://plots.invalid/{i}.html")
        for i, a in enumerate(report.alerts)))
    parts, chosen, _ = _fitting(report, None, sections)
    keys = [a.key for p in parts for u in p.units if id(u) in chosen for a in u.linked]
    return list(dict.fromkeys(keys))


def build_message(report: Report, account_label: str | None = None,
                  sections: Sequence[Section] | None = None, mentions: str = "") -> SlackMessage:
    """The digest for one day: each section's blocks in order, as many alerts as fit.

    `mentions` ('<@U0123> <!subteam^S0456>', built only from the IDs a route's config
    names) goes right under the header, so the people it names are notified."""
    parts, chosen, truncated = _fitting(report, account_label, sections, 1 if mentions else 0)
    blocks: list[dict[str, Any]] = []
    for part in parts:
        blocks.extend(part.blocks)
        shown = [u for u in part.units if id(u) in chosen]
        if shown and part.title is not None:
            blocks.append(part.title)
        blocks.extend(u.block for u in shown)
    if truncated:
        left = sum(len(u.alerts) for p in parts for u in p.units if id(u) not in chosen)
        noun = "alert" if left == 1 else "alerts"
        where = ("on the full report page" if usable_url(report.report_url)
                 else "in the report on the site")
        blocks.append(section(f"{left} smaller {noun} did not fit in this message; "
                              f"all are {where}.", report.report_url,
                              button_text="Full report", action_id="full_report"))
    if mentions:
        at = 1 if blocks and blocks[0].get("type") == "header" else 0
        blocks.insert(at, section(f"For {mentions}"))
    text = _fallback(report, account_label)
    return SlackMessage(text=f"{mentions} {text}" if mentions else text, blocks=blocks)


def _fallback(report: Report, account_label: str | None) -> str:
    """The notification text (and what clients without Block Kit show)."""
    h = report.summary.headline
    visible = report.visible_alerts
    label = f" · {mrkdwn_name(account_label, 80)}" if account_label else ""
    new = sum(a.status != CONTINUING for a in visible)
    continuing = len(visible) - new
    if not visible:
        alerts = "no alerts"
    else:
        alerts = f"{new} new {'alert' if new == 1 else 'alerts'}"
        if continuing:
            alerts += f", {continuing} continuing"
    stale = " (data may be stale)" if report.stale else ""
    if h.partial:
        stale += " (partial data)"
    text = (f"AWS costs {report.day.isoformat()}{label}: {money(h.day_usd)}, "
            f"{change(h.day_usd, h.prev7_mean_usd)} vs the 7-day mean; {alerts}{stale}")
    return clip_mrkdwn(text, FALLBACK_CHARS)
