"""The daily digest as a Block Kit message: a pure function from a Report to a SlackMessage.

Blocks are built with slack_sdk's model classes, whose `to_dict()` refuses anything
Slack would reject (text over its limits, too many elements). Names of services and tag
values can hold any character, so every name passes through `mrkdwn_name` before it
reaches a text: control characters and newlines become spaces, long names are cut to
`NAME_CHARS` (the plot page has the full name), and `&`, `<`, `>` are escaped as Slack's
formatting rules require.

How the two alert levels are shown: a service-level alert is the item; group-level
alerts of the same kind and direction for that service are folded into it as one
"also in groups" clause (the spike's driving group is already named by `top_group`),
because listing them again as items would report one change two or three times. A
group-level alert whose service did not fire is an item of its own: that is exactly
the case where the group tells the reader something the service total hides.

Alerts that continue an episode (issue 8: status CONTINUING) are shown
compactly, one line per section ranked by dollar change; muted alerts are left out.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
import re
from dataclasses import dataclass, field
from typing import Any

from slack_sdk.models.blocks import (
    Block,
    ButtonElement,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    PlainTextObject,
    SectionBlock,
)

from _util.alert_kinds import ALERT_KINDS, CONTINUING, SPIKE, TREND, kind_of, side
from _util.report import Alert, Report

MAX_BLOCKS = 50
HEADER_CHARS = 150
SECTION_CHARS = 3000
BUTTON_TEXT_CHARS = 75
BUTTON_URL_CHARS = 3000
FALLBACK_CHARS = 3000
NAME_CHARS = 120
INLINE_URL_CHARS = 1000
SUMMARY_NAME_CHARS = 60
SUMMARY_TOP = 3
FOLDED_GROUPS_SHOWN = 3

SUMMARY_TITLE = "AWS Services Summary"
DAILY_SUMMARY = "Daily Spend x Service"
MTD_SUMMARY = "Month to Date Spend x Service"

_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_URL_UNSAFE = {"<": "%3C", ">": "%3E", "|": "%7C", " ": "%20", '"': "%22"}


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
    return dataclasses.replace(report, alerts=alerts, summary_urls={}, report_url=None)


# ---- text at Slack's edge -------------------------------------------------------------

def one_line(text: str) -> str:
    """Newlines, tabs and other control characters as single spaces."""
    return _CONTROL.sub(" ", text).strip()


def clip(text: str, limit: int) -> str:
    """At most `limit` characters, an ellipsis marking a cut."""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def escape_mrkdwn(text: str) -> str:
    """Slack's three control characters as entities (api.slack.com: formatting text)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def mrkdwn_name(name: str, limit: int = NAME_CHARS) -> str:
    """A service, group or label as it may appear inside mrkdwn text."""
    return escape_mrkdwn(clip(one_line(name), limit))


def clip_mrkdwn(text: str, limit: int) -> str:
    """Escaped text cut to `limit` without splitting an `&amp;`-style entity."""
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    amp = cut.rfind("&", max(0, len(cut) - 5))
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut.rstrip() + "…"


def _strong(escaped: str) -> str:
    # A name holding "*" would end the bold early and garble the line; show it plain.
    return escaped if "*" in escaped else f"*{escaped}*"


def usable_url(url: str | None) -> str | None:
    """An absolute http(s) URL Slack can open, or None (then: no button, no link)."""
    if not url or not url.startswith(("https://", "http://")):
        return None
    for char, code in _URL_UNSAFE.items():
        url = url.replace(char, code)
    return url if len(url) <= BUTTON_URL_CHARS else None


# ---- numbers at the edge --------------------------------------------------------------

def money(usd: float) -> str:
    if not math.isfinite(usd):
        return "n/a"
    return f"-${abs(usd):,.2f}" if usd < 0 else f"${usd:,.2f}"


