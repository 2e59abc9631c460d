"""Schedules (`_util/schedules.py`): the `[schedule.<name>]` tables, and the newest on/off
transition at or before a fixed moment, across time zones and daylight-saving changes.

Every expected moment below is written out in UTC by hand (from the zones' published
rules), not computed with zoneinfo, so a test fails when the module converts wrongly.
"""
from __future__ import annotations

import datetime as dt

import pytest

from _util.errors import ConfigError
from _util.schedules import (
    OFF,
    ON,
    Schedule,
    Transition,
    WeeklyTime,
    latest_transition,
    parse_schedules,
)

UTC = dt.timezone.utc
WHERE = "cost-tracking.toml"
MICROSECOND = dt.timedelta(microseconds=1)
ALL_DAYS = frozenset(range(7))


def utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=UTC)


def one(entry: dict, name: str = "office-hours") -> Schedule:
    (schedule,) = parse_schedules({name: entry}, WHERE)
    return schedule


def office_hours(zone: str) -> Schedule:
    return one({"timezone": zone, "on": "Mon-Fri 08:00", "off": "Mon-Fri 19:00"})


# ---------------------------------------------------------------- parsing


@pytest.mark.parametrize(("text", "weekdays", "time"), [
    ("Mon-Fri 08:00", frozenset({0, 1, 2, 3, 4}), dt.time(8, 0)),
    ("Fri-Mon 22:30", frozenset({4, 5, 6, 0}), dt.time(22, 30)),  # wraps past Sunday
    ("Sun-Sat 06:00", ALL_DAYS, dt.time(6, 0)),
    ("Sat,Sun 10:30", frozenset({5, 6}), dt.time(10, 30)),
    ("Sat, Sun 10:30", frozenset({5, 6}), dt.time(10, 30)),
    ("Mon-Wed,Fri 07:15", frozenset({0, 1, 2, 4}), dt.time(7, 15)),
    ("daily 07:00", ALL_DAYS, dt.time(7, 0)),
    ("Wed 00:00", frozenset({2}), dt.time(0, 0)),
    ("mon-fri 8:05", frozenset({0, 1, 2, 3, 4}), dt.time(8, 5)),
    ("Monday-Friday 23:59", frozenset({0, 1, 2, 3, 4}), dt.time(23, 59)),
])
def test_weekly_times_parse_ranges_wraps_lists_and_daily(text, weekdays, time):
    schedule = one({"on": text})
    assert schedule.on == (WeeklyTime(weekdays, time, text),)


def test_several_times_in_a_list_are_all_kept_in_order():
    schedule = one({"on": ["Mon-Fri 08:00", "Sat 10:00"], "off": ["Mon-Fri 19:00", "Sat 14:00"]})
    assert [(t.weekdays, t.time) for t in schedule.on] == [
        (frozenset({0, 1, 2, 3, 4}), dt.time(8, 0)), (frozenset({5}), dt.time(10, 0))]
    assert [(t.weekdays, t.time) for t in schedule.off] == [
        (frozenset({0, 1, 2, 3, 4}), dt.time(19, 0)), (frozenset({5}), dt.time(14, 0))]


def test_a_schedule_keeps_its_name_zone_and_idle_stop():
    (a, b) = parse_schedules({
        "office-hours": {"timezone": "Europe/Berlin", "on": "Mon-Fri 08:00",
                         "off": "Mon-Fri 19:00", "idle_stop": True},
        "idle-only": {"idle_stop": True}}, WHERE)
    assert (a.name, a.timezone, a.idle_stop) == ("office-hours", "Europe/Berlin", True)
    assert (b.name, b.timezone, b.idle_stop, b.on, b.off) == ("idle-only", "UTC", True, (), ())


def test_idle_stop_is_off_unless_asked_for():
    assert one({"on": "Mon 08:00"}).idle_stop is False


def test_no_schedule_tables_means_no_schedules():
    assert parse_schedules(None, WHERE) == ()


def test_schedule_that_is_not_tables_is_refused_naming_the_config():
    with pytest.raises(ConfigError, match=f"^{WHERE}: 'schedule' must be tables"):
        parse_schedules("office-hours", WHERE)


