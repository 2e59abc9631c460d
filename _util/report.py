"""The records that pass between stages: rules in, one Report out.

Detection (procAmzAlerts) and summaries (procSummaries) fill a Report; plotting, the site
and Slack only read it. Everything here is plain data so that every stage can be tested
with hand-made reports.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from _util.alert_kinds import NEW

# What makes two days' alerts the same alert: (kind, direction, service, group).
AlertKey = tuple[str, str, str, "str | None"]

# A spike's baseline (COST_TRACKING_SEASONALITY): every day before D, or only the days
# with D's day of the week.
NO_SEASONALITY = "none"
WEEKDAY = "weekday"
SEASONALITIES = (NO_SEASONALITY, WEEKDAY)


@dataclass(frozen=True)
class Rules:
    """Thresholds of the detection rules; one object so a backtest can swap them."""

    z: float = 3.0
    min_delta_usd: float = 1.0
    min_delta_pct: float = 0.0
    min_history_days: int = 28
    min_daily_usd: float = 1.0
    ema_fast: int = 12
    ema_slow: int = 26
    signal_span: int = 18
    lookback_days: int = 365
    # A trend crossing fires only if |mean7 - mean28| >= max(pct% of mean28, usd).
    trend_min_move_pct: float = 5.0
    trend_min_move_usd: float = 1.0
    # A trend alert is an echo of a spike of its series on D-echo_days..D (0: no echoes).
    echo_days: int = 7
    seasonality: str = NO_SEASONALITY


@dataclass(frozen=True)
class Alert:
    """One series that fired one rule on the report's day.

    `group` is None for a service-level alert and "" for the untagged group.
    `top_group*` name the group that moved a service-level alert the most. A trend alert
    carries the 7- and 28-day mean daily costs its materiality gate compared, and
    `echo_of`, the day of the spike of the same series it follows, if it does.
    `group_name` and `top_group_name` are the names of those groups when they are account
    IDs with a known name (`with_group_names`): shown beside the ID, never instead of it.
    """

    kind: str
    direction: str
    service: str
    group: str | None
    usd: float
    baseline_mean: float
    baseline_std: float
    delta_usd: float
    zscore: float | None = None
    macd: float | None = None
    signal: float | None = None
    mean7: float | None = None
    mean28: float | None = None
    echo_of: dt.date | None = None
    top_group: str | None = None
    top_group_delta_usd: float | None = None
    plot_url: str | None = None
    status: str = NEW
    episode_start: dt.date | None = None
    episode_days: int = 1
    muted: bool = False
    mute_reason: str | None = None
    group_name: str | None = None
    top_group_name: str | None = None

    @property
    def level(self) -> str:
        return "service" if self.group is None else "group"

    @property
    def key(self) -> AlertKey:
        """What makes two days' alerts the same alert (for episodes and muting)."""
        return (self.kind, self.direction, self.service, self.group)

    @property
    def delta_pct(self) -> float | None:
        if self.baseline_mean <= 0:
            return None
        return 100.0 * self.delta_usd / self.baseline_mean

    @property
    def is_echo(self) -> bool:
        return self.echo_of is not None

    @property
    def counts_as_new(self) -> bool:
        """A new alert a reader is told about: first day of its episode and not an echo."""
        return self.status == NEW and not self.is_echo

    @property
    def move_pct(self) -> float | None:
        """How far the 7-day mean is from the 28-day mean, in % of the latter."""
        if self.mean7 is None or self.mean28 is None or self.mean28 <= 0:
            return None
        return 100.0 * (self.mean7 - self.mean28) / self.mean28


@dataclass(frozen=True)
class ServiceAmount:
    service: str
    usd: float


@dataclass(frozen=True)
class DayAmount:
    day: dt.date
    usd: float