def signed_money(usd: float) -> str:
    if not math.isfinite(usd):
        return "n/a"
    return f"-${abs(usd):,.2f}" if usd < 0 else f"+${usd:,.2f}"


def _change(value: float, base: float) -> str:
    """'+$61.16 (+5.2%)'; without a percentage when the base is not positive."""
    delta = value - base
    if base > 0 and math.isfinite(delta):
        return f"{signed_money(delta)} ({100.0 * delta / base:+.1f}%)"
    return signed_money(delta)


def _day_label(day: dt.date) -> str:
    return f"{day:%a} {day.day} {day:%b %Y}"


def _previous_month_name(day: dt.date) -> str:
    return f"{day.replace(day=1) - dt.timedelta(days=1):%B}"


def _group_label(group: str, group_by: str) -> str:
    if group:
        return mrkdwn_name(group)
    return "(untagged)" if group_by.upper().startswith("TAG") else "(none)"


# ---- blocks ---------------------------------------------------------------------------

def _section(text: str, url: str | None = None, button_text: str = "Plot",
             action_id: str = "plot") -> dict[str, Any]:
    accessory = None
    url = usable_url(url)
    if url is not None:
        accessory = ButtonElement(text=clip(button_text, BUTTON_TEXT_CHARS), url=url,
                                  action_id=action_id)
    block = SectionBlock(text=MarkdownTextObject(text=clip_mrkdwn(text, SECTION_CHARS),
                                                 verbatim=True),
                         accessory=accessory)
    return block.to_dict()


def _as_dict(block: Block) -> dict[str, Any]:
    return block.to_dict()


def _header(report: Report, account_label: str | None) -> dict[str, Any]:
    text = f"AWS costs · {_day_label(report.day)}"
    if account_label and one_line(account_label):
        text += f" · {one_line(account_label)}"
    return _as_dict(HeaderBlock(text=PlainTextObject(text=clip(text, HEADER_CHARS))))


def _headline(report: Report, all_continuing: int) -> dict[str, Any]:
    h = report.summary.headline
    lines = [
        f"*Total on {_day_label(report.day)}:* {money(h.day_usd)}, "
        f"{_change(h.day_usd, h.prev7_mean_usd)} vs the previous 7-day mean of "
        f"{money(h.prev7_mean_usd)}",
        f"*Month to date:* {money(h.mtd_usd)}, {_change(h.mtd_usd, h.prev_mtd_usd)} vs "
        f"{money(h.prev_mtd_usd)} on the same days of {_previous_month_name(report.day)}",
        f"*Month-end projection:* {money(h.projection_usd)}",
    ]
    if all_continuing:
        noun = "alert" if all_continuing == 1 else "alerts"
        lines.append(f"No new alerts today; {all_continuing} {noun} continuing from "
                     "previous days.")
    return _section("\n".join(lines))


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
    return _as_dict(ContextBlock(elements=elements))


def _top_services(pairs: list[tuple[str, float]]) -> str:
    top = sorted(pairs, key=lambda p: -p[1])[:SUMMARY_TOP]
    if not top:
        return "no spend recorded"
    return " · ".join(f"{mrkdwn_name(s, SUMMARY_NAME_CHARS)} {money(u)}" for s, u in top)


def _summary_blocks(report: Report) -> list[dict[str, Any]]:
    summary = report.summary
    daily = [(s, u) for d, s, u in summary.daily_by_service if d == report.day]
    mtd = [(s.service, s.usd) for s in summary.mtd_by_service]
    month = f"{report.day:%B}"
    return [
        _section(f"*{SUMMARY_TITLE}*"),
        _section(f"*{DAILY_SUMMARY}*\nTop on {_day_label(report.day)}: "
                 f"{_top_services(daily)}",
                 report.summary_urls.get("daily_by_service"), action_id="summary_daily"),
        _section(f"*{MTD_SUMMARY}*\nTop so far in {month}: {_top_services(mtd)}",
                 report.summary_urls.get("mtd_by_service"), action_id="summary_mtd"),
    ]


