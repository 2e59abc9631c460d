"""The `slack_delivery` table: each day's digest per channel, and whether Slack has it.

This is what makes delivery happen once per day and channel. The payload is recorded as
'posting' before it is sent and marked 'delivered' with Slack's message `ts` after, so:
- a re-run for a delivered day posts nothing (unless forced);
- a post Slack refused leaves its exact payload 'pending', and a later run delivers it;
- a post without a clear answer (a lost reply, a timeout, a process killed while it
  waited) stays 'posting': Slack may have it. The run, or a later one, first looks for
  the digest's metadata in the channel's history since the post began (`created_at`) and
  records it delivered when found (`_util/slack/delivery.py`).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from slack_sdk import WebClient
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from _util.errors import DeliveryError, StoreError
from _util.settings import SLACK_DEFAULT_MAX_RETRIES
from _util.slack.delivery import (
    BACKOFF_SECONDS,
    HistoryUnavailable,
    UnclearDelivery,
    find_digest,
    post_digest,
    with_metadata,
)
from _util.store.database import NameText, metadata, store_error, utc_now

log = logging.getLogger(__name__)

PENDING = "pending"
POSTING = "posting"
DELIVERED = "delivered"
# A channel's other messages (the weekly summary) are kept under "<channel>#<kind>": one
# row per day, channel and kind, with no change to the table.
DAILY = ""
WEEKLY = "weekly"


def delivery_key(channel: str, kind: str = DAILY) -> str:
    return f"{channel}#{kind}" if kind else channel


def split_key(key: str) -> tuple[str, str]:
    """(channel, kind) of a row's `channel` column."""
    channel, _, kind = key.partition("#")
    return channel, kind

