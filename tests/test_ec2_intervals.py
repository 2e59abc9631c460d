"""Events -> intervals -> hours (`_util/ec2_intervals.py`): each case the issue lists, then
random event sequences against a straightforward minute-by-minute reference."""
from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _util.ec2_intervals import (
    ENDS_FOR_GOOD,
    RUN,
    SPOT_END,
    START,
    STARTS,
    STOP,
    TERMINATE,
    InstanceEvent,
    day_bounds,
    day_usage,
    usage_by_instance,
)

DAY = dt.date(2026, 11, 22)
MIDNIGHT, NEXT_MIDNIGHT = day_bounds(DAY)


def at(hhmm: str, day: dt.date = DAY) -> dt.datetime:
    hours, minutes = map(int, hhmm.split(":"))
    return dt.datetime.combine(day, dt.time(0), tzinfo=dt.timezone.utc) + dt.timedelta(
        hours=hours, minutes=minutes)


def ev(name: str, hhmm: str, instance: str = "i-1") -> InstanceEvent:
    return InstanceEvent(instance, name, at(hhmm))


@pytest.mark.parametrize("events, midnight, hours, still_running, terminated", [
    ([ev(RUN, "08:00"), ev(STOP, "10:30")], None, 2.5, False, False),
    ([ev(RUN, "08:00"), ev(TERMINATE, "09:00")], None, 1.0, False, True),
    ([ev(RUN, "22:00")], None, 2.0, True, False),  # still running at 24:00
    ([ev(STOP, "06:00")], None, 6.0, False, False),  # running at 00:00: inferred
    ([ev(STOP, "06:00")], True, 6.0, False, False),  # ... or said by the stored day
    ([], True, 24.0, True, False),  # ran all day without an event
    ([ev(RUN, "08:00"), ev(STOP, "09:00"), ev(STOP, "09:00")], None, 1.0, False, False),
    ([ev(RUN, "08:00"), ev(STOP, "09:00"), ev(STOP, "11:00")], None, 1.0, False, False),
    ([ev(START, "08:00"), ev(START, "09:00"), ev(STOP, "10:00")], None, 2.0, False, False),
    ([ev(START, "01:00"), ev(STOP, "02:00"), ev(START, "03:00"), ev(STOP, "05:30")], None,
     3.5, False, False),
    ([ev(RUN, "08:00"), ev(TERMINATE, "09:00"), ev(START, "10:00")], None, 1.0, False, True),
    ([ev(RUN, "20:00"), ev(SPOT_END, "23:15")], None, 3.25, False, False),  # ended by its request
    ([ev(STOP, "09:00"), ev(RUN, "08:00")], None, 1.0, False, False),  # given out of order
])
def test_each_case_gives_its_hours(events, midnight, hours, still_running, terminated):
    usage = day_usage("i-1", events, DAY, midnight)
    assert usage.hours == pytest.approx(hours)
    assert (usage.still_running, usage.terminated) == (still_running, terminated)
    assert all(MIDNIGHT <= start < end <= NEXT_MIDNIGHT for start, end in usage.intervals)


def test_a_run_that_crossed_midnight_counts_from_00_00_and_one_still_running_to_24_00():
    usage = day_usage("i-1", [ev(STOP, "03:00"), ev(START, "21:00")], DAY)
    assert usage.intervals == ((MIDNIGHT, at("03:00")), (at("21:00"), NEXT_MIDNIGHT))
    assert usage.running_at_midnight and usage.still_running and usage.hours == 6.0


def test_started_and_terminated_the_same_day_is_told_apart_from_one_running_at_midnight():
    assert day_usage("i-1", [ev(RUN, "08:00"), ev(TERMINATE, "09:00")], DAY).started_and_terminated
    assert not day_usage("i-1", [ev(TERMINATE, "09:00")], DAY).started_and_terminated


def test_instances_running_at_midnight_without_events_ran_all_day_and_failed_starts_are_left_out():
    found = usage_by_instance([ev(RUN, "08:00", "i-a"), ev(STOP, "09:00", "i-b")], DAY,
                              running_at_midnight={"i-c"})
    assert {k: v.hours for k, v in found.items()} == {"i-a": 16.0, "i-b": 9.0, "i-c": 24.0}
    assert usage_by_instance([ev(STOP, "00:00", "i-x")], DAY) == {}


# ---------------------------------------------------------------- against a reference

NAMES = [RUN, START, STOP, TERMINATE, SPOT_END]


def reference_hours(events: list[tuple[str, int]], midnight: bool | None) -> tuple[float, bool]:
    """Minute by minute: an instance runs in minute m when nothing has ended it for good at
    or before m and the newest start or stop at or before m is a start (none: whether it
    ran at 00:00, which a first event that is a stop says when nobody knows). Events are
    (name, minute of the day) in time order, then clipped to the day; ties keep their
    order."""
    clipped = [(name, min(max(minute, 0), 1440))
               for name, minute in sorted(events, key=lambda e: e[1])]
    if midnight is None:
        midnight = bool(clipped) and clipped[0][0] not in STARTS

    def running(m: int) -> bool:
        seen = [name for name, minute in clipped if minute <= m]
        if any(name in ENDS_FOR_GOOD for name in seen):
            return False
        return seen[-1] in STARTS if seen else midnight

    minutes = sum(running(m) for m in range(1440))
    return minutes / 60.0, running(1440)


events_strategy = st.lists(
    st.tuples(st.sampled_from(NAMES),
              st.one_of(st.integers(0, 1439), st.integers(-600, 2000))), max_size=12)


@settings(max_examples=400, deadline=None)
@given(events=events_strategy, midnight=st.sampled_from([None, True, False]),
       duplicate=st.integers(0, 11))
def test_hours_match_the_minute_by_minute_reference_and_stay_within_a_day(events, midnight,
                                                                         duplicate):
    if events:  # the same event sent twice, right after itself
        events = events[:duplicate + 1] + [events[min(duplicate, len(events) - 1)]] + \
            events[duplicate + 1:]
    instance_events = [InstanceEvent("i-1", name, MIDNIGHT + dt.timedelta(minutes=minute))
                       for name, minute in events]
    usage = day_usage("i-1", instance_events, DAY, midnight)
    hours, still_running = reference_hours(events, midnight)
    assert usage.hours == pytest.approx(hours)
    assert 0.0 <= usage.hours <= 24.0
    assert usage.still_running == still_running
    starts = [start for start, _ in usage.intervals]
    assert starts == sorted(starts)
    assert all(MIDNIGHT <= start < end <= NEXT_MIDNIGHT for start, end in usage.intervals)
