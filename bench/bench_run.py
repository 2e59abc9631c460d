"""Benchmark whole runs of the bot against the demo account, from small to 50,000 series.

Usage:
    make bench                                       # the full set (tens of minutes)
    .venv/bin/python bench/bench_run.py --quick      # the demo and ~1,000 series, small side runs
    .venv/bin/python bench/bench_run.py --sizes demo 500x20 --db sqlite

For each size (`demo` is the built-in account of 26 services; `NxG` adds N synthetic
services of G tag values each, via COST_TRACKING_DEMO_SCALE) and each database (SQLite
always; MariaDB/MySQL when COST_TRACKING_TEST_MYSQL_URL or --mysql-url is set, its bot
tables dropped first), it runs `runCostReporting.py --demo --dry-run` in a child process
twice, with a fresh output folder and the real clock:
  1. the first backfill of 365 days, with --date two days ago;
  2. the daily run that follows (default date: yesterday), on an up-to-date database.
and prints, from each run's runs/<date>.json and the child's rusage: the seconds of every
stage, Cost Explorer requests, rows written and loaded, alerts, plots rendered, the peak
resident memory of the child, the peak PSS of the child and its plot workers together,
and the wall time (process start and imports included).

Every backfill goes through Cost Explorer's path (the demo account's pages, streamed into
the database). `--seed-above N` writes the backfill of sizes above N series directly
(cost_store.replace_days with the demo account's amounts) instead, to save minutes when
only the daily run matters; the table says which backfills were seeded.

Then, in child processes of their own:
  - every plot type drawn and saved again and again in one process (the inputs of
    tests/test_plot_likeness.py, the types taken in turn), the median milliseconds each;
  - the demo's daily run against a bare import of the five packages it is built on
    (pandas, matplotlib, boto3, SQLAlchemy, slack_sdk), alternated in pairs: their
    medians and the ratio, on the busiest demo day of the last four weeks;
  - the analysis (detection + summaries) on N dense synthetic series x 365 days, and the
    per-series reference implementation (tests/reference_detection.py, a pandas
    groupby-apply) against the vectorised code on the same data in the same process;
  - upserting a year of N series with cost_store.replace_days into SQLite and MariaDB,
    counting the statements each driver sends.
The output is Markdown, ready for the README.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

STAGES = ("ingest", "load", "detect", "summarise", "lifecycle", "plot", "message")
DEFAULT_SIZES = ("demo", "4x8", "100x10", "500x20", "1000x50")
QUICK_SIZES = ("demo", "100x10")
METRIC = "UnblendedCost"
GROUP_BY = "TAG:Name"
RECORD_TYPES = ("Credit", "Refund")
BARE_IMPORT = "import pandas, matplotlib, boto3, sqlalchemy, slack_sdk"
RATIO_PAIRS = 9
PLOT_REPEATS = 20


# ---------------------------------------------------------------- sizes


def parse_size(text: str) -> tuple[int, int] | None:
    """`demo` -> None; `NxG` -> (N, G)."""
    if text == "demo":
        return None
    services, _, groups = text.lower().partition("x")
    if not (services.isdigit() and groups.isdigit()):
        raise argparse.ArgumentTypeError(f"{text!r} is not 'demo' or SERVICESxGROUPS")
    return int(services), int(groups)


def account_series(scale: tuple[int, int] | None) -> int:
    """The series detection evaluates: one per service plus one per (service, group)."""
    from _util.sources.demo_account import scaled_account

    account = scaled_account(scale)
    return len(account.services) + len(account._table.share)


# ---------------------------------------------------------------- whole runs


@dataclass
class RunFigures:
    """One run of the bot in a child process."""

    size: str
    db: str
    run: str
    series: int
    wall_s: float
    max_rss_mb: float
    tree_pss_mb: float
    exit_code: int
    stages: dict[str, float] = field(default_factory=dict)
    ce_requests: int = 0
    rows_written: int = 0
    rows_loaded: int = 0
    alerts: int = 0
    plots: int = 0
    seeded: bool = False


def child_env(out_dir: Path, scale: tuple[int, int] | None, db_url: str) -> dict[str, str]:
    """The environment of a bot run: the caller's, minus every COST_TRACKING_ setting and
    Slack token it may hold, plus the benchmark's. The Commitments and EC2 usage sections
    are off: the tables measure the cost pipeline (the sections state their own requests
    and time in their README parts)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("COST_TRACKING_") and k != "SLACK_BOT_TOKEN"}
    env.update(COST_TRACKING_OUTPUT_DIR=str(out_dir), COST_TRACKING_DB_URL=db_url,
               COST_TRACKING_COMMITMENTS="off", COST_TRACKING_EC2_USAGE="off",
               COST_TRACKING_IDLE="off")
    if scale:
        env["COST_TRACKING_DEMO_SCALE"] = f"{scale[0]}x{scale[1]}"
    return env


