"""The idle resources section's and the scheduler's tables, through SQLAlchemy Core.

- `idle_day`: the idle resources found for a day, as one JSON document (a few hundred
  resources at most), so a run that does not fetch can show them and the scheduler can
  stop what a schedule with `idle_stop` covers.
- `schedule_state`: per scheduled resource, the schedule and the newest transition the
  scheduler applied to it (a resource is moved once per transition), and what it was
  before it was stopped (desired counts and sizes), to restore exactly.
- `schedule_action`: every action the scheduler took or tried: when, on what, what it
  was before, and how it went. An action is written as `pending` before the API call and
  completed after it, so a run killed in between leaves a trace the next run reconciles
  from the resource's actual state.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from typing import Any, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from _util.idle import IdleReport, IdleResource, IdleThresholds
from _util.scheduler import Remembered
from _util.store.database import NameText, metadata, store_error, utc_now

ID_CHARS = 520  # an ECS service's cluster/service (255 characters each)
KIND_CHARS = 16
REGION_CHARS = 32
DOCUMENT = sa.Text().with_variant(mysql.LONGTEXT(), "mysql", "mariadb")

PENDING = "pending"

idle_day = sa.Table(
    "idle_day", metadata,
    sa.Column("day", sa.Date, primary_key=True),
    sa.Column("document", DOCUMENT, nullable=False),
    sa.Column("fetched_at", sa.DateTime, nullable=False),
    mysql_charset="utf8mb4",
)

schedule_state = sa.Table(
    "schedule_state", metadata,
    sa.Column("kind", sa.String(KIND_CHARS), primary_key=True),
    sa.Column("region", sa.String(REGION_CHARS), primary_key=True),
    sa.Column("resource_id", sa.String(ID_CHARS), primary_key=True),
    sa.Column("schedule", NameText(256), nullable=False),
    sa.Column("applied", sa.String(128), nullable=True),  # the transition's key
    sa.Column("idle_applied", sa.String(32), nullable=True),  # idle:<day> it was stopped for
    sa.Column("saved", sa.Text, nullable=True),  # JSON: what to restore on start
    sa.Column("updated_at", sa.DateTime, nullable=False),
    mysql_charset="utf8mb4",
)

schedule_action = sa.Table(
    "schedule_action", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("run_id", sa.String(40), nullable=False),
    sa.Column("at", sa.DateTime, nullable=False),  # UTC
    sa.Column("kind", sa.String(KIND_CHARS), nullable=False),
    sa.Column("region", sa.String(REGION_CHARS), nullable=False),
    sa.Column("resource_id", sa.String(ID_CHARS), nullable=False),
    sa.Column("schedule", NameText(256), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),  # stop | start
    sa.Column("reason", sa.String(128), nullable=False),  # the transition's key, or idle:<day>
    sa.Column("previous", sa.Text, nullable=True),  # JSON
    sa.Column("result", sa.String(16), nullable=False),
    sa.Column("message", sa.Text, nullable=True),
    mysql_charset="utf8mb4",
)




# ---------------------------------------------------------------- idle days


def _resource_doc(r: IdleResource) -> dict[str, Any]:
    doc = dataclasses.asdict(r)
    doc["days"] = [d.isoformat() for d in r.days]
    doc["tags"] = [list(t) for t in r.tags]
    return doc


def _resource(doc: dict[str, Any]) -> IdleResource:
    doc = dict(doc)
    doc["days"] = tuple(dt.date.fromisoformat(d) for d in doc["days"])
    doc["tags"] = tuple(tuple(t) for t in doc["tags"])
    doc["cpu_max_pct"] = tuple(doc["cpu_max_pct"])
    doc["network_mb"] = None if doc["network_mb"] is None else tuple(doc["network_mb"])
    return IdleResource(**doc)


def save_idle_day(engine: Engine, report: IdleReport) -> None:
    """The day's idle resources, replacing what was stored for it."""
    document = json.dumps({
        "thresholds": dataclasses.asdict(report.thresholds),
        "resources": [_resource_doc(r) for r in report.resources],
        "watched": report.watched, "regions": list(report.regions),
        "notes": list(report.notes)})
    try:
        with engine.begin() as conn:
            conn.execute(idle_day.delete().where(idle_day.c.day == report.day))
            conn.execute(idle_day.insert(), {"day": report.day, "document": document,
                                             "fetched_at": utc_now()})
    except SQLAlchemyError as exc:
        raise store_error(engine, "store the idle resources", exc) from exc


def load_idle_day(engine: Engine, day: dt.date | None = None) -> IdleReport | None:
    """The idle resources stored for `day` (None: the newest stored day), or None."""
    stmt = sa.select(idle_day.c.day, idle_day.c.document)
    stmt = (stmt.where(idle_day.c.day == day) if day is not None
            else stmt.order_by(idle_day.c.day.desc()).limit(1))
    try:
        with engine.connect() as conn:
            row = conn.execute(stmt).first()
    except SQLAlchemyError as exc:
        raise store_error(engine, "read the idle resources", exc) from exc
    if row is None:
        return None
    doc = json.loads(row.document)
    return IdleReport(day=row.day, thresholds=IdleThresholds(**doc["thresholds"]),
                      resources=tuple(_resource(r) for r in doc["resources"]),
                      watched=doc["watched"], regions=tuple(doc["regions"]),
                      notes=tuple(doc["notes"]), source="stored")


