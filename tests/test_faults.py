"""Faults an unattended daily run must survive, each end to end through the driver.

Cost Explorer is a local stand-in reached by real boto3 (AWS_ENDPOINT_URL_COST_EXPLORER),
Slack a local Web API stand-in, S3 moto, the database a real SQLite file (and the real
MariaDB where COST_TRACKING_TEST_MYSQL_URL is set). Nothing leaves the machine.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import sqlalchemy as sa
from moto import mock_aws

from _util.run.catch_up import missed_days
from _util.sources.cost_explorer import CE_MAX_ATTEMPTS, make_ce_client
from _util.store import delivery_log
from _util.store.database import make_engine, mask_url
from tests.ce_standin import CostExplorerStandIn
from tests.ops_support import (
    DAY,
    QUIET,
    ROOT,
    TODAY,
    backfill,
    copy_template,
    cost_rows,
    run_bot,
    slack_env,
    table_dump,
)
from tests.slack_standin import StandInResponse, running_standin

NEXT_TODAY = TODAY + dt.timedelta(days=1)
NEXT_DAY = DAY + dt.timedelta(days=1)
MYSQL_URL = os.environ.get("COST_TRACKING_TEST_MYSQL_URL")


def _record(out, day=DAY) -> dict:
    return json.loads((out / "runs" / f"{day}.json").read_text())


def _report(out, day) -> dict:
    return json.loads((out / "site" / "reports" / day.isoformat() / "report.json").read_text())


def _all_text(blocks) -> str:
    return json.dumps(blocks, ensure_ascii=False)


# ---------------------------------------------------------------- Cost Explorer

def test_throttled_cost_explorer_is_retried_and_the_run_completes(tmp_path, tmp_path_factory, clean_env):
    copy_template(tmp_path_factory, "aws", tmp_path)
    with CostExplorerStandIn(NEXT_TODAY) as ce:
        ce.script = [(400, "ThrottlingException"), (400, "LimitExceededException")]
        code = run_bot(["--dry-run"], tmp_path, NEXT_TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       **QUIET)
    assert code == 0
    # Two throttled attempts, then the one request a daily run needs.
    assert len(ce.requests) == 3
    assert len({json.dumps(r["body"], sort_keys=True) for r in ce.requests}) == 1
    assert _record(tmp_path, NEXT_DAY)["ce_requests"] == 1
    assert cost_rows(tmp_path / "cost_tracking.db", NEXT_DAY, NEXT_DAY)


def test_cost_explorer_attempts_default_to_8_and_follow_aws_max_attempts(clean_env, monkeypatch):
    assert CE_MAX_ATTEMPTS == 8
    assert make_ce_client().meta.config.retries == {"mode": "standard", "total_max_attempts": 8}
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "3")
    assert make_ce_client().meta.config.retries == {"mode": "standard", "total_max_attempts": 3}


def test_cost_explorer_down_for_good_reports_stored_data_as_stale_and_exits_3(
        tmp_path, tmp_path_factory, clean_env, capsys):
    """A re-run of a day the database already holds (Estimated): the report is that day's."""
    db = copy_template(tmp_path_factory, "aws", tmp_path)
    before = table_dump(db, "cost_daily"), table_dump(db, "cost_source")
    with CostExplorerStandIn(TODAY) as ce, running_standin() as slack:
        ce.fail_forever = (500, "InternalServerException")
        code = run_bot([], tmp_path, TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       AWS_MAX_ATTEMPTS="2", **QUIET, **slack_env(slack))
        assert len(ce.requests) == 2  # AWS_MAX_ATTEMPTS
        delivered = slack.delivered()
    assert code == 3
    assert len(delivered) == 1
    payload = json.loads((tmp_path / "slack" / f"{DAY}.json").read_text())
    assert delivered[0].fields["blocks"] == payload["blocks"]
    assert "data may be stale" in _all_text(payload["blocks"]) and "data may be stale" in payload["text"]
    assert _report(tmp_path, DAY)["stale"] is True
    assert (table_dump(db, "cost_daily"), table_dump(db, "cost_source")) == before
    err = capsys.readouterr().err
    assert "partial: Cost Explorer kept failing (InternalServerException)" in err
    assert _record(tmp_path)["status"] == "partial"
    assert _record(tmp_path)["ce_requests"] == 1  # one call, retried once by botocore


