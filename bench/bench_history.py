"""Benchmark the daily run's history read: `load_history` against the history cache.

Usage:
    .venv/bin/python bench/bench_history.py                   # 1000x50 (51,069 series)
    .venv/bin/python bench/bench_history.py --size 100x10 --db sqlite

For each database (SQLite, a temporary file, always; MariaDB/MySQL when
COST_TRACKING_TEST_MYSQL_URL or --mysql-url is set: its bot tables are DROPPED first, so
point it at a scratch database) it writes a year of the scaled demo account straight into
cost_daily (bench_run's `seed_database`: `replace_days`' bulk INSERTs, which PyMySQL sends as
multi-row statements; no Cost Explorer), then times, each in a child process of its own so
that its peak RSS is its own:
  - cold: the cache path with no cache file (the first run, or one after a rebuild), for the
    window of the last seeded day;
then stores the next day as the daily ingest does (the two Estimated days before it fetched
again with new amounts, and the new day: `replace_days` of three days), and times:
  - old: `load_history` for the new day's window (what the run did before the cache);
  - daily: the cache path for the new day's window, from the cache the cold run left (3
    days read from the database, the rest from the file). Repeated `--repeat` times, the
    cache file restored before each.
Each child prints the seconds of the call alone (imports and start-up not counted), the
rows, the peak RSS of the child (Python, pandas, the drivers and DuckDB loaded, ~100 MB,
included) and a hash of the frame, so the table also shows that the paths read the same
history. The output is a Markdown table.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

METRIC = "UnblendedCost"


@dataclass
class Figure:
    """One timed read in a child process."""

    db: str
    path: str
    seconds: list[float]
    rows: int
    peak_rss_mb: float
    frame_hash: str


def child_read(mode: str, db_url: str, day: dt.date, cache_dir: str) -> dict:
    """One history read, timed in this (child) process."""
    import resource

    import numpy as np
    import pandas as pd

    import procAmzAlerts
    from _util.report import Rules
    from _util.store.cost_store import load_history
    from _util.store.database import make_engine
    from _util.store.history_cache import load_cached_history

    engine = make_engine(db_url)
    start = procAmzAlerts.history_start(day, Rules())
    began = time.perf_counter()
    if mode == "old":
        frame = load_history(engine, METRIC, start, day)
    else:
        # The copy's path at every size (below COPY_MIN_ROWS a run reads the database).
        frame = load_cached_history(engine, METRIC, start, day, Path(cache_dir), min_rows=0)
    seconds = time.perf_counter() - began
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # Each row's hash weighted by its position: the same frame, row order included.
    hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    weights = np.arange(len(hashes), dtype=np.uint64) * np.uint64(2) + np.uint64(1)
    frame_hash = format(int((hashes * weights).sum(dtype=np.uint64)), "016x")
    return {"seconds": round(seconds, 2), "rows": len(frame), "peak_rss_mb": round(peak),
            "frame_hash": frame_hash}


def child_store_next_day(size: str, db_url: str, day: dt.date) -> dict:
    """What the daily ingest writes for `day`: the two days before it (Estimated, fetched
    again with revised amounts) and the day itself, in one `replace_days`."""
    import numpy as np
    from bench_run import parse_size

    from _util.sources.demo_account import scaled_account
    from _util.store.cost_store import (
        CostRow,
        SourceState,
        read_source_state,
        replace_days,
    )
    from _util.store.database import make_engine

    account = scaled_account(parse_size(size))
    table = account._table
    names = [account.services[i].name for i in table.service_idx]
    groups = list(table.group_names)
    first = day - dt.timedelta(days=2)

    def rows():
        for d in (first + dt.timedelta(days=i) for i in range(3)):
            revision = 1.0 if d == day else 1.01  # the revised days' amounts move by 1%
            amounts = np.round(account.amounts(d) * revision, 10)
            for s in np.flatnonzero(amounts != 0.0).tolist():
                yield CostRow(d, names[s], groups[s], float(amounts[s]), "USD", True)

    engine = make_engine(db_url)
    old = read_source_state(engine, METRIC)
    state = SourceState(old.account, old.group_by, old.record_types, old.first_day, day, first)
    began = time.perf_counter()
    written = replace_days(engine, METRIC, first, day, rows(), state)
    return {"rows": written, "seconds": round(time.perf_counter() - began, 2)}


def run_child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def bench_db(db: str, db_url: str, size: str, day: dt.date, repeat: int, work: Path) -> list[Figure]:
    """Seed `db_url`, then time the cold, old and daily reads (see the module's docstring)."""
    from bench_run import fresh_database

    if db != "SQLite":
        fresh_database("mysql", work, db_url)  # the bot's tables dropped
    seeded = run_child(["--child-seed", size, "--db-url", db_url, "--day", day.isoformat()])
    print(f"<!-- {db}: seeded {seeded['rows']:,} rows in {seeded['seconds']} s -->", flush=True)
    cache = work / f"cache-{db}"
    previous = day - dt.timedelta(days=1)
    figures = []

    def read(path: str, mode: str, when: dt.date, runs: int = 1, restore: Path | None = None):
        results = []
        for _ in range(runs):
            if restore is not None:
                shutil.rmtree(cache, ignore_errors=True)
                shutil.copytree(restore, cache)
            results.append(run_child(["--child-read", mode, "--db-url", db_url, "--day",
                                      when.isoformat(), "--cache-dir", str(cache)]))
        figures.append(Figure(db, path, [r["seconds"] for r in results], results[0]["rows"],
                              max(r["peak_rss_mb"] for r in results), results[0]["frame_hash"]))
        print(f"<!-- {db} {path}: {[r['seconds'] for r in results]} s -->", flush=True)

    shutil.rmtree(cache, ignore_errors=True)
    read("cache, cold (no file)", "cached", previous)
    after_cold = work / f"cache-{db}-after-cold"
    shutil.copytree(cache, after_cold)
    stored = run_child(["--child-store", size, "--db-url", db_url, "--day", day.isoformat()])
    print(f"<!-- {db}: stored the next day ({stored['rows']:,} rows over 3 days) in "
          f"{stored['seconds']} s -->", flush=True)
    read("load_history (before)", "old", day)
    read("cache, daily (3 days changed)", "cached", day, repeat, restore=after_cold)
    read("cache, nothing changed", "cached", day)
    return figures


def table(figures: list[Figure], series: int) -> str:
    lines = ["| database | series | rows read | path | seconds | peak RSS MB | frame hash |",
             "|---|---|---|---|---|---|---|"]
    for f in figures:
        seconds = (f"{statistics.median(f.seconds):.2f}" if len(f.seconds) == 1 else
                   f"{statistics.median(f.seconds):.2f} (median of {', '.join(map(str, f.seconds))})")
        lines.append(f"| {f.db} | {series:,} | {f.rows:,} | {f.path} | {seconds} | "
                     f"{f.peak_rss_mb:,.0f} | `{f.frame_hash}` |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="1000x50", help="SERVICESxGROUPS of the demo account")
    parser.add_argument("--db", nargs="+", choices=["sqlite", "mariadb"],
                        default=["sqlite", "mariadb"])
    parser.add_argument("--mysql-url", default=os.environ.get("COST_TRACKING_TEST_MYSQL_URL"))
    parser.add_argument("--day", type=dt.date.fromisoformat,
                        default=dt.date.today() - dt.timedelta(days=1),
                        help="the daily run's day (the seeded year ends the day before)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of the daily read")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file and caches")
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", help=argparse.SUPPRESS)
    parser.add_argument("--child-seed", help=argparse.SUPPRESS)
    parser.add_argument("--child-store", help=argparse.SUPPRESS)
    parser.add_argument("--child-read", choices=["old", "cached"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_seed:
        from bench_run import seed_database
        # The backfill a run on args.day - 1 makes: 365 days up to that day.
        print(json.dumps(seed_database(args.child_seed, args.db_url,
                                       args.day - dt.timedelta(days=1), args.day)))
        return
    if args.child_store:
        print(json.dumps(child_store_next_day(args.child_store, args.db_url, args.day)))
        return
    if args.child_read:
        print(json.dumps(child_read(args.child_read, args.db_url, args.day, args.cache_dir)))
        return

    from bench_run import account_series, fresh_database, machine, parse_size

    series = account_series(parse_size(args.size))
    work = Path(tempfile.mkdtemp(prefix="bench-history-"))
    figures = []
    try:
        if "sqlite" in args.db:
            figures += bench_db("SQLite", f"sqlite:///{work / 'costs.db'}", args.size, args.day,
                                args.repeat, work)
        if "mariadb" in args.db:
            if args.mysql_url:
                figures += bench_db("MariaDB", args.mysql_url, args.size, args.day, args.repeat,
                                    work)
                fresh_database("mysql", work, args.mysql_url)
            else:
                print("<!-- MariaDB skipped: set COST_TRACKING_TEST_MYSQL_URL or --mysql-url -->")
    finally:
        if args.keep:
            print(f"<!-- kept {work} -->")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n### History read, {args.size} ({series:,} series), a year stored\n")
    print(table(figures, series))
    print(f"\n{machine()}. Seconds of the call alone; peak RSS of the child process that "
          "made it. Equal frame hashes: the same frame, row order included.")


if __name__ == "__main__":
    main()
