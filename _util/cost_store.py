"""The `cost_daily` table and the `cost_source` bookkeeping row, through SQLAlchemy Core.

`cost_daily` holds one row per (usage_date, metric, service, group_value); users query it
directly, so its columns are documented in the README. `cost_source` remembers, per metric,
how the rows were grouped and which days have been fetched, so a run knows what to fetch
again without asking Cost Explorer (which bills per request).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from _util.database import mask_url, metadata
from _util.errors import StoreError


def _name_column(length: int) -> sa.types.TypeEngine:
    """Case- and accent-sensitive text on MySQL, so 'web' and 'Web' stay two groups."""
    return sa.String(length).with_variant(
        mysql.VARCHAR(length, charset="utf8mb4", collation="utf8mb4_bin"), "mysql", "mariadb")


cost_daily = sa.Table(
    "cost_daily", metadata,
    sa.Column("usage_date", sa.Date, primary_key=True),
    sa.Column("metric", sa.String(32), primary_key=True),
    sa.Column("service", _name_column(320), primary_key=True),
    sa.Column("group_value", _name_column(256), primary_key=True),
    sa.Column("amount", sa.Float(asdecimal=False).with_variant(
        mysql.DECIMAL(24, 10, asdecimal=False), "mysql", "mariadb"), nullable=False),
    sa.Column("unit", sa.String(8), nullable=False),
    sa.Column("estimated", sa.Boolean, nullable=False),
    sa.Column("fetched_at", sa.DateTime, nullable=False),
    mysql_charset="utf8mb4",
)

cost_source = sa.Table(
    "cost_source", metadata,
    sa.Column("metric", sa.String(32), primary_key=True),
    sa.Column("account", sa.String(16), nullable=False),
    sa.Column("group_by", sa.String(160), nullable=False),
    sa.Column("record_types", sa.String(400), nullable=False),
    sa.Column("first_day", sa.Date, nullable=False),
    sa.Column("last_day", sa.Date, nullable=False),
    sa.Column("estimated_from", sa.Date, nullable=True),
    sa.Column("updated_at", sa.DateTime, nullable=False),
    mysql_charset="utf8mb4",
)


@dataclass(frozen=True, slots=True)
class CostRow:
    """One stored amount: a service's cost in one group on one day."""

    usage_date: dt.date
    service: str
    group_value: str
    amount: float
    unit: str
    estimated: bool


@dataclass(frozen=True)
class SourceState:
    """What the database already holds for one metric; `account` is "aws" or "demo"."""

    account: str
    group_by: str
    record_types: str
    first_day: dt.date
    last_day: dt.date
    estimated_from: dt.date | None


def read_source_state(engine: Engine, metric: str) -> SourceState | None:
    stmt = sa.select(cost_source).where(cost_source.c.metric == metric)
    try:
        with engine.connect() as conn:
            row = conn.execute(stmt).mappings().first()
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read {mask_url(str(engine.url))}: {exc}") from exc
    if row is None:
        return None
    return SourceState(row["account"], row["group_by"], row["record_types"], row["first_day"],
                       row["last_day"], row["estimated_from"])


def replace_days(engine: Engine, metric: str, start: dt.date, end: dt.date,
                 rows: Iterable[CostRow], state: SourceState, *, wipe_metric: bool = False,
                 fetched_at: dt.datetime | None = None) -> int:
    """Replace the stored days start..end (inclusive) with `rows`, in one transaction.

    A day fetched again is replaced as a whole, so a revised amount replaces the old one
    and a group that no longer appears is gone; re-running never duplicates a row. With
    `wipe_metric` every row of the metric goes first (the grouping changed).
    Returns the number of rows written.
    """
    fetched_at = fetched_at or dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)
    written = 0
    try:
        with engine.begin() as conn:
            delete = sa.delete(cost_daily).where(cost_daily.c.metric == metric)
            if not wipe_metric:
                delete = delete.where(cost_daily.c.usage_date.between(start, end))
            conn.execute(delete)
            insert = _BulkInsert(conn, metric, fetched_at)
            for batch in insert.batches(rows):
                insert.execute(batch)
                written += len(batch)
            _write_state(conn, metric, state, fetched_at)
    except SQLAlchemyError as exc:
        raise StoreError(
            f"cannot write costs to {mask_url(str(engine.url))}: {str(exc).splitlines()[0]}"
        ) from exc
    return written


INSERT_BATCH_ROWS = 20_000