def test_cost_explorer_down_on_the_next_day_reports_the_newest_stored_day_not_a_zero_day(
        tmp_path, tmp_path_factory, clean_env, capsys):
    """The daily case: the run's day was never fetched. Reading it as $0 everywhere would
    alert a spike down on every service; the report is about the newest stored day."""
    db = copy_template(tmp_path_factory, "aws", tmp_path)
    before = table_dump(db, "cost_daily")
    env = {"COST_TRACKING_MIN_DAILY_USD": "1000000000"}  # spikes only: fewer plots
    with CostExplorerStandIn(NEXT_TODAY) as ce, running_standin() as slack:
        ce.fail_forever = (503, "ServiceUnavailableException")
        code = run_bot([], tmp_path, NEXT_TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       AWS_MAX_ATTEMPTS="1", **env, **slack_env(slack))
        delivered = slack.delivered()
    assert code == 3
    report = _report(tmp_path, DAY)
    assert report["stale"] is True and report["date"] == DAY.isoformat()
    assert not (tmp_path / "site" / "reports" / NEXT_DAY.isoformat()).exists()
    spikes_down = [a for a in report["alerts"] if a["kind"] == "spike" and a["direction"] == "down"]
    assert len(spikes_down) <= 2, spikes_down
    # Delivered once, as the digest of the run's day, and recorded as such.
    assert len(delivered) == 1
    payload = json.loads((tmp_path / "slack" / f"{NEXT_DAY}.json").read_text())
    assert delivered[0].fields["blocks"] == payload["blocks"]
    assert "data may be stale" in _all_text(payload["blocks"])
    engine = make_engine(f"sqlite:///{db}")
    assert delivery_log.delivery_status(engine, NEXT_DAY, "C0OPS").delivered
    engine.dispose()
    assert table_dump(db, "cost_daily") == before
    err = capsys.readouterr().err
    assert f"the database holds no costs for {NEXT_DAY} yet: the report is about {DAY}" in err
    assert _record(tmp_path, NEXT_DAY)["exit_code"] == 3


CATCH_UP_ENV = {"COST_TRACKING_MIN_DAILY_USD": "1000000000"}  # spikes only: fewer plots


def _run_with_cost_explorer_down(tmp_path, tmp_path_factory, **env: str) -> None:
    """The run for NEXT_DAY, Cost Explorer down: a stale report about DAY, exit 3."""
    copy_template(tmp_path_factory, "aws", tmp_path)
    with CostExplorerStandIn(NEXT_TODAY) as ce:
        ce.fail_forever = (503, "ServiceUnavailableException")
        assert run_bot([], tmp_path, NEXT_TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       AWS_MAX_ATTEMPTS="1", **CATCH_UP_ENV, **env) == 3


def test_the_day_cost_explorer_was_down_is_reported_by_the_next_run_that_can_read_it(
        tmp_path, tmp_path_factory, clean_env):
    """The stale run reported the day before; a one-day spike on the missed day would
    otherwise never reach anyone. The next good run reports it first, then its own day."""
    env = CATCH_UP_ENV
    third_today = NEXT_TODAY + dt.timedelta(days=1)
    with running_standin() as slack:
        _run_with_cost_explorer_down(tmp_path, tmp_path_factory, **slack_env(slack))
        assert len(slack.delivered()) == 1  # the stale digest, under NEXT_DAY
    failed = _record(tmp_path, NEXT_DAY)
    assert _report(tmp_path, DAY)["stale"] is True

    with CostExplorerStandIn(third_today) as ce, running_standin() as slack:
        code = run_bot([], tmp_path, third_today, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       **env, **slack_env(slack))
        texts = [d.fields["text"] for d in slack.delivered()]
    assert code == 0
    # The missed day first, from fetched data; then the run's own day.
    assert [t.split(":")[0] for t in texts] == [f"AWS costs {NEXT_DAY}",
                                                 f"AWS costs {NEXT_TODAY}"]
    assert "stale" not in texts[0]
    assert _report(tmp_path, NEXT_DAY)["stale"] is False
    caught_up = _record(tmp_path, NEXT_DAY)
    assert caught_up["status"] == "ok" and caught_up["replaces"] == {
        k: failed[k] for k in ("started_at", "exit_code", "status", "error", "ce_requests",
                               "report_day")}
    assert caught_up["replaces"]["exit_code"] == 3
    assert caught_up["replaces"]["report_day"] == DAY.isoformat()  # the stale run's report
    stages = {s["name"]: s for s in _record(tmp_path, NEXT_TODAY)["stages"]}
    assert stages["catch_up"]["counts"]["days"] == [NEXT_DAY.isoformat()]
    # The stale run had written its report into the earlier day's folder: made again.
    assert stages["catch_up"]["counts"]["pages_remade"] == [DAY.isoformat()]
    assert _report(tmp_path, DAY)["stale"] is False

    # Caught up once: the day after posts only its own digest.
    fourth_today = third_today + dt.timedelta(days=1)
    with CostExplorerStandIn(fourth_today) as ce, running_standin() as slack:
        assert run_bot([], tmp_path, fourth_today, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       **env, **slack_env(slack)) == 0
        texts = [d.fields["text"] for d in slack.delivered()]
    assert [t.split(":")[0] for t in texts] == [f"AWS costs {third_today}"]


