"""The `cost_daily` table and the `cost_source` bookkeeping row, through SQLAlchemy Core.

`cost_daily` holds one row per (usage_date, metric, service, group_value); users query it
directly, so its columns are documented in the README. `cost_source` remembers, per metric,
how the rows were grouped and which days have been fetched, so a run knows what to fetch
again without asking Cost Explorer (which bills per request).
"""
from __future__ import annotations

import datetime as dt
from contextlib import contextmanager
from dataclasses import dataclass
from operator import itemgetter
from typing import Callable, Iterable, Iterator

import numpy as np
import pandas as pd
import sqlalchemy as sa
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DataError, SQLAlchemyError

from _util.errors import MixedCurrencies, StoreError
from _util.store.database import NameText, mask_url, metadata

# What the columns hold: AWS allows tag values of 256 characters; service names are far
# shorter. On MySQL/MariaDB amounts are exact decimals with Cost Explorer's 10 places and
# 28 digits before the point (any bill); SQLite stores float64.
SERVICE_CHARS = 320
GROUP_CHARS = 256
AMOUNT_DIGITS = 38
AMOUNT_PLACES = 10
AMOUNT_LIMIT = 10.0 ** (AMOUNT_DIGITS - AMOUNT_PLACES)
# A cost amount column: an exact decimal on MySQL/MariaDB, float64 on SQLite.
AMOUNT_TYPE = sa.Float(asdecimal=False).with_variant(
    mysql.DECIMAL(AMOUNT_DIGITS, AMOUNT_PLACES, asdecimal=False), "mysql", "mariadb")

