"""Shared pieces of the operations tests (faults, bad input, logging, soak).

Runs go through `runCostReporting.main` in this process, with their settings in the real
environment (boto3 reads it from there), as tests/test_run.py does. Databases start from
templates backfilled once per test session by the ingestion stage itself.
"""
from __future__ import annotations

import datetime as dt
import shutil
import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest

import procAmzData
import runCostReporting
from _util.sources.base import CostQuery
from _util.sources.cost_explorer import CostExplorerSource
from _util.sources.demo_account import DemoCostExplorer
from _util.store.database import create_tables, make_engine

ROOT = Path(__file__).resolve().parent.parent
TODAY = dt.date(2026, 11, 23)
DAY = dt.date(2026, 11, 22)
METRIC = "UnblendedCost"

# Detection thresholds no demo series reaches: the run still renders the two summary plots
# and every page, but no alert plots, which keeps a run around a second. Tests about
# alerts leave these out.
QUIET = {"COST_TRACKING_MIN_DELTA_USD": "1000000000", "COST_TRACKING_MIN_DAILY_USD": "1000000000"}

_templates: dict[str, Path] = {}


def run_bot(args: list[str], out: Path, today: dt.date = TODAY, **env: str) -> int:
    """Run the driver with `env` set in the process environment for the run's duration."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"COST_TRACKING_OUTPUT_DIR": str(out), **env}.items():
            mp.setenv(name, value)
        return runCostReporting.main(args, None, today)


def backfill(db_url: str, today: dt.date = TODAY, account: str = "demo",
             lookback_days: int = 365, client: Any = None) -> procAmzData.IngestResult:
    """A fresh backfill by the ingestion stage, as the first run of the bot does it."""
    engine = make_engine(db_url)
    try:
        create_tables(engine)
        source = CostExplorerSource(client or DemoCostExplorer(today), account=account)
        return procAmzData.ingest(
            engine, source, CostQuery(METRIC, "TAG:Name", ("Credit", "Refund")),
            day=today - dt.timedelta(days=1), today=today, lookback_days=lookback_days)
    finally:
        engine.dispose()


def template_db(tmp_path_factory: pytest.TempPathFactory, account: str) -> Path:
    """A SQLite database backfilled once per session for TODAY, as `account` ("demo" for
    --demo runs, "aws" for runs through boto3 and the Cost Explorer stand-in)."""
    if account not in _templates:
        path = tmp_path_factory.mktemp(f"template-{account}") / "cost_tracking.db"
        backfill(f"sqlite:///{path}", account=account)
        _templates[account] = path
    return _templates[account]


def copy_template(tmp_path_factory: pytest.TempPathFactory, account: str, out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    target = out / "cost_tracking.db"
    shutil.copy(template_db(tmp_path_factory, account), target)
    return target


def cost_rows(db: Path, start: dt.date | None = None, end: dt.date | None = None) -> list[tuple]:
    """Every stored cost row (without fetched_at), sorted; amounts to 1e-6."""
    query = ("SELECT usage_date, metric, service, group_value, amount, unit, estimated "
             "FROM cost_daily")
    with sqlite3.connect(db) as conn:
        rows = conn.execute(query).fetchall()
    picked = [(d, m, s, g, round(a, 6), u, bool(e)) for d, m, s, g, a, u, e in rows
              if (start is None or d >= start.isoformat()) and (end is None or d <= end.isoformat())]
    return sorted(picked)


def table_dump(db: Path, table: str) -> list[tuple]:
    """A whole table exactly as stored, sorted: for "nothing changed at all"."""
    with sqlite3.connect(db) as conn:
        return sorted(conn.execute(f"SELECT * FROM {table}").fetchall())  # noqa: S608 - test's own table names


def slack_env(slack, **extra: str) -> dict[str, str]:
    return {"SLACK_BOT_TOKEN": "xoxb-ops-test-token", "COST_TRACKING_SLACK_CHANNEL": "C0OPS",
            "COST_TRACKING_SLACK_API_URL": slack.base_url, "COST_TRACKING_SLACK_MAX_RETRIES": "1",
            **extra}


class MangledDemo:
    """The demo account with each response passed through `mangle` before it is served:
    for Cost Explorer stand-ins that answer with odd shapes or odd names."""

    def __init__(self, demo: DemoCostExplorer, mangle: Callable[[dict], None]) -> None:
        self.demo = demo
        self.mangle = mangle

    def get_cost_and_usage(self, **kwargs: Any) -> dict:
        import copy

        response = copy.deepcopy(self.demo.get_cost_and_usage(**kwargs))
        self.mangle(response)
        return response