@pytest.mark.parametrize(("entry", "names"), [
    ({"on": "Mox-Fri 08:00"}, "'mox-fri'"),
    ({"on": "Mon-Fry 08:00"}, "'mon-fry'"),
    ({"on": "Weekdays 08:00"}, "'weekdays'"),
    ({"on": "Mon,,Fri 08:00"}, "on has"),
    ({"off": "Mon-Fri 25:00"}, "off has 'Mon-Fri 25:00'"),
    ({"off": "Mon-Fri 24:00"}, "off has 'Mon-Fri 24:00'"),
    ({"off": "Mon-Fri 19:60"}, "off has 'Mon-Fri 19:60'"),
    ({"off": "Mon-Fri 19"}, "off has 'Mon-Fri 19'"),
    ({"off": "Mon-Fri 7pm"}, "off has 'Mon-Fri 7pm'"),
    ({"off": "19:00"}, "off has '19:00'"),
    ({"off": "Mon-Fri"}, "off has 'Mon-Fri'"),
    ({"on": ["Mon-Fri 08:00", "Sat 8"]}, "on has 'Sat 8'"),
    ({"on": "Mon 08:00", "timezone": "Europe/Berlinn"}, "timezone is 'Europe/Berlinn'"),
    ({"on": "Mon 08:00", "timezone": "CEST"}, "timezone is 'CEST'"),
    ({"on": "Mon 08:00", "timezone": ""}, "timezone is ''"),
    ({"on": "Mon 08:00", "of": "Mon 19:00"}, "unknown key(s) of"),
    ({"on": "Mon 08:00", "idle_stop": "yes"}, "idle_stop must be true or false"),
    ({"on": "Mon 08:00", "idle_stop": 1}, "idle_stop must be true or false"),
    ({"timezone": "UTC"}, "needs on or off times, or idle_stop = true"),
    ({"idle_stop": False}, "needs on or off times, or idle_stop = true"),
    ("Mon-Fri 08:00", "must be a table"),
])
def test_a_bad_schedule_is_one_config_error_naming_the_schedule(entry, names):
    with pytest.raises(ConfigError) as error:
        parse_schedules({"office-hours": entry}, WHERE)
    message = str(error.value)
    assert message.startswith(f"{WHERE}: [schedule.office-hours]")
    assert names in message
    assert "\n" not in message


def test_a_bad_schedule_after_a_good_one_is_the_one_named():
    with pytest.raises(ConfigError, match=r"\[schedule\.night\] off has 'Sun 99:00'"):
        parse_schedules({"office-hours": {"on": "Mon 08:00"},
                         "night": {"off": "Sun 99:00"}}, WHERE)


def test_a_time_zone_folder_is_refused_as_a_config_error():
    with pytest.raises(ConfigError, match=r"\[schedule\.office-hours\] timezone is 'Europe'"):
        parse_schedules({"office-hours": {"timezone": "Europe", "on": "Mon 08:00"}}, WHERE)


@pytest.mark.parametrize("text", ["Monkey 08:00", "Sunny 08:00", "Mon-Tue-Wed 08:00"])
def test_a_word_that_only_starts_like_a_day_is_refused(text):
    with pytest.raises(ConfigError, match=r"\[schedule\.office-hours\] on has"):
        parse_schedules({"office-hours": {"on": text}}, WHERE)


# ---------------------------------------------------------------- the newest transition


def test_during_office_hours_the_newest_transition_is_the_mornings_on():
    schedule = office_hours("UTC")
    # Wednesday 2026-06-10, 12:00 UTC.
    assert latest_transition(schedule, utc(2026, 6, 10, 12, 0)) == Transition(
        "office-hours", ON, utc(2026, 6, 10, 8, 0))


def test_in_the_evening_the_newest_transition_is_the_days_off():
    schedule = office_hours("UTC")
    assert latest_transition(schedule, utc(2026, 6, 10, 23, 0)) == Transition(
        "office-hours", OFF, utc(2026, 6, 10, 19, 0))