def test_a_day_whose_run_never_started_is_caught_up_like_a_failed_one(
        tmp_path, tmp_path_factory, clean_env):
    """The bot runs daily from cron; the box was down on NEXT_TODAY: no run, no record for
    NEXT_DAY. The next run reports NEXT_DAY first, then its own day."""
    copy_template(tmp_path_factory, "aws", tmp_path)
    third_today = NEXT_TODAY + dt.timedelta(days=1)
    (tmp_path / "runs").mkdir(exist_ok=True)
    for back in range(1, 15):  # the records of two weeks of scheduled daily runs
        earlier = DAY - dt.timedelta(days=back)
        (tmp_path / "runs" / f"{earlier}.json").write_text(json.dumps(
            {"date": earlier.isoformat(), "scheduled": True, "stages": [], "status": "ok"}))
    with CostExplorerStandIn(TODAY) as ce, running_standin() as slack:
        assert run_bot([], tmp_path, TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       **CATCH_UP_ENV, **slack_env(slack)) == 0
    with CostExplorerStandIn(third_today) as ce, running_standin() as slack:
        assert run_bot([], tmp_path, third_today, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       **CATCH_UP_ENV, **slack_env(slack)) == 0
        texts = [d.fields["text"] for d in slack.delivered()]
    assert [t.split(":")[0] for t in texts] == [f"AWS costs {NEXT_DAY}",
                                                 f"AWS costs {NEXT_TODAY}"]
    caught_up = _record(tmp_path, NEXT_DAY)
    assert caught_up["status"] == "ok" and caught_up["replaces"] is None
    assert _record(tmp_path, DAY)["scheduled"] is True  # the cron run before the outage
    stages = {s["name"]: s for s in _record(tmp_path, NEXT_TODAY)["stages"]}
    assert stages["catch_up"]["counts"]["days"] == [NEXT_DAY.isoformat()]


def test_a_dry_run_does_not_use_up_the_catch_up(tmp_path, tmp_path_factory, clean_env):
    env = CATCH_UP_ENV
    third_today = NEXT_TODAY + dt.timedelta(days=1)
    _run_with_cost_explorer_down(tmp_path, tmp_path_factory)
    with CostExplorerStandIn(third_today) as ce, running_standin() as slack:
        assert run_bot(["--dry-run"], tmp_path, third_today, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       **env, **slack_env(slack)) == 0
        assert slack.delivered() == []
        assert run_bot([], tmp_path, third_today, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       **env, **slack_env(slack)) == 0
        texts = [d.fields["text"] for d in slack.delivered()]
    assert [t.split(":")[0] for t in texts] == [f"AWS costs {NEXT_DAY}", f"AWS costs {NEXT_TODAY}"]