@dataclass(frozen=True)
class Headline:
    """The numbers a reader sees first."""

    day_usd: float
    prev7_mean_usd: float
    mtd_usd: float
    prev_mtd_usd: float
    projection_usd: float
    estimated: bool
    # Services with costs on each of the 7 days before and none stored for the day yet,
    # with their mean daily cost then (procSummaries): the day's data looks partial.
    not_in_yet: tuple[ServiceAmount, ...] = ()

    @property
    def partial(self) -> bool:
        return bool(self.not_in_yet)

    @property
    def not_in_yet_usd(self) -> float:
        """What the services not in yet usually cost a day: about what the total lacks."""
        return sum(s.usd for s in self.not_in_yet)


@dataclass(frozen=True)
class Summary:
    """Month-to-date and daily spend.

    `daily_by_service` is tidy: one (day, service, usd) row per day of the month so far.
    """

    headline: Headline
    mtd_by_service: tuple[ServiceAmount, ...]
    daily_totals: tuple[DayAmount, ...]
    daily_by_service: tuple[tuple[dt.date, str, float], ...]


@dataclass(frozen=True)
class RouteSlice:
    """One route's part of the day as report.json lists it: its channel, its alerts and
    the headline figures of the spend it matches."""

    name: str
    channel: str
    alerts: tuple[Alert, ...]
    headline: Headline


@dataclass(frozen=True)
class Report:
    day: dt.date
    metric: str
    group_by: str
    rules: Rules
    summary: Summary
    alerts: tuple[Alert, ...]
    stale: bool = False
    # ISO 4217 code of every amount (the stored costs' unit; the store refuses a mix).
    currency: str = "USD"
    # Public URLs of the site pages the sections made, by key ("daily_by_service", ...).
    page_urls: dict[str, str] = field(default_factory=dict)
    report_url: str | None = None
    # Each section's data of its own for the day, by section name (`Section.analyse`).
    sections: dict[str, Any] = field(default_factory=dict)
    # Each [[route]]'s slice, for report.json (`_util/run/routing.py`).
    routes: tuple[RouteSlice, ...] = ()

    @property
    def estimated(self) -> bool:
        return self.summary.headline.estimated

    @property
    def visible_alerts(self) -> list[Alert]:
        """The alerts the digest shows: all but the muted and the echoes of spikes (the
        site and report.json keep every alert)."""
        return [a for a in self.alerts if not a.muted and not a.is_echo]


def with_group_names(report: Report, names: Mapping[str, str]) -> Report:
    """The report with each alert's group and top group named where `names` (account ID
    -> account name) knows them, so Slack, the pages, the plots and report.json all show
    "123456789012 (prod-web)" from the one alert."""
    if not names:
        return report

    def name_of(group: str | None) -> str | None:
        return (names.get(group) or None) if group else None

    return dataclasses.replace(report, alerts=tuple(
        dataclasses.replace(a, group_name=name_of(a.group), top_group_name=name_of(a.top_group))
        for a in report.alerts))


def _plain(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def alert_to_dict(alert: Alert) -> dict[str, Any]:
    data = {f.name: _plain(getattr(alert, f.name)) for f in dataclasses.fields(alert)}
    data["level"] = alert.level
    return data


def report_to_dict(report: Report, section_parts: dict[str, Any]) -> dict[str, Any]:
    """The report.json document, its keys documented in the README: the report's own,
    with the sections' parts (`_util.sections.report_json`) after the rules."""
    return {
        "date": report.day.isoformat(),
        "metric": report.metric,
        "currency": report.currency,
        "group_by": report.group_by,
        "estimated": report.estimated,
        "stale": report.stale,
        "rules": dataclasses.asdict(report.rules),
        **section_parts,
        "report_url": report.report_url,
        "routes": [{"name": r.name, "channel": r.channel,
                    "alerts": [alert_to_dict(a) for a in r.alerts],
                    "totals": {"day": r.headline.day_usd, "mtd": r.headline.mtd_usd,
                               "projection": r.headline.projection_usd}}
                   for r in report.routes],
        "alerts": [alert_to_dict(a) for a in report.alerts],
    }