def test_before_the_morning_on_the_newest_transition_is_the_previous_evenings_off():
    schedule = office_hours("UTC")
    assert latest_transition(schedule, utc(2026, 6, 10, 7, 59)) == Transition(
        "office-hours", OFF, utc(2026, 6, 9, 19, 0))


@pytest.mark.parametrize("now", [
    utc(2026, 6, 13, 10, 0),  # Saturday 12:00 in Berlin (CEST)
    utc(2026, 6, 14, 21, 0),  # Sunday 23:00 in Berlin
    utc(2026, 6, 15, 5, 59),  # Monday 07:59 in Berlin
])
def test_over_the_weekend_the_newest_transition_is_fridays_off(now):
    schedule = office_hours("Europe/Berlin")
    # Friday 2026-06-12 19:00 CEST = 17:00 UTC.
    assert latest_transition(schedule, now) == Transition(
        "office-hours", OFF, utc(2026, 6, 12, 17, 0))


def test_a_weekend_only_schedule_reaches_back_to_sundays_off_midweek():
    schedule = one({"on": "Sat,Sun 10:00", "off": "Sat,Sun 18:00"}, "weekend")
    # Thursday 2026-06-11 noon: the newest is Sunday 2026-06-07 18:00, four days back.
    assert latest_transition(schedule, utc(2026, 6, 11, 12, 0)) == Transition(
        "weekend", OFF, utc(2026, 6, 7, 18, 0))


def test_a_wrapping_range_puts_transitions_on_monday_after_the_weekend():
    schedule = one({"on": "Fri-Mon 09:00", "off": "Fri-Mon 17:00"}, "long-weekend")
    # Tuesday 2026-06-09 noon: Monday's off; Thursday: still Monday's off.
    assert latest_transition(schedule, utc(2026, 6, 9, 12, 0)) == Transition(
        "long-weekend", OFF, utc(2026, 6, 8, 17, 0))
    assert latest_transition(schedule, utc(2026, 6, 11, 12, 0)) == Transition(
        "long-weekend", OFF, utc(2026, 6, 8, 17, 0))
    # Saturday 10:00: Saturday's on.
    assert latest_transition(schedule, utc(2026, 6, 13, 10, 0)) == Transition(
        "long-weekend", ON, utc(2026, 6, 13, 9, 0))


def test_a_weekly_time_a_full_week_back_is_still_found():
    schedule = one({"on": "Mon 08:00", "off": "Mon 08:30"}, "mondays")
    # Monday 2026-06-15 07:59: the newest is last Monday's 08:30, seven days back.
    assert latest_transition(schedule, utc(2026, 6, 15, 7, 59)) == Transition(
        "mondays", OFF, utc(2026, 6, 8, 8, 30))


def test_the_newest_of_several_times_in_a_list_wins():
    schedule = one({"on": ["Mon-Fri 08:00", "Sat 10:00"], "off": ["Mon-Fri 19:00",
                                                                  "Sat 14:00"]}, "shop")
    assert latest_transition(schedule, utc(2026, 6, 13, 12, 0)) == Transition(
        "shop", ON, utc(2026, 6, 13, 10, 0))
    assert latest_transition(schedule, utc(2026, 6, 14, 12, 0)) == Transition(
        "shop", OFF, utc(2026, 6, 13, 14, 0))


def test_the_transition_instant_itself_counts_and_a_microsecond_before_does_not():
    schedule = office_hours("Europe/Berlin")
    on_at = utc(2026, 6, 10, 6, 0)  # Wednesday 08:00 CEST
    assert latest_transition(schedule, on_at) == Transition("office-hours", ON, on_at)
    assert latest_transition(schedule, on_at - MICROSECOND) == Transition(
        "office-hours", OFF, utc(2026, 6, 9, 17, 0))


def test_an_on_and_an_off_at_the_same_moment_is_off():
    schedule = one({"on": "Mon-Fri 08:00", "off": "Mon 08:00"}, "typo")
    assert latest_transition(schedule, utc(2026, 6, 8, 9, 0)) == Transition(
        "typo", OFF, utc(2026, 6, 8, 8, 0))
    assert latest_transition(schedule, utc(2026, 6, 9, 9, 0)) == Transition(
        "typo", ON, utc(2026, 6, 9, 8, 0))


