"""The alert sections: one per registered alert kind (spikes and trend reversals, up and
down), and the line that says a day had none.

How the two alert levels are shown: a service-level alert is the item; group-level
alerts of the same kind and direction for that service are folded into it as one
"also in groups" clause (the spike's driving group is already named by `top_group`),
because listing them again as items would report one change two or three times. A
group-level alert whose service did not fire is an item of its own: that is exactly
the case where the group tells the reader something the service total hides.

Alerts that continue an episode (status CONTINUING) are shown compactly, one line per
section ranked by dollar change; muted alerts are left out of the digest (the report
page and report.json keep them).

The alerts themselves, their plots and report.json's `alerts` list belong to the report
(the render stage draws the plots a run can afford: `procPlotting.alerts_to_plot`);
these sections only show them.
"""
from __future__ import annotations

import math

import pandas as pd

from _util.alert_kinds import CONTINUING, SPIKE_PLOT, AlertKind, kind_of, side
from _util.alert_words import move_text, usual_text
from _util.report import Alert, Report
from _util.sections.base import Section, SiteContext, SitePart, SlackPart, SlackUnit
from _util.site import pages
from _util.site.pages import AlertEntry
from _util.slack.blocks import (
    INLINE_URL_CHARS,
    SECTION_CHARS,
    SUMMARY_NAME_CHARS,
    clip,
    day_label,
    group_label,
    money,
    mrkdwn_name,
    section,
    signed_money,
    strong,
    usable_url,
)

FOLDED_GROUPS_SHOWN = 3
NOT_PLOTTED_ID = "not-plotted"


def weight(alert: Alert) -> float:
    """How much an alert matters when space runs out: its absolute dollar change."""
    d = abs(alert.delta_usd)
    return d if math.isfinite(d) else 0.0


def site_entries(report: Report, site: SiteContext) -> list[AlertEntry]:
    """Every alert as the report page lists it: its plot page, or the note that says why
    it has none."""
    return [AlertEntry(a, site.alert_pages[a.key], plotted=True) if a.key in site.alert_pages
            else AlertEntry(a, f"#{NOT_PLOTTED_ID}", plotted=False) for a in report.alerts]


def _alert_title(alert: Alert, group_by: str) -> str:
    service = strong(mrkdwn_name(alert.service))
    if alert.group is None:
        return service
    return f"{service} › {group_label(alert.group, group_by, alert.group_name)}"


def _alert_text(alert: Alert, report: Report, folded: list[Alert]) -> str:
    pct = alert.delta_pct
    change = signed_money(alert.delta_usd)
    change += f" ({pct:+.1f}%)" if pct is not None and math.isfinite(pct) else " (new spend)"
    lines = [_alert_title(alert, report.group_by)]
    measured_as_spike = kind_of(alert.kind, alert.direction).plot == SPIKE_PLOT
    crossed = f"MACD crossed {side(alert.direction)} its {report.rules.signal_span}-day signal"
    moved = None if measured_as_spike else move_text(alert, money)
    if moved:
        # A trend is a move over weeks: the averages say it, the day's cost is context.
        lines += [moved, f"{money(alert.usd)} on {day_label(report.day)}; {crossed}"]
    else:
        lines.append(f"{money(alert.usd)} on {day_label(report.day)}, {change} vs "
                     f"{usual_text(report.rules, report.day)} {money(alert.baseline_mean)}/day")
    if not measured_as_spike:
        if not moved:
            lines.append(crossed)
    else:
        detail = _zscore_text(alert.zscore)
        if alert.top_group is not None:
            top = group_label(alert.top_group, report.group_by, alert.top_group_name)
            driver = f"driven by {top}"
            if alert.top_group_delta_usd is not None:
                driver += f" ({signed_money(alert.top_group_delta_usd)})"
            detail = f"{detail}, {driver}" if detail else driver.capitalize()
        if detail:
            lines.append(detail)
    # The others say the change is broader. Left out: the spike's driving group (named
    # already) and a group that is the whole service (same series, same alert).
    folded = [a for a in folded if abs(a.usd - alert.usd) >= 0.005
              and not (measured_as_spike and a.group == alert.top_group)]
    if folded:
        names = [group_label(a.group or "", report.group_by, a.group_name) for a in folded]
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


