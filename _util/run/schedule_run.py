"""`runCostReporting.py --schedule`: stop and start what the schedules say, now.

Run from cron every 15 minutes, under a lock of its own (`.schedule.lock` in the output
folder, and on MySQL/MariaDB a database lock of its own), so two schedule runs never act
at once and the daily report never waits for one. Each run:
1. finds the resources tagged with COST_TRACKING_SCHEDULE_TAG in every region;
2. reconciles the actions a killed run left `pending` from the resources' actual state
   (reached: recorded as done; not reached: recorded as failed, and planned again);
3. plans (`_util/scheduler.py`) and, when COST_TRACKING_SCHEDULE_ACTIONS is on and this
   is not a --dry-run, acts: each action recorded as pending before its call and with
   its result after; what a stop changes is saved first, so a start restores it exactly;
4. writes `runs/schedule-<UTC timestamp>.json` and posts one short Slack message when
   something was done or failed.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from botocore.exceptions import BotoCoreError, ClientError
from sqlalchemy.engine import Engine

from _util.atomic_files import write_text
from _util.errors import DeliveryError, SourceError
from _util.scheduler import (
    STOP,
    LeftAlone,
    Plan,
    Planned,
    Target,
    plan,
    remembered_after,
    saved_after_success,
    saved_before_call,
    words,
)
from _util.settings import Settings
from _util.slack.blocks import escape_mrkdwn
from _util.sources.ec2_usage import RegionAccessDenied
from _util.sources.idle_resources import IdleAccessDenied, RegionClients
from _util.sources.schedule_targets import (
    DRY_RUN,
    FAILED,
    OK,
    Outcome,
    act,
    reached,
    tagged_targets,
)
from _util.store.idle_resources import (
    begin_action,
    finish_action,
    load_idle_day,
    load_memory,
    pending_actions,
    previous_result,
    save_memory,
)

log = logging.getLogger(__name__)

SCHEDULE_LOCK = ".schedule.lock"
SLACK_NAMES = 10  # resources named per line of the Slack message
# idle_stop uses the daily run's finding only while it is fresh: the report's day is
# yesterday, so a finding older than this means the daily run has not run since.
IDLE_FINDING_DAYS = 2


@dataclass
class ActionReport:
    """One line of runs/schedule-<timestamp>.json."""

    resource: str
    kind: str
    region: str
    name: str | None
    schedule: str
    action: str
    reason: str
    previous: dict[str, Any]
    result: str
    message: str | None = None
    repeated: bool = False  # the same failure as the attempt before: not posted again

    def as_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class ScheduleOutcome:
    started: dt.datetime
    acting: bool
    actions: list[ActionReport] = field(default_factory=list)
    left_alone: list[dict[str, Any]] = field(default_factory=list)
    reconciled: list[dict[str, Any]] = field(default_factory=list)
    regions: dict[str, str] = field(default_factory=dict)  # region -> ok or what failed
    problems: list[str] = field(default_factory=list)

    run_id: str = ""  # the run file's name: schedule-<UTC timestamp>[-N]

    def as_json(self) -> dict[str, Any]:
        return {"run": self.run_id, "started": self.started.isoformat().replace("+00:00", "Z"),
                "acting": self.acting, "actions": [a.as_json() for a in self.actions],
                "left_alone": self.left_alone, "reconciled": self.reconciled,
                "regions": self.regions, "problems": self.problems}


def _key_text(target: Target) -> str:
    return f"{target.kind} {target.id} ({target.region})"


def free_run_id(runs_dir: Path, started: dt.datetime) -> str:
    """schedule-<UTC timestamp>, with -2, -3... when a run of the same second (one that
    waited for the lock, say) has its file already."""
    stem = "schedule-" + started.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    name, n = stem, 1
    while (runs_dir / f"{name}.json").exists():
        n += 1
        name = f"{stem}-{n}"
    return name


# ---------------------------------------------------------------- finding


def find_targets(clients: Any, regions: list[str], tag: str, outcome: ScheduleOutcome
                 ) -> tuple[list[Target], dict[str, RegionClients]]:
    targets: list[Target] = []
    by_region: dict[str, RegionClients] = {}
    for region in regions:
        rc = clients.region(region)
        try:
            found = tagged_targets(rc, tag)
        except IdleAccessDenied as exc:
            log.warning("schedule: %s; that region is left out", exc)
            outcome.regions[region] = f"{exc.action} denied"
            outcome.problems.append(f"{region}: {exc.action} is denied")
            continue
        except (BotoCoreError, ClientError) as exc:
            log.warning("schedule: %s could not be read (%s)", region, exc)
            outcome.regions[region] = "could not be read"
            outcome.problems.append(f"{region} could not be read")
            continue
        outcome.regions[region] = OK
        by_region[region] = rc
        targets += found
    return targets, by_region


# ---------------------------------------------------------------- reconciling


def reconcile(engine: Engine, targets: list[Target], memory: dict, outcome: ScheduleOutcome
              ) -> None:
    """Pending actions of a killed run: done if the resource is where the action would
    have put it (recorded as applied), failed otherwise (planned again now)."""
    by_key = {t.key: t for t in targets}
    for row in pending_actions(engine):
        key = (row.kind, row.region, row.resource_id)
        target = by_key.get(key)
        done = target is not None and reached(target, row.action)
        finish_action(engine, row.id, OK if done else FAILED,
                      "reconciled from the resource's state after an interrupted run"
                      if done else "interrupted before its result was recorded; "
                                   "planned again")
        if done:
            _remember_done(engine, memory, key, row.schedule, row.reason, None)
        outcome.reconciled.append({"resource": row.resource_id, "kind": row.kind,
                                   "region": row.region, "action": row.action,
                                   "run": row.run_id, "result": OK if done else FAILED})
        log.info("schedule: %s %s of %s (run %s) was interrupted; %s", row.action, row.kind,
                 row.resource_id, row.run_id,
                 "it took effect" if done else "it did not take effect: planned again")


def _remember_done(engine: Engine, memory: dict, key: tuple[str, str, str], schedule: str,
                   reason: str | None, saved: dict | None) -> None:
    """Record what was applied to a resource and what a start restores, in `memory` and
    the database (see `remembered_after`)."""
    updated = remembered_after(memory.get(key), schedule, reason, saved)
    memory[key] = updated
    save_memory(engine, key, updated)


# ---------------------------------------------------------------- acting


def _report(planned: Planned, result: str, message: str | None) -> ActionReport:
    t = planned.target
    return ActionReport(t.id, t.kind, t.region, t.name, t.schedule, planned.action,
                        planned.reason, dict(planned.previous), result, message)


def carry_out(engine: Engine, the_plan: Plan, by_region: dict[str, RegionClients],
              memory: dict, outcome: ScheduleOutcome) -> None:
    """Record and make each planned call; record the transitions that needed none."""
    for applied in the_plan.applied if outcome.acting else ():
        _remember_done(engine, memory, applied.target.key, applied.target.schedule,
                       applied.transition.key, None)
    for planned in the_plan.actions:
        t = planned.target
        if not outcome.acting:
            log.info("schedule (not acting): would %s %s (%s) for %s", planned.action,
                     _key_text(t), t.name or "no Name", planned.reason)
            outcome.actions.append(_report(planned, DRY_RUN, None))
            continue
        saved = saved_before_call(planned, memory.get(t.key))
        if saved is not None:
            _remember_done(engine, memory, t.key, t.schedule, None, saved)
        row = begin_action(engine, outcome.run_id, t.kind, t.region, t.id, t.schedule,
                           planned.action, planned.reason, dict(planned.previous))
        result: Outcome = act(by_region[t.region], planned)
        finish_action(engine, row, result.result, result.message)
        if result.result == OK:
            _remember_done(engine, memory, t.key, t.schedule, planned.reason,
                           saved_after_success(planned))
            if planned.also_applied:
                _remember_done(engine, memory, t.key, t.schedule, planned.also_applied, None)
            log.info("schedule: %s %s (%s) for %s", planned.action, _key_text(t),
                     t.name or "no Name", planned.reason)
        else:
            log.warning("schedule: could not %s %s: %s (%s); tried again next run",
                        planned.action, _key_text(t), result.result, result.message)
            outcome.problems.append(f"{planned.action} {_key_text(t)}: {result.result}")
        report = _report(planned, result.result, result.message)
        # The same failure as the attempt before is not posted again (every 15 minutes
        # until the next transition); the log and the run file still have it.
        report.repeated = result.result != OK and (result.result, result.message) == (
            previous_result(engine, t.kind, t.region, t.id, planned.reason, row))
        outcome.actions.append(report)


def _left_alone_json(item: LeftAlone) -> dict[str, Any]:
    t = item.target
    return {"resource": t.id, "kind": t.kind, "region": t.region, "schedule": t.schedule,
            "reason": item.reason}


# ---------------------------------------------------------------- Slack


def slack_text(outcome: ScheduleOutcome) -> str | None:
    """The run's short message ("Stopped 3 instances of office-hours: a, b, c; started
    2 ..."), or None when nothing was done or failed."""
    done = [a for a in outcome.actions if a.result == OK]
    failed = [a for a in outcome.actions if a.result not in (OK, DRY_RUN) and not a.repeated]
    if not done and not failed:
        return None
    groups: dict[tuple[str, str, str], list[ActionReport]] = defaultdict(list)
    for a in done:
        groups[(a.schedule, a.action, a.kind)].append(a)
    lines = []
    for (schedule, action, kind), items in sorted(groups.items()):
        verb = "Stopped" if action == STOP else "Started"
        idle = " (idle)" if all(a.reason.startswith("idle:") for a in items) else ""
        names = ", ".join(escape_mrkdwn(a.name or a.resource) for a in items[:SLACK_NAMES])
        more = f" and {len(items) - SLACK_NAMES} more" if len(items) > SLACK_NAMES else ""
        lines.append(f"{verb} {words(kind, len(items))} of "
                     f"{escape_mrkdwn(schedule)}{idle}: {names}{more}")
    for a in failed[:SLACK_NAMES]:
        lines.append(f":warning: could not {a.action} {escape_mrkdwn(a.name or a.resource)} "
                     f"({a.region}): {escape_mrkdwn(a.result)}"
                     + (f", {escape_mrkdwn(a.message)}" if a.message else ""))
    if len(failed) > SLACK_NAMES:
        lines.append(f"…and {len(failed) - SLACK_NAMES} more that failed")
    return "\n".join(lines)


