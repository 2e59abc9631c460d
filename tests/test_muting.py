"""Muting (issue 8): `[[mute]]` entries by service, group and kind, with and without
expiry; muted alerts stay in report.json and on the site and are left out of Slack."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import logging
import shutil

import pytest

import procLifecycle
import runCostReporting
from _util.alert_kinds import SPIKE, TREND, UP
from _util.report import Alert, Rules
from _util.settings import Mute
from _util.slack.message import build_message
from procAmzAlerts import detect_alerts
from tests.ops_support import backfill
from tests.test_alerts import SPIKE_DAY, _spike_then_crossings
from tests.test_lifecycle import day, run_day, step_history, store
from tests.test_slack_message import report as slack_report

D = dt.date(2024, 8, 10)
EC2 = "Amazon Elastic Compute Cloud - Compute"


def alert(service=EC2, group=None, kind=SPIKE) -> Alert:
    return Alert(kind=kind, direction=UP, service=service, group=group, usd=30.0,
                 baseline_mean=10.0, baseline_std=1.0, delta_usd=20.0)


ALERTS = (alert(), alert(group="web"), alert(group=""), alert(kind=TREND),
          alert(group="web", kind=TREND), alert(service="Amazon S3"))


def muted_keys(mutes, day=D) -> set:
    active, _ = procLifecycle.split_mutes(mutes, day)
    return {(a.kind, a.service, a.group) for a in procLifecycle.apply_mutes(ALERTS, active) if a.muted}


# ---- pure: which alerts an entry mutes -------------------------------------------------

def test_service_entry_mutes_every_alert_of_that_service_at_both_levels():
    assert muted_keys([Mute(service=EC2, reason="known")]) == {
        (SPIKE, EC2, None), (SPIKE, EC2, "web"), (SPIKE, EC2, ""), (TREND, EC2, None),
        (TREND, EC2, "web")}


def test_group_entry_mutes_only_that_groups_alerts():
    assert muted_keys([Mute(service=EC2, group="web", reason="known")]) == {
        (SPIKE, EC2, "web"), (TREND, EC2, "web")}


def test_empty_group_entry_mutes_the_untagged_group_only():
    assert muted_keys([Mute(service=EC2, group="", reason="untagged")]) == {(SPIKE, EC2, "")}


def test_kind_entry_mutes_only_that_kind():
    assert muted_keys([Mute(service=EC2, kind=TREND, reason="noisy")]) == {
        (TREND, EC2, None), (TREND, EC2, "web")}
    assert muted_keys([Mute(service=EC2, group="web", kind=SPIKE, reason="x")]) == {
        (SPIKE, EC2, "web")}


@pytest.mark.parametrize("until,mutes", [
    (None, True), (D + dt.timedelta(days=30), True), (D, True),
    (D - dt.timedelta(days=1), False),
])
def test_an_entry_mutes_up_to_and_including_its_until_date(until, mutes):
    entry = Mute(service="Amazon S3", until=until, reason="migration")
    assert muted_keys([entry]) == ({(SPIKE, "Amazon S3", None)} if mutes else set())


def test_the_first_matching_entry_gives_the_reason_and_the_alert_is_kept():
    entries = [Mute(service=EC2, group="web", reason="web rollout"), Mute(service=EC2, reason="all EC2")]
    out = procLifecycle.apply_mutes(ALERTS, entries)
    assert len(out) == len(ALERTS)
    assert [a.mute_reason for a in out] == ["all EC2", "web rollout", "all EC2", "all EC2",
                                            "web rollout", None]
    assert [dataclasses.replace(a, muted=False, mute_reason=None) for a in out] == list(ALERTS)


def test_entries_naming_nothing_stored_are_reported():
    names = {(EC2, "web"), (EC2, ""), ("Amazon S3", "")}
    entries = [Mute(service=EC2, reason="a"), Mute(service=EC2, group="api", reason="b"),
               Mute(service="Amazon EC3", reason="c"), Mute(service="Amazon S3", group="", reason="d")]
    assert [m.reason for m in procLifecycle.unmatched_mutes(entries, names)] == ["b", "c"]


# ---- through apply(): the log -------------------------------------------------------------

@pytest.mark.parametrize("pass_history", [False, True])
def test_expired_and_unknown_entries_are_logged_and_do_not_stop_the_run(db_engine, caplog,
                                                                        pass_history):
    store(db_engine, step_history())
    mutes = (Mute(service="S", until=day(0), reason="step expected"),
             Mute(service="S", group="nope", reason="typo"),
             Mute(service="Nothing", reason="gone"))
    with caplog.at_level(logging.INFO, logger="procLifecycle"):
        report = run_day(db_engine, day(3), mutes=mutes, pass_history=pass_history)
    assert report.alerts and not any(a.muted for a in report.alerts)
    assert "service 'S' (step expected) expired on " + day(0).isoformat() in caplog.text
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2
    assert "group 'nope'" in warnings[0] and "'Nothing'" in warnings[1]


def test_active_entry_marks_the_alerts_with_the_reason(db_engine):
    store(db_engine, step_history())
    report = run_day(db_engine, day(3),
                     mutes=(Mute(service="S", kind=SPIKE, until=day(3), reason="step expected"),))
    spikes = [a for a in report.alerts if a.kind == SPIKE]
    assert spikes and all(a.muted and a.mute_reason == "step expected" for a in spikes)
    assert not any(a.muted for a in report.alerts if a.kind != SPIKE)
    assert all(a.status == "continuing" for a in spikes)


# ---- Slack leaves them out ------------------------------------------------------------

def test_muted_alerts_are_absent_from_the_slack_payload():
    alerts = [alert(service="Amazon Quiet", kind=SPIKE),
              dataclasses.replace(alert(service="Amazon Loud"), muted=True, mute_reason="known")]
    payload = json.dumps(build_message(slack_report(alerts)).payload("C1"))
    assert "Amazon Quiet" in payload
    assert "Amazon Loud" not in payload


def test_a_muted_spike_still_makes_its_crossings_echoes_and_both_leave_slack():
    history = _spike_then_crossings()
    alerts = detect_alerts(history, SPIKE_DAY, Rules(lookback_days=100))
    muted = procLifecycle.apply_mutes(alerts, [Mute(service="S", reason="load test", kind=SPIKE)])
    assert {(a.kind, a.muted, a.echo_of) for a in muted} == {
        (SPIKE, True, None), (TREND, False, SPIKE_DAY)}
    message = build_message(slack_report(muted))
    assert "No unusual changes" in json.dumps(message.payload("C1"))
    assert "(2 muted alerts and 2 echoes of spikes left out.)" in json.dumps(message.payload("C1"))


# ---- end to end: the driver with a config file -----------------------------------------

TODAY = dt.date(2026, 11, 23)
RUN_DAY = "2026-11-22"
ECS = "Amazon Elastic Container Service"
RDS = "Amazon Relational Database Service"


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory):
    """The demo account's year, ingested once (no plots, no Slack)."""
    path = tmp_path_factory.mktemp("demo") / "cost_tracking.db"
    backfill(f"sqlite:///{path}", TODAY)
    return path