def test_a_schedule_with_only_idle_stop_has_no_transition():
    assert latest_transition(one({"idle_stop": True}, "idle-only"),
                             utc(2026, 6, 10, 12, 0)) is None


def test_the_transition_is_in_utc_whatever_zone_now_is_given_in():
    schedule = office_hours("Europe/Berlin")
    now_in_tokyo = dt.datetime(2026, 6, 10, 21, 0, tzinfo=dt.timezone(dt.timedelta(hours=9)))
    assert latest_transition(schedule, now_in_tokyo) == latest_transition(
        schedule, utc(2026, 6, 10, 12, 0))


# ---------------------------------------------------------------- time zones


@pytest.mark.parametrize(("zone", "monday_on_utc"), [
    ("UTC", utc(2026, 6, 8, 8, 0)),
    ("Europe/Berlin", utc(2026, 6, 8, 6, 0)),  # CEST, +02:00
    ("America/New_York", utc(2026, 6, 8, 12, 0)),  # EDT, -04:00
    ("Asia/Kolkata", utc(2026, 6, 8, 2, 30)),  # IST, +05:30
    ("Pacific/Auckland", utc(2026, 6, 7, 20, 0)),  # NZST (winter there), +12:00: Sunday UTC
])
def test_monday_08_00_is_08_00_in_the_schedules_zone(zone, monday_on_utc):
    schedule = office_hours(zone)
    assert latest_transition(schedule, monday_on_utc) == Transition(
        "office-hours", ON, monday_on_utc)
    assert latest_transition(schedule, monday_on_utc - MICROSECOND).state == OFF


def test_the_local_weekday_counts_not_the_utc_one():
    # Monday 02:00 in Kolkata is Sunday 20:30 UTC; at Sunday 21:00 UTC it has happened.
    schedule = one({"timezone": "Asia/Kolkata", "on": "Mon 02:00", "off": "Sat 02:00"},
                   "early")
    assert latest_transition(schedule, utc(2026, 6, 7, 21, 0)) == Transition(
        "early", ON, utc(2026, 6, 7, 20, 30))
    assert latest_transition(schedule, utc(2026, 6, 7, 20, 29)) == Transition(
        "early", OFF, utc(2026, 6, 5, 20, 30))


@pytest.mark.parametrize(("zone", "before_utc", "after_utc"), [
    # Berlin springs forward on Sunday 2026-03-29: 08:00 CET -> 08:00 CEST.
    ("Europe/Berlin", utc(2026, 3, 23, 7, 0), utc(2026, 3, 30, 6, 0)),
    # ... and falls back on Sunday 2026-10-25: 08:00 CEST -> 08:00 CET.
    ("Europe/Berlin", utc(2026, 10, 19, 6, 0), utc(2026, 10, 26, 7, 0)),
    # New York springs forward on Sunday 2026-03-08: EST (-5) -> EDT (-4).
    ("America/New_York", utc(2026, 3, 2, 13, 0), utc(2026, 3, 9, 12, 0)),
    # ... and falls back on Sunday 2026-11-01.
    ("America/New_York", utc(2026, 10, 26, 12, 0), utc(2026, 11, 2, 13, 0)),
    # Auckland (southern hemisphere) falls back on Sunday 2026-04-05: NZDT (+13) -> NZST
    # (+12); its Monday 08:00 is Sunday evening UTC.
    ("Pacific/Auckland", utc(2026, 3, 29, 19, 0), utc(2026, 4, 5, 20, 0)),
    # ... and springs forward on Sunday 2026-09-27: NZST -> NZDT.
    ("Pacific/Auckland", utc(2026, 9, 20, 20, 0), utc(2026, 9, 27, 19, 0)),
])
def test_monday_08_00_stays_08_00_local_across_a_daylight_saving_change(
        zone, before_utc, after_utc):
    schedule = office_hours(zone)
    for monday_on in (before_utc, after_utc):
        assert latest_transition(schedule, monday_on) == Transition(
            "office-hours", ON, monday_on)
        assert latest_transition(schedule, monday_on - MICROSECOND).state == OFF
    assert after_utc - before_utc != dt.timedelta(days=7)