def test_a_delivered_day_re_run_while_cost_explorer_is_down_is_not_posted_again(
        tmp_path, tmp_path_factory, clean_env):
    """The re-run reported its own, stored day: nothing was missed."""
    copy_template(tmp_path_factory, "aws", tmp_path)
    env = {"COST_TRACKING_MIN_DAILY_USD": "1000000000"}
    with CostExplorerStandIn(TODAY) as ce, running_standin() as slack:
        assert run_bot([], tmp_path, TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       **env, **slack_env(slack)) == 0
        ce.fail_forever = (503, "ServiceUnavailableException")
        assert run_bot(["--date", DAY.isoformat()], tmp_path, TODAY,
                       AWS_ENDPOINT_URL_COST_EXPLORER=ce.url, AWS_MAX_ATTEMPTS="1",
                       **env, **slack_env(slack)) == 3
        assert len(slack.delivered()) == 1
    with CostExplorerStandIn(NEXT_TODAY) as ce, running_standin() as slack:
        assert run_bot([], tmp_path, NEXT_TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       **env, **slack_env(slack)) == 0
        texts = [d.fields["text"] for d in slack.delivered()]
    assert [t.split(":")[0] for t in texts] == [f"AWS costs {NEXT_DAY}"]


def test_a_catch_up_that_fails_still_lets_the_run_report_its_own_day_and_is_not_retried(
        tmp_path, tmp_path_factory, clean_env, monkeypatch):
    import procPlotting

    env = CATCH_UP_ENV
    third_today = NEXT_TODAY + dt.timedelta(days=1)
    _run_with_cost_explorer_down(tmp_path, tmp_path_factory)
    render = procPlotting.render

    def render_failing_on_the_missed_day(report, *args, **kwargs):
        if report.day == NEXT_DAY:
            raise RuntimeError("disk full")
        return render(report, *args, **kwargs)

    monkeypatch.setattr(procPlotting, "render", render_failing_on_the_missed_day)
    with CostExplorerStandIn(third_today) as ce, running_standin() as slack:
        code = run_bot([], tmp_path, third_today, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       **env, **slack_env(slack))
        texts = [d.fields["text"] for d in slack.delivered()]
    assert code == 3  # partial: the catch-up failed
    assert [t.split(":")[0] for t in texts] == [f"AWS costs {NEXT_TODAY}"]
    assert _record(tmp_path, NEXT_DAY)["status"] == "failed"
    assert "disk full" in _record(tmp_path, NEXT_TODAY)["error"]
    assert missed_days(tmp_path / "runs", NEXT_TODAY, third_today, NEXT_TODAY) == {}


def test_cost_explorer_down_with_an_empty_database_exits_2_with_the_error(tmp_path, clean_env, capsys):
    with CostExplorerStandIn(TODAY) as ce:
        ce.fail_forever = (500, "InternalServerException")
        code = run_bot(["--dry-run"], tmp_path, TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       AWS_MAX_ATTEMPTS="1")
    assert code == 2
    assert "error: Cost Explorer kept failing (InternalServerException)" in capsys.readouterr().err


# ---------------------------------------------------------------- killed mid-write

KILL_ON_INSERT = r"""
import datetime as dt, os, signal, sys
sys.path.insert(0, sys.argv[1])
import sqlalchemy as sa

deleted = []

@sa.event.listens_for(sa.engine.Engine, "before_cursor_execute")
def _kill_mid_write(conn, cursor, statement, parameters, context, executemany):
    text = " ".join(statement.split()).upper()
    if text.startswith("DELETE FROM COST_DAILY"):
        deleted.append(text)
    elif deleted and text.startswith("INSERT INTO COST_DAILY"):
        print("killing myself mid-write", flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

import runCostReporting
sys.exit(runCostReporting.main(["--demo", "--dry-run"], None, dt.date.fromisoformat(sys.argv[2])))
"""


@pytest.fixture(params=["sqlite", "mariadb"])
def kill_db(request, tmp_path, tmp_path_factory):
    """(url, dump) of a demo database backfilled for TODAY: a SQLite copy of the session's
    template, or a database of its own on the MariaDB server."""
    if request.param == "sqlite":
        db = copy_template(tmp_path_factory, "demo", tmp_path)
        yield f"sqlite:///{db}"
        return
    if not MYSQL_URL:
        pytest.skip("COST_TRACKING_TEST_MYSQL_URL is not set (no MariaDB for this run)")
    name = f"cost_kill_{uuid.uuid4().hex[:10]}"
    server = make_engine(MYSQL_URL)
    with server.begin() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
    url = sa.engine.make_url(MYSQL_URL).set(database=name).render_as_string(hide_password=False)
    try:
        backfill(url)
        yield url
    finally:
        with server.begin() as conn:
            conn.execute(sa.text(f"DROP DATABASE IF EXISTS {name}"))
        server.dispose()


