"""The history cache gives exactly load_history's frame, on a real SQLite file and the real
MariaDB, whatever happened to the database or to the cache file since it was written."""
from __future__ import annotations

import datetime as dt
import logging
import os

import duckdb
import pandas as pd
import pytest
import sqlalchemy as sa

from _util.errors import StoreError
from _util.run.run_lock import run_lock
from _util.store.cost_store import (
    CostRow,
    SourceState,
    cost_daily,
    load_history,
    replace_days,
)
from _util.store.database import create_tables, make_engine
from _util.store.history_cache import history_cache_file, load_cached_history

METRIC = "UnblendedCost"
DAY = dt.date(2026, 3, 31)
START = DAY - dt.timedelta(days=30)
REVISED = DAY - dt.timedelta(days=12)  # a day in the middle of the window
SERVICES = ["Amazon EC2", "Service ‘1’ <&>", "S3"]
GROUPS = ["", "web", "日本"]
LOG = "_util.store.history_cache"


def _rows(first: dt.date, last: dt.date, scale: float = 1.0, estimated_from: dt.date = DAY,
          groups: list[str] = GROUPS) -> list[CostRow]:
    days = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    return [CostRow(day, SERVICES[s], groups[g],
                    round(scale * (1.0 + 0.37 * (day.toordinal() % 97) * (s + 1) + g), 10), "USD",
                    day >= estimated_from)
            for day in days for s in range(3) for g in range(3)
            if (day.toordinal() + s + g) % 5]


def _store(engine, first: dt.date, last: dt.date, rows: list[CostRow],
           fetched_at: dt.datetime | None = None) -> None:
    state = SourceState("demo", "TAG:Name", "Credit,Refund", DAY - dt.timedelta(days=45), last,
                        None)
    replace_days(engine, METRIC, first, last, rows, state, fetched_at=fetched_at)


def _fill(engine) -> None:
    _store(engine, DAY - dt.timedelta(days=45), DAY,
           _rows(DAY - dt.timedelta(days=45), DAY, estimated_from=DAY - dt.timedelta(days=1)))


def _later() -> dt.datetime:
    """A fetch time after every earlier one, also at MariaDB's one-second resolution."""
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + dt.timedelta(seconds=5)


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["usage_date", "service", "group_value"]).reset_index(drop=True)


def _assert_same_history(engine, cache_dir, start: dt.date = START, end: dt.date = DAY) -> pd.DataFrame:
    """The cached path's frame equals load_history's: values, series, days and dtypes."""
    cached = load_cached_history(engine, METRIC, start, end, cache_dir, min_rows=0)
    pd.testing.assert_frame_equal(_sorted(cached), _sorted(load_history(engine, METRIC, start, end)))
    return cached


def _update(engine, values: dict, day: dt.date = REVISED) -> None:
    """Change rows straight in the database, behind the bot's back."""
    c = cost_daily.c
    with engine.begin() as conn:
        changed = conn.execute(sa.update(cost_daily).values(**values)
                               .where(c.usage_date == day)
                               .where(c.service == SERVICES[0])).rowcount
    assert changed > 0


def _delete_by_hand(engine, day: dt.date = REVISED, service: str | None = None) -> None:
    c = cost_daily.c
    stmt = sa.delete(cost_daily).where(c.usage_date == day)
    if service is not None:
        stmt = stmt.where(c.service == service)
    with engine.begin() as conn:
        assert conn.execute(stmt).rowcount > 0


def _insert_by_hand(engine, day: dt.date = REVISED) -> None:
    with engine.begin() as conn:
        conn.execute(sa.insert(cost_daily).values(
            usage_date=day, metric=METRIC, service="Added by hand", group_value="x",
            amount=12.5, unit="USD", estimated=False, fetched_at=dt.datetime(2020, 1, 1)))


# Each change leaves the cache stale; the next read must see it.
CHANGES = {
    "revised amounts, same rows": lambda e: _store(
        e, REVISED, REVISED, _rows(REVISED, REVISED, scale=1.5)),
    "a day fetched again with groups renamed, amounts and flags unchanged": lambda e: _store(
        e, REVISED, REVISED, _rows(REVISED, REVISED, groups=["", "Web", "日本"]), _later()),
    "estimated days fetched again as final, amounts unchanged": lambda e: _store(
        e, DAY - dt.timedelta(days=1), DAY, _rows(DAY - dt.timedelta(days=1), DAY,
                                                  estimated_from=DAY + dt.timedelta(days=1)),
        _later()),
    "a day fetched again with no rows": lambda e: _store(e, REVISED, REVISED, []),
    "a day deleted by hand": lambda e: _delete_by_hand(e),
    "one service's rows deleted by hand": lambda e: _delete_by_hand(e, service=SERVICES[1]),
    "a row inserted by hand": lambda e: _insert_by_hand(e),
    "an amount updated by hand, same row count": lambda e: _update(
        e, {"amount": cost_daily.c.amount + 0.01}),
    "an amount updated by hand by a tenth of a cent": lambda e: _update(
        e, {"amount": cost_daily.c.amount + 0.001}),
    "an Estimated flag updated by hand": lambda e: _update(e, {"estimated": True}),
    "the first day of the window deleted by hand": lambda e: _delete_by_hand(e, day=START),
}


