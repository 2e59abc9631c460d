"""The driver end to end: flags, exit codes, run records, logs and delivery, on the demo."""
from __future__ import annotations

import datetime as dt
import json
import logging
import shutil
import threading

import pytest

import runCostReporting
from _util.run.run_lock import run_lock
from tests.ce_standin import CostExplorerStandIn
from tests.slack_standin import error, running_standin

TODAY = dt.date(2026, 11, 23)
DAY = "2026-11-22"


@pytest.fixture(scope="session")
def demo_db_template(tmp_path_factory):
    """A demo database backfilled once; tests copy it instead of fetching a year again."""
    out = tmp_path_factory.mktemp("template")
    code = runCostReporting.main(["--demo", "--dry-run"], {"COST_TRACKING_OUTPUT_DIR": str(out)}, TODAY)
    logging.getLogger().handlers.clear()
    assert code == 0
    return out / "cost_tracking.db"


@pytest.fixture
def out(tmp_path, demo_db_template, clean_env):
    shutil.copy(demo_db_template, tmp_path / "cost_tracking.db")
    return tmp_path


def _run(args, out, today=TODAY, **env):
    """Run the driver with `env` in the process environment (boto3 reads it from there)."""
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {"COST_TRACKING_OUTPUT_DIR": str(out), **env}.items():
            mp.setenv(name, value)
        return runCostReporting.main(args, None, today)


def test_demo_run_backfills_a_year_and_writes_every_output(tmp_path, clean_env, capsys):
    assert _run(["--demo", "--dry-run"], tmp_path) == 0
    record = json.loads((tmp_path / "runs" / f"{DAY}.json").read_text())
    assert record["exit_code"] == 0 and record["status"] == "ok"
    assert record["ce_requests"] == 8 and record["rows_upserted"] > 14_000
    stages = [s["name"] for s in record["stages"]]
    assert stages[:7] == ["ingest", "load", "detect", "summarise", "lifecycle", "sections", "plot"]
    assert all(s["seconds"] >= 0 for s in record["stages"])
    assert (tmp_path / "cost_tracking.db").exists()
    assert (tmp_path / "site" / "index.html").exists()
    assert json.loads((tmp_path / "site" / "reports" / DAY / "report.json").read_text())["date"] == DAY
    assert json.loads((tmp_path / "slack" / f"{DAY}.json").read_text())["blocks"]
    assert "run for 2026-11-22" in (tmp_path / "logs" / "cost_tracking.log").read_text()
    assert capsys.readouterr().out.startswith("ok: report for 2026-11-22")


def test_next_days_run_costs_one_cost_explorer_request(out):
    assert _run(["--demo", "--dry-run", "--date", "2026-11-23"], out, today=TODAY + dt.timedelta(days=1)) == 0
    record = json.loads((out / "runs" / "2026-11-23.json").read_text())
    assert record["ce_requests"] == 1


def test_skip_fetch_makes_no_request(out):
    assert _run(["--demo", "--dry-run", "--skip-fetch"], out) == 0
    record = json.loads((out / "runs" / f"{DAY}.json").read_text())
    assert record["ce_requests"] == 0
    assert "ingest" not in [s["name"] for s in record["stages"]]


def test_help_documents_every_flag_and_exit_code(capsys):
    with pytest.raises(SystemExit) as info:
        runCostReporting.main(["--help"], {}, TODAY)
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--date", "--demo", "--dry-run", "--config", "--force", "--skip-fetch", "--z",
                 "--backtest-from"):
        assert flag in text
    for code in ("0 ", "1 ", "2 ", "3 ", "4 "):
        assert f"\n  {code}" in text


@pytest.mark.parametrize("args,env,message", [
    (["--date", "2026-13-01"], {}, "is not a date"),
    (["--date", "2026-11-23"], {}, "has no complete cost data yet"),
    (["--z", "zero"], {}, "--z is 'zero'"),
    ([], {"COST_TRACKING_METRIC": "Bogus"}, "COST_TRACKING_METRIC is 'Bogus'"),
])
def test_bad_flags_and_settings_exit_2_with_one_line(tmp_path, clean_env, capsys, args, env, message):
    with pytest.raises(SystemExit) if "is not a date" in message else _nothing() as info:
        code = _run(["--demo", *args], tmp_path, **env)
    code = info.value.code if info else code
    err = capsys.readouterr().err
    assert code == 2
    assert message in err