def _dump(url: str) -> tuple[list[tuple], list[tuple]]:
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT usage_date, metric, service, group_value, amount, unit, estimated, "
                "fetched_at FROM cost_daily")).all()
            state = conn.execute(sa.text("SELECT * FROM cost_source")).all()
    finally:
        engine.dispose()
    norm = sorted((str(r[0]), r[1], r[2], r[3], round(float(r[4]), 6), r[5], bool(r[6]), str(r[7]))
                  for r in rows)
    return norm, sorted(tuple(map(str, s)) for s in state)


def test_killed_mid_write_leaves_the_previous_state_and_the_next_run_completes(
        kill_db, tmp_path, clean_env):
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    before_rows, before_state = _dump(kill_db)
    env = {**os.environ, "COST_TRACKING_OUTPUT_DIR": str(out), "COST_TRACKING_DB_URL": kill_db,
           **QUIET}
    killed = subprocess.run([sys.executable, "-c", KILL_ON_INSERT, str(ROOT), NEXT_TODAY.isoformat()],
                            env=env, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert "killing myself mid-write" in killed.stdout
    # Whatever the DELETE removed came back: the transaction never committed.
    assert _dump(kill_db) == (before_rows, before_state)

    assert run_bot(["--demo", "--dry-run"], out, NEXT_TODAY, COST_TRACKING_DB_URL=kill_db, **QUIET) == 0
    after, _ = _dump(kill_db)
    keys = [r[:4] for r in after]
    assert len(keys) == len(set(keys))
    fresh = tmp_path / "fresh.db"
    backfill(f"sqlite:///{fresh}", today=NEXT_TODAY)
    fresh_rows = cost_rows(fresh)
    first = fresh_rows[0][0]
    assert [r[:7] for r in after if r[0] >= first] == [(*r[:6], r[6]) for r in fresh_rows]


# ---------------------------------------------------------------- Slack

@pytest.mark.parametrize("next_run_today", [NEXT_TODAY, TODAY], ids=["next-day", "same-day"])
def test_slack_rate_limited_then_down_keeps_the_digest_pending_and_the_next_run_delivers_it_once(
        tmp_path, tmp_path_factory, clean_env, capsys, next_run_today):
    copy_template(tmp_path_factory, "demo", tmp_path)
    with running_standin() as slack:
        env = {**QUIET, **slack_env(slack)}
        slack.script(StandInResponse(429, {"ok": False, "error": "ratelimited"}, {"Retry-After": "1"}),
                     *[StandInResponse(500, "<html>Internal Server Error</html>")] * 2)
        assert run_bot(["--demo"], tmp_path, TODAY, **env) == 3
        # The 429 waited out; each 500 (Slack may have posted) looked for the digest in the
        # channel before the one retry: then gave up.
        assert [(r.method, a.status) for r, a in zip(slack.requests, slack.answers)] == [
            ("chat.postMessage", 429), ("chat.postMessage", 500), ("conversations.history", 200),
            ("chat.postMessage", 500), ("conversations.history", 200)]
        assert slack.delivered() == []
        err = capsys.readouterr().err
        assert "Slack is unavailable (HTTP 500) after retries" in err
        engine = make_engine(f"sqlite:///{tmp_path / 'cost_tracking.db'}")
        pending = delivery_log.delivery_status(engine, DAY, "C0OPS")
        assert pending is not None and not pending.delivered
        saved = json.loads((tmp_path / "slack" / f"{DAY}.json").read_text())

        assert run_bot(["--demo"], tmp_path, next_run_today, **env) == 0
        assert run_bot(["--demo"], tmp_path, next_run_today, **env) == 0  # and again: nothing more
        digests_of_day = [r for r in slack.delivered() if r.fields["blocks"] == saved["blocks"]]
        assert len(digests_of_day) == 1
        assert delivery_log.delivery_status(engine, DAY, "C0OPS").delivered
        days_posted = len({_all_text(r.fields["blocks"]) for r in slack.delivered()})
        assert days_posted == len(slack.delivered()) == (2 if next_run_today == NEXT_TODAY else 1)
        engine.dispose()


# ---------------------------------------------------------------- S3

DENY_PUT = {"Version": "2012-10-17", "Statement": [{
    "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": "arn:aws:s3:::cost-site/*"}]}


@pytest.mark.parametrize("bucket,denied,site_url,line", [
    ("no-such-cost-site", False, None, "partial: S3 bucket no-such-cost-site does not exist"),
    ("no-such-cost-site", False, "https://costs.example.com/", "partial: S3 bucket no-such-cost-site does not exist"),
    ("cost-site", True, None, "partial: S3 denied writing reports/2026-11-22/"),
], ids=["missing-bucket", "missing-bucket-with-site-url", "policy-denies-put"])
def test_s3_refusing_uploads_still_posts_slack_without_links_and_exits_3(
        tmp_path, tmp_path_factory, clean_env, monkeypatch, capsys, bucket, denied, site_url, line):
    copy_template(tmp_path_factory, "demo", tmp_path)
    monkeypatch.delenv("AWS_ENDPOINT_URL")  # moto answers the real endpoint names
    env = {**QUIET, "COST_TRACKING_S3_BUCKET": bucket}
    if site_url:
        env["COST_TRACKING_SITE_URL"] = site_url
    with mock_aws(), running_standin() as slack:
        if denied:
            import boto3
            s3 = boto3.client("s3", region_name="us-east-1")
            s3.create_bucket(Bucket=bucket)
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(DENY_PUT))
        code = run_bot(["--demo"], tmp_path, TODAY, **env, **slack_env(slack))
        delivered = slack.delivered()
    assert code == 3
    assert len(delivered) == 1
    blocks = delivered[0].fields["blocks"]
    assert blocks
    text = _all_text(blocks)
    assert '"url"' not in text and "http" not in text and '"button"' not in text
    lines = [ln for ln in capsys.readouterr().err.splitlines() if bucket in ln and "s3:PutObject" in ln]
    assert lines and lines[-1].startswith(line)
    assert _record(tmp_path)["exit_code"] == 3


