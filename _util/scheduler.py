"""What the scheduler should do now: which tagged resources to stop and which to start.

Pure: the caller passes the tagged resources as AWS showed them (`Target`), the
schedules, what the scheduler applied before (`ScheduleState`), the newest day's idle
resources and the time; `plan` returns the actions and the resources it leaves alone,
each with its reason.

The rules, in order, for a resource tagged with a schedule's name:
- a name no `[schedule.<name>]` defines: left alone (one line);
- an EC2 instance in an Auto Scaling group: left alone, since the group would replace
  it (the group itself may be tagged: it is scheduled as a whole);
- the schedule's newest transition (`_util/schedules.py`) is applied once per resource:
  when the resource has not had it yet (or was re-tagged from another schedule), it is
  stopped (`off`) or started (`on`) unless it is so already; after that, what a person
  does by hand is theirs until the next transition;
- with `idle_stop`, a running resource the daily run found idle is stopped once for that
  day's finding, during the schedule's `on` hours (in `off` hours the transition rules);
  a resource the scheduler starts is not stopped again for a finding made before;
- a resource in between (pending, stopping) is looked at again next run.
A start restores what the scheduler's own stop saved (desired counts, sizes; for an EC2
instance, that it was running) and the caller then clears it; with nothing saved (stopped
by someone else, or scaled to 0 by its owner after a start) it is left alone with a line
saying so.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

from _util.schedules import OFF, ON, Schedule, Transition, latest_transition

EC2 = "ec2"
ECS_SERVICE = "ecs_service"
EKS_NODEGROUP = "eks_nodegroup"
ASG = "asg"
KIND_WORDS = {EC2: ("instance", "instances"), ECS_SERVICE: ("ECS service", "ECS services"),
              EKS_NODEGROUP: ("EKS node group", "EKS node groups"),
              ASG: ("Auto Scaling group", "Auto Scaling groups")}
STOP = "stop"
START = "start"
RUNNING = "running"
STOPPED = "stopped"
CHANGING = "changing"  # pending, stopping, shutting down: wait for it


@dataclass(frozen=True)
class Target:
    """A resource tagged with a schedule, as AWS shows it now."""

    kind: str
    id: str  # instance ID; cluster/service; cluster/node group; group name
    region: str
    name: str | None
    schedule: str  # the tag's value
    state: str  # RUNNING, STOPPED or CHANGING
    counts: Mapping[str, int] = field(default_factory=dict)  # what a stop saves
    auto_scaling_group: str | None = None  # an EC2 instance's group

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.region, self.id)


@dataclass(frozen=True)
class Remembered:
    """What the scheduler applied to a resource before (from `schedule_state`)."""

    schedule: str
    applied: str | None  # the transition's key
    idle_applied: str | None  # idle:<day> of the finding it stopped it for
    saved: Mapping[str, Any] | None  # counts to restore


@dataclass(frozen=True)
class Planned:
    target: Target
    action: str  # STOP or START
    reason: str  # the transition's key, or idle:<day>
    previous: Mapping[str, Any]  # the state and counts before
    restore: Mapping[str, int] | None = None  # for a start: the counts to set
    # Also recorded as applied when it succeeds: the idle finding a start makes stale
    # (the resource was stopped for part of the days it was found idle over).
    also_applied: str | None = None


@dataclass(frozen=True)
class LeftAlone:
    target: Target
    reason: str


@dataclass(frozen=True)
class Applied:
    """A transition that needs no action (the resource is as it should be already): the
    caller records it as applied, so a later change by hand is not overruled."""

    target: Target
    transition: Transition


@dataclass
class Plan:
    actions: list[Planned] = field(default_factory=list)
    left_alone: list[LeftAlone] = field(default_factory=list)
    applied: list[Applied] = field(default_factory=list)


def _previous(target: Target) -> dict[str, Any]:
    return {"state": target.state, **dict(target.counts)}


def _restore(target: Target, memory: Remembered | None) -> Mapping[str, int] | None:
    """What a start sets (empty for an EC2 instance), or None when the scheduler did not
    stop the resource: nothing saved by a stop of its own (a saved stop is cleared when
    its start succeeds)."""
    if memory is None or not memory.saved:
        return None
    return {} if target.kind == EC2 else dict(memory.saved)


def _below_saved(target: Target, memory: Remembered | None) -> bool:
    """A stopped service or group something raised above 0 but below what its stop saved
    (an autoscaler's minimum, say): the start still restores what was saved."""
    if target.kind == EC2 or memory is None or not memory.saved:
        return False
    return any(int(target.counts.get(k, 0)) < int(v) for k, v in memory.saved.items()
               if k in ("min", "desired"))


def remembered_after(known: Remembered | None, schedule: str, reason: str | None,
                     saved: Mapping[str, Any] | None) -> Remembered:
    """What is remembered of a resource once `reason` (a transition's key or idle:<day>;
    None: unchanged) was applied and `saved` (what a start restores; None: unchanged) set.
    A resource tagged with another schedule since keeps only what its stop saved."""
    known = known or Remembered(schedule, None, None, None)
    if known.schedule != schedule:
        known = Remembered(schedule, None, None, known.saved)
    applied, idle_applied = known.applied, known.idle_applied
    if reason is not None and reason.startswith("idle:"):
        idle_applied = reason
    elif reason is not None:
        applied = reason
    return Remembered(schedule, applied, idle_applied, known.saved if saved is None else saved)


def saved_before_call(planned: Planned, known: Remembered | None) -> dict[str, Any] | None:
    """What to save before a planned call, so that a run killed after it can still restore
    exactly: a stop saves the counts (an instance: that it ran), unless a stop saved some
    that no start has restored yet (an autoscaler that raised a stopped service to its
    minimum must not become what is restored). None: nothing to save."""
    target = planned.target
    if planned.action != STOP or (known and known.saved):
        return None
    return dict(target.counts) if target.kind != EC2 else {"state": RUNNING}


def saved_after_success(planned: Planned) -> dict[str, Any] | None:
    """What is saved once a planned call succeeded: a start restored what was saved, so it
    is cleared (a later stop by hand is the owner's; nothing saved: left alone at the next
    on). None: unchanged."""
    return {} if planned.action == START else None


def idle_key(day: dt.date) -> str:
    return f"idle:{day.isoformat()}"


def plan(targets: Sequence[Target], schedules: Sequence[Schedule],
         memory: Mapping[tuple[str, str, str], Remembered], idle_ids: set[tuple[str, str, str]],
         idle_day: dt.date | None, now: dt.datetime) -> Plan:
    """The actions to take now (see the module's rules)."""
    by_name = {s.name: s for s in schedules}
    scheduled_groups = {(t.region, t.id) for t in targets
                        if t.kind == ASG and t.schedule in by_name}
    result = Plan()
    for target in sorted(targets, key=lambda t: t.key):
        schedule = by_name.get(target.schedule)
        if schedule is None:
            result.left_alone.append(LeftAlone(
                target, f"no [schedule.{target.schedule}] in the config"))
            continue
        if target.kind == EC2 and target.auto_scaling_group:
            group = target.auto_scaling_group
            why = (f"its Auto Scaling group {group} is scheduled"
                   if (target.region, group) in scheduled_groups else
                   f"in Auto Scaling group {group}, which would replace it (tag the group "
                   "instead)")
            result.left_alone.append(LeftAlone(target, why))
            continue
        if target.state == CHANGING:
            result.left_alone.append(LeftAlone(target, "changing state; looked at again "
                                                       "next run"))
            continue
        known = memory.get(target.key)
        if known is not None and known.schedule != target.schedule:
            # Re-tagged: the new schedule's transition applies; what was saved still
            # restores the resource.
            known = Remembered(target.schedule, None, None, known.saved)
        transition = latest_transition(schedule, now)
        if transition is not None and (known is None or known.applied != transition.key):
            if transition.state == OFF and target.state == RUNNING:
                result.actions.append(Planned(target, STOP, transition.key, _previous(target)))
                continue
            if transition.state == ON and (target.state == STOPPED
                                           or _below_saved(target, known)):
                restore = _restore(target, known)
                if restore is None:
                    result.left_alone.append(LeftAlone(
                        target, "nothing saved to restore (not stopped by the scheduler); "
                                "start it by hand"))
                    continue
                stale_idle = (idle_key(idle_day) if idle_day is not None
                              and target.key in idle_ids else None)
                result.actions.append(Planned(target, START, transition.key,
                                              _previous(target), restore, stale_idle))
                continue
            result.applied.append(Applied(target, transition))
        on_hours = transition is None or transition.state == ON
        if (schedule.idle_stop and idle_day is not None and on_hours
                and target.state == RUNNING and target.key in idle_ids
                and (known is None or known.idle_applied != idle_key(idle_day))):
            result.actions.append(Planned(target, STOP, idle_key(idle_day), _previous(target)))
    return result


def words(kind: str, count: int) -> str:
    one, many = KIND_WORDS[kind]
    return f"{count} {one if count == 1 else many}"