class _nothing:
    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def test_unreachable_database_exits_2_naming_the_host_without_the_password(tmp_path, clean_env, capsys):
    code = _run(["--demo", "--dry-run"], tmp_path,
                COST_TRACKING_DB_URL="mysql+pymysql://bot:hunter22@127.0.0.1:1/costs")
    err = capsys.readouterr().err
    assert code == 2
    assert "cannot reach the database at 127.0.0.1:1" in err
    assert "hunter22" not in err
    assert "hunter22" not in (tmp_path / "logs" / "cost_tracking.log").read_text()
    assert json.loads((tmp_path / "runs" / f"{DAY}.json").read_text())["exit_code"] == 2


def test_no_aws_credentials_exits_2_with_what_to_set(tmp_path, clean_env, monkeypatch, capsys):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code = _run(["--dry-run"], tmp_path)
    assert code == 2
    assert "no AWS credentials found" in capsys.readouterr().err


def test_access_denied_names_the_iam_action(tmp_path, clean_env, capsys):
    with CostExplorerStandIn(TODAY) as standin:
        standin.fail_forever = (400, "AccessDeniedException")
        code = _run(["--dry-run"], tmp_path, AWS_ENDPOINT_URL_COST_EXPLORER=standin.url)
    assert code == 2
    assert "ce:GetCostAndUsage" in capsys.readouterr().err


def test_real_aws_path_runs_end_to_end_through_the_endpoint_setting(tmp_path, clean_env):
    with CostExplorerStandIn(TODAY) as standin:
        code = _run(["--dry-run"], tmp_path, AWS_ENDPOINT_URL_COST_EXPLORER=standin.url)
    assert code == 0
    record = json.loads((tmp_path / "runs" / f"{DAY}.json").read_text())
    assert record["ce_requests"] == len(standin.requests) == 8


def test_slack_is_posted_once_per_day_and_force_posts_again(out):
    with running_standin() as slack:
        env = dict(SLACK_BOT_TOKEN="xoxb-test-token-1", COST_TRACKING_SLACK_CHANNEL="C123",
                   COST_TRACKING_SLACK_API_URL=slack.base_url)
        assert _run(["--demo"], out, **env) == 0
        assert _run(["--demo"], out, **env) == 0
        assert len(slack.delivered()) == 1
        assert _run(["--demo", "--force"], out, **env) == 0
        assert len(slack.delivered()) == 2
        request = slack.delivered()[0]
        assert request.fields["channel"] == "C123"
        assert request.headers["Authorization"] == "Bearer xoxb-test-token-1"
    saved = json.loads((out / "slack" / f"{DAY}.json").read_text())
    assert request.fields["blocks"] == saved["blocks"]
    assert "xoxb-test-token-1" not in (out / "logs" / "cost_tracking.log").read_text()


def test_dry_run_posts_nothing(out):
    with running_standin() as slack:
        code = _run(["--demo", "--dry-run"], out, SLACK_BOT_TOKEN="xoxb-t", COST_TRACKING_SLACK_CHANNEL="C1",
                    COST_TRACKING_SLACK_API_URL=slack.base_url)
        assert code == 0
        assert slack.posted() == []


@pytest.mark.parametrize("code_name,line", [
    ("invalid_auth", "SLACK_BOT_TOKEN"),
    ("channel_not_found", "COST_TRACKING_SLACK_CHANNEL"),
])
def test_slack_errors_exit_3_with_what_to_fix(out, capsys, code_name, line):
    with running_standin() as slack:
        slack.script(error(code_name))
        code = _run(["--demo"], out, SLACK_BOT_TOKEN="xoxb-t", COST_TRACKING_SLACK_CHANNEL="C1",
                    COST_TRACKING_SLACK_API_URL=slack.base_url)
    assert code == 3
    err = capsys.readouterr().err
    assert line in err and code_name in err
    record = json.loads((out / "runs" / f"{DAY}.json").read_text())
    assert record["exit_code"] == 3 and record["status"] == "partial"


