"""Benchmark the Cost and Usage Report source: a year of an organisation's bill, aggregated
by DuckDB on this machine, then the whole bot on it.

Usage:
    .venv/bin/python bench/bench_cur.py                      # 60 services x 1,000 tag values
    .venv/bin/python bench/bench_cur.py --services 6 --groups 50 --accounts 20   # quick

It writes a CUR 2.0 export with tests/cur_export.py (a year ending the day before
yesterday: `--services` synthetic services, each with `--groups` values of the Name tag,
spread over `--accounts` linked accounts, `--items` line items per series and day, plus the
demo account's 26 services, credits, refunds, tax and Savings Plans lines), then runs
`runCostReporting.py --dry-run` in child processes with COST_TRACKING_SOURCE=cur:
  1. the first run (empty database: a year aggregated and stored, detection, plots);
  2. a daily run the next day, after the export gained that day (the current billing
     period's files rewritten as AWS does; older periods are not read again);
and prints, from the run records and the children's rusage: seconds per stage, files and
bytes scanned, rows stored, series, peak resident memory, and the bytes the daily query's
columns take in the files (what Athena, which reads only those columns, would scan).
The output is Markdown, ready for the README.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

from _util.sources.demo_account import scaled_account  # noqa: E402
from tests.cur_export import write_cur_export  # noqa: E402

# Athena's published price: $5 per TB of data scanned (us-east-1, 2026), 10 MB minimum.
ATHENA_USD_PER_TB = 5.0
# Columns the aggregation reads for UnblendedCost grouped by a tag (cur_daily.sql).
QUERY_COLUMNS = ("line_item_usage_start_date", "line_item_line_item_type",
                 "line_item_product_code", "product_product_family", "resource_tags",
                 "line_item_currency_code", "line_item_unblended_cost")


def run_bot(out: Path, export: Path, day: dt.date) -> dict:
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COST_TRACKING_")},
           "COST_TRACKING_SOURCE": "cur", "COST_TRACKING_CUR_URI": str(export),
           "COST_TRACKING_OUTPUT_DIR": str(out), "MPLBACKEND": "Agg"}
    began = time.perf_counter()
    done = subprocess.run([sys.executable, str(ROOT / "runCostReporting.py"), "--dry-run",
                           "--date", day.isoformat()], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - began
    if done.returncode != 0:
        sys.exit(f"run for {day} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    record = json.loads((out / "runs" / f"{day}.json").read_text())
    aggregated = [line for line in done.stderr.splitlines() if "aggregated" in line]
    # The run's own peak resident memory, as its stages recorded it (DuckDB included).
    peak_mb = max(float(stage.get("peak_rss_mb", 0.0)) for stage in record["stages"])
    return {"wall": wall, "peak_mb": peak_mb, "record": record,
            "aggregated": aggregated[-1] if aggregated else ""}


AGGREGATE_ONLY = """
import datetime as dt, json, resource, sys, time
sys.path.insert(0, {root!r})
from _util.sources.cur_engines import DuckDbEngine
from _util.sources.cur_files import LocalReport
from _util.sources.cur_sql import DailyQuery
report = LocalReport(__import__("pathlib").Path({export!r}))
files = report.list_files()
query = DailyQuery("UnblendedCost", "TAG:Name", ("Credit", "Refund"),
                   tuple(sorted({{f.period for f in files}})), dt.date.fromisoformat({first!r}),
                   dt.date.fromisoformat({last!r}))
