"""Logs rotate, and no secret reaches the logs, stderr or any output file, even when a run
goes wrong in the places that handle the Slack token, AWS keys and the database URL."""
from __future__ import annotations

import logging

import pytest
from moto import mock_aws

from _util.logging_setup import LOG_BACKUPS, setup_logging
from tests.ce_standin import CostExplorerStandIn
from tests.ops_support import DAY, QUIET, TODAY, copy_template, run_bot
from tests.slack_standin import error, running_standin

SLACK_TOKEN = "xoxb-112233445566-778899001122-SeCrEtSlAcKtOkEnVaLuE"
ACCESS_KEY = "AKIAQWERTYUIOPASDFGH"
SECRET_KEY = "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"
SESSION_TOKEN = "FwoGZXIvYXdzEXAMPLEsessionTOKENvalue0123456789"
DB_PASSWORD = "Db-PaSsWoRd-9931"
SECRETS = (SLACK_TOKEN, ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, DB_PASSWORD)


def _everything_written(out, captured) -> dict[str, str]:
    """Every text the run left behind: logs (rotated ones too), outputs, stdout, stderr."""
    texts = {"stdout": captured.out, "stderr": captured.err}
    for path in out.rglob("*"):
        if path.is_file() and path.suffix != ".png" and path.name != "cost_tracking.db":
            texts[str(path.relative_to(out))] = path.read_text(encoding="utf-8", errors="replace")
    return texts


