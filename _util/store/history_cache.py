"""A local columnar copy of the history window (a DuckDB file), checked against the database
on every read: the daily run's history without reading a year of rows again.

Why: the daily run needs the lookback window of every series (at 51,000 series a year is
18M rows), but only the last few days of it change from one day to the next. Reading the
rows through the database driver costs about 1.5 us a row in Python (28 s on SQLite, 67 s
on MariaDB, whose driver decodes every value). The copy keeps the window's rows in a DuckDB
file in the output folder (`<output>/cache/history-<metric>.duckdb`, see
`OutputPaths.history_cache`), with names as integer series ids, so a day is read back as
three numpy arrays without a Python object per row.

The database stays the one source of truth. Every read:
  1. asks the database for a fingerprint of every day of the window, in one aggregate
     query (`cost_store.day_fingerprints`: row count, sum of amounts, Estimated rows, and
     when the day was last fetched; see there for what it sees and what it cannot); the
     older half of the window on a second connection, on a core of its own
     (`_fingerprints`);
  2. keeps the cached days whose fingerprint is the one recorded when they were copied,
     and reads every other day (new, fetched again, edited, or never copied) from the
     database with `load_history`'s own statement, in the same transaction as the
     fingerprints (as the newer half's: see `_fingerprints` for a day changed by hand
     while the two connections begin); days the database no longer has are dropped;
  3. reads the window's days from the file and checks each against a digest of its rows
     (row count, exact bit sums of the amounts, series ids and flags) recorded when it was
     written: a file that does not open, fails DuckDB's block checksums or disagrees with a
     digest is deleted and rebuilt from the database, and if that fails too, the database is
     read directly (`load_history`). The copy is never trusted on its own word.
The frame equals `load_history`'s for the same days: the same values, the same categories,
and the rows in the database's order (each day's rows as the database returned them, days
in order), so sums over it round the same way.

DuckDB rather than Parquet files: one file updated in place by transactions (a day fetched
again replaces only that day's rows), block checksums on every read, and no pyarrow (not a
dependency here). SQL on it is constant text with bound parameters.

A small window (under COPY_MIN_ROWS rows) with no copy yet is read from the database
directly, and no copy is made: at the demo's 15,000 rows that takes 25-50 ms, the copy's
checks and DuckDB's import and start about 0.15 s. A copy once made is kept in use.
"""
from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterable, Iterator

import numpy as np
import pandas as pd
from sqlalchemy.engine import Connection, Engine

from _util.errors import LockedError, StoreError
from _util.run.run_lock import run_lock
from _util.store.cost_store import (
    HistoryChunk,
    begin_snapshot,
    count_window_rows,
    day_fingerprints,
    history_frame,
    history_select,
    load_history,
    read_history,
    reading_rows,
)
from _util.store.database import mask_url

if TYPE_CHECKING:
    import duckdb

log = logging.getLogger(__name__)

# Bumped when the file's tables change: a file of another format is rebuilt.
CACHE_FORMAT = "1"

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS cache_info (key VARCHAR NOT NULL, value VARCHAR NOT NULL)",
    "CREATE TABLE IF NOT EXISTS names (series INTEGER NOT NULL, service VARCHAR NOT NULL, "
    "group_value VARCHAR NOT NULL)",
    # One row per copied day: the database's fingerprint of it and the digest of its rows.
    "CREATE TABLE IF NOT EXISTS days (usage_date DATE NOT NULL, fingerprint VARCHAR NOT NULL, "
    "digest VARCHAR NOT NULL)",
    # Without an ORDER BY DuckDB returns rows in insertion order (preserve_insertion_order),
    # so a day's rows come back in the order the database gave them.
    "CREATE TABLE IF NOT EXISTS costs (usage_date DATE NOT NULL, series INTEGER NOT NULL, "
    "amount DOUBLE NOT NULL, estimated BOOLEAN NOT NULL)",
)
_EMPTY_ALL = ("DELETE FROM cache_info", "DELETE FROM names", "DELETE FROM days",
              "DELETE FROM costs")


# The cache_info key of the names' digest (see `_Names.digest`).
_NAMES_DIGEST = "names_digest"