began = time.perf_counter()
aggregation = DuckDbEngine(report).aggregate(query, files)
rows = sum(1 for _ in aggregation)
print(json.dumps({{"seconds": time.perf_counter() - began, "rows": rows, "files": len(files),
                  "bytes": aggregation.bytes_scanned,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def aggregate_only(export: Path, first: dt.date, last: dt.date) -> dict:
    """The DuckDB engine alone over the whole export, in a child process: what reading the
    report costs, apart from storing its rows."""
    code = AGGREGATE_ONLY.format(root=str(ROOT), export=str(export), first=first.isoformat(),
                                 last=last.isoformat())
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def stage_seconds(record: dict, name: str) -> float:
    for stage in record.get("stages", []):
        if stage.get("name") == name:
            return float(stage.get("seconds", 0.0))
    return 0.0


def column_share(files: list[Path]) -> float:
    """The share of the files' compressed bytes in the columns the query reads."""
    con = duckdb.connect()
    rows = con.execute("SELECT path_in_schema, sum(total_compressed_size) FROM "
                       "parquet_metadata($files) GROUP BY 1", {"files": [str(f) for f in files]}).fetchall()
    total = sum(size for _, size in rows)
    used = sum(size for name, size in rows if name.split(".")[0] in QUERY_COLUMNS)
    return used / total if total else 0.0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=60)
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=200)
    parser.add_argument("--items", type=int, default=3)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--keep", type=Path, help="keep the export and outputs in this folder")
    args = parser.parse_args(argv)

    work = args.keep or Path(tempfile.mkdtemp(prefix="bench-cur-"))
    export, out = work / "export", work / "out"
    for folder in (export, out):
        shutil.rmtree(folder, ignore_errors=True)
    today = dt.datetime.now(dt.timezone.utc).date()
    first_run_day = today - dt.timedelta(days=2)
    account = scaled_account((args.services, args.groups))
    began = time.perf_counter()
    files = write_cur_export(export, account, first_run_day - dt.timedelta(days=args.days - 1),
                             first_run_day, accounts=args.accounts, items_per_series_day=args.items)
    generated = time.perf_counter() - began
    line_items = duckdb.execute("SELECT count(*) FROM read_parquet($f)",
                                {"f": [str(f) for f in files]}).fetchone()[0]
    size = sum(f.stat().st_size for f in files)
    print(f"export: {line_items:,} line items, {size / 1e9:.2f} GB in {len(files)} files, "
          f"written in {generated:.0f} s")

    year_first = first_run_day - dt.timedelta(days=args.days - 1)
    alone = aggregate_only(export, year_first, first_run_day)
    print(f"DuckDB alone: {alone['files']} files, {alone['bytes'] / 1e6:,.0f} MB in "
          f"{alone['seconds']:.1f} s ({alone['files'] / alone['seconds']:.1f} files/s, "
          f"{alone['bytes'] / 1e6 / alone['seconds']:,.0f} MB/s, "
          f"{line_items / alone['seconds']:,.0f} line items/s) -> {alone['rows']:,} rows, "
          f"peak {alone['peak_mb']:,.0f} MB")
    first = run_bot(out, export, first_run_day)
    # The next day arrives: AWS rewrites the current period's files with it.
    daily_day = first_run_day + dt.timedelta(days=1)
    extra = write_cur_export(work / "next", account, daily_day, daily_day,
                             accounts=args.accounts, items_per_series_day=args.items)
    for path in extra:
        target = export / path.relative_to(work / "next")
        target = target.with_name(f"next-{target.name}")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(path), target)
    daily = run_bot(out, export, daily_day)

    current = [f for f in export.rglob("*.parquet")
               if f"BILLING_PERIOD={daily_day:%Y-%m}" in str(f)]
    share = column_share(current)
    month_bytes = sum(f.stat().st_size for f in current)
    print()
    print("| run | wall s | ingest s | load s | detect s | plot s | rows stored | series "
          "| peak MB | what was read |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, result in (("first (a year)", first), ("daily", daily)):
        r = result["record"]
        print(f"| {name} | {result['wall']:.1f} | {stage_seconds(r, 'ingest'):.1f} | "
              f"{stage_seconds(r, 'load'):.1f} | {stage_seconds(r, 'detect'):.2f} | "
              f"{stage_seconds(r, 'plot'):.1f} | {r.get('rows_upserted', 0):,} | "
              f"{args.services * (args.groups + 1) + 69:,} | {result['peak_mb']:,.0f} | "
              f"{result['aggregated'].split(': ', 1)[-1]} |")
    scanned_per_s = size / max(stage_seconds(first["record"], "ingest"), 1e-9)
    print()
    print(f"First run: {len(files)} files, {size / 1e6:,.0f} MB aggregated at "
          f"{scanned_per_s / 1e6:,.0f} MB/s ({line_items / max(stage_seconds(first['record'], 'ingest'), 1e-9):,.0f} "
          "line items a second, ingest stage).")
    print(f"The current month's files: {month_bytes / 1e6:,.0f} MB, of which the query's "
          f"columns are {share:.0%}.")
    if args.keep is None:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