@pytest.mark.parametrize("change", list(CHANGES), ids=list(CHANGES))
def test_the_cached_history_equals_load_history_after(change, db_engine, tmp_path):
    _fill(db_engine)
    before = _assert_same_history(db_engine, tmp_path)
    CHANGES[change](db_engine)
    after = _assert_same_history(db_engine, tmp_path)
    assert not after.equals(before)  # the change shows in the frame


def test_new_days_are_added_and_days_before_the_window_dropped(db_engine, tmp_path, caplog):
    _fill(db_engine)
    _assert_same_history(db_engine, tmp_path, START, DAY - dt.timedelta(days=2))
    caplog.set_level(logging.INFO, logger=LOG)
    # The next daily run: yesterday's Estimated day fetched again, and a new day.
    _store(db_engine, DAY - dt.timedelta(days=1), DAY,
           _rows(DAY - dt.timedelta(days=1), DAY, scale=1.1))
    _assert_same_history(db_engine, tmp_path, START + dt.timedelta(days=2), DAY)
    assert "27 days from the cache, 2 read from the database" in caplog.text
    with duckdb.connect(str(history_cache_file(tmp_path, METRIC)), read_only=True) as con:
        first = con.execute("SELECT min(usage_date) FROM costs").fetchone()[0]
    assert first == START + dt.timedelta(days=2)


def test_an_unchanged_database_is_read_only_for_its_fingerprints(db_engine, tmp_path, caplog):
    _fill(db_engine)
    _assert_same_history(db_engine, tmp_path)
    caplog.set_level(logging.INFO, logger=LOG)
    _assert_same_history(db_engine, tmp_path)
    assert "31 days from the cache, 0 read from the database" in caplog.text


def test_the_cached_history_keeps_the_databases_row_order(db_engine, tmp_path):
    """Rows in the order load_history gives them (days in order, each day's rows as the
    database returns them), so sums over the frame round the same way."""
    _fill(db_engine)
    load_cached_history(db_engine, METRIC, START, DAY, tmp_path, min_rows=0)
    # A day in the middle is written again: the cache file appends its rows at the end.
    _store(db_engine, REVISED, REVISED, _rows(REVISED, REVISED, scale=2.0))
    cached = load_cached_history(db_engine, METRIC, START, DAY, tmp_path, min_rows=0)
    pd.testing.assert_frame_equal(cached, load_history(db_engine, METRIC, START, DAY))


def test_days_after_the_window_stay_cached_for_the_next_window(db_engine, tmp_path, caplog):
    """A day reported again reads an earlier window; the run's own day then finds its
    later days still cached."""
    _fill(db_engine)
    _assert_same_history(db_engine, tmp_path)
    earlier = dt.timedelta(days=5)
    _assert_same_history(db_engine, tmp_path, START - earlier, DAY - earlier)
    caplog.set_level(logging.INFO, logger=LOG)
    _assert_same_history(db_engine, tmp_path)
    assert "31 days from the cache, 0 read from the database" in caplog.text