class CacheMismatch(Exception):
    """The cache file's rows differ from the digest written with them."""


READ_DAYS_AT_ONCE = 16  # days of the copy read by one query (see `_read_days`)
# From this many rows in the window a copy is made (about 275 series over a year): below
# it the database is read faster directly (SQLite and MariaDB both, measured at 15,000).
COPY_MIN_ROWS = 100_000


def history_cache_file(cache_dir: Path, metric: str) -> Path:
    """The cache file of one metric in the cache folder."""
    return Path(cache_dir) / f"history-{re.sub(r'[^A-Za-z0-9_-]', '_', metric)}.duckdb"


def load_cached_history(engine: Engine, metric: str, start: dt.date, end: dt.date,
                        cache_dir: Path, min_rows: int = COPY_MIN_ROWS) -> pd.DataFrame:
    """`load_history(engine, metric, start, end)`'s frame, read through the cache file in
    `cache_dir` (see the module's docstring), or from the database alone while there is
    no cache file and the window holds fewer than `min_rows` rows. Database errors raise
    StoreError as `load_history`'s do; a cache that cannot be used costs time, never the
    run."""
    path = history_cache_file(cache_dir, metric)
    if not path.exists() and count_window_rows(engine, metric, start, end) < min_rows:
        return load_history(engine, metric, start, end)
    try:
        with run_lock(path.with_name(path.name + ".lock")):
            return _load_through(path, engine, metric, start, end)
    except (LockedError, OSError) as exc:
        log.warning("cannot use the history cache %s (%s): reading the database", path, exc)
    return load_history(engine, metric, start, end)


def _load_through(path: Path, engine: Engine, metric: str, start: dt.date,
                  end: dt.date) -> pd.DataFrame:
    import duckdb  # 35-90 ms: only when there is a copy to keep

    source = {"format": CACHE_FORMAT, "database": mask_url(str(engine.url)), "metric": metric}
    for attempt in ("cached", "rebuilt"):
        try:
            with _opened(path, source) as cache:
                return cache.load(engine, metric, start, end)
        except (duckdb.Error, CacheMismatch) as exc:
            what = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            log.warning("the history cache %s is unusable (%s): %s", path, what,
                        "rebuilding it from the database" if attempt == "cached"
                        else "reading the database directly")
            _remove(path)
    return load_history(engine, metric, start, end)


# From this many days in the window, the older half of the fingerprints is computed on a
# second connection (see `_fingerprints`).
SPLIT_MIN_DAYS = 60


def _fingerprints(engine: Engine, conn: Connection, metric: str, start: dt.date,
                  end: dt.date, pool: ThreadPoolExecutor) -> tuple[dict[dt.date, str],
                                                                    set[dt.date]]:
    """`day_fingerprints` of start..end, and the days of it fingerprinted on a second
    connection.

    Why two: the fingerprints read every row of the window (8.5-10.7 s at 18M rows on
    MariaDB, 4.3 s on SQLite), and a query runs on one core; each connection's query on a
    core of its own nearly halves that (6.0-6.6 s on MariaDB). The two connections' views
    of the database begin at about the same moment, in either order: the caller fingerprints again on
    `conn` the days of the second's that it reads from `conn`, so that the copy records
    each day with the fingerprint of its rows. A day changed by hand in that moment may
    come from either view (the next run reads it again: its fingerprint differs then).
    The second connection gives up on a lock it would wait for (a table change queued
    behind `conn`'s read would otherwise wait for it, and it for the second), and a
    second connection the server refuses is no error: `conn` does the whole window.
    SQLite computes both halves in the run's process, in two threads (sqlite3 lets go of
    Python's lock while it computes); an in-memory SQLite database is one connection, and
    a short window is not worth a second."""
    if not _has_second_connection(engine) or (end - start).days + 1 < SPLIT_MIN_DAYS:
        return day_fingerprints(conn, metric, start, end), set()
    middle = start + (end - start) // 2
    older = pool.submit(_fingerprints_apart, engine, metric, start, middle)
    prints = day_fingerprints(conn, metric, middle + dt.timedelta(days=1), end)
    try:
        apart = older.result()
    except StoreError as exc:
        log.info("fingerprinting the history on one connection (%s)", exc)
        return {**day_fingerprints(conn, metric, start, middle), **prints}, set()
    return {**apart, **prints}, set(apart)