# ---------------------------------------------------------------- the scheduler's state


def load_memory(engine: Engine) -> dict[tuple[str, str, str], Remembered]:
    """What the scheduler applied to each resource, by (kind, region, resource ID)."""
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(schedule_state)).all()
    except SQLAlchemyError as exc:
        raise store_error(engine, "read the scheduler's state", exc) from exc
    return {(r.kind, r.region, r.resource_id): Remembered(
        r.schedule, r.applied, r.idle_applied, None if r.saved is None else json.loads(r.saved))
        for r in rows}


def save_memory(engine: Engine, key: tuple[str, str, str], memory: Remembered) -> None:
    kind, region, resource_id = key
    where = ((schedule_state.c.kind == kind) & (schedule_state.c.region == region)
             & (schedule_state.c.resource_id == resource_id))
    values = {"kind": kind, "region": region, "resource_id": resource_id,
              "schedule": memory.schedule, "applied": memory.applied,
              "idle_applied": memory.idle_applied,
              "saved": None if memory.saved is None else json.dumps(dict(memory.saved)),
              "updated_at": utc_now()}
    try:
        with engine.begin() as conn:
            conn.execute(schedule_state.delete().where(where))
            conn.execute(schedule_state.insert(), values)
    except SQLAlchemyError as exc:
        raise store_error(engine, "store the scheduler's state", exc) from exc


# ---------------------------------------------------------------- the actions


@dataclasses.dataclass(frozen=True)
class ActionRow:
    id: int
    run_id: str
    at: dt.datetime
    kind: str
    region: str
    resource_id: str
    schedule: str
    action: str
    reason: str
    previous: dict[str, Any] | None
    result: str
    message: str | None


def begin_action(engine: Engine, run_id: str, kind: str, region: str, resource_id: str,
                 schedule: str, action: str, reason: str,
                 previous: dict[str, Any] | None) -> int:
    """Record an action as pending before its API call; its row id."""
    try:
        with engine.begin() as conn:
            result = conn.execute(schedule_action.insert(), {
                "run_id": run_id, "at": utc_now(), "kind": kind, "region": region,
                "resource_id": resource_id, "schedule": schedule, "action": action,
                "reason": reason, "previous": None if previous is None else json.dumps(previous),
                "result": PENDING, "message": None})
            return int(result.inserted_primary_key[0])
    except SQLAlchemyError as exc:
        raise store_error(engine, "record a scheduled action", exc) from exc


def finish_action(engine: Engine, action_id: int, result: str, message: str | None) -> None:
    try:
        with engine.begin() as conn:
            conn.execute(schedule_action.update().where(schedule_action.c.id == action_id)
                         .values(result=result, message=message))
    except SQLAlchemyError as exc:
        raise store_error(engine, "record a scheduled action's result", exc) from exc


def _row(r: Any) -> ActionRow:
    return ActionRow(r.id, r.run_id, r.at, r.kind, r.region, r.resource_id, r.schedule,
                     r.action, r.reason, None if r.previous is None else json.loads(r.previous),
                     r.result, r.message)


def previous_result(engine: Engine, kind: str, region: str, resource_id: str, reason: str,
                    before_id: int) -> tuple[str, str | None] | None:
    """The result and message of the attempt before row `before_id` at the same action
    (resource and reason), or None when it is the first."""
    c = schedule_action.c
    stmt = (sa.select(c.result, c.message)
            .where((c.kind == kind) & (c.region == region) & (c.resource_id == resource_id)
                   & (c.reason == reason) & (c.id < before_id))
            .order_by(c.id.desc()).limit(1))
    try:
        with engine.connect() as conn:
            row = conn.execute(stmt).first()
    except SQLAlchemyError as exc:
        raise store_error(engine, "read the scheduled actions", exc) from exc
    return None if row is None else (row.result, row.message)


def pending_actions(engine: Engine) -> list[ActionRow]:
    """Actions a killed run left without a result, oldest first."""
    return _select(engine, schedule_action.c.result == PENDING)


def actions(engine: Engine, run_ids: Iterable[str] | None = None) -> list[ActionRow]:
    where = sa.true() if run_ids is None else schedule_action.c.run_id.in_(list(run_ids))
    return _select(engine, where)


def _select(engine: Engine, where: Any) -> list[ActionRow]:
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.select(schedule_action).where(where)
                                .order_by(schedule_action.c.id)).all()
    except SQLAlchemyError as exc:
        raise store_error(engine, "read the scheduled actions", exc) from exc
    return [_row(r) for r in rows]