def test_s3_upload_working_gives_links_to_the_published_pages(tmp_path, tmp_path_factory, clean_env,
                                                               monkeypatch):
    """The counterpart of the test above: the links are there when the pages arrived."""
    copy_template(tmp_path_factory, "demo", tmp_path)
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with mock_aws(), running_standin() as slack:
        import boto3
        boto3.client("s3", region_name="us-east-1").create_bucket(Bucket="cost-site")
        code = run_bot(["--demo"], tmp_path, TODAY, **QUIET, COST_TRACKING_S3_BUCKET="cost-site",
                       **slack_env(slack))
        keys = {o["Key"] for o in boto3.client("s3", region_name="us-east-1")
                .list_objects_v2(Bucket="cost-site")["Contents"]}
        delivered = slack.delivered()
    assert code == 0
    text = _all_text(delivered[0].fields["blocks"])
    assert "http://cost-site.s3-website-us-east-1.amazonaws.com/reports/2026-11-22/" in text
    assert "reports/2026-11-22/daily-by-service.html" in keys


# ---------------------------------------------------------------- database

def test_a_wrong_database_password_exits_2_naming_the_host_and_never_the_password(tmp_path, clean_env, capsys):
    if not MYSQL_URL:
        pytest.skip("COST_TRACKING_TEST_MYSQL_URL is not set (no MariaDB for this run)")
    url = sa.engine.make_url(MYSQL_URL).set(username="cost_bot_nobody", password="Hunter2-not-ok")
    url = url.render_as_string(hide_password=False)
    code = run_bot(["--demo", "--dry-run"], tmp_path, TODAY, COST_TRACKING_DB_URL=url)
    err = capsys.readouterr().err
    assert code == 2
    host = sa.engine.make_url(MYSQL_URL).host
    assert f"cannot reach the database at {host}" in err and mask_url(url) in err
    assert "Hunter2-not-ok" not in err
    assert "Hunter2-not-ok" not in (tmp_path / "logs" / "cost_tracking.log").read_text()