# Seconds the second connection waits for a lock (a server's session setting).
APART_LOCK_WAIT_S = 5


def _has_second_connection(engine: Engine) -> bool:
    database = engine.url.database or ""
    return engine.dialect.name != "sqlite" or not (database in ("", ":memory:")
                                                   or database.startswith("file::memory:"))


def _fingerprints_apart(engine: Engine, metric: str, start: dt.date,
                        end: dt.date) -> dict[dt.date, str]:
    server = engine.dialect.name != "sqlite"
    with reading_rows(engine) as conn:
        if server:
            conn.exec_driver_sql(f"SET SESSION lock_wait_timeout = {APART_LOCK_WAIT_S}")
        try:
            begin_snapshot(conn)
            return day_fingerprints(conn, metric, start, end)
        finally:
            conn.rollback()
            if server:
                conn.exec_driver_sql("SET SESSION lock_wait_timeout = DEFAULT")


def _remove(path: Path) -> None:
    """Delete a cache file and its write-ahead log."""
    for stale in (path, path.with_name(path.name + ".wal")):
        stale.unlink(missing_ok=True)


@contextmanager
def _opened(path: Path, source: dict[str, str]) -> Iterator[HistoryCache]:
    """The cache file of `source` (its format, database and metric), made empty when it
    holds another's."""
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    con = duckdb.connect(str(path))
    try:
        for statement in _SCHEMA:
            con.execute(statement)
        info = dict(con.execute("SELECT key, value FROM cache_info").fetchall())
        if {key: info.get(key) for key in source} != source:
            if info:
                log.info("the history cache %s was made for another database, metric or "
                         "format: emptying it", path)
            con.begin()
            for statement in _EMPTY_ALL:
                con.execute(statement)
            con.executemany("INSERT INTO cache_info VALUES (?, ?)",
                            sorted({**source, _NAMES_DIGEST: _Names().digest()}.items()))
            con.commit()
        yield HistoryCache(con)
    finally:
        con.close()