slack_delivery = sa.Table(
    "slack_delivery", metadata,
    sa.Column("report_date", sa.Date, primary_key=True),
    sa.Column("channel", NameText(191), primary_key=True),
    # Up to 50 blocks of 3,000 characters: beyond TEXT's 64 KB on MySQL.
    sa.Column("payload", sa.Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"),
              nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("ts", sa.String(32), nullable=True),
    sa.Column("attempts", sa.Integer, nullable=False),
    # When the payload was last recorded: for 'posting', when that post began (UTC).
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("delivered_at", sa.DateTime, nullable=True),
    mysql_charset="utf8mb4",
)


@dataclass(frozen=True)
class DeliveryRecord:
    """One day's digest for one channel as the table holds it."""

    day: dt.date
    channel: str
    payload: dict[str, Any]
    status: str
    ts: str | None
    attempts: int
    created_at: dt.datetime
    delivered_at: dt.datetime | None

    @property
    def delivered(self) -> bool:
        return self.status == DELIVERED


@dataclass(frozen=True)
class DeliveryOutcome:
    """What `deliver_once` did: posted (with Slack's ts) or skipped, and why."""

    posted: bool
    ts: str | None
    skipped_reason: str | None = None




def _record(row: sa.Row) -> DeliveryRecord:
    return DeliveryRecord(day=row.report_date, channel=row.channel,
                          payload=json.loads(row.payload), status=row.status, ts=row.ts,
                          attempts=row.attempts, created_at=row.created_at,
                          delivered_at=row.delivered_at)


def delivery_status(engine: Engine, day: dt.date, channel: str) -> DeliveryRecord | None:
    """The recorded delivery of `day` to `channel`, or None if none was ever attempted."""
    query = sa.select(slack_delivery).where(slack_delivery.c.report_date == day,
                                            slack_delivery.c.channel == channel)
    try:
        with engine.connect() as conn:
            row = conn.execute(query).first()
    except SQLAlchemyError as exc:
        raise store_error(engine, "read the Slack delivery log", exc) from exc
    return None if row is None else _record(row)


def _upsert(engine: Engine, values: dict[str, Any], update: dict[str, Any]) -> sa.Executable:
    name = engine.dialect.name
    if name == "sqlite":
        stmt = sqlite.insert(slack_delivery).values(**values)
        return stmt.on_conflict_do_update(
            index_elements=[slack_delivery.c.report_date, slack_delivery.c.channel],
            set_=update)
    if name in ("mysql", "mariadb"):
        return mysql.insert(slack_delivery).values(**values).on_duplicate_key_update(**update)
    raise StoreError(f"the Slack delivery log supports SQLite and MySQL/MariaDB, not {name}")


def record_pending(engine: Engine, day: dt.date, channel: str, payload: dict[str, Any],
                   status: str = PENDING, now: dt.datetime | None = None) -> None:
    """Record (or replace) the payload for `day` and `channel` as not yet delivered:
    'pending', or 'posting' when it is about to be sent (`now`: when the post begins)."""
    text = json.dumps(payload, ensure_ascii=False, sort_keys=True)
    now = now or utc_now()
    values = dict(report_date=day, channel=channel, payload=text, status=status, ts=None,
                  attempts=0, created_at=now, delivered_at=None)
    stmt = _upsert(engine, values, {"payload": text, "status": status, "ts": None,
                                    "created_at": now, "delivered_at": None})
    try:
        with engine.begin() as conn:
            conn.execute(stmt)
    except SQLAlchemyError as exc:
        raise store_error(engine, "record the Slack payload", exc) from exc


def _count_attempt(engine: Engine, day: dt.date, channel: str) -> None:
    stmt = (sa.update(slack_delivery)
            .where(slack_delivery.c.report_date == day, slack_delivery.c.channel == channel)
            .values(attempts=slack_delivery.c.attempts + 1))
    try:
        with engine.begin() as conn:
            conn.execute(stmt)
    except SQLAlchemyError as exc:
        raise store_error(engine, "count a Slack delivery attempt", exc) from exc


def _set_status(engine: Engine, day: dt.date, channel: str, status: str) -> None:
    stmt = (sa.update(slack_delivery)
            .where(slack_delivery.c.report_date == day, slack_delivery.c.channel == channel)
            .values(status=status))
    try:
        with engine.begin() as conn:
            conn.execute(stmt)
    except SQLAlchemyError as exc:
        raise store_error(engine, "record the Slack delivery's status", exc) from exc


def record_delivered(engine: Engine, day: dt.date, channel: str, ts: str) -> None:
    """Mark the day's payload for `channel` as delivered, with Slack's message ts."""
    stmt = (sa.update(slack_delivery)
            .where(slack_delivery.c.report_date == day, slack_delivery.c.channel == channel)
            .values(status=DELIVERED, ts=ts, delivered_at=utc_now()))
    try:
        with engine.begin() as conn:
            conn.execute(stmt)
    except SQLAlchemyError as exc:
        raise store_error(engine, "record the Slack delivery", exc) from exc


def pending_deliveries(engine: Engine, exclude_day: dt.date | None = None) -> list[DeliveryRecord]:
    """Payloads recorded but never delivered (pending, or posting without an answer),
    oldest first; `exclude_day` is the run's own day, which the run delivers with its
    fresh payload instead."""
    query = (sa.select(slack_delivery)
             .where(slack_delivery.c.status.in_([PENDING, POSTING]))
             .order_by(slack_delivery.c.report_date, slack_delivery.c.channel))
    if exclude_day is not None:
        query = query.where(slack_delivery.c.report_date != exclude_day)
    try:
        with engine.connect() as conn:
            rows = conn.execute(query).all()
    except SQLAlchemyError as exc:
        raise store_error(engine, "read the Slack delivery log", exc) from exc
    return [_record(r) for r in rows]


def deliver_once(engine: Engine, client: WebClient, day: dt.date, channel: str,
                 payload: dict[str, Any], force: bool = False,
                 retries: int = SLACK_DEFAULT_MAX_RETRIES,
                 backoff_seconds: float = BACKOFF_SECONDS, origin: str = "",
                 kind: str = DAILY) -> DeliveryOutcome:
    """Post `payload` for `day` to `channel` unless that was done already.

    Already delivered and not `force`: nothing is posted. Left 'posting' by a run that
    got no answer: the channel is searched first, and a digest found there is recorded
    as delivered. Otherwise the payload (with the digest's metadata) is recorded as
    'posting', posted, and marked delivered. A post Slack refused leaves it 'pending';
    one without a clear answer, 'posting'; either way the DeliveryError propagates.
    `origin` names the installation (`digest_id`), so another bot's digest in the same
    channel is never taken for this one's. `kind` is another message of the channel's
    (WEEKLY), delivered once per day of its own and told apart in the history the same way.
    """
    origin = delivery_key(origin, kind)
    payload = with_metadata(payload, day, channel, origin)
    key = delivery_key(channel, kind)
    existing = delivery_status(engine, day, key)
    if existing is not None and existing.delivered and not force:
        reason = (f"the digest for {day.isoformat()} was already delivered to {channel} "
                  f"(ts {existing.ts}); --force posts it again")
        log.info("%s", reason)
        return DeliveryOutcome(posted=False, ts=existing.ts, skipped_reason=reason)
    if existing is not None and existing.status == POSTING and not force:
        ts = _already_in_channel(client, day, channel, existing.created_at, origin)
        if ts is not None:
            record_delivered(engine, day, key, ts)
            reason = (f"an earlier run's digest for {day.isoformat()} is in {channel} "
                      f"(ts {ts}) though it got no answer; recorded as delivered")
            log.info("%s", reason)
            return DeliveryOutcome(posted=False, ts=ts, skipped_reason=reason)
    since = utc_now()
    record_pending(engine, day, key, payload, status=POSTING, now=since)
    _count_attempt(engine, day, key)
    try:
        ts = post_digest(client, payload, day, since, retries, backoff_seconds, origin)
    except UnclearDelivery:
        log.warning("the digest for %s to %s may or may not be in Slack: the next run looks "
                    "for it before posting", day.isoformat(), channel)
        raise
    except DeliveryError:
        _set_status(engine, day, key, PENDING)
        log.warning("the digest for %s to %s stays pending for the next run",
                    day.isoformat(), channel)
        raise
    record_delivered(engine, day, key, ts)
    return DeliveryOutcome(posted=True, ts=ts)


def _already_in_channel(client: WebClient, day: dt.date, channel: str,
                        since: dt.datetime, origin: str) -> str | None:
    """The ts of the digest a run left 'posting', if the channel has it."""
    try:
        return find_digest(client, channel, day, since, origin)
    except HistoryUnavailable as exc:
        log.warning("a run left the digest for %s 'posting' and %s; posting it again may "
                    "show it twice", day.isoformat(), exc)
        return None