def _tree(pid: int) -> list[int]:
    """`pid` and its descendants (Linux /proc)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                todo += [int(c) for c in (task / "children").read_text().split()]
            except OSError:
                pass
    return pids


def _pss_mb(pid: int) -> float:
    """Proportional set size of one process: its private pages plus its share of pages it
    shares (a forked plot worker's pages inherited from the run count once in all)."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024.0
    except (OSError, ValueError):
        pass
    return 0.0


class TreeMemory:
    """Samples the summed PSS of a process and its children (the plot workers) four times
    a second: what the machine must hold for the run, which the parent's own peak RSS
    leaves out."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval = pid, interval
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak_mb = max(self.peak_mb, sum(_pss_mb(p) for p in _tree(self.pid)))
            self._stop.wait(self.interval)

    def __enter__(self) -> "TreeMemory":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def run_child(argv: list[str], env: dict[str, str], log: Path) -> tuple[int, float, float, float]:
    """Run a Python child to its end: (exit code, wall seconds, peak RSS of the child in
    MB, peak PSS of the child and its workers together in MB)."""
    start = time.perf_counter()
    with log.open("ab") as out:
        proc = subprocess.Popen([sys.executable, *argv], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)
        with TreeMemory(proc.pid) as tree:
            _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, wall, usage.ru_maxrss / 1024.0, tree.peak_mb  # Linux: kilobytes


def read_record(out_dir: Path, day: dt.date) -> dict:
    path = out_dir / "runs" / f"{day.isoformat()}.json"
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def figures_of(record: dict, base: RunFigures) -> RunFigures:
    for stage in record.get("stages", []):
        name = stage["name"]
        base.stages[name] = base.stages.get(name, 0.0) + stage["seconds"]
        counts = stage.get("counts", {})
        if name == "load":
            base.rows_loaded = counts.get("rows", 0)
        elif name == "detect":
            base.alerts = counts.get("alerts", 0)
        elif name == "plot":
            base.plots = counts.get("plots_rendered", 0)
    base.ce_requests = record.get("ce_requests", 0)
    base.rows_written = record.get("rows_upserted", 0)
    return base


def fresh_database(db: str, work: Path, mysql_url: str | None) -> str:
    """A database URL with none of the bot's tables in it."""
    if db == "sqlite":
        return f"sqlite:///{work / 'cost_tracking.db'}"
    from _util.errors import StoreError
    from _util.store.database import create_tables, make_engine, metadata

    engine = make_engine(mysql_url)
    try:
        create_tables(engine)  # imports every module that declares a table on `metadata`
    except StoreError:
        pass  # a table of an older shape: dropped all the same
    metadata.drop_all(engine)
    engine.dispose()
    return mysql_url


def bench_size(size: str, db: str, mysql_url: str | None, seed_above: int | None,
               keep: bool) -> list[RunFigures]:
    """The backfill and the daily run of one size on one database."""
    scale = parse_size(size)
    series = account_series(scale)
    work = Path(tempfile.mkdtemp(prefix=f"bench-{size}-{db}-"))
    url = fresh_database(db, work, mysql_url)
    env = child_env(work / "output", scale, url)
    log = work / "bench.log"
    today = dt.datetime.now(dt.timezone.utc).date()
    backfill_day = today - dt.timedelta(days=2)
    out: list[RunFigures] = []

    base = dict(size=size, db=db, series=series)
    if seed_above is not None and series > seed_above:
        code, wall, rss, pss = run_child([__file__, "--child-seed", size, "--db-url", url,
                                          "--day", backfill_day.isoformat(),
                                          "--today", today.isoformat()], env, log)
        seeded = json.loads(log.read_text().strip().splitlines()[-1]) if code == 0 else {}
        out.append(RunFigures(**base, run="backfill", wall_s=wall, max_rss_mb=rss,
                              tree_pss_mb=pss, exit_code=code,
                              rows_written=seeded.get("rows", 0), seeded=True))
    else:
        code, wall, rss, pss = run_child([str(ROOT / "runCostReporting.py"), "--demo",
                                          "--dry-run", "--date", backfill_day.isoformat()],
                                         env, log)
        out.append(figures_of(read_record(work / "output", backfill_day),
                              RunFigures(**base, run="backfill", wall_s=wall, max_rss_mb=rss,
                                         tree_pss_mb=pss, exit_code=code)))
    code, wall, rss, pss = run_child([str(ROOT / "runCostReporting.py"), "--demo", "--dry-run"],
                                     env, log)
    out.append(figures_of(read_record(work / "output", today - dt.timedelta(days=1)),
                          RunFigures(**base, run="daily", wall_s=wall, max_rss_mb=rss,
                                     tree_pss_mb=pss, exit_code=code)))
    if any(f.exit_code != 0 for f in out):
        print(f"<!-- {size} on {db}: a run failed; see {log} -->")
        keep = True
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    return out


def seed_database(size: str, db_url: str, day: dt.date, today: dt.date) -> dict:
    """Fill the database as the first backfill would, without Cost Explorer's dicts: the
    demo account's amounts for the backfill's days, rounded to the 10 decimals of Cost
    Explorer's strings, Estimated from today - 2 on."""
    import numpy as np

    import procAmzData
    from _util.sources.demo_account import scaled_account
    from _util.store.cost_store import CostRow, SourceState, replace_days
    from _util.store.database import create_tables, make_engine

    account = scaled_account(parse_size(size))
    table = account._table
    names = [account.services[i].name for i in table.service_idx]
    groups = list(table.group_names)
    record_types = ",".join(RECORD_TYPES)
    plan = procAmzData.plan_fetch(None, day, today, 365, GROUP_BY, record_types, "demo")
    days = [plan.start + dt.timedelta(days=i) for i in range((plan.end - plan.start).days + 1)]
    estimated_from = today - dt.timedelta(days=2)

    def rows():
        for d in days:
            amounts = np.round(account.amounts(d), 10)
            estimated = d >= estimated_from
            for s in np.flatnonzero(amounts != 0.0).tolist():
                yield CostRow(d, names[s], groups[s], float(amounts[s]), "USD", estimated)

    engine = make_engine(db_url)
    create_tables(engine)
    state = SourceState("demo", GROUP_BY, record_types, plan.start, plan.end,
                        estimated_from if estimated_from <= plan.end else None)
    start = time.perf_counter()
    written = replace_days(engine, METRIC, plan.start, plan.end, rows(), state)
    return {"rows": written, "seconds": round(time.perf_counter() - start, 2)}


# ---------------------------------------------------------------- plots, and the run against its imports


def plot_medians(repeats: int) -> dict:
    """Each plot type of tests/test_plot_likeness.py drawn and saved `repeats` times in this
    process, the types taken in turn after a first drawing of each: milliseconds (the
    first, and the median of the rest) and the PNG's size."""
    sys.path.insert(0, str(ROOT))
    from _util.site.plot_drawing import draw_and_save
    from tests.test_plot_likeness import plot_jobs

    jobs = plot_jobs(Path(tempfile.mkdtemp(prefix="bench-plots-")))
    first = {name: draw_and_save(job) for name, job in jobs.items()}
    times: dict[str, list[float]] = {name: [] for name in jobs}
    for _ in range(repeats):
        for name, job in jobs.items():
            times[name].append(draw_and_save(job))
    out = {name: {"first_ms": round(first[name], 1),
                  "median_ms": round(statistics.median(times[name]), 1),
                  "png_kb": round(job.path.stat().st_size / 1024, 1)}
           for name, job in jobs.items()}
    shutil.rmtree(next(iter(jobs.values())).path.parent, ignore_errors=True)
    return out


def busiest_demo_day(last: dt.date, days: int = 28) -> tuple[dt.date, int]:
    """The day of the `days` ending on `last` on which the demo account has the most
    alerts (the latest of equals), and their number."""
    import pandas as pd

    import procAmzAlerts
    from _util.report import Rules
    from _util.sources.demo_account import demo_history

    rules = Rules()
    history = demo_history(last)
    counts = []
    for back in range(days):
        day = last - dt.timedelta(days=back)
        seen = history[history["usage_date"] <= pd.Timestamp(day)]
        counts.append((len(procAmzAlerts.detect_alerts(seen, day, rules)), day))
    alerts, day = max(counts)
    return day, alerts


def timed_child(argv: list[str], env: dict[str, str], log: Path) -> tuple[int, float]:
    """Run a Python child to its end, nothing sampling it: (exit code, wall seconds)."""
    start = time.perf_counter()
    with log.open("ab") as out:
        code = subprocess.run([sys.executable, *argv], env=env, cwd=ROOT, stdout=out,
                              stderr=subprocess.STDOUT).returncode
    return code, time.perf_counter() - start


def daily_against_import(pairs: int, keep: bool) -> dict:
    """The demo's daily run (`--demo --dry-run`, a child process; the database backfilled
    to the day before, restored before each run) and a bare import of its five packages
    (`python -c "import pandas, ..."`), alternated `pairs` times after one pair not
    counted: wall seconds of each, their medians and the ratio of the medians. Nothing
    samples their memory (sampling a run and its workers costs the run CPU)."""
    today = dt.datetime.now(dt.timezone.utc).date()
    day, _ = busiest_demo_day(today - dt.timedelta(days=2))
    # The bot's modules as a cron machine runs them from its second run on: compiled to
    # bytecode once (the packages' bytecode came with pip). Without it, a machine with
    # PYTHONDONTWRITEBYTECODE=1 (this one) compiles ~90 modules again every run: 0.16 s.
    subprocess.run([sys.executable, "-m", "compileall", "-q", "-x", r"[/\\](\.venv|tests)[/\\]",
                    str(ROOT)], check=True, stdout=subprocess.DEVNULL)
    work = Path(tempfile.mkdtemp(prefix="bench-ratio-"))
    out_dir, pristine = work / "output", work / "pristine"
    env = child_env(out_dir, None, f"sqlite:///{out_dir / 'cost_tracking.db'}")
    log = work / "bench.log"
    daily = [str(ROOT / "runCostReporting.py"), "--demo", "--dry-run"]
    code, *_ = run_child(daily + ["--date", (day - dt.timedelta(days=1)).isoformat()], env, log)
    if code != 0:
        raise RuntimeError(f"the demo's backfill failed (exit {code}); see {log}")
    shutil.copytree(out_dir, pristine)
    bare_s, daily_s = [], []
    for i in range(pairs + 1):
        _, wall = timed_child(["-c", BARE_IMPORT], env, log)
        shutil.rmtree(out_dir)
        shutil.copytree(pristine, out_dir)
        code, run_wall = timed_child(daily + ["--date", day.isoformat()], env, log)
        if code != 0:
            raise RuntimeError(f"the demo's daily run failed (exit {code}); see {log}")
        if i:  # the first pair warms the disk cache
            bare_s.append(wall)
            daily_s.append(run_wall)
    record = figures_of(read_record(out_dir, day), RunFigures(
        size="demo", db="sqlite", run="daily", series=0, wall_s=0.0, max_rss_mb=0.0,
        tree_pss_mb=0.0, exit_code=0))
    if not keep:
        shutil.rmtree(work, ignore_errors=True)
    bare, run = statistics.median(bare_s), statistics.median(daily_s)
    return {"day": day.isoformat(), "alerts": record.alerts, "plots": record.plots,
            "plot_s": round(record.stages.get("plot", 0.0), 3), "pairs": pairs,
            "bare_s": [round(v, 3) for v in bare_s], "daily_s": [round(v, 3) for v in daily_s],
            "bare_median_s": round(bare, 3), "daily_median_s": round(run, 3),
            "ratio": round(run / bare, 2)}


def plots_table(medians: dict) -> str:
    lines = ["| plot | first ms | median ms | PNG KB |", "|---|---|---|---|"]
    for name, m in medians.items():
        lines.append(f"| {name} | {m['first_ms']} | {m['median_ms']} | {m['png_kb']} |")
    return "\n".join(lines)


# ---------------------------------------------------------------- analysis and upserts


def child_json(argv: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *argv], check=True, capture_output=True,
                         text=True, cwd=ROOT).stdout
    return json.loads(out.strip().splitlines()[-1])