# ---------------------------------------------------------------- unexpected

def test_an_unexpected_error_exits_1_with_one_line_on_stderr_and_the_traceback_in_the_log(
        tmp_path, tmp_path_factory, clean_env, capsys):
    copy_template(tmp_path_factory, "demo", tmp_path)
    (tmp_path / "site").write_text("a file where the site folder should be")
    code = run_bot(["--demo", "--dry-run", "--skip-fetch"], tmp_path, TODAY, **QUIET)
    assert code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    summary = [ln for ln in err.splitlines() if " ERROR " in ln or ln.startswith("error:")]
    assert len(summary) == 1 and summary[0].startswith("error: unexpected ")
    assert "traceback in" in summary[0]
    log_text = (tmp_path / "logs" / "cost_tracking.log").read_text()
    assert "Traceback (most recent call last)" in log_text
    assert summary[0].split(" (traceback in")[0].removeprefix("error: ") in log_text
    record = _record(tmp_path)
    assert record["exit_code"] == 1 and record["status"] == "failed"


# ---------------------------------------------------------------- the run lock

HOLD_LOCK = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from pathlib import Path
from _util.run.run_lock import run_lock
with run_lock(Path(sys.argv[2])):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""

RUN_BOT = r"""
import datetime as dt, sys
sys.path.insert(0, sys.argv[1])
import runCostReporting
sys.exit(runCostReporting.main(sys.argv[3:], None, dt.date.fromisoformat(sys.argv[2])))
"""


def _hold_lock(out, seconds: float) -> subprocess.Popen:
    """Another process holding the output folder's lock for `seconds`."""
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(ROOT), str(out / ".run.lock"),
                               str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_a_second_run_waits_for_the_lock_and_runs_once_the_first_releases_it(
        tmp_path, tmp_path_factory, clean_env):
    copy_template(tmp_path_factory, "demo", tmp_path)
    holder = _hold_lock(tmp_path, 2.0)
    try:
        started = time.monotonic()
        code = run_bot(["--demo", "--dry-run", "--skip-fetch"], tmp_path, TODAY,
                       COST_TRACKING_LOCK_TIMEOUT_SECONDS="30", **QUIET)
        waited = time.monotonic() - started
    finally:
        holder.wait(timeout=30)
    assert code == 0
    assert waited >= 1.0
    log_text = (tmp_path / "logs" / "cost_tracking.log").read_text()
    assert f"pid {holder.pid}) holds" in log_text and "waiting up to 30s" in log_text
    assert "lock acquired after waiting" in log_text
    assert _record(tmp_path)["exit_code"] == 0


def test_a_run_that_waits_past_the_lock_timeout_exits_4_naming_the_holder(
        tmp_path, tmp_path_factory, clean_env, capsys):
    copy_template(tmp_path_factory, "demo", tmp_path)
    holder = _hold_lock(tmp_path, 60.0)
    try:
        started = time.monotonic()
        code = run_bot(["--demo", "--dry-run"], tmp_path, TODAY, COST_TRACKING_LOCK_TIMEOUT_SECONDS="1")
        waited = time.monotonic() - started
    finally:
        holder.kill()
        holder.wait(timeout=10)
    assert code == 4
    assert 1.0 <= waited < 10
    err = capsys.readouterr().err
    message = f"another run holds {tmp_path / '.run.lock'} (pid {holder.pid}); gave up after waiting 1s"
    assert [ln for ln in err.splitlines() if "another run holds" in ln] == [
        f"error: {message} (COST_TRACKING_LOCK_TIMEOUT_SECONDS)"]
    assert message in (tmp_path / "logs" / "cost_tracking.log").read_text()
    assert not (tmp_path / "runs").exists()


def _spans(log_lines: list[str]) -> dict[str, tuple[int, int]]:
    """Per pid, the first and last line it logged while holding the lock."""
    spans: dict[str, list[int]] = {}
    for i, line in enumerate(log_lines):
        pid = line.split("[", 1)[1].split("]", 1)[0]
        if "runCostReporting: run for" in line or "waiting up to" in line:
            continue  # logged before the lock is taken
        spans.setdefault(pid, []).append(i)
    return {pid: (min(v), max(v)) for pid, v in spans.items()}