def _damage(path, how: str) -> None:
    size = path.stat().st_size
    if how == "truncated":
        os.truncate(path, size // 2)
        return
    # Everything after DuckDB's three 4 KB headers overwritten: every data block is bad.
    with path.open("r+b") as f:
        f.seek(3 * 4096)
        f.write(os.urandom(size - 3 * 4096))


@pytest.mark.parametrize("how", ["truncated", "overwritten"])
def test_a_damaged_cache_file_is_rebuilt_from_the_database(how, db_engine, tmp_path, caplog):
    _fill(db_engine)
    _assert_same_history(db_engine, tmp_path)
    _damage(history_cache_file(tmp_path, METRIC), how)
    caplog.set_level(logging.INFO, logger=LOG)
    _assert_same_history(db_engine, tmp_path)
    assert "unusable" in caplog.text and "rebuilding it from the database" in caplog.text
    caplog.clear()
    _assert_same_history(db_engine, tmp_path)  # the rebuilt file is used as usual
    assert "31 days from the cache, 0 read from the database" in caplog.text


@pytest.mark.parametrize("edit", [
    "UPDATE costs SET amount = amount + 1 WHERE series = 0",
    "UPDATE costs SET series = 1 - series WHERE series IN (0, 1)",
    "DELETE FROM costs WHERE series = 2",
    "UPDATE names SET group_value = 'edited' WHERE series = 0",
])
def test_a_cache_file_edited_behind_its_back_is_not_trusted(edit, db_engine, tmp_path, caplog):
    """Rows changed inside a valid DuckDB file (no checksum fails) disagree with the
    digests written with them; names changed there leave the ids inconsistent."""
    _fill(db_engine)
    _assert_same_history(db_engine, tmp_path)
    with duckdb.connect(str(history_cache_file(tmp_path, METRIC))) as con:
        con.execute(edit)
    caplog.set_level(logging.INFO, logger=LOG)
    _assert_same_history(db_engine, tmp_path)
    assert "unusable" in caplog.text and "rebuilding it from the database" in caplog.text


def test_a_cache_made_for_another_database_is_emptied_not_used(tmp_path, caplog):
    """Two SQLite files whose every day has the same fingerprint (one group renamed by
    hand, which SQLite's fingerprint cannot see): the cache of one never serves the other."""
    engines = []
    for name in ("a", "b"):
        engine = make_engine(f"sqlite:///{tmp_path / name}.db")
        create_tables(engine)
        _store(engine, START, DAY, _rows(START, DAY), fetched_at=dt.datetime(2026, 4, 1, 6))
        engines.append(engine)
    with engines[1].begin() as conn:
        conn.execute(sa.update(cost_daily).values(group_value="WEB")
                     .where(cost_daily.c.group_value == "web"))
    caplog.set_level(logging.INFO, logger=LOG)
    for engine in engines:
        _assert_same_history(engine, tmp_path / "cache")
    assert "made for another database" in caplog.text


def test_an_empty_window_loads_load_historys_empty_frame(db_engine, tmp_path):
    _fill(db_engine)
    far = dt.date(2020, 1, 1)
    cached = load_cached_history(db_engine, METRIC, far, far + dt.timedelta(days=9), tmp_path, min_rows=0)
    pd.testing.assert_frame_equal(cached, load_history(db_engine, METRIC, far,
                                                       far + dt.timedelta(days=9)))


def test_a_cache_another_process_holds_is_left_alone_and_the_database_read(db_engine, tmp_path,
                                                                          caplog):
    _fill(db_engine)
    path = history_cache_file(tmp_path, METRIC)
    with run_lock(path.with_name(path.name + ".lock")):
        _assert_same_history(db_engine, tmp_path)
    assert not path.exists()
    assert "reading the database" in caplog.text


def test_a_cache_folder_that_cannot_be_made_costs_time_not_the_run(db_engine, tmp_path):
    _fill(db_engine)
    blocked = tmp_path / "cache"
    blocked.write_text("a file where the folder should be")
    _assert_same_history(db_engine, blocked)


def test_a_database_error_is_a_store_error_as_load_historys_is(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    create_tables(engine)
    _fill(engine)
    load_cached_history(engine, METRIC, START, DAY, tmp_path / "cache", min_rows=0)
    assert history_cache_file(tmp_path / "cache", METRIC).exists()  # the copy's path is read
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE cost_daily"))
    with pytest.raises(StoreError, match="cannot read costs"):
        load_cached_history(engine, METRIC, START, DAY, tmp_path / "cache", min_rows=0)


# ---------------------------------------------------------------- small windows


def test_a_small_window_without_a_copy_is_read_from_the_database_and_no_copy_is_made(
        db_engine, tmp_path):
    _fill(db_engine)
    rows = len(load_history(db_engine, METRIC, START, DAY))
    cached = load_cached_history(db_engine, METRIC, START, DAY, tmp_path, min_rows=rows + 1)
    pd.testing.assert_frame_equal(cached, load_history(db_engine, METRIC, START, DAY))
    assert not history_cache_file(tmp_path, METRIC).exists()


def test_a_window_of_min_rows_makes_the_copy_which_stays_in_use_below_it(db_engine, tmp_path,
                                                                         caplog):
    _fill(db_engine)
    rows = len(load_history(db_engine, METRIC, START, DAY))
    load_cached_history(db_engine, METRIC, START, DAY, tmp_path, min_rows=rows)
    assert history_cache_file(tmp_path, METRIC).exists()
    # The account shrinks below the threshold: the copy it has is still read and checked.
    _store(db_engine, REVISED, REVISED, [])
    with caplog.at_level(logging.INFO, logger=LOG):
        cached = load_cached_history(db_engine, METRIC, START, DAY, tmp_path, min_rows=rows)
    pd.testing.assert_frame_equal(cached, load_history(db_engine, METRIC, START, DAY))
    assert "from the cache" in caplog.text


def test_a_run_killed_before_the_new_days_are_recorded_leaves_the_copy_usable(
        db_engine, tmp_path, caplog, monkeypatch):
    """Rows and their digests are written in one transaction: a run that dies between
    them (a cron timeout, say) leaves the copy as it was, not one the next run rebuilds."""
    from _util.store.history_cache import HistoryCache

    _fill(db_engine)
    _assert_same_history(db_engine, tmp_path)
    _store(db_engine, REVISED, REVISED, _rows(REVISED, REVISED, scale=3.0))

    def killed(self, entries):
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(HistoryCache, "_record_days", killed)
        with pytest.raises(KeyboardInterrupt):
            load_cached_history(db_engine, METRIC, START, DAY, tmp_path, min_rows=0)
    with caplog.at_level(logging.INFO, logger=LOG):
        _assert_same_history(db_engine, tmp_path)
    assert "unusable" not in caplog.text
    assert "30 days from the cache, 1 read from the database" in caplog.text


# ---------------------------------------------------------------- the fingerprints on two connections

OLDER = START + dt.timedelta(days=5)  # a day of the window's older half


def _older_day_edited_after_a_first_read(engine, cache_dir, caplog) -> None:
    """A copy made, then a day of the window's older half changed by hand; the log of
    the next read from here on."""
    _fill(engine)
    _assert_same_history(engine, cache_dir)
    _update(engine, {"amount": cost_daily.c.amount + 0.01}, day=OLDER)
    caplog.set_level(logging.INFO, logger=LOG)


def test_the_older_half_is_fingerprinted_on_a_second_connection_to_the_same_history(
        db_engine, tmp_path, monkeypatch, caplog):
    from _util.store import history_cache

    monkeypatch.setattr(history_cache, "SPLIT_MIN_DAYS", 2)
    apart = []
    fingerprints_apart = history_cache._fingerprints_apart
    monkeypatch.setattr(history_cache, "_fingerprints_apart",
                        lambda *args: apart.append(args[2:]) or fingerprints_apart(*args))
    _older_day_edited_after_a_first_read(db_engine, tmp_path, caplog)
    _assert_same_history(db_engine, tmp_path)
    assert "30 days from the cache, 1 read from the database" in caplog.text
    assert apart == [(START, START + dt.timedelta(days=15))] * 2


def test_a_day_fingerprinted_apart_is_recorded_with_the_fingerprint_of_the_rows_read(
        db_engine, tmp_path, monkeypatch, caplog):
    """The two connections' views begin at about the same moment: a day the second sees
    changed is read on the run's connection and recorded with that connection's
    fingerprint, so that what the copy records is what it holds."""
    from _util.store import history_cache

    monkeypatch.setattr(history_cache, "SPLIT_MIN_DAYS", 2)
    _fill(db_engine)
    _assert_same_history(db_engine, tmp_path)
    fingerprints_apart = history_cache._fingerprints_apart

    def seen_changed_apart(*args):
        prints = fingerprints_apart(*args)
        prints[OLDER] += "|changed a moment later"
        return prints

    monkeypatch.setattr(history_cache, "_fingerprints_apart", seen_changed_apart)
    _assert_same_history(db_engine, tmp_path)
    monkeypatch.setattr(history_cache, "_fingerprints_apart", fingerprints_apart)
    caplog.set_level(logging.INFO, logger=LOG)
    _assert_same_history(db_engine, tmp_path)
    assert "31 days from the cache, 0 read from the database" in caplog.text


def test_a_second_connection_the_database_refuses_costs_no_run(db_engine, tmp_path,
                                                               monkeypatch, caplog):
    from _util.store import history_cache

    def refused(*args):
        raise StoreError("cannot read costs from mysql://...: (1226, 'User has exceeded "
                         "the max_user_connections resource')")

    monkeypatch.setattr(history_cache, "SPLIT_MIN_DAYS", 2)
    monkeypatch.setattr(history_cache, "_fingerprints_apart", refused)
    _older_day_edited_after_a_first_read(db_engine, tmp_path, caplog)
    _assert_same_history(db_engine, tmp_path)
    assert "fingerprinting the history on one connection" in caplog.text
    assert "30 days from the cache, 1 read from the database" in caplog.text


def test_an_in_memory_sqlite_database_is_fingerprinted_on_its_one_connection(tmp_path,
                                                                             monkeypatch):
    from _util.store import history_cache

    monkeypatch.setattr(history_cache, "SPLIT_MIN_DAYS", 2)
    monkeypatch.setattr(history_cache, "_fingerprints_apart", None)  # would fail if called
    engine = make_engine("sqlite://")
    create_tables(engine)
    _fill(engine)
    _assert_same_history(engine, tmp_path)
