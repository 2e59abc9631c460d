"""The Commitments section end to end: the demo's report.json `commitments`, its Slack
section and pages with the planted alerts; off; mutes; --skip-fetch from stored figures;
and through boto3 and the Cost Explorer stand-in, the requests of a daily run and access
denied as one warning while the run goes on (exit 0)."""
from __future__ import annotations

import datetime as dt
import json
import logging
import sqlite3

import pytest

from tests.ce_standin import CostExplorerStandIn
from tests.ops_support import DAY, QUIET, TODAY, copy_template, run_bot

KIND_KEYS = {"utilisation_pct", "coverage_pct", "unused_usd", "items", "uncovered",
             "recommendations", "alerts"}


@pytest.fixture(autouse=True)
def _quiet_logging():
    yield
    logging.getLogger().handlers.clear()


@pytest.fixture(autouse=True)
def _commitments_auto(clean_env, monkeypatch):
    """The section as users get it (clean_env turns it off for the other tests)."""
    monkeypatch.setenv("COST_TRACKING_COMMITMENTS", "auto")


def _report(out, day=DAY) -> dict:
    return json.loads((out / "site" / "reports" / day.isoformat() / "report.json").read_text())


def _slack_text(out, day=DAY) -> str:
    payload = json.loads((out / "slack" / f"{day.isoformat()}.json").read_text())
    return "\n".join(b["text"]["text"] for b in payload["blocks"]
                     if isinstance(b.get("text"), dict))


def _rows(out, table: str) -> int:
    with sqlite3.connect(out / "cost_tracking.db") as conn:
        return conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]  # noqa: S608


def test_the_demo_shows_commitments_with_the_planted_alerts(tmp_path_factory, tmp_path, clean_env):
    copy_template(tmp_path_factory, "demo", tmp_path)
    code = run_bot(["--demo", "--dry-run", "--date", DAY.isoformat()], tmp_path, TODAY, **QUIET,
                   COST_TRACKING_SITE_URL="https://costs.example.com/")
    assert code == 0
    c = _report(tmp_path)["commitments"]
    assert set(c) == {"savings_plans", "reservations"}
    for kind in c.values():
        assert set(kind) == KIND_KEYS
        assert set(kind["utilisation_pct"]) == {"day", "mtd"}
    sp, ri = c["savings_plans"], c["reservations"]
    assert 58 < sp["utilisation_pct"]["day"] < 62  # the fleet change: ~60% for a week
    assert 85 < sp["utilisation_pct"]["mtd"] < 92
    assert [i["type"] for i in ri["items"]] == ["r5.large eu-west-1", "m5.xlarge us-east-1"]
    assert {(a["rule"], a["status"]) for a in sp["alerts"]} == {
        ("low_utilisation", "continuing"), ("coverage_drop", "continuing")}
    (expiring,) = ri["alerts"]
    assert (expiring["rule"], expiring["end_date"], expiring["days_left"], expiring["muted"]) == (
        "expiring", "2026-12-10", 18, False)
    assert ri["uncovered"][0] == {"service": "Amazon Elastic Compute Cloud - Compute",
                                  "key": "c5.2xlarge / us-east-1",
                                  "usd": pytest.approx(ri["uncovered"][0]["usd"])}
    assert sp["recommendations"][0]["monthly_savings_usd"] == 412.0
    text = _slack_text(tmp_path)
    assert "*Commitments*" in text and "Low utilisation: ComputeSavingsPlans" in text
    assert "Expiring: r5.large eu-west-1" in text and "Coverage dropped" in text
    folder = tmp_path / "site" / "reports" / DAY.isoformat()
    page = (folder / "commitments-savings-plans.html").read_text()
    assert "utilisation and coverage" in page and (folder / "commitments-savings-plans.png").exists()
    assert len(list(folder.glob("commitment-*.html"))) == 3  # a page per plan and reservation
    assert "<h2>Commitments</h2>" in (folder / "index.html").read_text()


def test_off_makes_no_call_and_report_json_says_null(tmp_path_factory, tmp_path, clean_env):
    copy_template(tmp_path_factory, "demo", tmp_path)
    assert run_bot(["--demo", "--dry-run", "--date", DAY.isoformat()], tmp_path, TODAY, **QUIET,
                   COST_TRACKING_COMMITMENTS="off") == 0
    assert _report(tmp_path)["commitments"] is None
    assert _rows(tmp_path, "commitment_fetch") == 0
    assert "Commitments" not in _slack_text(tmp_path)