cost_daily = sa.Table(
    "cost_daily", metadata,
    sa.Column("usage_date", sa.Date, primary_key=True),
    sa.Column("metric", sa.String(32), primary_key=True),
    sa.Column("service", NameText(SERVICE_CHARS), primary_key=True),
    sa.Column("group_value", NameText(GROUP_CHARS), primary_key=True),
    sa.Column("amount", AMOUNT_TYPE, nullable=False),
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


# What a source read to produce the stored rows, per metric (the report source: each
# billing period's file fingerprint), written in the transaction that stores the rows so
# the two never disagree: a source skips what its marks say is stored already.
source_mark = sa.Table(
    "source_mark", metadata,
    sa.Column("metric", sa.String(32), primary_key=True),
    sa.Column("mark", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(128), nullable=False),
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
                 rows: Iterable[CostRow], state: SourceState | Callable[[], SourceState], *,
                 wipe_metric: bool = False, fetched_at: dt.datetime | None = None,
                 marks: Callable[[], dict[str, str]] | None = None) -> int:
    """Replace the stored days start..end (inclusive) with `rows`, in one transaction.

    A day fetched again is replaced as a whole, so a revised amount replaces the old one
    and a group that no longer appears is gone; re-running never duplicates a row. With
    `wipe_metric` every row of the metric goes first (the grouping changed).

    `rows` is consumed a batch at a time, so it can be a fetch still in progress: an
    exception it raises rolls everything back. `state` may be a function, called once
    every row is written, for bookkeeping that only the whole fetch knows (its Estimated
    days); `marks`, called then too, gives the source's marks to store with the rows (a
    wipe drops the metric's old marks). Returns the number of rows written.
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
                try:
                    insert.execute(batch)
                except DataError as exc:
                    raise _out_of_range(batch, insert.names) or exc
                written += len(batch)
            stored = None if wipe_metric else _unit_outside(conn, metric, start, end)
            _check_one_currency(metric, insert.first_of_unit, stored)
            _write_state(conn, metric, state() if callable(state) else state, fetched_at)
            _write_marks(conn, metric, marks() if marks else {}, wipe_metric)
    except StoreError:
        raise
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
        # The first row written in each unit (currency), for `_check_one_currency`.
        self.first_of_unit: dict[str, CostRow] = {}

    def batches(self, rows: Iterable[CostRow]) -> Iterator[list]:
        if not self.fast:
            yield from _dict_batches(rows, self.metric, self.fetched_at, self.first_of_unit)
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
                self.first_of_unit[r.unit] = r
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


def _dict_batches(rows: Iterable[CostRow], metric: str, fetched_at: dt.datetime,
                  first_of_unit: dict[str, CostRow]) -> Iterator[list[dict]]:
    """Insert parameters as dicts for SQLAlchemy's executemany (dialects with named
    parameters), in bounded batches."""
    batch: list[dict] = []
    for r in rows:
        first_of_unit.setdefault(r.unit, r)
        batch.append({"usage_date": r.usage_date, "metric": metric, "service": r.service,
                      "group_value": r.group_value, "amount": r.amount, "unit": r.unit,
                      "estimated": r.estimated, "fetched_at": fetched_at})
        if len(batch) >= INSERT_BATCH_ROWS:
            yield batch
            batch = []
    if batch:
        yield batch


def _out_of_range(batch: list, names: list[str]) -> StoreError | None:
    """The row of a batch the database refused as too long or too large, as one line
    naming its day, service and group (None if no row is out of the columns' range)."""
    for values in batch:
        row = values if isinstance(values, dict) else dict(zip(names, values))
        service, group, amount = row["service"], row["group_value"], float(row["amount"])
        if len(service) > SERVICE_CHARS:
            what = f"a service name of {len(service)} characters (the column holds {SERVICE_CHARS})"
        elif len(group) > GROUP_CHARS:
            what = (f"a group value of {len(group)} characters (the column holds "
                    f"{GROUP_CHARS}, AWS's limit for a tag value)")
        elif not abs(amount) < AMOUNT_LIMIT:
            what = f"an amount of {amount:g} (the column holds less than {AMOUNT_LIMIT:g})"
        else:
            continue
        return StoreError(
            f"cannot store the cost of {row['usage_date']}, service {service[:80]!r}, group "
            f"{group[:80]!r}: {what}; nothing of the fetch was stored. Check the source's "
            "answer (or group by another key with COST_TRACKING_GROUP_BY)")
    return None


@dataclass(frozen=True)
class StoredUnit:
    unit: str
    usage_date: dt.date


def _unit_outside(conn: Connection, metric: str, start: dt.date, end: dt.date) -> StoredUnit | None:
    """The unit of a stored row of `metric` next to days start..end (the nearest before,
    else after): the metric's stored rows are in one currency, so any one tells it."""
    c = cost_daily.c
    for outside, order in ((c.usage_date < start, c.usage_date.desc()),
                           (c.usage_date > end, c.usage_date.asc())):
        row = conn.execute(sa.select(c.unit, c.usage_date)
                           .where(c.metric == metric).where(outside)
                           .order_by(order).limit(1)).first()
        if row is not None:
            return StoredUnit(row.unit, row.usage_date)
    return None


def _check_one_currency(metric: str, first_of_unit: dict[str, CostRow],
                        stored: StoredUnit | None) -> None:
    """Refuse a fetch that would leave `metric` in two currencies: a series in euros one
    day and dollars the next cannot be compared, summed or alerted on."""
    fetched = sorted(first_of_unit.values(), key=lambda r: (r.usage_date, r.unit))
    if len(fetched) > 1:
        first, other = fetched[0], fetched[1]
        raise MixedCurrencies(
            f"the source returned {metric} in {first.unit} ({first.usage_date}, "
            f"{first.service[:80]!r}) and in {other.unit} ({other.usage_date}, "
            f"{other.service[:80]!r}); one series cannot mix currencies, so nothing of the "
            "fetch was stored")
    if fetched and stored is not None and fetched[0].unit != stored.unit:
        new = fetched[0]
        raise MixedCurrencies(
            f"the source returned {metric} in {new.unit} from {new.usage_date} but the "
            f"database holds it in {stored.unit} ({stored.usage_date}); one series cannot "
            "mix currencies, so nothing of the fetch was stored. If the account's currency "
            "changed, start its history again in a new database (COST_TRACKING_DB_URL) or "
            f"delete the stored rows of {metric} from cost_daily")


def _write_marks(conn: Connection, metric: str, marks: dict[str, str], wipe: bool) -> None:
    c = source_mark.c
    delete = sa.delete(source_mark).where(c.metric == metric)
    if not wipe:
        if not marks:
            return
        delete = delete.where(c.mark.in_(sorted(marks)))
    conn.execute(delete)
    if marks:
        conn.execute(sa.insert(source_mark), [{"metric": metric, "mark": k, "value": v}
                                              for k, v in sorted(marks.items())])


def read_marks(engine: Engine, metric: str) -> dict[str, str]:
    """The marks stored with `metric`'s rows (see `source_mark`)."""
    stmt = sa.select(source_mark.c.mark, source_mark.c.value).where(source_mark.c.metric == metric)
    with reading_rows(engine) as conn:
        return dict(conn.execute(stmt).tuples().all())


def stored_currency(engine: Engine, metric: str, day: dt.date) -> str:
    """The currency of `metric`'s stored costs up to `day` (USD when none are stored)."""
    c = cost_daily.c
    stmt = (sa.select(c.unit).where(c.metric == metric).where(c.usage_date <= day)
            .order_by(c.usage_date.desc()).limit(1))
    with reading_rows(engine) as conn:
        return conn.execute(stmt).scalar() or "USD"


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

    A year of 10,000 series is 3.65M rows, so rows are read a chunk at a time as the
    driver returns them and turned into columns with numpy and pandas; SQLAlchemy builds
    and binds the statement but does not convert value by value (which was most of the
    time). Each value arrives in one form on every dialect: the day as 'YYYY-MM-DD' text,
    the amount as a double (MySQL's DECIMAL would arrive as a Decimal), the flag as 0/1.
    The daily run reads the same frame through `history_cache` (a local copy checked
    against this table), which reads the days it lacks with the same statement.
    """
    with reading_rows(engine) as conn:
        chunks = list(read_history(conn, history_select(metric, start, end)))
    return history_frame(chunks)


def history_select(metric: str, start: dt.date, end: dt.date) -> sa.Select:
    """The rows of `load_history` for days start..end, every value in the one form the
    chunk conversion expects (see `load_history`); binds strings only, for
    `_driver_rows`."""
    c = cost_daily.c
    return sa.select(
        sa.cast(c.usage_date, sa.String(10)).label("usage_date"),
        c.service,
        c.group_value,
        (c.amount + sa.literal_column("0e0")).label("amount"),
        c.estimated,
    ).where(_window(metric, start, end))


def _window(metric: str, start: dt.date, end: dt.date) -> sa.ColumnElement[bool]:
    """metric = :metric AND usage_date BETWEEN :start AND :end, the values bound as text
    (ISO days compare as dates on every dialect)."""
    c = cost_daily.c
    return ((c.metric == sa.bindparam("metric", metric, type_=sa.String))
            & c.usage_date.between(sa.bindparam("start", start.isoformat(), type_=sa.String),
                                   sa.bindparam("end", end.isoformat(), type_=sa.String)))


def read_history(conn: Connection, stmt: sa.Select) -> Iterator[HistoryChunk]:
    """The rows of a `history_select` statement as typed column chunks, a chunk at a time."""
    for rows in _driver_rows(conn, stmt, LOAD_CHUNK_ROWS):
        yield _history_chunk(rows)


@contextmanager
def reading_rows(engine: Engine) -> Iterator[Connection]:
    """A connection whose database errors become one StoreError line (password masked):
    SQLAlchemy's, and the driver's own (rows read straight from the driver by
    `_driver_rows` raise DBAPI's Error)."""
    driver_error = getattr(engine.dialect.loaded_dbapi, "Error", SQLAlchemyError)
    try:
        with engine.connect() as conn:
            yield conn
    except (SQLAlchemyError, driver_error) as exc:
        raise StoreError(f"cannot read costs from {mask_url(str(engine.url))}: {exc}") from exc


def day_fingerprints(conn: Connection, metric: str, start: dt.date,
                     end: dt.date) -> dict[dt.date, str]:
    """A fingerprint of each stored day start..end of `metric`: a copy of a day's rows is
    current while the day's fingerprint is unchanged.

    It is the day's row count, sum of amounts and number of Estimated rows, from one
    aggregate query (one row per day: the server reads every row, the client 365), and
    the fetched_at of the day's first row (one indexed probe per day). What it sees:
      - every write by `replace_days`: a day fetched again has a new fetched_at (to the
        microsecond on SQLite, to the second on MySQL/MariaDB; within one second, only
        if the count, sum or flags changed too);
      - rows inserted or deleted by hand (the count);
      - an amount changed by hand: exactly on MySQL/MariaDB (DECIMAL sums); on SQLite
        (float64 sums) unless the change is below the rounding of the day's total, about
        1e-16 of it (1e-10 on a day of $1M);
      - an Estimated flag changed by hand (the count of Estimated rows).
    What it does not see: a service or group renamed by hand (UPDATE ... SET
    group_value) that keeps the day's count, amounts and flags, or amounts swapped
    between rows by hand. Names would need a hash summed per row: SQLite has none, and
    MariaDB's CRC32 over every row cost 3-5 s more at 18M rows (the aggregate takes
    3-4 s on SQLite and 6-8 s on MariaDB already). A day fetched again is always seen.
    Values are the driver's own (exact decimals, repr of doubles), joined as text.
    """
    c = cost_daily.c
    stmt = (sa.select(sa.cast(c.usage_date, sa.String(10)), sa.func.count(),
                      sa.func.sum(c.amount), sa.func.sum(c.estimated))
            .where(_window(metric, start, end)).group_by(c.usage_date))
    prints = {}
    for rows in _driver_rows(conn, stmt, LOAD_CHUNK_ROWS):
        for day, *values in rows:
            prints[dt.date.fromisoformat(day)] = "|".join(map(str, values))
    # The primary key's index leads with (usage_date, metric): each probe is one seek.
    probe = (sa.select(c.fetched_at)
             .where(c.metric == metric).where(c.usage_date == sa.bindparam("day"))
             .order_by(c.service, c.group_value).limit(1))
    for day in prints:
        prints[day] += f"|{conn.execute(probe, {'day': day}).scalar()}"
    return prints


def begin_snapshot(conn: Connection) -> None:
    """Make the connection's next reads one consistent view of the database.

    MySQL/MariaDB (InnoDB, REPEATABLE READ) already read one snapshot per transaction.
    pysqlite runs each SELECT in a transaction of its own unless one is begun by hand,
    as SQLAlchemy's documentation does for it; the transaction only reads and ends with
    the connection (rolled back).
    """
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN")


LOAD_CHUNK_ROWS = 200_000


def _driver_rows(conn: Connection, stmt: sa.Select, chunk_rows: int) -> Iterator[list]:
    """The rows of `stmt` as lists of plain tuples from the DBAPI cursor, chunk by chunk.

    On MySQL the cursor is PyMySQL's unbuffered server-side one, so a year of 50,000 series
    is never held in the client all at once; sqlite3's cursor steps through the result
    anyway. Other drivers go through SQLAlchemy's own streaming result (Row objects).
    `stmt` must bind only strings (no bind processing is applied here).
    """
    driver = conn.dialect.driver
    if driver not in ("pysqlite", "pymysql"):
        result = conn.execution_options(stream_results=True, yield_per=chunk_rows).execute(stmt)
        yield from result.partitions()
        return
    compiled = stmt.compile(dialect=conn.dialect)
    params = compiled.construct_params()
    args = [params[k] for k in compiled.positiontup] if conn.dialect.positional else params
    raw = conn.connection.driver_connection
    if driver == "pymysql":
        import pymysql.cursors
        cursor = raw.cursor(pymysql.cursors.SSCursor)
    else:
        cursor = raw.cursor()
    try:
        cursor.execute(str(compiled), args)
        while rows := cursor.fetchmany(chunk_rows):
            yield rows
    finally:
        cursor.close()


@dataclass
class HistoryChunk:
    """One slice of the history as arrays; names as codes into the slice's own uniques."""

    usage_date: np.ndarray
    service: tuple[np.ndarray, np.ndarray]
    group_value: tuple[np.ndarray, np.ndarray]
    amount: np.ndarray
    estimated: np.ndarray


def _history_chunk(rows: list) -> HistoryChunk:
    """One slice of rows as typed columns (values column by column, not row by row)."""
    n = len(rows)

    def column(i: int, dtype=object) -> np.ndarray:
        return np.fromiter(map(itemgetter(i), rows), dtype=dtype, count=n)

    # A year has 365 distinct days: parse each once.
    day_codes, day_text = pd.factorize(column(0))
    days = pd.to_datetime(day_text, format="%Y-%m-%d").to_numpy(dtype="datetime64[ns]")
    return HistoryChunk(
        usage_date=days[day_codes],
        service=_factorized(column(1)),
        group_value=_factorized(column(2)),
        amount=column(3, np.float64),
        estimated=column(4, bool),
    )


def _factorized(names: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(codes, uniques) with 32-bit codes: a chunk's codes wait for the last chunk, and
    pandas' own 64-bit ones would double what a year of 50,000 series holds meanwhile."""
    codes, uniques = pd.factorize(names)
    return codes.astype(np.int32), uniques


def _categorical(parts: list[tuple[np.ndarray, np.ndarray]]) -> pd.Categorical:
    """Names of all slices as one categorical over their sorted union, each slice's codes
    translated into one preallocated array.

    Categoricals: a year of 100,000 series is 36M rows; names as objects would double it.
    """
    names = sorted(set().union(*(uniques.tolist() for _, uniques in parts)))
    dtype = pd.CategoricalDtype(names)
    codes = np.empty(sum(len(local) for local, _ in parts), dtype=np.int32)
    at = 0
    for local, uniques in parts:
        codes[at:at + len(local)] = dtype.categories.get_indexer(uniques).astype(np.int32)[local]
        at += len(local)
    return pd.Categorical.from_codes(codes, dtype=dtype)


def history_frame(chunks: list[HistoryChunk]) -> pd.DataFrame:
    """One frame from the slices, a column at a time (only one column is ever held twice)."""
    def stacked(name: str, empty: np.ndarray) -> np.ndarray:
        parts = [getattr(chunk, name) for chunk in chunks]
        for chunk in chunks:
            setattr(chunk, name, None)
        return np.concatenate(parts) if parts else empty

    return pd.DataFrame({
        "usage_date": stacked("usage_date", np.array([], dtype="datetime64[ns]")),
        "service": _categorical([c.service for c in chunks]),
        "group_value": _categorical([c.group_value for c in chunks]),
        "amount": stacked("amount", np.array([], dtype=np.float64)),
        "estimated": stacked("estimated", np.array([], dtype=bool)),
    }, copy=False)


# Services named in one query (bound parameters; SQLite allows 32,766 a statement).
SERVICES_PER_QUERY = 500


def stored_rows_by_service(engine: Engine, metric: str, start: dt.date, end: dt.date) -> dict[str, int]:
    """How many rows each service has stored for days start..end, so a reader can batch
    services by the memory their history takes."""
    stmt = (sa.select(cost_daily.c.service, sa.func.count())
            .where(cost_daily.c.metric == metric)
            .where(cost_daily.c.usage_date.between(start, end))
            .group_by(cost_daily.c.service))
    with reading_rows(engine) as conn:
        return {service: int(n) for service, n in conn.execute(stmt)}


def load_services_history(engine: Engine, metric: str, start: dt.date, end: dt.date,
                          services: list[str]) -> pd.DataFrame:
    """The history frame (as `load_history` makes it) of some services only: looking back
    for a few alerts' series needs their rows, not every service's."""
    frames = []
    for lo in range(0, len(services), SERVICES_PER_QUERY):
        stmt = (sa.select(*(cost_daily.c[name] for name in HISTORY_COLUMNS))
                .where(cost_daily.c.metric == metric)
                .where(cost_daily.c.usage_date.between(start, end))
                .where(cost_daily.c.service.in_(services[lo:lo + SERVICES_PER_QUERY])))
        with reading_rows(engine) as conn:
            frames.append(pd.DataFrame(conn.execute(stmt).fetchall(), columns=HISTORY_COLUMNS))
    frames = [f for f in frames if len(f)]
    frame = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=HISTORY_COLUMNS)
    return frame.astype({"amount": np.float64, "estimated": bool, "service": "category",
                         "group_value": "category"}).assign(
        usage_date=lambda f: pd.to_datetime(f["usage_date"]))


def count_window_rows(engine: Engine, metric: str, start: dt.date, end: dt.date) -> int:
    """Rows stored for days start..end of `metric` (an index range count)."""
    stmt = sa.select(sa.func.count()).select_from(cost_daily).where(_window(metric, start, end))
    with reading_rows(engine) as conn:
        return int(conn.execute(stmt).scalar_one())


def stored_names(engine: Engine, metric: str, start: dt.date, end: dt.date) -> set[tuple[str, str]]:
    """The (service, group) pairs stored for days start..end."""
    stmt = (sa.select(cost_daily.c.service, cost_daily.c.group_value).distinct()
            .where(cost_daily.c.metric == metric)
            .where(cost_daily.c.usage_date.between(start, end)))
    with reading_rows(engine) as conn:
        return {(row.service, row.group_value) for row in conn.execute(stmt)}


def count_rows(engine: Engine, metric: str | None = None) -> int:
    stmt = sa.select(sa.func.count()).select_from(cost_daily)
    if metric is not None:
        stmt = stmt.where(cost_daily.c.metric == metric)
    with engine.connect() as conn:
        return int(conn.execute(stmt).scalar_one())