class _BulkInsert:
    """INSERTs into cost_daily as executemany batches of plain tuples.

    The statement is SQLAlchemy's own, compiled for the connection's dialect, and each
    value goes through the column type's own bind processor, so rows are stored exactly
    as `conn.execute(sa.insert(cost_daily), dicts)` would store them. What is skipped is
    SQLAlchemy's per-row parameter handling (about 10 us a row, two thirds of a
    backfill's write time); the dates, flags and timestamps that repeat are converted
    once. sqlite3 runs executemany in a C loop; PyMySQL rewrites it into multi-row
    INSERT statements of up to about 1 MB each (no round trip per row). Batches bound
    the memory: a year of 50,000 series is never millions of tuples at once.
    """

    def __init__(self, conn: Connection, metric: str, fetched_at: dt.datetime) -> None:
        dialect = conn.dialect
        compiled = sa.insert(cost_daily).compile(dialect=dialect)
        self.conn = conn
        self.metric = metric
        self.fetched_at = fetched_at
        self.names = [c.name for c in cost_daily.c]
        # Positional styles (sqlite3's qmark) take tuples in the table's column order;
        # named ones (PyMySQL's pyformat) take dicts.
        self.positional = bool(dialect.positional)
        self.fast = (compiled.positiontup == self.names if self.positional
                     else dialect.paramstyle in ("pyformat", "named"))
        self.sql = str(compiled)

        def processor(name: str):
            proc = cost_daily.c[name].type._cached_bind_processor(dialect)
            return proc or (lambda value: value)

        self.process = {c.name: processor(c.name) for c in cost_daily.c}

    def batches(self, rows: Iterable[CostRow]) -> Iterator[list]:
        if not self.fast:
            yield from _dict_batches(rows, self.metric, self.fetched_at)
            return
        p = self.process
        metric, fetched_at = p["metric"](self.metric), p["fetched_at"](self.fetched_at)
        service, group, amount = p["service"], p["group_value"], p["amount"]
        # Days, flags and units repeat: each distinct value is converted once.
        days: dict[dt.date, object] = {}
        flags = {True: p["estimated"](True), False: p["estimated"](False)}
        units: dict[str, object] = {}
        batch: list[tuple] = []
        for r in rows:
            day = days.get(r.usage_date)
            if day is None:
                day = days[r.usage_date] = p["usage_date"](r.usage_date)
            unit = units.get(r.unit)
            if unit is None:
                unit = units[r.unit] = p["unit"](r.unit)
            values = (day, metric, service(r.service), group(r.group_value),
                      amount(r.amount), unit, flags[bool(r.estimated)], fetched_at)
            batch.append(values if self.positional else dict(zip(self.names, values)))
            if len(batch) >= INSERT_BATCH_ROWS:
                yield batch
                batch = []
        if batch:
            yield batch

    def execute(self, batch: list) -> None:
        if self.fast:
            self.conn.exec_driver_sql(self.sql, batch)
        else:
            self.conn.execute(sa.insert(cost_daily), batch)


def _dict_batches(rows: Iterable[CostRow], metric: str,
                  fetched_at: dt.datetime) -> Iterator[list[dict]]:
    """Insert parameters as dicts for SQLAlchemy's executemany (dialects with named
    parameters), in bounded batches."""
    batch: list[dict] = []
    for r in rows:
        batch.append({"usage_date": r.usage_date, "metric": metric, "service": r.service,
                      "group_value": r.group_value, "amount": r.amount, "unit": r.unit,
                      "estimated": r.estimated, "fetched_at": fetched_at})
        if len(batch) >= INSERT_BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _write_state(conn: Connection, metric: str, state: SourceState, now: dt.datetime) -> None:
    values = {"account": state.account, "group_by": state.group_by, "record_types": state.record_types,
              "first_day": state.first_day, "last_day": state.last_day,
              "estimated_from": state.estimated_from, "updated_at": now}
    updated = conn.execute(
        sa.update(cost_source).where(cost_source.c.metric == metric).values(**values))
    if updated.rowcount == 0:
        conn.execute(sa.insert(cost_source).values(metric=metric, **values))


HISTORY_COLUMNS = ["usage_date", "service", "group_value", "amount", "estimated"]


def load_history(engine: Engine, metric: str, start: dt.date, end: dt.date) -> pd.DataFrame:
    """The tidy history frame for days start..end (inclusive) of one metric.

    Columns: usage_date (datetime64), service and group_value (categorical), amount
    (float64), estimated.
    """
    window = (cost_daily.c.metric == metric) & cost_daily.c.usage_date.between(start, end)
    names = (sa.select(cost_daily.c.service, cost_daily.c.group_value).where(window).distinct())
    stmt = (sa.select(cost_daily.c.usage_date, cost_daily.c.service, cost_daily.c.group_value,
                      cost_daily.c.amount, cost_daily.c.estimated).where(window))
    try:
        with engine.connect() as conn:
            pairs = conn.execute(names).all()
            services = pd.CategoricalDtype(sorted({p[0] for p in pairs}))
            groups = pd.CategoricalDtype(sorted({p[1] for p in pairs}))
            result = conn.execution_options(stream_results=True, yield_per=LOAD_CHUNK_ROWS).execute(stmt)
            chunks = [_history_chunk(part, services, groups) for part in result.partitions()]
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read costs from {mask_url(str(engine.url))}: {exc}") from exc
    if not chunks:
        chunks = [_history_chunk([], services, groups)]
    return pd.concat(chunks, ignore_index=True)


LOAD_CHUNK_ROWS = 200_000


def _history_chunk(rows: list, services: pd.CategoricalDtype, groups: pd.CategoricalDtype) -> pd.DataFrame:
    """One streamed slice as a typed frame; names become codes of categories known up front,
    so slices concatenate without ever holding millions of name strings at once."""
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS)
    return pd.DataFrame({
        "usage_date": pd.to_datetime(frame["usage_date"]).astype("datetime64[ns]"),
        # Categoricals: a year of 100,000 series is 36M rows; names as objects would double it.
        "service": frame["service"].astype(services),
        "group_value": frame["group_value"].astype(groups),
        "amount": frame["amount"].astype(np.float64),
        "estimated": frame["estimated"].astype(bool),
    })


def count_rows(engine: Engine, metric: str | None = None) -> int:
    stmt = sa.select(sa.func.count()).select_from(cost_daily)
    if metric is not None:
        stmt = stmt.where(cost_daily.c.metric == metric)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())