def _alert_title(alert: Alert, group_by: str) -> str:
    service = _strong(mrkdwn_name(alert.service))
    if alert.group is None:
        return service
    return f"{service} › {_group_label(alert.group, group_by)}"


def _alert_text(alert: Alert, report: Report, folded: list[Alert]) -> str:
    pct = alert.delta_pct
    change = signed_money(alert.delta_usd)
    change += f" ({pct:+.1f}%)" if pct is not None and math.isfinite(pct) else " (new spend)"
    lines = [
        _alert_title(alert, report.group_by),
        f"{money(alert.usd)} on {_day_label(report.day)}, {change} vs usual "
        f"{money(alert.baseline_mean)}/day",
    ]
    if alert.kind == TREND:
        lines.append(f"MACD crossed {side(alert.direction)} its "
                     f"{report.rules.signal_span}-day signal")
    else:
        detail = _zscore_text(alert.zscore)
        if alert.top_group is not None:
            driver = f"driven by {_group_label(alert.top_group, report.group_by)}"
            if alert.top_group_delta_usd is not None:
                driver += f" ({signed_money(alert.top_group_delta_usd)})"
            detail = f"{detail}, {driver}" if detail else driver.capitalize()
        if detail:
            lines.append(detail)
    # The others say the change is broader. Left out: the spike's driving group (named
    # already) and a group that is the whole service (same series, same alert).
    folded = [a for a in folded if abs(a.usd - alert.usd) >= 0.005
              and not (alert.kind == SPIKE and a.group == alert.top_group)]
    if folded:
        names = [_group_label(a.group or "", report.group_by) for a in folded]
        shown = ", ".join(names[:FOLDED_GROUPS_SHOWN])
        more = len(names) - FOLDED_GROUPS_SHOWN
        lines.append(f"Also flagged in {'group' if len(names) == 1 else 'groups'}: "
                     f"{shown}{f' and {more} more' if more > 0 else ''}")
    return "\n".join(lines)


def _zscore_text(z: float | None) -> str:
    if z is None or math.isnan(z):
        return ""
    if math.isinf(z):
        return "far outside its usual range (no variation before)"
    return f"z-score {z:+.1f}"


def _continuing_text(key: tuple[str, str], alerts: list[Alert], report: Report) -> str:
    """'Still elevated: <url|Amazon EC2> (day 4, +$120.00/day); ...' in one section text."""
    entries = []
    for alert in alerts:
        name = mrkdwn_name(alert.service, SUMMARY_NAME_CHARS)
        if alert.group is not None:
            name += f" › {_group_label(clip(alert.group, SUMMARY_NAME_CHARS), report.group_by)}"
        url = usable_url(alert.plot_url)
        entry = f"<{url}|{name}>" if url and len(url) <= INLINE_URL_CHARS else name
        entries.append(f"{entry} (day {alert.episode_days}, "
                       f"{signed_money(alert.delta_usd)}/day)")
    text = f"{kind_of(*key).continuing_label}: {entries[0]}"
    for shown, entry in enumerate(entries[1:], start=1):
        more = f"; and {len(entries) - shown} more"
        if len(text) + 2 + len(entry) + len(more) > SECTION_CHARS:
            return text + more
        text += f"; {entry}"
    return text


# ---- choosing what fits ---------------------------------------------------------------

@dataclass(eq=False)
class _Unit:
    """One block under a section title: a new alert, or a section's continuing line."""

    section: tuple[str, str]
    weight: float
    alerts: list[Alert]
    block: dict[str, Any] = field(default_factory=dict)


def _weight(alert: Alert) -> float:
    d = abs(alert.delta_usd)
    return d if math.isfinite(d) else 0.0