@dataclass
class _Names:
    """The cache's series ids: (service, group) -> id, and each id's names."""

    ids: dict[tuple[str, str], int] = field(default_factory=dict)
    service: list[str] = field(default_factory=list)
    group: list[str] = field(default_factory=list)

    @classmethod
    def read(cls, con: duckdb.DuckDBPyConnection) -> _Names:
        """The file's names, checked against the digest written with them."""
        got = con.execute(
            "SELECT series, service, group_value FROM names ORDER BY series").fetchnumpy()
        series = np.asarray(got["series"])
        names = cls(service=np.asarray(got["service"]).tolist(),
                    group=np.asarray(got["group_value"]).tolist())
        names.ids = {key: i for i, key in enumerate(zip(names.service, names.group))}
        written = con.execute("SELECT value FROM cache_info WHERE key = ?",
                              [_NAMES_DIGEST]).fetchall()
        if (not np.array_equal(series, np.arange(len(series))) or len(names.ids) != len(series)
                or written != [(names.digest(),)]):
            raise CacheMismatch("the series names differ from their digest")
        return names

    def digest(self) -> str:
        """A hash of every id's names, in id order."""
        text = json.dumps([self.service, self.group], ensure_ascii=False)
        return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()

    def write_digest(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute("UPDATE cache_info SET value = ? WHERE key = ?",
                    [self.digest(), _NAMES_DIGEST])

    def series_of(self, chunk: HistoryChunk) -> tuple[np.ndarray, pd.DataFrame]:
        """Each row's series id, and the names given a new id (to store)."""
        service_codes, services = chunk.service
        group_codes, groups = chunk.group_value
        width = max(len(groups), 1)
        pair_codes, pairs = pd.factorize(service_codes.astype(np.int64) * width + group_codes)
        first_new = len(self.service)
        ids = np.empty(len(pairs), dtype=np.int32)
        for k, pair in enumerate(pairs.tolist()):
            key = (services[pair // width], groups[pair % width])
            series = self.ids.get(key)
            if series is None:
                series = self.ids[key] = len(self.service)
                self.service.append(key[0])
                self.group.append(key[1])
            ids[k] = series
        new = pd.DataFrame({"series": np.arange(first_new, len(self.service), dtype=np.int32),
                            "service": self.service[first_new:],
                            "group_value": self.group[first_new:]})
        return ids[pair_codes], new


@dataclass
class _Day:
    """One day's rows as read from the cache file, and their digest."""

    day: dt.date
    series: np.ndarray
    amount: np.ndarray
    estimated: np.ndarray
    digest: str = field(init=False)

    def __post_init__(self) -> None:
        # Row count, and exact sums (mod 2^64) of the amounts' bits, of the bits weighted
        # by series, of the series ids and of the flags: any changed value changes it.
        bits = self.amount.view(np.uint64)
        weights = self.series.astype(np.uint64) * np.uint64(2) + np.uint64(1)
        parts = (len(self.series), bits.sum(dtype=np.uint64),
                 (bits * weights).sum(dtype=np.uint64), self.series.sum(dtype=np.int64),
                 np.count_nonzero(self.estimated))
        self.digest = ":".join(str(int(p)) for p in parts)


@dataclass
class _Copy:
    """What the file holds: each copied day's database fingerprint and its rows in the
    window (checked against their digests), and the days after the window, kept."""

    fingerprints: dict[dt.date, str]
    days: dict[dt.date, _Day]
    later: list[tuple[dt.date, str, str]]
    buffers: _Buffers


# Bytes per memory page, for touching fresh buffers once per page.
_PAGE = 4096


@dataclass
class _Buffers:
    """The frame's columns, allocated ahead and touched page by page by the thread that
    reads the file, while the database computes its fingerprints.

    The first write to fresh memory costs a page fault per 4 KB: on this project's VM
    that was 0.7 s of the 0.9 s it took to fill the columns of 18M rows, and the
    fingerprint query leaves that thread idle for seconds."""

    arrays: dict[str, np.ndarray]

    @classmethod
    def touched(cls, rows: int, dtypes: dict[str, np.dtype]) -> _Buffers:
        arrays = {name: np.empty(rows, dtype=dtype) for name, dtype in dtypes.items()}
        for array in arrays.values():
            array.view(np.uint8)[::_PAGE] = 0
        return cls(arrays)

    def column(self, name: str, rows: int, dtype: np.dtype) -> np.ndarray:
        """The first `rows` of the buffer `name`, or a new array when it is too short or
        of another type."""
        array = self.arrays.pop(name, None)
        if array is None or len(array) < rows or array.dtype != dtype:
            return np.empty(rows, dtype=dtype)
        return array[:rows]


@dataclass
class HistoryCache:
    """An open cache file."""

    con: duckdb.DuckDBPyConnection
    names: _Names = field(default_factory=_Names)

    def load(self, engine: Engine, metric: str, start: dt.date, end: dt.date) -> pd.DataFrame:
        """The history frame of days start..end, the days the file lacks or holds stale
        read from the database and stored (see the module's docstring).

        The file is read while the database computes its fingerprints (DuckDB, sqlite3
        and a server's answer all wait without Python's lock): the daily run then costs
        about the aggregate query alone, plus the few days read anew.
        """
        with ThreadPoolExecutor(max_workers=2) as pool:
            reading = pool.submit(self._read_copy, start, end)
            with reading_rows(engine) as conn:
                begin_snapshot(conn)
                prints, apart = _fingerprints(engine, conn, metric, start, end, pool)
                copy = reading.result()
                stale = sorted(day for day in prints
                               if copy.fingerprints.get(day) != prints[day])
                keep = {day for day in prints if day not in stale} | {d for d, *_ in copy.later}
                self.con.begin()
                self._drop_days_except(keep)
                for first, last in _runs(sorted(apart.intersection(stale))):
                    # Recorded with the rows: the fingerprints of this connection's view.
                    prints.update(day_fingerprints(conn, metric, first, last))
                for first, last in _runs(stale):
                    self._insert(read_history(conn, history_select(metric, first, last)))
                self.names.write_digest(self.con)
                # The new rows read back and their digests recorded in the same transaction
                # as their writing: a run killed in between leaves the copy as it was, not
                # rows without their digests (which the next run would rebuild whole).
                days = {day: copy.days[day] for day in prints if day not in stale}
                days.update(self._read_days(stale))
                self._record_days([(day, prints[day], days[day].digest)
                                   for day in sorted(days)] + copy.later)
                self.con.commit()
        log.info("history %s..%s: %d days from the cache, %d read from the database",
                 start, end, len(prints) - len(stale), len(stale))
        return self._frame([days[day] for day in sorted(days)], copy.buffers)

    def _read_copy(self, start: dt.date, end: dt.date) -> _Copy:
        """The file's days start..end, each checked against its digest, and its series ids."""
        self.names = _Names.read(self.con)
        fingerprints, digests, later = {}, {}, []
        for day, fingerprint, digest in self.con.execute(
                "SELECT usage_date, fingerprint, digest FROM days").fetchall():
            if start <= day <= end:
                fingerprints[day], digests[day] = fingerprint, digest
            elif day > end:
                # Kept for a later window (a day reported again reads an earlier one).
                later.append((day, fingerprint, digest))
        days = self._read_days(sorted(digests))
        for day in days.values():
            if day.digest != digests[day.day]:
                raise CacheMismatch(f"the rows of {day.day} differ from their digest")
        # Room for the days a daily run reads anew (about as many as it drops).
        sizes = [len(day.series) for day in days.values()] or [0]
        buffers = _Buffers.touched(sum(sizes) + 3 * max(sizes), {
            "usage_date": np.dtype("datetime64[ns]"), "amount": np.dtype(np.float64),
            "estimated": np.dtype(bool),
            "service": _code_type(len(set(self.names.service))),
            "group_value": _code_type(len(set(self.names.group)))})
        return _Copy(fingerprints, days, later, buffers)

    def _drop_days_except(self, keep: set[dt.date]) -> None:
        present = [day for (day,) in self.con.execute(
            "SELECT DISTINCT usage_date FROM costs").fetchall()]
        drop = [[day] for day in present if day not in keep]
        if drop:
            self.con.executemany("DELETE FROM costs WHERE usage_date = ?", drop)

    def _insert(self, chunks: Iterable[HistoryChunk]) -> None:
        for chunk in chunks:
            series, new_names = self.names.series_of(chunk)
            if len(new_names):
                self.con.register("new_names", new_names)
                self.con.execute("INSERT INTO names SELECT series, service, group_value "
                                 "FROM new_names")
                self.con.unregister("new_names")
            rows = pd.DataFrame({"usage_date": chunk.usage_date, "series": series,
                                 "amount": chunk.amount, "estimated": chunk.estimated},
                                copy=False)
            self.con.register("new_rows", rows)
            self.con.execute("INSERT INTO costs SELECT CAST(usage_date AS DATE), series, "
                             "amount, estimated FROM new_rows")
            self.con.unregister("new_rows")

    def _read_days(self, wanted: list[dt.date]) -> dict[dt.date, _Day]:
        """The rows of the `wanted` days (sorted), READ_DAYS_AT_ONCE days a query: a query
        per day costs ~0.5 ms of DuckDB's own (most of a small account's load), one for
        the whole window holds every column twice at once (+550 MB at 51,000 series).
        Each day's rows come in insertion order (rowid)."""
        found: dict[dt.date, _Day] = {}
        for at in range(0, len(wanted), READ_DAYS_AT_ONCE):
            block = wanted[at:at + READ_DAYS_AT_ONCE]
            got = self.con.execute(
                "SELECT usage_date, series, amount, estimated FROM costs "
                "WHERE usage_date BETWEEN ? AND ? ORDER BY usage_date, rowid",
                [block[0], block[-1]]).fetchnumpy()
            dates = np.asarray(got["usage_date"], dtype="datetime64[D]")
            series = np.asarray(got["series"], dtype=np.int32)
            amount = np.asarray(got["amount"], dtype=np.float64)
            estimated = np.asarray(got["estimated"], dtype=bool)
            keys = np.array([np.datetime64(day, "D") for day in block])
            first = np.searchsorted(dates, keys, side="left")
            last = np.searchsorted(dates, keys, side="right")
            found.update((day, _Day(day, series[a:b], amount[a:b], estimated[a:b]))
                         for day, a, b in zip(block, first, last))
        return found

    def _record_days(self, entries: list[tuple[dt.date, str, str]]) -> None:
        """The days table becomes `entries` (day, fingerprint, digest), in the caller's
        transaction."""
        rows = pd.DataFrame(entries, columns=["usage_date", "fingerprint", "digest"])
        self.con.execute("DELETE FROM days")
        if len(rows):
            self.con.register("new_days", rows)
            self.con.execute("INSERT INTO days SELECT CAST(usage_date AS DATE), fingerprint, "
                             "digest FROM new_days")
            self.con.unregister("new_days")

    def _frame(self, days: list[_Day], buffers: _Buffers) -> pd.DataFrame:
        """The tidy frame of the days' rows, in order: `load_history`'s columns and dtypes,
        categories the sorted names present (as `cost_store._categorical` makes them).
        Each column is allocated once and filled day by day."""
        counts = [len(d.series) for d in days]
        total = sum(counts)
        if not total:
            return history_frame([])
        seen = np.zeros(len(self.names.service), dtype=bool)
        for d in days:
            seen[d.series] = True
        present = np.flatnonzero(seen)
        service_codes, service_dtype = _codes(present, self.names.service)
        group_codes, group_dtype = _codes(present, self.names.group)
        usage_date = buffers.column("usage_date", total, np.dtype("datetime64[ns]"))
        service = buffers.column("service", total, service_codes.dtype)
        group = buffers.column("group_value", total, group_codes.dtype)
        amount = buffers.column("amount", total, np.dtype(np.float64))
        estimated = buffers.column("estimated", total, np.dtype(bool))
        at = 0
        for d, n in zip(days, counts):
            rows = slice(at, at + n)
            # Through int64: numpy fills a datetime64 slice from a scalar slowly.
            usage_date.view(np.int64)[rows] = np.datetime64(d.day, "ns").astype(np.int64)
            np.take(service_codes, d.series, out=service[rows])
            np.take(group_codes, d.series, out=group[rows])
            amount[rows] = d.amount
            estimated[rows] = d.estimated
            at += n
        return pd.DataFrame({
            "usage_date": usage_date,
            "service": pd.Categorical.from_codes(service, dtype=service_dtype),
            "group_value": pd.Categorical.from_codes(group, dtype=group_dtype),
            "amount": amount,
            "estimated": estimated,
        }, copy=False)


def _codes(present: np.ndarray, names: list[str]) -> tuple[np.ndarray, pd.CategoricalDtype]:
    """Each series id's code among the sorted names of the series present (-1 for the
    others), in the narrowest type pandas keeps codes in (so pandas makes no copy)."""
    dtype = pd.CategoricalDtype(sorted({names[i] for i in present.tolist()}))
    codes = np.full(len(names), -1, dtype=_code_type(len(dtype.categories)))
    codes[present] = dtype.categories.get_indexer([names[i] for i in present.tolist()])
    return codes, dtype


def _code_type(categories: int) -> np.dtype:
    """The type pandas keeps the codes of so many categories in."""
    return np.dtype(next(t for t in (np.int8, np.int16, np.int32, np.int64)
                         if categories < np.iinfo(t).max))


def _runs(days: list[dt.date]) -> list[tuple[dt.date, dt.date]]:
    """Sorted days as (first, last) runs of consecutive days: a range each is one query."""
    runs: list[tuple[dt.date, dt.date]] = []
    for day in days:
        if runs and day - runs[-1][1] == dt.timedelta(days=1):
            runs[-1] = (runs[-1][0], day)
        else:
            runs.append((day, day))
    return runs
