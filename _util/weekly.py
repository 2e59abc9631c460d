"""The weekly summary for managers: last week against the week before and the same week a
month ago, the services that changed most, and the week's alerts by episode.

Sent on `COST_TRACKING_WEEKLY_DAY` (say, monday): the run that morning reports Sunday, so
the week is the seven days ending on the report's day. Pure: the history frame and the
week's alerts in, a `WeeklySummary` out; the pipeline sends one per channel.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import pandas as pd

from _util.alert_kinds import SPIKE_PLOT, kind_of
from _util.report import Alert, AlertKey

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
WEEK_DAYS = 7
MONTH_AGO_DAYS = 28  # the same weekdays four weeks earlier
TOP_CHANGES = 5


@dataclass(frozen=True)
class ServiceChange:
    service: str
    usd: float
    previous_usd: float

    @property
    def change_usd(self) -> float:
        return self.usd - self.previous_usd


def change_of(alert: Alert) -> float:
    """An alert's dollar change as a reader compares them: a spike's cost against its
    baseline mean, a trend's 7-day against its 28-day mean daily cost."""
    if alert.mean7 is not None and alert.mean28 is not None:
        return alert.mean7 - alert.mean28
    return alert.delta_usd


@dataclass(frozen=True)
class WeekEpisode:
    """One alert's days in the week: the first and last day it fired, how many days,
    and its largest dollar change (`change_of`: a trend's is per day)."""

    key: AlertKey
    first_day: dt.date
    last_day: dt.date
    days: int
    peak_delta_usd: float

    @property
    def kind(self) -> str:
        return self.key[0]

    @property
    def direction(self) -> str:
        return self.key[1]

    @property
    def service(self) -> str:
        return self.key[2]

    @property
    def group(self) -> str | None:
        return self.key[3]

    @property
    def per_day(self) -> bool:
        """A trend's change is of its mean daily cost."""
        return kind_of(self.kind, self.direction).plot != SPIKE_PLOT


@dataclass(frozen=True)
class WeeklySummary:
    first_day: dt.date
    last_day: dt.date
    total_usd: float
    previous_usd: float  # the seven days before
    month_ago_usd: float  # the same seven weekdays four weeks before
    changes: tuple[ServiceChange, ...]  # the largest changes against the week before
    episodes: tuple[WeekEpisode, ...]  # largest dollar change first


def is_weekly_day(report_day: dt.date, weekday: str | None) -> bool:
    """Whether the run that reports `report_day` (the morning after) is on `weekday`."""
    return weekday is not None and (report_day + dt.timedelta(days=1)).weekday() == WEEKDAYS.index(weekday)


def _totals_by_service(history: pd.DataFrame, first: dt.date, last: dt.date) -> pd.Series:
    days = history["usage_date"]
    inside = (days >= pd.Timestamp(first)) & (days <= pd.Timestamp(last))
    rows = history[inside]
    return rows.groupby(rows["service"].astype(str), observed=True)["amount"].sum()


def week_episodes(alerts_by_day: Mapping[dt.date, tuple[Alert, ...]]) -> tuple[WeekEpisode, ...]:
    """The week's alerts by key, muted ones and echoes of spikes left out (as the daily
    digests leave them out)."""
    found: dict[AlertKey, list] = {}
    for day in sorted(alerts_by_day):
        for alert in alerts_by_day[day]:
            if alert.muted or alert.is_echo:
                continue
            entry = found.setdefault(alert.key, [day, day, 0, 0.0])
            entry[1] = day
            entry[2] += 1
            if abs(change_of(alert)) > abs(entry[3]):
                entry[3] = change_of(alert)
    episodes = [WeekEpisode(key, first, last, days, peak)
                for key, (first, last, days, peak) in found.items()]
    return tuple(sorted(episodes, key=lambda e: (-abs(e.peak_delta_usd), e.key[2], str(e.key))))


def weekly_summary(history: pd.DataFrame, last_day: dt.date,
                   alerts_by_day: Mapping[dt.date, tuple[Alert, ...]]) -> WeeklySummary:
    first = last_day - dt.timedelta(days=WEEK_DAYS - 1)
    before = (first - dt.timedelta(days=WEEK_DAYS), first - dt.timedelta(days=1))
    month_ago = (first - dt.timedelta(days=MONTH_AGO_DAYS), last_day - dt.timedelta(days=MONTH_AGO_DAYS))
    week = _totals_by_service(history, first, last_day)
    previous = _totals_by_service(history, *before)
    services = sorted(set(week.index) | set(previous.index))
    changes = [ServiceChange(s, float(week.get(s, 0.0)), float(previous.get(s, 0.0)))
               for s in services]
    changes = [c for c in changes if np.isfinite(c.change_usd) and c.change_usd != 0.0]
    changes.sort(key=lambda c: (-abs(c.change_usd), c.service))
    return WeeklySummary(
        first_day=first, last_day=last_day, total_usd=float(week.sum()),
        previous_usd=float(previous.sum()),
        month_ago_usd=float(_totals_by_service(history, *month_ago).sum()),
        changes=tuple(changes[:TOP_CHANGES]), episodes=week_episodes(alerts_by_day))
