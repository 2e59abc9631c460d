"""The weekly summary: sent by the run on COST_TRACKING_WEEKLY_DAY only, once per channel,
with week-over-week figures that add up from the stored rows.

Runs go through real boto3 to the Cost Explorer stand-in and post to the Slack stand-in,
on a real SQLite file; 2026-11-22 is a Sunday, so the Monday run reports it.
"""
from __future__ import annotations

import datetime as dt
import json
import sqlite3

import pytest

from _util.errors import EXIT_PARTIAL
from _util.weekly import is_weekly_day
from tests.ce_standin import CostExplorerStandIn
from tests.test_routing import (
    CONFIG,
    DAY,
    TODAY,
    _demo,
    backfill,
    run_bot,
    running_standin,
    slack_env,
)


@pytest.fixture
def bot(tmp_path, clean_env):
    backfill(f"sqlite:///{tmp_path / 'cost_tracking.db'}", account="aws", client=_demo())
    config = tmp_path / "bot.toml"
    config.write_text(CONFIG)

    def run(slack, today: dt.date = TODAY, *args: str, **env: str) -> int:
        with CostExplorerStandIn(today) as ce:
            ce.demo = _demo(today)
            settings = {k: v for k, v in slack_env(slack).items() if k != "COST_TRACKING_SLACK_CHANNEL"}
            return run_bot(["--config", str(config), *args], tmp_path, today,
                           AWS_ENDPOINT_URL_COST_EXPLORER=ce.url, **settings, **env)
    return tmp_path, run


def _weekly(slack) -> list[dict]:
    return [r.fields for r in slack.delivered() if r.fields["text"].startswith(("AWS costs, week", "<@"))
            and "week of" in r.fields["text"]]


def test_the_weekly_day_is_the_morning_after_the_week():
    assert is_weekly_day(dt.date(2026, 11, 22), "monday")  # Sunday's report, Monday's run
    assert not is_weekly_day(dt.date(2026, 11, 23), "monday")
    assert not is_weekly_day(dt.date(2026, 11, 22), None)


def test_the_weekly_summary_goes_out_on_its_day_once_per_channel(bot):
    out, run = bot
    with running_standin() as slack:
        assert run(slack, COST_TRACKING_WEEKLY_DAY="tuesday") == 0
        assert _weekly(slack) == []  # not its day
        assert run(slack, COST_TRACKING_WEEKLY_DAY="monday") == 0
        weekly = _weekly(slack)
        # Every channel, the quiet route's too: a week's figures are news even without alerts.
        assert sorted(w["channel"] for w in weekly) == ["C0DATA", "C0OPS", "C0PLAT", "C0QUIET"]
        assert run(slack, COST_TRACKING_WEEKLY_DAY="monday") == 0
        assert len(_weekly(slack)) == 4  # once per week per channel
    for name in ("weekly", "platform.weekly", "data.weekly"):
        payload = json.loads((out / "slack" / f"{DAY}.{name}.json").read_text())
        assert payload["metadata"]["event_type"] == "cost_digest"
    day_dir = out / "site" / "reports" / DAY.isoformat()
    assert (day_dir / "weekly.html").exists() and (day_dir / "routes" / "platform.weekly.html").exists()


def test_week_over_week_figures_add_up_from_the_stored_rows(bot):
    out, run = bot
    with running_standin() as slack:
        assert run(slack, COST_TRACKING_WEEKLY_DAY="monday") == 0
        (main,) = [w for w in _weekly(slack) if w["channel"] == "C0OPS"]
    with sqlite3.connect(out / "cost_tracking.db") as conn:
        def total(first: str, last: str) -> float:
            return conn.execute("SELECT SUM(amount) FROM cost_daily WHERE usage_date BETWEEN ? AND ?",
                                (first, last)).fetchone()[0]
        week, before, month_ago = (total("2026-11-16", "2026-11-22"), total("2026-11-09", "2026-11-15"),
                                   total("2026-10-19", "2026-10-25"))
    text = main["blocks"][1]["text"]["text"]
    assert text.startswith(f"*Last week:* ${week:,.2f}, {'+' if week >= before else '-'}"
                           f"${abs(week - before):,.2f}")
    assert f"vs the week before (${before:,.2f})" in text
    assert f"four weeks ago (${month_ago:,.2f})" in text
    assert main["blocks"][0]["text"]["text"] == "AWS costs · week of Mon 16 Nov – Sun 22 Nov 2026"
    alerts = main["blocks"][-1]["text"]["text"]
    assert "Spike up in AWS Services: *AWS Glue*, 1 day (Thu 19 Nov)" in alerts
    assert "also in analytics-etl" in alerts


def test_a_weekly_summary_slack_refused_is_sent_by_the_next_run(bot, capsys):
    out, run = bot
    with running_standin() as slack:
        slack.refuse["C0PLAT"] = "channel_not_found"
        assert run(slack, COST_TRACKING_WEEKLY_DAY="monday") == EXIT_PARTIAL
        err = capsys.readouterr().err
        assert "route platform: weekly summary: channel C0PLAT not found" in err
        assert "C0PLAT" not in [w["channel"] for w in _weekly(slack)]
        slack.refuse.clear()
        assert run(slack, TODAY + dt.timedelta(days=1), COST_TRACKING_WEEKLY_DAY="monday") == 0
        plat = [r.fields for r in slack.delivered() if r.fields["channel"] == "C0PLAT"]
    # The pending daily digest and weekly summary of the 22nd, sent though the route has
    # nothing to say on the 23rd.
    assert [p["metadata"]["event_payload"]["day"] for p in plat] == [DAY.isoformat()] * 2
    assert sum("week of" in p["text"] for p in plat) == 1
