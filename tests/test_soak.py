"""A soak: 60 consecutive daily runs on one database, as cron would make them.

Real boto3 talks to the Cost Explorer stand-in (serving the demo account as it looks on
each run's date) and the Slack stand-in takes every post. At the end: one delivery per
day, no duplicate rows, stored history equal to a fresh backfill of the same period, and
each daily run cost Cost Explorer one request (plus pages: one for the demo's size).
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sqlite3
import time

from _util.sources.demo_account import DemoCostExplorer
from tests.ce_standin import CostExplorerStandIn
from tests.ops_support import QUIET, backfill, cost_rows, run_bot, slack_env
from tests.slack_standin import running_standin

FIRST_TODAY = dt.date(2026, 9, 1)
DAYS = 60

log = logging.getLogger(__name__)


def test_sixty_daily_runs_deliver_once_a_day_cost_one_request_each_and_store_what_a_backfill_would(
        tmp_path, clean_env):
    out = tmp_path / "bot"
    timings = []
    with CostExplorerStandIn(FIRST_TODAY) as ce, running_standin() as slack:
        env = {"AWS_ENDPOINT_URL_COST_EXPLORER": ce.url, **QUIET, **slack_env(slack)}
        assert run_bot([], out, FIRST_TODAY, **env) == 0  # the first run backfills a year
        backfill_requests = len(ce.requests)
        for i in range(1, DAYS + 1):
            today = FIRST_TODAY + dt.timedelta(days=i)
            ce.demo = DemoCostExplorer(today)
            before = len(ce.requests)
            started = time.perf_counter()
            assert run_bot([], out, today, **env) == 0, today
            timings.append(time.perf_counter() - started)
            record = json.loads((out / "runs" / f"{today - dt.timedelta(days=1)}.json").read_text())
            assert len(ce.requests) - before == record["ce_requests"] == 1, today
        delivered = slack.delivered()
        posted = slack.posted()

    days = [FIRST_TODAY + dt.timedelta(days=i - 1) for i in range(DAYS + 1)]
    assert backfill_requests == 8  # one time period, 8 pages of the demo's year
    # One delivery per day: each day's recorded payload was posted exactly once.
    assert len(posted) == len(delivered) == len(days)
    for day in days:
        payload = json.loads((out / "slack" / f"{day}.json").read_text())
        assert sum(r.fields["blocks"] == payload["blocks"] for r in delivered) == 1, day
    with sqlite3.connect(out / "cost_tracking.db") as conn:
        statuses = conn.execute("SELECT status, COUNT(*) FROM slack_delivery GROUP BY status").fetchall()
    assert statuses == [("delivered", len(days))]

    # No duplicate rows, and the history a fresh backfill on the last day would store.
    stored = cost_rows(out / "cost_tracking.db")
    keys = [r[:4] for r in stored]
    assert len(keys) == len(set(keys))
    fresh = tmp_path / "fresh.db"
    backfill(f"sqlite:///{fresh}", today=days[-1] + dt.timedelta(days=1))
    expected = cost_rows(fresh)
    assert [r for r in stored if r[0] >= expected[0][0]] == expected
    assert stored[0][0] == (FIRST_TODAY - dt.timedelta(days=365)).isoformat()  # kept, not lost

    # Every day has its report on the site, listed in the index.
    index = (out / "site" / "index.html").read_text()
    assert set(re.findall(r"reports/(\d{4}-\d{2}-\d{2})/", index)) == {d.isoformat() for d in days}
    log.warning("soak: %d daily runs, median %.2f s, max %.2f s, total %.1f s",
                DAYS, sorted(timings)[DAYS // 2], max(timings), sum(timings))
