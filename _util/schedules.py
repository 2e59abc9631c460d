"""Schedules: when the resources tagged with a schedule's name should run.

A schedule is a `[schedule.<name>]` table of the config:

    [schedule.office-hours]
    timezone = "Europe/Berlin"
    on = "Mon-Fri 08:00"          # or a list: ["Mon-Fri 08:00", "Sat 10:00"]
    off = "Mon-Fri 19:00"
    idle_stop = true              # also stop what the daily run found idle

Its times are wall-clock times in its time zone, so "08:00" stays 08:00 across a
daylight-saving change. The scheduler acts on *transitions*: the newest `on` or `off` time
at or before now says what a resource should be, and is applied once (a person who starts
an instance by hand on a Saturday is not overruled until the next transition). A time the
clock skips (02:30 on the night it springs forward) happens as if the clock had not moved yet
(at 03:30 of the new time); a time it passes twice (02:30 on the night it falls back) happens the first
time.

Pure: no clock, no AWS; the caller passes `now`.
"""
from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from _util.config_tables import check_table
from _util.errors import ConfigError

ON = "on"
OFF = "off"
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
# The newest transition is looked for this many days back: a week holds every weekday.
SEARCH_DAYS = 8
SCHEDULE_KEYS = {"timezone", "on", "off", "idle_stop"}
# --demo without [schedule.*] tables: the schedules its tagged resources name, so
# `--demo --schedule --dry-run` shows what they would get.
DEMO_SCHEDULES = {
    "office-hours": {"timezone": "Europe/Berlin", "on": "Mon-Fri 08:00", "off": "Mon-Fri 19:00",
                     "idle_stop": True},
    "weekend-off": {"timezone": "America/New_York", "on": "Mon 07:00", "off": "Fri 20:00"},
}
_TIME = re.compile(r"^\s*(?P<days>[A-Za-z,\- ]+?)\s+(?P<hour>\d{1,2}):(?P<minute>\d{2})\s*$")


@dataclass(frozen=True)
class WeeklyTime:
    """A wall-clock time on some days of the week ("Mon-Fri 08:00")."""

    weekdays: frozenset[int]  # 0 = Monday
    time: dt.time
    text: str


@dataclass(frozen=True)
class Schedule:
    name: str
    timezone: str
    on: tuple[WeeklyTime, ...]
    off: tuple[WeeklyTime, ...]
    idle_stop: bool = False

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


@dataclass(frozen=True)
class Transition:
    """The newest on/off time at or before a moment: what the schedule says to be."""

    schedule: str
    state: str  # ON or OFF
    at: dt.datetime  # UTC

    @property
    def key(self) -> str:
        """Names this transition in the records: a resource is moved once per key."""
        return f"{self.schedule}:{self.state}@{self.at.strftime('%Y-%m-%dT%H:%MZ')}"


FULL_DAY_NAMES = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday",
                  "sunday")


def _day(name: str) -> int:
    """A day's index from its name, short or full ("Mon", "monday"); ValueError otherwise."""
    name = name.lower()
    if name in DAY_NAMES:
        return DAY_NAMES.index(name)
    if name in FULL_DAY_NAMES:
        return FULL_DAY_NAMES.index(name)
    raise ValueError(name)


def _weekdays(text: str) -> frozenset[int]:
    days: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        if part == "daily":
            days.update(range(7))
            continue
        ends = part.split("-")
        if len(ends) > 2:
            raise ValueError(part)
        try:
            a = _day(ends[0])
            b = _day(ends[1]) if len(ends) == 2 else a
        except ValueError:
            raise ValueError(part) from None
        # A range may wrap past Sunday ("Fri-Mon").
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return frozenset(days)


def parse_weekly_time(text: str) -> WeeklyTime:
    """ "Mon-Fri 08:00", "Sat,Sun 10:30", "daily 07:00"; ValueError otherwise."""
    match = _TIME.match(str(text))
    if not match:
        raise ValueError(text)
    hour, minute = int(match["hour"]), int(match["minute"])
    if hour > 23 or minute > 59:
        raise ValueError(text)
    return WeeklyTime(_weekdays(match["days"]), dt.time(hour, minute), str(text).strip())


def _times(raw: Any, label: str, key: str) -> tuple[WeeklyTime, ...]:
    items = raw if isinstance(raw, list) else [] if raw is None else [raw]
    try:
        return tuple(parse_weekly_time(item) for item in items)
    except ValueError as exc:
        raise ConfigError(f"{label} {key} has {str(exc)!r}; allowed: days and a time such "
                          "as \"Mon-Fri 08:00\" (days: Mon..Sun, ranges, commas, daily)"
                          ) from None


def parse_schedules(raw: Any, where: str) -> tuple[Schedule, ...]:
    """The `[schedule.<name>]` tables of the config; a bad one is one line naming it."""
    if raw is None:
        return ()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: 'schedule' must be tables such as [schedule.office-hours]")
    schedules = []
    for name, entry in raw.items():
        label = f"{where}: [schedule.{name}]"
        check_table(entry, label, SCHEDULE_KEYS)
        zone = entry.get("timezone", "UTC")
        try:
            ZoneInfo(str(zone))
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: a folder's name
            raise ConfigError(f"{label} timezone is {zone!r}; allowed: an IANA time zone "
                              "such as Europe/Berlin or UTC") from None
        on, off = _times(entry.get("on"), label, "on"), _times(entry.get("off"), label, "off")
        idle_stop = entry.get("idle_stop", False)
        if not isinstance(idle_stop, bool):
            raise ConfigError(f"{label} idle_stop must be true or false")
        if not on and not off and not idle_stop:
            raise ConfigError(f"{label} needs on or off times, or idle_stop = true")
        schedules.append(Schedule(str(name), str(zone), on, off, idle_stop))
    return tuple(schedules)


def _utc_of(day: dt.date, wall: dt.time, zone: ZoneInfo) -> dt.datetime:
    """The UTC moment a wall-clock time happens on a local day (fold=0, PEP 495: see the
    module's note on skipped and repeated times)."""
    return dt.datetime.combine(day, wall, tzinfo=zone).astimezone(dt.timezone.utc)


def _moments(times: tuple[WeeklyTime, ...], now: dt.datetime, zone: ZoneInfo):
    today = now.astimezone(zone).date()
    for back in range(SEARCH_DAYS):
        day = today - dt.timedelta(days=back)
        for t in times:
            if day.weekday() in t.weekdays:
                moment = _utc_of(day, t.time, zone)
                if moment <= now:
                    yield moment


def latest_transition(schedule: Schedule, now: dt.datetime) -> Transition | None:
    """The newest on or off time at or before `now` (aware), or None when the schedule has
    none in the week before (only idle_stop, say). An on and an off at the same moment:
    off wins (the safer of the two for the bill is not the point; a schedule that says
    both is a typo, and stopping is what its author can see and undo)."""
    zone = schedule.zone
    best: Transition | None = None
    for state, times in ((ON, schedule.on), (OFF, schedule.off)):
        for moment in _moments(times, now, zone):
            if best is None or moment > best.at or (moment == best.at and state == OFF):
                best = Transition(schedule.name, state, moment)
    return best