def test_a_second_run_while_one_holds_the_lock_exits_4_and_leaves_its_record(out, capsys):
    held = threading.Event()
    release = threading.Event()

    def hold():
        with run_lock(out / ".run.lock"):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(5)
    try:
        code = _run(["--demo", "--dry-run"], out)
    finally:
        release.set()
        thread.join()
    assert code == 4
    assert "another run holds" in capsys.readouterr().err
    assert not (out / "runs" / f"{DAY}.json").exists()


def test_missed_days_are_recent_days_whose_fetch_failed_and_that_are_stored_now(tmp_path):
    from _util.run.catch_up import missed_days

    day = dt.date(2026, 11, 20)
    today = day + dt.timedelta(days=1)

    def record(back: int, ingest_status: str | None, report_back: int | None = None,
               text: str | None = None) -> None:
        d = day - dt.timedelta(days=back)
        stages = [] if ingest_status is None else [{"name": "ingest", "status": ingest_status}]
        report_day = None if report_back is None else (day - dt.timedelta(days=report_back)).isoformat()
        (tmp_path / f"{d}.json").write_text(
            text or json.dumps({"stages": stages, "report_day": report_day}))

    record(8, "failed")                    # older than the 7 days a digest is news
    # 7: no record, and none from a scheduled run a week or two before: not missed
    record(6, "failed", report_back=6)     # a stored day re-run while CE was down: its own report
    record(5, "failed", report_back=7)     # reported an earlier day: missed
    record(4, "ok", report_back=4)
    record(3, None, report_back=3)         # --skip-fetch: nothing was fetched
    record(2, "failed", text="{not json")
    record(1, "failed")                    # no report at all (exit 2); not stored yet below
    assert list(missed_days(tmp_path, day, today, day - dt.timedelta(days=2))) == [
        day - dt.timedelta(days=5)]
    assert list(missed_days(tmp_path, day, today, day)) == [
        day - dt.timedelta(days=5), day - dt.timedelta(days=1)]
    assert list(missed_days(tmp_path, day, today, None)) == []
    # A --date re-run of an old day never catches up days older than a week before yesterday.
    assert list(missed_days(tmp_path, day, today + dt.timedelta(days=5), day)) == [day - dt.timedelta(days=1)]
    assert list(missed_days(tmp_path, day, today + dt.timedelta(days=30), day)) == []


def test_a_day_without_a_record_is_missed_only_on_a_weekday_the_bot_is_run_on(tmp_path):
    from _util.run.catch_up import missed_days

    day = dt.date(2026, 11, 20)   # a Friday
    today = day + dt.timedelta(days=1)

    def ran(back: int, **record) -> None:
        d = day - dt.timedelta(days=back)
        (tmp_path / f"{d}.json").write_text(json.dumps({"stages": [], **record}))

    # Scheduled runs on the weekdays of the two weeks before, none at weekends.
    for back in range(7, 21):
        if (day - dt.timedelta(days=back)).weekday() < 5:
            ran(back, scheduled=True)
    ran(5, scheduled=False)       # a --date re-run or a dry run: not a sign of the schedule
    (tmp_path / "backtest-2026-01-01_2026-02-01.json").write_text("{}")
    # No record from day-6 on: the box was down. Weekdays are missed; the weekend is
    # not (the bot is not run then); day-5 has a record of its own.
    missed = list(missed_days(tmp_path, day, today, day))
    assert missed == [day - dt.timedelta(days=n) for n in (4, 3, 2, 1)]
    assert (day - dt.timedelta(days=6)).weekday() == 5  # Saturday 14 Nov: not missed
    # A fresh install, or one used only for dry runs: nothing is missed.
    assert missed_days(tmp_path / "none", day, today, day) == {}