def test_a_muted_alert_stays_in_report_json_and_leaves_slack(tmp_path_factory, tmp_path,
                                                            clean_env):
    copy_template(tmp_path_factory, "demo", tmp_path)
    config = tmp_path / "config.toml"
    config.write_text('[[commitment_mute]]\nid = "7a9e0b1d-demo-r5large-20261210"\n'
                      'rule = "expiring"\nreason = "renewal approved"\n')
    assert run_bot(["--demo", "--dry-run", "--date", DAY.isoformat(), "--config", str(config)],
                   tmp_path, TODAY, **QUIET) == 0
    (expiring,) = _report(tmp_path)["commitments"]["reservations"]["alerts"]
    assert (expiring["muted"], expiring["mute_reason"]) == (True, "renewal approved")
    assert "Expiring:" not in _slack_text(tmp_path)


def test_skip_fetch_shows_the_stored_figures_without_a_request(tmp_path_factory, tmp_path,
                                                               clean_env):
    copy_template(tmp_path_factory, "demo", tmp_path)
    assert run_bot(["--demo", "--dry-run", "--date", DAY.isoformat()], tmp_path, TODAY,
                   **QUIET) == 0
    stored = _rows(tmp_path, "commitment_utilisation")
    first = _report(tmp_path)["commitments"]
    assert run_bot(["--demo", "--dry-run", "--skip-fetch", "--date", DAY.isoformat()], tmp_path,
                   TODAY, **QUIET) == 0
    assert _report(tmp_path)["commitments"] == first
    assert _rows(tmp_path, "commitment_utilisation") == stored


def test_a_daily_run_through_boto3_makes_seven_commitment_requests(tmp_path_factory, tmp_path,
                                                                   clean_env):
    copy_template(tmp_path_factory, "aws", tmp_path)
    with CostExplorerStandIn(TODAY) as standin:
        assert run_bot(["--dry-run"], tmp_path, TODAY, **QUIET,
                       AWS_ENDPOINT_URL_COST_EXPLORER=standin.url) == 0
        first = len(standin.other_requests)
    assert first == 106  # the 90-day backfill (100) and the week's recommendations (6)
    tomorrow = TODAY + dt.timedelta(days=1)
    with CostExplorerStandIn(tomorrow) as standin:
        assert run_bot(["--dry-run"], tmp_path, tomorrow, **QUIET,
                       AWS_ENDPOINT_URL_COST_EXPLORER=standin.url) == 0
        targets = [r["target"].rsplit(".", 1)[-1] for r in standin.other_requests]
    assert len(targets) == 7 and targets.count("GetSavingsPlansUtilizationDetails") == 3
    assert len(standin.requests) == 1  # the costs' own request, as before
    assert _report(tmp_path, TODAY)["commitments"]["savings_plans"]["items"]
    # Billed alike: the run record counts them with the costs' request.
    record = json.loads((tmp_path / "runs" / f"{TODAY}.json").read_text())
    assert record["ce_requests"] == 1 + 7


def test_access_denied_is_one_warning_naming_the_actions_and_the_run_goes_on(
        tmp_path_factory, tmp_path, clean_env):
    copy_template(tmp_path_factory, "aws", tmp_path)
    with CostExplorerStandIn(TODAY) as standin:
        standin.denied = {"GetReservationCoverage", "GetSavingsPlansUtilizationDetails"}
        code = run_bot(["--dry-run"], tmp_path, TODAY, **QUIET,
                       AWS_ENDPOINT_URL_COST_EXPLORER=standin.url)
    assert code == 0
    log = (tmp_path / "logs" / "cost_tracking.log").read_text().splitlines()
    warnings = [line for line in log if " WARNING " in line and "commitment" in line]
    assert len(warnings) == 1
    assert "ce:GetReservationCoverage, ce:GetSavingsPlansUtilizationDetails" in warnings[0]
    assert " ERROR " not in "\n".join(log)
    report = _report(tmp_path)
    assert report["commitments"] is None  # nothing stored to show
    assert report["date"] == DAY.isoformat() and not report["stale"]  # the costs as usual