def upsert_year(n_series: int, db_url: str) -> dict:
    """replace_days of a dense year of `n_series` series into an empty cost_daily, timed,
    with the executemany calls SQLAlchemy makes and the INSERT statements the driver
    sends (PyMySQL folds an executemany into multi-row INSERTs of up to ~1 MB)."""
    import numpy as np
    import sqlalchemy as sa
    from bench_analysis import synthetic_history

    from _util.store.cost_store import CostRow, SourceState, replace_days
    from _util.store.database import create_tables, make_engine, metadata

    history = synthetic_history(n_series)
    first = history["usage_date"].iloc[0].date()
    last = history["usage_date"].iloc[-1].date()
    dates = [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]
    day_index = ((history["usage_date"].to_numpy() - np.datetime64(first))
                 // np.timedelta64(1, "D")).astype(np.int64)
    services = history["service"].cat.categories.tolist()
    groups = history["group_value"].cat.categories.tolist()
    svc_codes = history["service"].cat.codes.to_numpy()
    grp_codes = history["group_value"].cat.codes.to_numpy()
    amounts = history["amount"].to_numpy()

    def rows():
        step = 100_000
        for lo in range(0, len(history), step):
            for d, s, g, a in zip(day_index[lo:lo + step].tolist(),
                                  svc_codes[lo:lo + step].tolist(),
                                  grp_codes[lo:lo + step].tolist(),
                                  amounts[lo:lo + step].tolist()):
                yield CostRow(dates[d], services[s], groups[g], a, "USD", False)

    engine = make_engine(db_url)
    create_tables(engine)
    metadata.drop_all(engine, tables=[metadata.tables["cost_daily"], metadata.tables["cost_source"]])
    create_tables(engine)
    calls: Counter = Counter()

    @sa.event.listens_for(engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        if statement.lstrip().upper().startswith("INSERT INTO COST_DAILY"):
            calls["executemany" if executemany else "execute"] += 1

    if engine.dialect.driver == "pymysql":
        import pymysql.connections

        query = pymysql.connections.Connection.query

        def counting_query(self, sql, unbuffered=False):
            head = sql[:22] if isinstance(sql, (bytes, bytearray)) else sql[:22].encode()
            if head.upper().startswith(b"INSERT INTO COST_DAILY"):
                calls["statements"] += 1
            return query(self, sql, unbuffered)

        pymysql.connections.Connection.query = counting_query
    state = SourceState("demo", GROUP_BY, ",".join(RECORD_TYPES), first, last, None)
    start = time.perf_counter()
    written = replace_days(engine, METRIC, first, last, rows(), state)
    seconds = time.perf_counter() - start
    metadata.drop_all(engine, tables=[metadata.tables["cost_daily"], metadata.tables["cost_source"]])
    return {"series": n_series, "rows": written, "seconds": round(seconds, 2),
            "rows_per_s": round(written / seconds), "executemany": calls["executemany"],
            "execute": calls["execute"], "statements": calls.get("statements")}


# ---------------------------------------------------------------- output


def fmt(value: float, digits: int = 2) -> str:
    return f"{value:.{digits}f}"


def runs_table(figures: list[RunFigures]) -> str:
    head = ["size", "series", "db", "run", "wall s", *(f"{s} s" for s in STAGES), "other s",
            "CE requests", "rows written", "rows loaded", "alerts", "plots", "peak RSS MB",
            "peak PSS with workers MB"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for f in figures:
        stages = [fmt(f.stages[s]) if s in f.stages else "–" for s in STAGES]
        # Process start, imports, writing the site's pages and report.json.
        other = fmt(f.wall_s - sum(f.stages.values()), 1) if f.stages else "–"
        run = f.run + (" (seeded)" if f.seeded else "") + ("" if f.exit_code == 0
                                                          else f" (exit {f.exit_code})")
        lines.append("| " + " | ".join([
            f.size, f"{f.series:,}", f.db, run, fmt(f.wall_s, 1), *stages, other,
            str(f.ce_requests) if not f.seeded else "–", f"{f.rows_written:,}",
            f"{f.rows_loaded:,}" if not f.seeded else "–", str(f.alerts) if not f.seeded else "–",
            str(f.plots) if not f.seeded else "–", fmt(f.max_rss_mb, 0),
            fmt(f.tree_pss_mb, 0)]) + " |")
    return "\n".join(lines)


def machine() -> str:
    load = os.getloadavg()
    return (f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
            f"Python {platform.python_version()}, load average {load[0]:.2f} "
            f"(1 min) / {load[1]:.2f} (5 min) when this table was printed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", nargs="+", help="demo and/or SERVICESxGROUPS "
                        f"(default: {' '.join(DEFAULT_SIZES)})")
    parser.add_argument("--quick", action="store_true",
                        help=f"sizes {' '.join(QUICK_SIZES)}, 1,000 series for the analysis, "
                             "the reference and the upserts")
    parser.add_argument("--db", nargs="+", choices=("sqlite", "mysql"),
                        help="databases (default: sqlite, plus mysql when a URL is set)")
    parser.add_argument("--mysql-url", default=os.environ.get("COST_TRACKING_TEST_MYSQL_URL"),
                        help="MariaDB/MySQL URL (default: $COST_TRACKING_TEST_MYSQL_URL); "
                             "the bot's tables in it are dropped")
    parser.add_argument("--seed-above", type=int, default=None,
                        help="write the backfill of sizes with more series than this directly "
                             "(default: every backfill goes through Cost Explorer's path)")
    parser.add_argument("--analysis-series", type=int, help="default 10,000 (quick: 1,000)")
    parser.add_argument("--reference-series", type=int, help="default 10,000 (quick: 1,000)")
    parser.add_argument("--upsert-series", type=int, help="default 10,000 (quick: 1,000)")
    parser.add_argument("--plot-repeats", type=int, default=PLOT_REPEATS,
                        help=f"drawings of each plot type (default {PLOT_REPEATS})")
    parser.add_argument("--pairs", type=int, default=RATIO_PAIRS,
                        help="daily runs and bare imports, alternated, for the ratio "
                             f"(default {RATIO_PAIRS})")
    parser.add_argument("--plots-only", action="store_true",
                        help="only the plot timings and the daily run against its imports")
    parser.add_argument("--skip-plots", action="store_true")
    parser.add_argument("--skip-ratio", action="store_true")
    parser.add_argument("--skip-runs", action="store_true")
    parser.add_argument("--skip-analysis", action="store_true")
    parser.add_argument("--skip-upsert", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the runs' output folders")
    parser.add_argument("--child-seed", help=argparse.SUPPRESS)
    parser.add_argument("--child-upsert", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-analysis", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-reference", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-plots", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--db-url", help=argparse.SUPPRESS)
    parser.add_argument("--day", type=dt.date.fromisoformat, help=argparse.SUPPRESS)
    parser.add_argument("--today", type=dt.date.fromisoformat, help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child_seed:
        print(json.dumps(seed_database(args.child_seed, args.db_url, args.day, args.today)))
        return
    if args.child_upsert:
        print(json.dumps(upsert_year(args.child_upsert, args.db_url)))
        return
    if args.child_plots:
        print(json.dumps(plot_medians(args.child_plots)))
        return
    if args.child_analysis or args.child_reference:
        import bench_analysis

        result = (bench_analysis.run_one(args.child_analysis, 3, False) if args.child_analysis
                  else bench_analysis.run_reference(args.child_reference, 3, False))
        print(json.dumps(result))
        return

    default_n = 1_000 if args.quick else 10_000
    sizes = args.sizes or list(QUICK_SIZES if args.quick else DEFAULT_SIZES)
    for size in sizes:
        parse_size(size)
    dbs = args.db or (["sqlite", "mysql"] if args.mysql_url else ["sqlite"])
    if "mysql" in dbs and not args.mysql_url:
        parser.error("--db mysql needs --mysql-url or COST_TRACKING_TEST_MYSQL_URL")

    if args.plots_only:
        args.skip_runs = args.skip_analysis = args.skip_upsert = True

    print(f"## Benchmark ({dt.datetime.now(dt.timezone.utc):%Y-%m-%d %H:%M} UTC)\n")
    print(f"Machine: {machine()}.\n")
    if not args.skip_plots:
        print(f"### Plots: each type drawn and saved {args.plot_repeats} times in one process "
              "(the types in turn)\n")
        print(plots_table(child_json(["--child-plots", str(args.plot_repeats)])))
        print("\nFirst: the first drawing of the type in the process (its figure is made "
              "then; for the first type, matplotlib's drawing modules may be imported too); "
              "median: of the drawings after it. Inputs: tests/test_plot_likeness.py.\n",
              flush=True)
    if not args.skip_ratio:
        r = daily_against_import(args.pairs, args.keep)
        print(f"### The demo's daily run against importing its packages ({r['pairs']} pairs, "
              "alternated)\n")
        print(f"Daily run of {r['day']} (`--demo --dry-run`; {r['alerts']} alerts, "
              f"{r['plots']} plots, plot stage {r['plot_s']} s): median **{r['daily_median_s']} "
              f"s** {r['daily_s']}; `python -c \"{BARE_IMPORT}\"`: median "
              f"**{r['bare_median_s']} s** {r['bare_s']}; ratio **{r['ratio']}x**.\n",
              flush=True)
    if not args.skip_runs:
        print("### Whole runs (`--demo --dry-run`, a child process each)\n")
        figures: list[RunFigures] = []
        for size in sizes:
            for db in dbs:
                figures += bench_size(size, db, args.mysql_url, args.seed_above, args.keep)
                print(f"<!-- {size} on {db} done -->", flush=True)
        print(runs_table(figures))
        seeded = [f.size for f in figures if f.seeded]
        print("\nBackfill: the first run, `--date` two days ago, 365 days. Daily: the next "
              "run (yesterday) on that database. Wall includes process start and imports; "
              "peak RSS is the child's maximum resident set (its forked plot workers "
              "not counted); peak PSS with workers is the most the child and its plot "
              "workers held together, sampled every 0.25 s (shared pages counted once).")
        if seeded:
            print(f"Seeded ({', '.join(sorted(set(seeded)))}): the backfill was written with "
                  f"cost_store.replace_days from the demo account's amounts, not through "
                  f"Cost Explorer's dicts; its wall time is that write. The daily run after "
                  f"it went through the real path.")
        print()
        json_path = Path(tempfile.gettempdir()) / "bench_run_figures.json"
        json_path.write_text(json.dumps([asdict(f) for f in figures], indent=1))
        print(f"<!-- figures as JSON: {json_path} -->\n")

    if not args.skip_analysis:
        n = args.analysis_series or default_n
        ref_n = args.reference_series or default_n
        print(f"### Analysis: {n:,} dense series x 365 days (best of 3)\n")
        a = child_json(["--child-analysis", str(n)])
        print(f"detect {a['detect_ms']} ms, summarise {a['summarise_ms']} ms, "
              f"{a['alerts']} alerts; peak allocated {a['analysis_peak_mb']} MB, "
              f"process max RSS {a['max_rss_mb']} MB (input frame {a['frame_mb']} MB).\n")
        r = child_json(["--child-reference", str(ref_n)])
        print(f"Per-series reference (pandas groupby-apply) on {r['series']:,} series: "
              f"{r['reference_ms'] / 1000:.1f} s against {r['vectorised_ms']} ms vectorised, "
              f"the same data in the same process: **{r['ratio']}x** faster; "
              f"same alerts: {r['same_alerts']}.\n")

    if not args.skip_upsert:
        n = args.upsert_series or default_n
        print(f"### Upserting a year of {n:,} series (replace_days into an empty table)\n")
        print("| db | rows | seconds | rows/s | executemany calls | INSERT statements sent |")
        print("|---|---|---|---|---|---|")
        work = Path(tempfile.mkdtemp(prefix="bench-upsert-"))
        targets = [("sqlite", f"sqlite:///{work / 'upsert.db'}")]
        if "mysql" in dbs:
            targets.append(("mysql", args.mysql_url))
        for name, url in targets:
            u = child_json(["--child-upsert", str(n), "--db-url", url])
            sent = "–" if u["statements"] is None else f"{u['statements']:,}"
            print(f"| {name} | {u['rows']:,} | {u['seconds']} | {u['rows_per_s']:,} | "
                  f"{u['executemany']} | {sent} |")
        shutil.rmtree(work, ignore_errors=True)
        print("\nsqlite3 runs each executemany as one prepared statement stepped in C; "
              "PyMySQL rewrites it into multi-row INSERTs of up to ~1 MB.")
    print(f"\n<!-- done; load average now {os.getloadavg()[0]:.2f} -->")


if __name__ == "__main__":
    main()
