"""The `tag_coverage_daily` table and its `tag_coverage_source` bookkeeping, through
SQLAlchemy Core.

When the bot groups its costs by something other than the coverage tag, the share of spend
carrying that tag comes from a Cost Explorer request of its own (billed $0.01 like any):
its answers are kept here, one row per (usage_date, metric, tag, service) with the
service's tagged and untagged amounts, so a run asks only for the days not stored yet or
still Estimated, as ingest does for the costs. `tag_coverage_source` remembers, per
(metric, tag), which account and filter the rows came from and which days were fetched
(the same bookkeeping as `cost_source`, so `procAmzData.plan_fetch` plans both).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from _util.errors import StoreError
from _util.store.cost_store import AMOUNT_TYPE as _AMOUNT
from _util.store.cost_store import SERVICE_CHARS, SourceState
from _util.store.database import NameText, mask_url, metadata

# AWS allows tag keys of 128 characters.
TAG_CHARS = 128
# Rows a day holds are one per service: a few hundred even for a large account.
INSERT_BATCH_ROWS = 5000

tag_coverage_daily = sa.Table(
    "tag_coverage_daily", metadata,
    sa.Column("usage_date", sa.Date, primary_key=True),
    sa.Column("metric", sa.String(32), primary_key=True),
    sa.Column("tag", NameText(TAG_CHARS), primary_key=True),
    sa.Column("service", NameText(SERVICE_CHARS), primary_key=True),
    sa.Column("tagged_amount", _AMOUNT, nullable=False),
    sa.Column("untagged_amount", _AMOUNT, nullable=False),
    sa.Column("unit", sa.String(8), nullable=False),
    sa.Column("estimated", sa.Boolean, nullable=False),
    sa.Column("fetched_at", sa.DateTime, nullable=False),
    mysql_charset="utf8mb4",
)

tag_coverage_source = sa.Table(
    "tag_coverage_source", metadata,
    sa.Column("metric", sa.String(32), primary_key=True),
    sa.Column("tag", NameText(TAG_CHARS), primary_key=True),
    sa.Column("account", sa.String(16), nullable=False),
    sa.Column("record_types", sa.String(400), nullable=False),
    sa.Column("first_day", sa.Date, nullable=False),
    sa.Column("last_day", sa.Date, nullable=False),
    sa.Column("estimated_from", sa.Date, nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    mysql_charset="utf8mb4",
)


@dataclass(frozen=True, slots=True)
class CoverageRow:
    """One service's spend on one day, split by whether it carries the tag (a non-empty
    value) or not."""

    usage_date: dt.date
    service: str
    tagged: float
    untagged: float
    unit: str = "USD"
    estimated: bool = False


def tag_grouping(tag: str) -> str:
    """The grouping the coverage rows are fetched with (`group_by` of their bookkeeping)."""
    return f"TAG:{tag}"


def read_coverage_state(engine: Engine, metric: str, tag: str) -> SourceState | None:
    """What is stored for (metric, tag), as the costs' bookkeeping reads (None: nothing)."""
    c = tag_coverage_source.c
    stmt = sa.select(tag_coverage_source).where(c.metric == metric).where(c.tag == tag)
    try:
        with engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read {mask_url(str(engine.url))}: {exc}") from exc
    if row is None:
        return None
    return SourceState(row["account"], tag_grouping(tag), row["record_types"], row["first_day"],
                       row["last_day"], row["estimated_from"])


def replace_coverage_days(engine: Engine, metric: str, tag: str, start: dt.date, end: dt.date,
                          rows: Iterable[CoverageRow], state: Callable[[], SourceState], *,
                          wipe: bool = False, fetched_at: dt.datetime | None = None) -> int:
    """Replace the stored days start..end (inclusive) of (metric, tag) with `rows`, and
    the bookkeeping with `state()` (called once every row is written), in one
    transaction: as for the costs, a day fetched again is replaced as a whole and an
    error while `rows` is consumed (a fetch still in progress) rolls everything back.
    With `wipe` every stored day of (metric, tag) goes first (another account or filter).
    Returns the number of rows written."""
    fetched_at = fetched_at or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    c = tag_coverage_daily.c
    written = 0
    try:
        with engine.begin() as conn:
            delete = sa.delete(tag_coverage_daily).where(c.metric == metric).where(c.tag == tag)
            if not wipe:
                delete = delete.where(c.usage_date.between(start, end))
            conn.execute(delete)
            batch = []
            for row in rows:
                batch.append({"usage_date": row.usage_date, "metric": metric, "tag": tag,
                              "service": row.service, "tagged_amount": row.tagged,
                              "untagged_amount": row.untagged, "unit": row.unit,
                              "estimated": row.estimated, "fetched_at": fetched_at})
                if len(batch) >= INSERT_BATCH_ROWS:
                    conn.execute(sa.insert(tag_coverage_daily), batch)
                    written += len(batch)
                    batch = []
            if batch:
                conn.execute(sa.insert(tag_coverage_daily), batch)
                written += len(batch)
            _upsert_state(conn, metric, tag, state(), fetched_at)
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot write tag coverage to {mask_url(str(engine.url))}: "
                         f"{str(exc).splitlines()[0]}") from exc
    return written


def _upsert_state(conn: Connection, metric: str, tag: str, state: SourceState,
                  now: dt.datetime) -> None:
    """One bookkeeping row per (metric, tag): the dialect's own upsert."""
    values = {"account": state.account, "record_types": state.record_types,
              "first_day": state.first_day, "last_day": state.last_day,
              "estimated_from": state.estimated_from, "updated_at": now}
    if conn.dialect.name in ("mysql", "mariadb"):
        stmt = mysql.insert(tag_coverage_source).values(metric=metric, tag=tag, **values)
        conn.execute(stmt.on_duplicate_key_update(**values))
    elif conn.dialect.name == "sqlite":
        stmt = sqlite.insert(tag_coverage_source).values(metric=metric, tag=tag, **values)
        conn.execute(stmt.on_conflict_do_update(index_elements=["metric", "tag"], set_=values))
    else:  # a dialect without an upsert the bot knows: inside the transaction, the same
        c = tag_coverage_source.c
        updated = conn.execute(sa.update(tag_coverage_source).where(c.metric == metric)
                               .where(c.tag == tag).values(**values))
        if updated.rowcount == 0:
            conn.execute(sa.insert(tag_coverage_source).values(metric=metric, tag=tag, **values))


def load_coverage(engine: Engine, metric: str, tag: str, start: dt.date,
                  end: dt.date) -> list[CoverageRow]:
    """The stored rows of (metric, tag) for days start..end (inclusive), by day and service."""
    c = tag_coverage_daily.c
    stmt = (sa.select(c.usage_date, c.service, c.tagged_amount, c.untagged_amount, c.unit,
                      c.estimated)
            .where(c.metric == metric).where(c.tag == tag)
            .where(c.usage_date.between(start, end))
            .order_by(c.usage_date, c.service))
    try:
        with engine.connect() as conn:
            return [CoverageRow(r.usage_date, r.service, float(r.tagged_amount),
                                float(r.untagged_amount), r.unit, bool(r.estimated))
                    for r in conn.execute(stmt)]
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read tag coverage from {mask_url(str(engine.url))}: "
                         f"{exc}") from exc