def _units(report: Report, visible: list[Alert]) -> list[_Unit]:
    units: list[_Unit] = []
    counter = 0
    for kind in ALERT_KINDS:
        key = kind.key
        in_section = [a for a in visible if (a.kind, a.direction) == key]
        fired_services = {a.service for a in in_section if a.group is None}
        folded: dict[str, list[Alert]] = {}
        items: list[Alert] = []
        for a in in_section:
            if a.group is not None and a.service in fired_services:
                folded.setdefault(a.service, []).append(a)
            else:
                items.append(a)
        items.sort(key=_weight, reverse=True)
        new = [a for a in items if a.status != CONTINUING]
        continuing = [a for a in items if a.status == CONTINUING]
        for a in new:
            extra = sorted(folded.get(a.service, []) if a.group is None else [],
                           key=_weight, reverse=True)
            counter += 1
            block = _section(_alert_text(a, report, extra), a.plot_url,
                             action_id=f"plot_{counter}")
            units.append(_Unit(key, _weight(a), [a, *extra], block))
        if continuing:
            extra = [g for a in continuing if a.group is None
                     for g in folded.get(a.service, [])]
            block = _section(_continuing_text(key, continuing, report))
            units.append(_Unit(key, max(_weight(a) for a in continuing),
                               continuing + extra, block))
    return units


def _choose(units: list[_Unit], budget: int) -> tuple[list[_Unit], bool]:
    """The units that fit `budget` blocks (titles included), largest changes first."""
    if len(units) + len({u.section for u in units}) <= budget:
        return units, False
    budget -= 1  # the closing "full report" line
    chosen: list[_Unit] = []
    opened: set[tuple[str, str]] = set()
    for unit in sorted(units, key=lambda u: u.weight, reverse=True):
        cost = 1 + (unit.section not in opened)
        if cost <= budget:
            chosen.append(unit)
            opened.add(unit.section)
            budget -= cost
    return chosen, True


def build_message(report: Report, account_label: str | None = None) -> SlackMessage:
    """The digest for one day: header, headline, context, summary, then the alert sections."""
    visible = [a for a in report.alerts if not a.muted]
    muted = len(report.alerts) - len(visible)
    all_continuing = (len(visible) if visible and all(a.status == CONTINUING
                                                      for a in visible) else 0)
    blocks = [
        _header(report, account_label),
        _headline(report, all_continuing),
        _context(report),
        _as_dict(DividerBlock()),
        *_summary_blocks(report),
        _as_dict(DividerBlock()),
    ]
    units = _units(report, visible)
    if not units:
        line = f"No unusual changes on {_day_label(report.day)}: no spikes or trend reversals."
        if muted:
            line += f" ({muted} muted {'alert' if muted == 1 else 'alerts'} left out.)"
        blocks.append(_section(line))
    chosen, truncated = _choose(units, MAX_BLOCKS - len(blocks))
    for kind in ALERT_KINDS:
        in_section = [u for u in units if u.section == kind.key and u in chosen]
        if in_section:
            blocks.append(_section(f"*{kind.title}*"))
            blocks.extend(u.block for u in in_section)
    if truncated:
        left = sum(len(u.alerts) for u in units if u not in chosen)
        noun = "alert" if left == 1 else "alerts"
        where = ("on the full report page" if usable_url(report.report_url)
                 else "in the report on the site")
        blocks.append(_section(f"{left} smaller {noun} did not fit in this message; "
                               f"all are {where}.", report.report_url,
                               button_text="Full report", action_id="full_report"))
    return SlackMessage(text=_fallback(report, account_label, visible), blocks=blocks)


def _fallback(report: Report, account_label: str | None, visible: list[Alert]) -> str:
    """The notification text (and what clients without Block Kit show)."""
    h = report.summary.headline
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
    text = (f"AWS costs {report.day.isoformat()}{label}: {money(h.day_usd)}, "
            f"{_change(h.day_usd, h.prev7_mean_usd)} vs the 7-day mean; {alerts}{stale}")
    return clip_mrkdwn(text, FALLBACK_CHARS)