def post(settings: Settings, make_slack: Callable[[], Any] | None, text: str) -> None:
    if make_slack is None or not settings.slack_channel:
        return
    client = make_slack()
    try:
        client.chat_postMessage(channel=settings.slack_channel, text=text,
                                blocks=[{"type": "section",
                                         "text": {"type": "mrkdwn", "text": text[:2900]}}],
                                unfurl_links=False)
    except Exception as exc:  # noqa: BLE001 - slack_sdk raises several kinds; one line
        raise DeliveryError(f"the schedule's Slack message was not posted: {exc}") from exc


# ---------------------------------------------------------------- the run


def run_schedule(settings: Settings, engine: Engine, clients: Any,
                 make_slack: Callable[[], Any] | None, now: dt.datetime) -> ScheduleOutcome:
    """One schedule run (the caller holds the locks); its outcome, also written to
    runs/schedule-<timestamp>.json."""
    acting = settings.schedule_actions == "on" and not settings.dry_run
    outcome = ScheduleOutcome(now, acting, run_id=free_run_id(settings.paths.runs, now))
    if settings.schedule_actions != "on" and not settings.dry_run:
        log.warning("schedule: COST_TRACKING_SCHEDULE_ACTIONS is off: nothing is changed; "
                    "the actions below are what it would do")
    try:
        regions = list(settings.idle_regions) or clients.regions()
    except (BotoCoreError, ClientError, RegionAccessDenied, IdleAccessDenied) as exc:
        raise SourceError(f"schedule: the regions could not be listed ({exc}); set "
                            "COST_TRACKING_IDLE_REGIONS or allow ec2:DescribeRegions") from exc
    targets, by_region = find_targets(clients, regions, settings.schedule_tag, outcome)
    memory = load_memory(engine)
    if acting:
        reconcile(engine, targets, memory, outcome)
    idle = load_idle_day(engine)
    if idle is not None and idle.day < now.date() - dt.timedelta(days=IDLE_FINDING_DAYS):
        log.info("schedule: the newest idle finding (%s) is older than %d days: not used "
                 "for idle_stop", idle.day, IDLE_FINDING_DAYS)
        idle = None
    idle_ids = ({(r.kind, r.region, r.id) for r in idle.resources} if idle else set())
    the_plan = plan(targets, settings.schedules, memory, idle_ids,
                    idle.day if idle else None, now)
    outcome.left_alone = [_left_alone_json(item) for item in the_plan.left_alone]
    for item in the_plan.left_alone:
        log.info("schedule: left alone %s: %s", _key_text(item.target), item.reason)
    carry_out(engine, the_plan, by_region, memory, outcome)
    log.info("schedule: %d tagged resource(s) in %d region(s); %d action(s)%s, %d left alone",
             len(targets), len(by_region), len(outcome.actions),
             "" if acting else " not taken (dry run)", len(the_plan.left_alone))
    path = settings.paths.runs / f"{outcome.run_id}.json"
    write_text(path, json.dumps(outcome.as_json(), indent=2, default=str) + "\n")
    text = slack_text(outcome)
    if text and acting:
        post(settings, make_slack, text)
    return outcome