def _continuing_text(kind: AlertKind, alerts: list[Alert],
                     report: Report) -> tuple[str, list[Alert]]:
    """'Still elevated: <url|Amazon EC2> (day 4, +$120.00/day); ...' in one section text,
    and the alerts it names (a long line ends with "; and N more")."""
    entries = []
    for alert in alerts:
        name = mrkdwn_name(alert.service, SUMMARY_NAME_CHARS)
        if alert.group is not None:
            group_name = alert.group_name and clip(alert.group_name, SUMMARY_NAME_CHARS)
            group = group_label(clip(alert.group, SUMMARY_NAME_CHARS), report.group_by, group_name)
            name += f" › {group}"
        url = usable_url(alert.plot_url)
        entry = f"<{url}|{name}>" if url and len(url) <= INLINE_URL_CHARS else name
        entries.append(f"{entry} (day {alert.episode_days}, "
                       f"{signed_money(alert.delta_usd)}/day)")
    text = f"{kind.continuing_label}: {entries[0]}"
    for shown, entry in enumerate(entries[1:], start=1):
        more = f"; and {len(entries) - shown} more"
        if len(text) + 2 + len(entry) + len(more) > SECTION_CHARS:
            return text + more, alerts[:shown]
        text += f"; {entry}"
    return text, alerts




def _units(kind: AlertKind, report: Report) -> list[SlackUnit]:
    """The digest's blocks for one kind: an item per new alert (largest change first),
    then one line of those that continue."""
    in_section = [a for a in report.visible_alerts if (a.kind, a.direction) == kind.key]
    fired_services = {a.service for a in in_section if a.group is None}
    folded: dict[str, list[Alert]] = {}
    items: list[Alert] = []
    for a in in_section:
        if a.group is not None and a.service in fired_services:
            folded.setdefault(a.service, []).append(a)
        else:
            items.append(a)
    items.sort(key=weight, reverse=True)
    new = [a for a in items if a.status != CONTINUING]
    continuing = [a for a in items if a.status == CONTINUING]
    units = []
    for a in new:
        extra = sorted(folded.get(a.service, []) if a.group is None else [],
                       key=weight, reverse=True)
        block = section(_alert_text(a, report, extra), a.plot_url)
        units.append(SlackUnit(block, weight(a), [a, *extra], linked=[a], numbered=True))
    if continuing:
        extra = [g for a in continuing if a.group is None for g in folded.get(a.service, [])]
        text, named = _continuing_text(kind, continuing, report)
        units.append(SlackUnit(section(text), max(weight(a) for a in continuing),
                               continuing + extra, linked=named))
    return units


class AlertSection(Section):
    """The alerts of one kind: a table on the report page, items in the digest."""

    def __init__(self, kind: AlertKind) -> None:
        self.kind = kind
        self.name = f"alerts:{kind.rule}-{kind.direction}"

    def site_part(self, report: Report, history: pd.DataFrame, site: SiteContext) -> SitePart:
        return SitePart(html=pages.report_alert_section(self.kind, site_entries(report, site)))

    def slack_part(self, report: Report, account_label: str | None) -> SlackPart:
        units = _units(self.kind, report)
        return SlackPart(title=section(f"*{self.kind.title}*") if units else None, units=units)


class NoAlertsSection(Section):
    """The line that says the day had no alerts (the digest's also counts muted ones)."""

    name = "no-alerts"

    def site_part(self, report: Report, history: pd.DataFrame, site: SiteContext) -> SitePart:
        return SitePart(html=pages.report_no_alerts(report, site_entries(report, site)))

    def slack_part(self, report: Report, account_label: str | None) -> SlackPart:
        if report.visible_alerts:
            return SlackPart()
        line = f"No unusual changes on {day_label(report.day)}: no spikes or trend reversals."
        left_out = _left_out(report)
        if left_out:
            line += f" ({left_out} left out.)"
        return SlackPart(blocks=[section(line)])


def _left_out(report: Report) -> str:
    """'2 muted alerts and 1 echo of a spike': what the digest does not show."""
    muted = sum(a.muted for a in report.alerts)
    echoes = sum(a.is_echo and not a.muted for a in report.alerts)
    parts = []
    if muted:
        parts.append(f"{muted} muted {'alert' if muted == 1 else 'alerts'}")
    if echoes:
        parts.append(f"{echoes} {'echo' if echoes == 1 else 'echoes'} of "
                     f"{'a spike' if echoes == 1 else 'spikes'}")
    return " and ".join(parts)
