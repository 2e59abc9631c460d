"""From an instance's CloudTrail events of one UTC day to the intervals it ran and its hours.

Pure: events in, intervals out; no clock, no AWS. The rules, in the order they apply:

- A start (`RunInstances`, `StartInstances`) begins an interval, a stop (`StopInstances`,
  `TerminateInstances`, or the end a spot request put on the instance) ends it; events of
  the same time keep the order they were given in.
- Only a change counts: a start while running and a stop while stopped change nothing, so
  a duplicated event (the same stop sent twice, or CloudTrail listing it twice) counts once.
- After `TerminateInstances` nothing starts the instance again.
- An instance running at 00:00 (started on an earlier day) counts from 00:00. Whether it was
  is said by the caller (the previous day's stored intervals, `describe_instances`); when
  nobody knows, a day whose first event is a stop says it was.
- One still running at 24:00 counts to 24:00 and is `still_running`.

So an instance's hours on a day are never negative and never over 24.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

RUN = "RunInstances"
START = "StartInstances"
STOP = "StopInstances"
TERMINATE = "TerminateInstances"
SPOT_END = "SpotRequestEnd"  # not a CloudTrail event: the end a spot request put on it
EVENT_NAMES = (RUN, START, STOP, TERMINATE)  # what is looked up in CloudTrail
STARTS = frozenset({RUN, START})
STOPS = frozenset({STOP, TERMINATE, SPOT_END})
ENDS_FOR_GOOD = frozenset({TERMINATE, SPOT_END})

DAY = dt.timedelta(days=1)


@dataclass(frozen=True)
class InstanceEvent:
    """One event that changed (or tried to change) an instance's state. `time` is UTC,
    timezone-aware."""

    instance_id: str
    name: str
    time: dt.datetime


@dataclass(frozen=True)
class DayUsage:
    """What one instance did on one day: its intervals (UTC, start < end, within the
    day), whether it was running at 00:00 and at 24:00, and whether it was terminated."""

    instance_id: str
    intervals: tuple[tuple[dt.datetime, dt.datetime], ...]
    running_at_midnight: bool
    still_running: bool
    terminated: bool

    @property
    def hours(self) -> float:
        return sum((end - start).total_seconds() for start, end in self.intervals) / 3600.0

    @property
    def started_and_terminated(self) -> bool:
        """Started on the day (not running at 00:00) and terminated before 24:00: the short
        lived ones the digest counts apart."""
        return self.terminated and not self.running_at_midnight


def day_bounds(day: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """00:00 and 24:00 of a UTC day."""
    start = dt.datetime.combine(day, dt.time(0), tzinfo=dt.timezone.utc)
    return start, start + DAY


def _clip(t: dt.datetime, low: dt.datetime, high: dt.datetime) -> dt.datetime:
    return min(max(t, low), high)


def day_usage(instance_id: str, events: Sequence[InstanceEvent], day: dt.date,
              running_at_midnight: bool | None = None) -> DayUsage:
    """The intervals `instance_id` ran on `day`, from its events (any order; times outside
    the day are clipped to it). `running_at_midnight` None: inferred (a first event that is
    a stop says it was running)."""
    low, high = day_bounds(day)
    ordered = sorted((e for e in events if e.name in STARTS or e.name in STOPS),
                     key=lambda e: e.time)
    if running_at_midnight is None:
        running_at_midnight = bool(ordered) and ordered[0].name in STOPS
    running, since, ended = running_at_midnight, low, False
    intervals: list[tuple[dt.datetime, dt.datetime]] = []
    for event in ordered:
        t = _clip(event.time, low, high)
        if event.name in STARTS and not running and not ended:
            running, since = True, t
        elif event.name in STOPS:
            if running and t > since:
                intervals.append((since, t))
            running = False
            ended = ended or event.name in ENDS_FOR_GOOD
    if running and high > since:
        intervals.append((since, high))
    return DayUsage(instance_id, tuple(intervals), running_at_midnight, running,
                    any(e.name == TERMINATE for e in ordered))


def usage_by_instance(events: Iterable[InstanceEvent], day: dt.date,
                      running_at_midnight: Iterable[str] = ()) -> dict[str, DayUsage]:
    """Each instance's usage on `day`: those with events, and those known to be running
    at 00:00 (`running_at_midnight`: instance IDs), which ran all day when they have no
    events. An instance without an interval (a failed start, a stop of a stopped one) is
    left out."""
    by_id: dict[str, list[InstanceEvent]] = {}
    for event in events:
        by_id.setdefault(event.instance_id, []).append(event)
    known = set(running_at_midnight)
    found = {}
    for instance_id in sorted(by_id.keys() | known):
        usage = day_usage(instance_id, by_id.get(instance_id, []), day,
                          True if instance_id in known else None)
        if usage.intervals:
            found[instance_id] = usage
    return found