def test_a_time_the_clock_skips_happens_at_the_same_distance_after_the_change():
    # Berlin, Sunday 2026-03-29: 02:00 CET jumps to 03:00 CEST (01:00 UTC). The module
    # promises 02:30 happens "as if the clock had not moved yet": 02:30 CET = 01:30 UTC,
    # which the new clock shows as 03:30 CEST.
    schedule = one({"timezone": "Europe/Berlin", "on": "daily 02:30", "off": "daily 00:00"},
                   "nightly")
    skipped = utc(2026, 3, 29, 1, 30)
    assert latest_transition(schedule, skipped) == Transition("nightly", ON, skipped)
    assert latest_transition(schedule, skipped - MICROSECOND) == Transition(
        "nightly", OFF, utc(2026, 3, 28, 23, 0))  # 00:00 CET
    # The next day 02:30 is an ordinary 02:30 CEST again.
    assert latest_transition(schedule, utc(2026, 3, 30, 1, 0)) == Transition(
        "nightly", ON, utc(2026, 3, 30, 0, 30))


def test_a_time_the_clock_passes_twice_happens_the_first_time_only():
    # Berlin, Sunday 2026-10-25: 03:00 CEST falls back to 02:00 CET (01:00 UTC), so 02:30
    # happens at 00:30 UTC (CEST) and again at 01:30 UTC (CET). The module promises the
    # first.
    schedule = one({"timezone": "Europe/Berlin", "on": "daily 02:30", "off": "daily 00:00"},
                   "nightly")
    first = utc(2026, 10, 25, 0, 30)
    expected = Transition("nightly", ON, first)
    assert latest_transition(schedule, first) == expected
    assert latest_transition(schedule, first - MICROSECOND) == Transition(
        "nightly", OFF, utc(2026, 10, 24, 22, 0))  # 00:00 CEST
    # At the second 02:30 (and after it) it is still that one transition, same key.
    for later in (utc(2026, 10, 25, 1, 30), utc(2026, 10, 25, 1, 31)):
        assert latest_transition(schedule, later) == expected
        assert latest_transition(schedule, later).key == expected.key


# ---------------------------------------------------------------- keys


def test_a_transitions_key_names_schedule_state_and_utc_minute():
    transition = latest_transition(office_hours("Europe/Berlin"), utc(2026, 6, 10, 12, 0))
    assert transition.key == "office-hours:on@2026-06-10T06:00Z"


def test_the_same_transition_keeps_its_key_until_the_next_one():
    schedule = office_hours("Europe/Berlin")
    keys = {latest_transition(schedule, utc(2026, 6, 12, 17, 0) + dt.timedelta(hours=h)).key
            for h in range(0, 61)}  # Friday 19:00 CEST to Monday 06:00 CEST
    assert keys == {"office-hours:off@2026-06-12T17:00Z"}


def test_the_same_weekly_time_has_a_different_key_each_week():
    schedule = one({"on": "Mon 08:00", "off": "Mon 18:00"}, "mondays")
    this_week = latest_transition(schedule, utc(2026, 6, 8, 9, 0))
    next_week = latest_transition(schedule, utc(2026, 6, 15, 9, 0))
    assert (this_week.state, next_week.state) == (ON, ON)
    assert this_week.key != next_week.key


def test_two_schedules_with_the_same_times_have_different_keys():
    a = one({"on": "Mon-Fri 08:00", "off": "Mon-Fri 19:00"}, "team-a")
    b = one({"on": "Mon-Fri 08:00", "off": "Mon-Fri 19:00"}, "team-b")
    now = utc(2026, 6, 10, 12, 0)
    assert latest_transition(a, now).at == latest_transition(b, now).at
    assert latest_transition(a, now).key != latest_transition(b, now).key
