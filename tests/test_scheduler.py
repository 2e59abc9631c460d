"""The scheduler's plan (`_util/scheduler.py`): what to stop and start now, against a
fixed clock, with hand-built resources (`Target`) and records (`Remembered`).

The schedules are in UTC so the times read plainly; time zones and daylight saving are
`tests/test_schedules.py`'s. Monday 2026-06-08 is the first day of the week used here.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from _util.scheduler import (
    ASG,
    CHANGING,
    EC2,
    ECS_SERVICE,
    EKS_NODEGROUP,
    RUNNING,
    START,
    STOP,
    STOPPED,
    Applied,
    LeftAlone,
    Plan,
    Planned,
    Remembered,
    Target,
    idle_key,
    plan,
    remembered_after,
    saved_after_success,
    saved_before_call,
)
from _util.schedules import latest_transition, parse_schedules

UTC = dt.timezone.utc
REGION = "eu-west-1"

SCHEDULES = parse_schedules({
    "office-hours": {"timezone": "UTC", "on": "Mon-Fri 08:00", "off": "Mon-Fri 19:00"},
    "idle-office": {"timezone": "UTC", "on": "Mon-Fri 08:00", "off": "Mon-Fri 19:00",
                    "idle_stop": True},
    "night-shift": {"timezone": "UTC", "on": "Mon-Fri 20:00", "off": "Mon-Fri 06:00"},
    "idle-only": {"idle_stop": True},
}, "test")
BY_NAME = {s.name: s for s in SCHEDULES}

MONDAY_NIGHT = dt.datetime(2026, 6, 8, 22, 0, tzinfo=UTC)
TUESDAY_MORNING = dt.datetime(2026, 6, 9, 9, 0, tzinfo=UTC)
TUESDAY_NIGHT = dt.datetime(2026, 6, 9, 22, 0, tzinfo=UTC)
MONDAY_OFF = "office-hours:off@2026-06-08T19:00Z"
TUESDAY_ON = "office-hours:on@2026-06-09T08:00Z"
TUESDAY_OFF = "office-hours:off@2026-06-09T19:00Z"
IDLE_DAY = dt.date(2026, 6, 8)


def instance(state: str = RUNNING, schedule: str = "office-hours", id: str = "i-0a1",
             group: str | None = None, region: str = REGION) -> Target:
    return Target(EC2, id, region, "build-box", schedule, state, {}, group)


def service(state: str = RUNNING, desired: int = 3, schedule: str = "office-hours") -> Target:
    return Target(ECS_SERVICE, "main/api", REGION, "api", schedule, state,
                  {"desired": desired})


def node_group(state: str = RUNNING, min: int = 2, max: int = 6, desired: int = 4,
               schedule: str = "office-hours") -> Target:
    return Target(EKS_NODEGROUP, "main/workers", REGION, "workers", schedule, state,
                  {"min": min, "max": max, "desired": desired})


def auto_scaling_group(state: str = RUNNING, min: int = 1, max: int = 5, desired: int = 2,
                       schedule: str = "office-hours", id: str = "web",
                       region: str = REGION) -> Target:
    return Target(ASG, id, region, id, schedule, state,
                  {"min": min, "max": max, "desired": desired})


def remembered(applied: str | None = None, idle_applied: str | None = None,
               saved: dict | None = None, schedule: str = "office-hours") -> Remembered:
    return Remembered(schedule, applied, idle_applied, saved)


def plan_now(targets, now, memory=None, idle_ids=(), idle_day=None) -> Plan:
    return plan(targets, SCHEDULES, memory or {}, set(idle_ids), idle_day, now)


def only_action(result: Plan) -> Planned:
    assert len(result.actions) == 1, result
    return result.actions[0]


# ---------------------------------------------------------------- transitions


def test_off_hours_stop_a_running_instance():
    target = instance(RUNNING)
    result = plan_now([target], MONDAY_NIGHT)
    assert result.actions == [Planned(target, STOP, MONDAY_OFF, {"state": RUNNING})]
    assert (result.left_alone, result.applied) == ([], [])


def test_on_hours_leave_an_instance_the_scheduler_did_not_stop_alone():
    # Stopped by a person (or before actions were turned on): nothing of a stop of the
    # scheduler's own is saved, so it is not started.
    target = instance(STOPPED)
    result = plan_now([target], TUESDAY_MORNING)
    assert result.actions == [] and result.applied == []
    assert [a.reason for a in result.left_alone] == [
        "nothing saved to restore (not stopped by the scheduler); start it by hand"]


def test_on_hours_start_an_instance_the_scheduler_stopped():
    target = instance(STOPPED)
    result = plan_now([target], TUESDAY_MORNING,
                      {target.key: remembered(MONDAY_OFF, saved={"state": "running"})})
    assert result.actions == [Planned(target, START, TUESDAY_ON, {"state": STOPPED}, {})]


def test_an_applied_transition_does_not_overrule_an_instance_started_by_hand():
    # The scheduler stopped it at 19:00; a person started it again at 21:00.
    target = instance(RUNNING)
    result = plan_now([target], MONDAY_NIGHT, {target.key: remembered(MONDAY_OFF)})
    assert result == Plan()


def test_an_applied_transition_does_not_overrule_an_instance_stopped_by_hand():
    target = instance(STOPPED)
    result = plan_now([target], TUESDAY_MORNING, {target.key: remembered(TUESDAY_ON)})
    assert result == Plan()


def test_the_next_transition_applies_again_after_a_change_by_hand():
    # Stopped at Monday's off, started by hand, still running at Tuesday's off.
    target = instance(RUNNING)
    result = plan_now([target], TUESDAY_NIGHT, {target.key: remembered(MONDAY_OFF)})
    assert only_action(result).action == STOP
    assert only_action(result).reason == TUESDAY_OFF


def test_the_next_on_transition_starts_what_the_last_off_stopped():
    target = instance(STOPPED)
    result = plan_now([target], TUESDAY_MORNING,
                      {target.key: remembered(MONDAY_OFF, saved={"state": "running"})})
    assert only_action(result) == Planned(target, START, TUESDAY_ON, {"state": STOPPED}, {})


@pytest.mark.parametrize(("target", "now", "key"), [
    (instance(STOPPED), MONDAY_NIGHT, MONDAY_OFF),
    (instance(RUNNING), TUESDAY_MORNING, TUESDAY_ON),
    (service(STOPPED, desired=0), MONDAY_NIGHT, MONDAY_OFF),
    (auto_scaling_group(RUNNING), TUESDAY_MORNING, TUESDAY_ON),
])
def test_a_resource_already_as_the_transition_says_is_recorded_as_applied_not_acted_on(
        target, now, key):
    result = plan_now([target], now)
    assert result.actions == []
    assert result.left_alone == []
    assert result.applied == [Applied(target, latest_transition(BY_NAME["office-hours"], now))]
    assert result.applied[0].transition.key == key


def test_a_stop_records_the_state_and_counts_before_it():
    target = node_group(RUNNING, min=2, max=6, desired=4)
    action = only_action(plan_now([target], MONDAY_NIGHT))
    assert (action.action, action.reason) == (STOP, MONDAY_OFF)
    assert action.previous == {"state": RUNNING, "min": 2, "max": 6, "desired": 4}
    assert action.restore is None


# ---------------------------------------------------------------- re-tagged


def test_a_retagged_resource_gets_its_new_schedules_transition_and_keeps_its_saved_counts():
    # night-shift stopped it (and saved 4 tasks); it is now tagged office-hours, whose
    # newest transition (Tuesday's on) it has never had.
    target = service(STOPPED, desired=0, schedule="office-hours")
    memory = {target.key: remembered("night-shift:off@2026-06-09T06:00Z", None,
                                     {"desired": 4}, schedule="night-shift")}
    result = plan_now([target], TUESDAY_MORNING, memory)
    assert only_action(result) == Planned(target, START, TUESDAY_ON,
                                          {"state": STOPPED, "desired": 0}, {"desired": 4})


def test_a_retagged_resource_is_stopped_by_its_new_schedules_off():
    # night-shift started it at Monday 20:00; office-hours says off since 19:00.
    target = instance(RUNNING, schedule="office-hours")
    memory = {target.key: remembered("night-shift:on@2026-06-08T20:00Z",
                                     schedule="night-shift")}
    assert only_action(plan_now([target], MONDAY_NIGHT, memory)) == Planned(
        target, STOP, MONDAY_OFF, {"state": RUNNING})


# ---------------------------------------------------------------- restoring counts


@pytest.mark.parametrize(("stopped", "saved"), [
    (service(STOPPED, desired=0), {"desired": 7}),
    (node_group(STOPPED, min=0, max=6, desired=0), {"min": 2, "max": 6, "desired": 5}),
    (auto_scaling_group(STOPPED, min=0, max=5, desired=0), {"min": 1, "max": 5,
                                                            "desired": 3}),
])
def test_a_start_restores_exactly_the_saved_counts(stopped, saved):
    memory = {stopped.key: remembered(MONDAY_OFF, saved=saved)}
    action = only_action(plan_now([stopped], TUESDAY_MORNING, memory))
    assert (action.action, action.reason) == (START, TUESDAY_ON)
    assert action.restore == saved
    assert action.previous == {"state": STOPPED, **stopped.counts}


@pytest.mark.parametrize("stopped", [
    service(STOPPED, desired=0),
    node_group(STOPPED, min=0, max=6, desired=0),
    auto_scaling_group(STOPPED, min=0, max=5, desired=0),
])
@pytest.mark.parametrize("memory", [None, remembered(MONDAY_OFF, saved=None),
                                    remembered(MONDAY_OFF, saved={})])
def test_a_start_with_nothing_saved_is_left_alone_with_a_reason(stopped, memory):
    result = plan_now([stopped], TUESDAY_MORNING, {stopped.key: memory} if memory else {})
    assert result.actions == []
    assert [(item.target, item.reason.split(";")[0]) for item in result.left_alone] == [
        (stopped, "nothing saved to restore (not stopped by the scheduler)")]


# ---------------------------------------------------------------- left alone


def test_an_instance_in_an_unscheduled_auto_scaling_group_is_left_alone():
    member = instance(RUNNING, group="web")
    result = plan_now([member], MONDAY_NIGHT)
    assert result.actions == [] and result.applied == []
    assert result.left_alone == [LeftAlone(
        member, "in Auto Scaling group web, which would replace it (tag the group instead)")]


def test_an_instance_in_a_scheduled_auto_scaling_group_is_left_alone_and_the_group_stopped():
    member = instance(RUNNING, group="web")
    group = auto_scaling_group(RUNNING, id="web")
    result = plan_now([member, group], MONDAY_NIGHT)
    assert result.left_alone == [LeftAlone(member, "its Auto Scaling group web is scheduled")]
    assert result.actions == [Planned(group, STOP, MONDAY_OFF,
                                      {"state": RUNNING, "min": 1, "max": 5, "desired": 2})]


def test_a_group_of_the_same_name_in_another_region_does_not_schedule_an_instances_group():
    member = instance(RUNNING, group="web", region="eu-west-1")
    elsewhere = auto_scaling_group(RUNNING, id="web", region="us-east-1")
    result = plan_now([member, elsewhere], MONDAY_NIGHT)
    assert [item.reason for item in result.left_alone] == [
        "in Auto Scaling group web, which would replace it (tag the group instead)"]


def test_a_schedule_name_the_config_does_not_define_is_left_alone():
    target = instance(RUNNING, schedule="ofice-hours")
    result = plan_now([target], MONDAY_NIGHT)
    assert result.actions == [] and result.applied == []
    assert result.left_alone == [LeftAlone(target, "no [schedule.ofice-hours] in the config")]


@pytest.mark.parametrize("now", [MONDAY_NIGHT, TUESDAY_MORNING])
def test_a_resource_changing_state_is_left_alone_until_next_run(now):
    target = instance(CHANGING)
    result = plan_now([target], now)
    assert result.actions == [] and result.applied == []
    assert result.left_alone == [LeftAlone(target, "changing state; looked at again next run")]


# ---------------------------------------------------------------- idle_stop


def test_idle_stop_stops_a_running_idle_resource_during_on_hours():
    target = instance(RUNNING, schedule="idle-office")
    memory = {target.key: remembered("idle-office:on@2026-06-09T08:00Z",
                                     schedule="idle-office")}
    result = plan_now([target], TUESDAY_MORNING, memory, {target.key}, IDLE_DAY)
    assert result.actions == [Planned(target, STOP, "idle:2026-06-08", {"state": RUNNING})]
    assert idle_key(IDLE_DAY) == "idle:2026-06-08"


def test_idle_stop_comes_with_the_on_transition_recorded_when_not_yet_applied():
    target = service(RUNNING, desired=2, schedule="idle-office")
    result = plan_now([target], TUESDAY_MORNING, {}, {target.key}, IDLE_DAY)
    assert [a.transition.key for a in result.applied] == ["idle-office:on@2026-06-09T08:00Z"]
    assert result.actions == [Planned(target, STOP, "idle:2026-06-08",
                                      {"state": RUNNING, "desired": 2})]


def test_idle_stop_acts_once_per_idle_day():
    target = instance(RUNNING, schedule="idle-office")
    on_key = "idle-office:on@2026-06-09T08:00Z"
    stopped_for_monday = {target.key: remembered(on_key, "idle:2026-06-08",
                                                 schedule="idle-office")}
    assert plan_now([target], TUESDAY_MORNING, stopped_for_monday, {target.key},
                    IDLE_DAY) == Plan()
    tuesday = dt.date(2026, 6, 9)
    assert only_action(plan_now([target], TUESDAY_MORNING, stopped_for_monday, {target.key},
                                tuesday)).reason == "idle:2026-06-09"


def test_idle_stop_does_not_act_in_off_hours_on_a_resource_started_by_hand():
    target = instance(RUNNING, schedule="idle-office")
    memory = {target.key: remembered("idle-office:off@2026-06-08T19:00Z",
                                     schedule="idle-office")}
    assert plan_now([target], MONDAY_NIGHT, memory, {target.key}, IDLE_DAY) == Plan()


def test_idle_stop_applies_to_a_schedule_with_no_on_or_off_times():
    target = node_group(RUNNING, schedule="idle-only")
    result = plan_now([target], MONDAY_NIGHT, {}, {target.key}, IDLE_DAY)
    assert only_action(result).reason == "idle:2026-06-08"
    assert result.applied == []


@pytest.mark.parametrize(("schedule", "idle", "idle_day", "state"), [
    ("office-hours", True, IDLE_DAY, RUNNING),  # the schedule has no idle_stop
    ("idle-office", False, IDLE_DAY, RUNNING),  # not found idle
    ("idle-office", True, None, RUNNING),  # no idle finding stored
    ("idle-office", True, IDLE_DAY, STOPPED),  # stopped already
])
def test_idle_stop_needs_the_setting_a_finding_and_a_running_resource(
        schedule, idle, idle_day, state):
    target = instance(state, schedule=schedule)
    key = f"{schedule}:on@2026-06-09T08:00Z"
    result = plan_now([target], TUESDAY_MORNING, {target.key: remembered(key,
                                                                       schedule=schedule)},
                      {target.key} if idle else set(), idle_day)
    assert result == Plan()


def test_a_resource_started_for_on_hours_is_not_stopped_as_idle_by_the_next_run():
    stopped = instance(STOPPED, schedule="idle-office")
    memory = {stopped.key: remembered(saved={"state": "running"}, schedule="idle-office")}
    first = plan_now([stopped], TUESDAY_MORNING, memory, {stopped.key}, IDLE_DAY)
    started = replace(stopped, state=RUNNING)
    second = plan_now([started], TUESDAY_MORNING, record(first, memory), {started.key},
                      IDLE_DAY)
    # Either it is not started (it was found idle) or, once started, it stays so.
    assert [a.action for a in first.actions + second.actions] in ([], [START])


# ---------------------------------------------------------------- never act twice


def remember(memory: dict, target: Target, reason: str | None, saved: dict | None) -> None:
    """What the caller records (`_util/run/schedule_run.py::_remember_done`)."""
    memory[target.key] = remembered_after(memory.get(target.key), target.schedule, reason, saved)


def record(result: Plan, memory: dict) -> dict:
    """The caller's `carry_out` when every call succeeds: applied transitions recorded,
    a stop's counts saved before the call, each action's reason after it."""
    memory = dict(memory)
    for applied in result.applied:
        remember(memory, applied.target, applied.transition.key, None)
    for planned in result.actions:
        t = planned.target
        saved = saved_before_call(planned, memory.get(t.key))
        if saved is not None:
            remember(memory, t, None, saved)
        remember(memory, t, planned.reason, saved_after_success(planned))
        if planned.also_applied:
            remember(memory, planned.target, planned.also_applied, None)
    return memory


def after(planned: Planned, how: str) -> Target:
    """The resource as AWS shows it after the call: `reached` where it was sent,
    `unchanged` (not visible yet) or `changing`."""
    t = planned.target
    if how == "unchanged":
        return t
    if how == "changing":
        return replace(t, state=CHANGING)
    if planned.action == START:
        return replace(t, state=RUNNING, counts=dict(planned.restore or {}))
    counts = {k: (v if k == "max" else 0) for k, v in t.counts.items()}
    return replace(t, state=STOPPED, counts=counts)


KINDS = [EC2, ECS_SERVICE, EKS_NODEGROUP, ASG]
NAMES = [s.name for s in SCHEDULES] + ["ofice-hours"]


@st.composite
def scenarios(draw):
    now = draw(st.one_of(
        st.datetimes(min_value=dt.datetime(2026, 6, 6), max_value=dt.datetime(2026, 6, 21),
                     timezones=st.just(UTC)),
        # Exactly at a transition, or a microsecond before one.
        st.builds(lambda day, hour, early: dt.datetime(2026, 6, day, hour, tzinfo=UTC)
                  - dt.timedelta(microseconds=early),
                  st.integers(8, 19), st.sampled_from([6, 8, 19, 20]), st.sampled_from([0, 1])),
    ))
    idle_day = draw(st.sampled_from([None, dt.date(2026, 6, 7), now.date()]))
    targets, memory, idle_ids = [], {}, set()
    ids = draw(st.lists(st.tuples(st.sampled_from(KINDS), st.sampled_from(["a", "b", "web"]),
                                  st.sampled_from(["eu-west-1", "us-east-1"])),
                        min_size=1, max_size=8, unique=True))
    for kind, id, region in ids:
        state = draw(st.sampled_from([RUNNING, STOPPED, CHANGING]))
        running = state != STOPPED
        if kind == EC2:
            counts = {}
        elif kind == ECS_SERVICE:
            counts = {"desired": draw(st.integers(1, 5)) if running else 0}
        else:
            counts = {"min": draw(st.integers(1, 3)) if running else 0, "max": 6,
                      "desired": draw(st.integers(1, 5)) if running else 0}
        group = draw(st.sampled_from([None, "web"])) if kind == EC2 else None
        target = Target(kind, id, region, None, draw(st.sampled_from(NAMES)), state, counts,
                        group)
        targets.append(target)
        if draw(st.booleans()):
            idle_ids.add(target.key)
        if draw(st.booleans()):
            schedule = draw(st.sampled_from(NAMES))
            current = latest_transition(BY_NAME[schedule], now) if schedule in BY_NAME else None
            applied = draw(st.sampled_from([None, "office-hours:off@2026-06-01T19:00Z"]
                                           + ([current.key] if current else [])))
            idle_applied = draw(st.sampled_from([None] + ([idle_key(idle_day)]
                                                          if idle_day else [])))
            saved = draw(st.sampled_from([None, {}, {"desired": 2},
                                          {"min": 1, "max": 6, "desired": 3}]))
            memory[target.key] = Remembered(schedule, applied, idle_applied, saved)
    hows = draw(st.lists(st.sampled_from(["reached", "unchanged", "changing"]),
                         min_size=len(targets), max_size=len(targets)))
    return targets, memory, idle_ids, idle_day, now, hows


@settings(max_examples=500, deadline=None)
@given(scenarios())
@example(([instance(RUNNING, schedule="idle-office"), service(STOPPED, 0),
           auto_scaling_group(RUNNING, id="web"), instance(RUNNING, id="i-0c3", group="web")],
          {}, {("ec2", REGION, "i-0a1")}, IDLE_DAY, TUESDAY_MORNING,
          ["reached"] * 4)).via("hand-written")
def test_planning_again_at_the_same_moment_after_recording_the_first_plan_acts_no_more(
        scenario):
    targets, memory, idle_ids, idle_day, now, hows = scenario
    first = plan(targets, SCHEDULES, memory, idle_ids, idle_day, now)
    assert len({a.target.key for a in first.actions}) == len(first.actions)
    memory = record(first, memory)
    how_by_key = {t.key: how for t, how in zip(targets, hows)}
    moved = {a.target.key: after(a, how_by_key[a.target.key]) for a in first.actions}
    now_targets = [moved.get(t.key, t) for t in targets]
    second = plan(now_targets, SCHEDULES, memory, idle_ids, idle_day, now)
    assert second.actions == []
    assert second.applied == []