def test_two_runs_started_together_never_interleave(tmp_path, tmp_path_factory, clean_env):
    db = copy_template(tmp_path_factory, "demo", tmp_path)
    env = {**os.environ, "COST_TRACKING_OUTPUT_DIR": str(tmp_path),
           "COST_TRACKING_LOCK_TIMEOUT_SECONDS": "120", **QUIET}
    command = [sys.executable, "-c", RUN_BOT, str(ROOT), NEXT_TODAY.isoformat(), "--demo", "--dry-run"]
    # A holder makes sure both runs find the lock taken, however the two start.
    holder = _hold_lock(tmp_path, 10.0)  # longer than a run takes to import and reach the lock
    runs = [subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            for _ in range(2)]
    codes = [run.wait(timeout=120) for run in runs]
    holder.wait(timeout=10)
    assert codes == [0, 0]
    lines = (tmp_path / "logs" / "cost_tracking.log").read_text().splitlines()
    lines = [ln for ln in lines if ln[:4].isdigit()]  # not traceback lines
    spans = _spans(lines)
    assert set(spans) == {str(r.pid) for r in runs}
    (a_start, a_end), (b_start, b_end) = sorted(spans.values())
    assert a_end < b_start
    assert "lock acquired after waiting" in lines[a_start]
    assert "lock acquired after waiting" in lines[b_start]
    keys = [r[:4] for r in cost_rows(db)]
    assert len(keys) == len(set(keys))


def test_cost_explorer_down_never_reports_the_demo_accounts_stored_costs_as_aws(
        tmp_path, tmp_path_factory, clean_env, capsys):
    copy_template(tmp_path_factory, "demo", tmp_path)
    with CostExplorerStandIn(TODAY) as ce:
        ce.fail_forever = (500, "InternalServerException")
        code = run_bot(["--dry-run"], tmp_path, TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       AWS_MAX_ATTEMPTS="1")
    assert code == 2
    assert "error: Cost Explorer kept failing" in capsys.readouterr().err
    assert not (tmp_path / "site").exists()


HOLD_DB_LOCK = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
from _util.store.database_lock import database_lock
with database_lock(sys.argv[2]):
    print("held", flush=True)
    time.sleep(float(sys.argv[3]))
"""


def _database_urls(tmp_path) -> list[str]:
    urls = [f"sqlite:///{tmp_path / 'shared' / 'costs.db'}"]
    if os.environ.get("COST_TRACKING_TEST_MYSQL_URL"):
        urls.append(os.environ["COST_TRACKING_TEST_MYSQL_URL"])
    return urls


@pytest.mark.parametrize("backend", ["sqlite", "mariadb"])
def test_two_bots_with_different_output_folders_on_one_database_take_turns(
        tmp_path, clean_env, capsys, backend):
    urls = dict(zip(["sqlite", "mariadb"], _database_urls(tmp_path)))
    if backend not in urls:
        pytest.skip("COST_TRACKING_TEST_MYSQL_URL is not set")
    url = urls[backend]
    (tmp_path / "shared").mkdir(exist_ok=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_DB_LOCK, str(ROOT), url, "30"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code = run_bot(["--demo", "--dry-run"], tmp_path / "second-folder", TODAY,
                       COST_TRACKING_DB_URL=url, **QUIET)
        assert code == 4
        err = capsys.readouterr().err.strip().splitlines()[-1]
        assert err.startswith("error: another run holds")
        assert "COST_TRACKING_LOCK_TIMEOUT_SECONDS" in err
    finally:
        holder.kill()
        holder.wait(timeout=10)
    # The holder gone (killed: the lock dies with it), the run goes past the locks (to
    # whatever the shared database holds: no costs yet for the SQLite one, exit 2).
    code = run_bot(["--demo", "--dry-run", "--skip-fetch", "--date", "2026-11-01"],
                   tmp_path / "second-folder", TODAY, COST_TRACKING_DB_URL=url, **QUIET)
    assert code != 4 and "another run holds" not in capsys.readouterr().err