@pytest.fixture
def secret_env(clean_env, monkeypatch):
    monkeypatch.setenv("SLACK_BOT_TOKEN", SLACK_TOKEN)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_SESSION_TOKEN", SESSION_TOKEN)
    # A run that gets as far as Slack posts to a closed local port, never to slack.com.
    monkeypatch.setenv("COST_TRACKING_SLACK_CHANNEL", "C1")
    monkeypatch.setenv("COST_TRACKING_SLACK_API_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("COST_TRACKING_SLACK_MAX_RETRIES", "0")
    return monkeypatch


def _slack_refuses_the_token(out, monkeypatch):
    with running_standin() as slack:
        slack.script(error("invalid_auth"))
        code = run_bot(["--demo", "--verbose"], out, TODAY, **QUIET, COST_TRACKING_SLACK_API_URL=slack.base_url)
        assert slack.posted()[0].headers["Authorization"] == f"Bearer {SLACK_TOKEN}"
    return code


def _cost_explorer_denies_access(out, monkeypatch):
    with CostExplorerStandIn(TODAY) as ce:
        ce.fail_forever = (400, "AccessDeniedException")
        code = run_bot(["--verbose"], out, TODAY, **QUIET, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url)
        assert ce.requests  # a signed request reached the stand-in
    return code


def _s3_bucket_missing(out, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    with mock_aws():
        return run_bot(["--demo", "--verbose"], out, TODAY, **QUIET,
                       COST_TRACKING_S3_BUCKET="missing-bucket-for-secrets")


def _database_unreachable(out, monkeypatch):
    return run_bot(["--demo", "--verbose"], out, TODAY,
                   COST_TRACKING_DB_URL=f"mysql+pymysql://costbot:{DB_PASSWORD}@127.0.0.1:1/costs")


def _unexpected_error(out, monkeypatch):
    (out / "site").write_text("not a folder")
    return run_bot(["--demo", "--verbose", "--skip-fetch"], out, TODAY, **QUIET)


@pytest.mark.parametrize("scenario,expected_code", [
    (_slack_refuses_the_token, 3),
    (_cost_explorer_denies_access, 2),
    (_s3_bucket_missing, 3),
    (_database_unreachable, 2),
    (_unexpected_error, 1),
], ids=lambda v: v.__name__.strip("_") if callable(v) else str(v))
def test_no_secret_reaches_logs_stderr_or_outputs_when_a_run_fails(
        tmp_path, tmp_path_factory, secret_env, capsys, scenario, expected_code):
    copy_template(tmp_path_factory, "aws" if scenario is _cost_explorer_denies_access else "demo", tmp_path)
    assert scenario(tmp_path, secret_env) == expected_code
    texts = _everything_written(tmp_path, capsys.readouterr())
    assert any(name.startswith("logs/") for name in texts)
    leaks = [(name, secret) for name, text in texts.items() for secret in SECRETS if secret in text]
    assert leaks == []


def test_the_mask_hides_secrets_in_messages_and_tracebacks(tmp_path, secret_env, capsys):
    """The filter itself: secrets from the environment, the extra ones the driver passes
    (the database password), and anything shaped like a token, key id or URL password."""
    setup_logging(tmp_path, extra_secrets=(DB_PASSWORD,), verbose=True)
    log = logging.getLogger("tests.secrets")
    log.info("token %s key %s secret %s", SLACK_TOKEN, ACCESS_KEY, SECRET_KEY)
    log.info("url mysql+pymysql://bot:%s@db.internal/costs", DB_PASSWORD)
    log.info("shapes: xoxb-999-888-unknownTokenValue AKIAZZZZZZZZZZZZZZZZ https://u:pw-in-url@h/")
    try:
        raise RuntimeError(f"failed with {SLACK_TOKEN} and {SESSION_TOKEN} and {DB_PASSWORD}")
    except RuntimeError:
        log.exception("boom")
    logging.getLogger().handlers.clear()
    file_text = (tmp_path / "cost_tracking.log").read_text()
    err = capsys.readouterr().err
    for text in (file_text, err):
        assert "RuntimeError: failed with" in text  # the traceback is there, masked
        for secret in (*SECRETS, "unknownTokenValue", "AKIAZZZZZZZZZZZZZZZZ", "pw-in-url"):
            assert secret not in text
        assert "mysql+pymysql://bot:***@db.internal/costs" in text


def test_the_log_rotates_at_log_max_bytes_and_keeps_five_old_files(tmp_path, tmp_path_factory, clean_env):
    copy_template(tmp_path_factory, "demo", tmp_path)
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "cost_tracking.log").write_text("current-before-run\n" + "x" * 9_980 + "\n")
    for n in range(1, LOG_BACKUPS + 1):
        (logs / f"cost_tracking.log.{n}").write_text(f"backup-{n}\n")
    code = run_bot(["--demo", "--dry-run", "--skip-fetch"], tmp_path, TODAY, **QUIET,
                   COST_TRACKING_LOG_MAX_BYTES="10000")
    assert code == 0
    names = sorted(p.name for p in logs.iterdir())
    assert names == ["cost_tracking.log"] + [f"cost_tracking.log.{n}" for n in range(1, 6)]
    assert (logs / "cost_tracking.log.1").read_text().startswith("current-before-run")
    assert (logs / "cost_tracking.log.2").read_text() == "backup-1\n"
    assert (logs / "cost_tracking.log.5").read_text() == "backup-4\n"  # backup-5 was dropped
    current = (logs / "cost_tracking.log").read_text()
    assert f"run for {DAY}" in current
    assert all(p.stat().st_size <= 10_000 + 1_000 for p in logs.iterdir())



def test_log_timestamps_are_utc_with_a_z(tmp_path, monkeypatch):
    import datetime as dt
    import logging
    import os
    import re
    import time

    from _util.logging_setup import LOG_FILE_NAME, setup_logging

    saved = os.environ.get("TZ")
    os.environ["TZ"] = "America/Los_Angeles"  # a local zone far from UTC
    time.tzset()
    try:
        setup_logging(tmp_path)
        before = dt.datetime.now(dt.timezone.utc)
        logging.getLogger("t").info("hello")
        for handler in logging.getLogger().handlers:
            handler.flush()
        line = (tmp_path / LOG_FILE_NAME).read_text().splitlines()[-1]
    finally:
        logging.getLogger().handlers.clear()
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()
    stamp = re.match(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z \[\d+\] INFO t: hello$", line)
    assert stamp, line
    logged = dt.datetime.fromisoformat(stamp.group(1)).replace(tzinfo=dt.timezone.utc)
    assert abs((logged - before).total_seconds()) < 5