def test_muted_alerts_stay_in_report_json_and_on_the_site_and_leave_slack(tmp_path, demo_db, clean_env):
    shutil.copy(demo_db, tmp_path / "cost_tracking.db")
    config = tmp_path / "cost.toml"
    config.write_text(
        f'[[mute]]\nservice = "{ECS}"\nreason = "new cluster, expected"\nuntil = 2026-12-31\n\n'
        f'[[mute]]\nservice = "{RDS}"\nreason = "old entry"\nuntil = 2026-10-01\n\n'
        f'[[mute]]\nservice = "Amazon Elastic Container Servce"\nreason = "typo"\n',
        encoding="utf-8")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COST_TRACKING_OUTPUT_DIR", str(tmp_path))
        code = runCostReporting.main(["--demo", "--dry-run", "--config", str(config)], None, TODAY)
    logging.getLogger().handlers.clear()
    assert code == 0

    alerts = json.loads((tmp_path / "site" / "reports" / RUN_DAY / "report.json").read_text())["alerts"]
    ecs = [a for a in alerts if a["service"] == ECS]
    assert ecs and all(a["muted"] and a["mute_reason"] == "new cluster, expected" for a in ecs)
    assert all(not a["muted"] for a in alerts if a["service"] != ECS)
    assert any(a["service"] == RDS for a in alerts)

    payload = json.loads((tmp_path / "slack" / f"{RUN_DAY}.json").read_text())
    texts = [b["text"]["text"] for b in payload["blocks"] if b["type"] == "section"]
    items = [t for t in texts if "MACD crossed" in t or "z-score" in t]  # the alert items
    assert any(t.startswith(f"*{RDS}*") for t in items)
    assert not any(ECS in t for t in items)   # (it may still top the spend summary)
    assert "3 new alerts" in payload["text"]

    page = (tmp_path / "site" / "reports" / RUN_DAY / "index.html").read_text()
    assert ECS in page and "muted: new cluster, expected" in page

    log_text = (tmp_path / "logs" / "cost_tracking.log").read_text()
    assert f"service '{RDS}' (old entry) expired on 2026-10-01" in log_text
    assert "WARNING procLifecycle: mute entry for service 'Amazon Elastic Container Servce'" in log_text
