"""Bad input is refused or handled, end to end through the driver.

Settings: one line on stderr naming what is wrong, exit 2, nothing written (the settings
module's own tests cover each parser; these pin what a cron user sees).
Cost Explorer answers of unexpected shapes: nothing of them is stored, the report comes
from stored data marked stale, exit 3, as when Cost Explorer is down.
Names with any characters: intact in the database, escaped on the site and in Slack.
"""
from __future__ import annotations

import datetime as dt
import html
import json
import re
import sqlite3

import pytest

from _util.names import visible_controls
from _util.slack.blocks import mrkdwn_name
from tests.ce_standin import CostExplorerStandIn
from tests.ops_support import (
    DAY,
    QUIET,
    TODAY,
    MangledDemo,
    copy_template,
    cost_rows,
    run_bot,
    slack_env,
    table_dump,
    template_db,
)
from tests.slack_standin import running_standin

NEXT_TODAY = TODAY + dt.timedelta(days=1)
NEXT_DAY = DAY + dt.timedelta(days=1)


# ---------------------------------------------------------------- settings

def _config(tmp_path, text: str) -> str:
    path = tmp_path / "bot.toml"
    path.write_text(text)
    return str(path)


@pytest.mark.parametrize("args,env,toml,expected", [
    ([], {}, "z = [\n", "is not valid TOML"),
    ([], {}, 'z = 3.0\nslack_chanel = "C1"\n', "unknown setting(s): slack_chanel"),
    ([], {}, "lookback_days = 30\n", "lookback_days in {config} is '30'; allowed: a whole number from 35 to 390"),
    (["--z", "100"], {}, None, "--z is '100'; allowed: a number from 0.5 to 50"),
    ([], {"COST_TRACKING_LOG_MAX_BYTES": "10"}, None, "COST_TRACKING_LOG_MAX_BYTES is '10'"),
    ([], {"COST_TRACKING_LOCK_TIMEOUT_SECONDS": "-5"}, None, "COST_TRACKING_LOCK_TIMEOUT_SECONDS is '-5'"),
    ([], {"COST_TRACKING_SLACK_MAX_RETRIES": "11"}, None, "COST_TRACKING_SLACK_MAX_RETRIES is '11'"),
    ([], {"COST_TRACKING_PLOT_WORKERS": "0"}, None, "COST_TRACKING_PLOT_WORKERS is '0'"),
    (["--date", "2027-01-01"], {}, None, "--date 2027-01-01 has no complete cost data yet; the latest day is 2026-11-22"),
    (["--date", "2025-01-01"], {}, None, "older than Cost Explorer keeps daily data (oldest 2025-10-24); use --skip-fetch"),
    ([], {"COST_TRACKING_METRIC": "UsageQuantity"}, None, "COST_TRACKING_METRIC is 'UsageQuantity'; allowed: one of UnblendedCost"),
    ([], {}, 'metric = "Unblended"\n', "metric in {config} is 'Unblended'"),
    ([], {"COST_TRACKING_GROUP_BY": "SERVICE"}, None, "COST_TRACKING_GROUP_BY is 'SERVICE'; allowed: TAG:<tag key>"),
    ([], {"COST_TRACKING_GROUP_BY": "AZ"}, None, "COST_TRACKING_GROUP_BY is 'AZ'"),
    ([], {"SLACK_BOT_TOKEN": "xoxb-1-2-abc"}, None, "SLACK_BOT_TOKEN is set but COST_TRACKING_SLACK_CHANNEL is not"),
    ([], {"COST_TRACKING_S3_PREFIX": "../../x"}, None, "COST_TRACKING_S3_PREFIX is '../../x'; allowed: a key prefix such as reports/cost (no leading /, no empty, . or .. segments)"),
    ([], {"COST_TRACKING_S3_PREFIX": "/reports"}, None, "COST_TRACKING_S3_PREFIX is '/reports'"),
    ([], {}, 's3_prefix = "reports/../../x"\n', "s3_prefix in {config} is 'reports/../../x'"),
], ids=lambda v: None)
def test_bad_settings_exit_2_with_one_line_and_write_nothing(tmp_path, clean_env, capsys, args, env,
                                                             toml, expected):
    out = tmp_path / "out"
    if toml is not None:
        config = _config(tmp_path, toml)
        args = [*args, "--config", config]
        expected = expected.format(config=config)
    code = run_bot(["--demo", *args], out, TODAY, **env)
    captured = capsys.readouterr()
    assert code == 2
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert expected in lines[0]
    assert not out.exists()


def test_an_unknown_cost_tracking_variable_is_named_in_a_warning(tmp_path, tmp_path_factory, clean_env, capsys):
    copy_template(tmp_path_factory, "demo", tmp_path)
    code = run_bot(["--demo", "--dry-run", "--skip-fetch"], tmp_path, TODAY, **QUIET,
                   COST_TRACKING_SLACK_CHANEL="C1", COST_TRACKING_ZSCORE="4")
    assert code == 0
    assert ("ignoring unknown environment variable(s) COST_TRACKING_SLACK_CHANEL, "
            "COST_TRACKING_ZSCORE") in capsys.readouterr().err


def _untagged(response):
    for period in response["ResultsByTime"]:
        for group in period["Groups"]:
            group["Keys"][1] = group["Keys"][1].split("$", 1)[0] + "$"


def test_a_tag_key_the_account_does_not_have_stores_every_cost_as_untagged(
        tmp_path, tmp_path_factory, clean_env):
    """Cost Explorer accepts any tag key and answers "Key$" (untagged) for every group:
    nothing to refuse, and nothing lost: a service's groups merge into one "" row a day."""
    with CostExplorerStandIn(TODAY) as ce:
        ce.demo = MangledDemo(ce.demo, _untagged)
        code = run_bot(["--dry-run"], tmp_path, TODAY, **QUIET, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       COST_TRACKING_LOOKBACK_DAYS="35", COST_TRACKING_GROUP_BY="TAG:NoSuchTagKey")
    assert code == 0
    rows = cost_rows(tmp_path / "cost_tracking.db")
    assert {r[3] for r in rows} == {""}
    keys = [(r[0], r[2]) for r in rows]
    assert len(keys) == len(set(keys))
    usual = cost_rows(template_db(tmp_path_factory, "aws"), DAY, DAY)
    assert sum(r[4] for r in rows if r[0] == DAY.isoformat()) == pytest.approx(sum(r[4] for r in usual))


# ---------------------------------------------------------------- Cost Explorer answers

def _first_group(response: dict) -> dict:
    return next(g for period in response["ResultsByTime"] for g in period["Groups"])


def _drop_metric(response):
    _first_group(response)["Metrics"] = {}


def _text_amount(response):
    _first_group(response)["Metrics"]["UnblendedCost"]["Amount"] = "12,50"


def _hours_unit(response):
    _first_group(response)["Metrics"]["UnblendedCost"]["Unit"] = "Hrs"


def _no_time_period(response):
    del response["ResultsByTime"][0]["TimePeriod"]


def _day_out_of_range(response):
    response["ResultsByTime"][0]["TimePeriod"] = {"Start": "2026-06-01", "End": "2026-06-02"}


@pytest.mark.parametrize("mangle,message", [
    (_drop_metric, "returned a group without UnblendedCost on 2026-11-21"),
    (_text_amount, "returned a non-numeric amount '12,50' on 2026-11-21"),
    (_hours_unit, "returned the unit 'Hrs' on 2026-11-21"),
    (_no_time_period, "returned a period without a valid start date"),
    (_day_out_of_range, "returned 2026-06-01, outside the requested 2026-11-21..2026-11-23"),
], ids=lambda v: v.__name__.strip("_") if callable(v) else None)
def test_an_unusable_cost_explorer_answer_changes_no_stored_row_and_reports_stale_data(
        tmp_path, tmp_path_factory, clean_env, capsys, mangle, message):
    db = copy_template(tmp_path_factory, "aws", tmp_path)
    before = table_dump(db, "cost_daily"), table_dump(db, "cost_source")
    with CostExplorerStandIn(NEXT_TODAY) as ce:
        ce.demo = MangledDemo(ce.demo, mangle)
        code = run_bot(["--dry-run"], tmp_path, NEXT_TODAY, **QUIET,
                       AWS_ENDPOINT_URL_COST_EXPLORER=ce.url)
        assert len(ce.requests) == 1  # not retried: asking again would bill again for the same
    assert code == 3
    assert (table_dump(db, "cost_daily"), table_dump(db, "cost_source")) == before
    err = capsys.readouterr().err
    partial = [ln for ln in err.splitlines() if ln.startswith("partial: ")]
    assert len(partial) == 1 and message in partial[0] and "nothing was stored" in partial[0]
    report = json.loads((tmp_path / "site" / "reports" / DAY.isoformat() / "report.json").read_text())
    assert report["stale"] is True
    payload = json.loads((tmp_path / "slack" / f"{NEXT_DAY}.json").read_text())
    assert "data may be stale" in payload["text"]


def _credit(response):
    _first_group(response)["Metrics"]["UnblendedCost"]["Amount"] = "-12.5"


def test_a_negative_amount_is_stored_as_a_credit(tmp_path, tmp_path_factory, clean_env):
    db = copy_template(tmp_path_factory, "aws", tmp_path)
    with CostExplorerStandIn(NEXT_TODAY) as ce:
        ce.demo = MangledDemo(ce.demo, _credit)
        code = run_bot(["--dry-run"], tmp_path, NEXT_TODAY, **QUIET, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url)
    assert code == 0
    day = dt.date(2026, 11, 21)
    assert -12.5 in [r[4] for r in cost_rows(db, day, day)]


# ---------------------------------------------------------------- names with any characters

LONG = "Служба " + "Ж" * 293  # 300 characters, not Latin
SERVICE_NAMES = {
    "Amazon Elastic Compute Cloud - Compute": 'EC2 <script>alert("x")</script> & Co',
    "Amazon Simple Storage Service": "S3 'single' \"double\" / slash \\ back",
    "AWS Lambda": "Lambda 🚀 emoji ✨",
    "Amazon CloudFront": "CloudFront\nsecond line\tand a tab",
    "Elastic Load Balancing": LONG,
    "AmazonCloudWatch": "監視 CloudWatch 日本語",
    "AWS Glue": "*bold* _it_ ~strike~ `code` <!channel> <@U123ABC>",
    "Amazon Elastic Container Service": "ECS | pipe <http://evil.example|click me>",
}
TAG_VALUES = {
    "web-prod": 'web/prod <i>&"quoted"',
    "api-prod": "api 🚀 ü/ß \u202eright-to-left\x00nul\x01soh",  # ECS's spike group on DAY
    "data-lake": "d" * 256,
    "static-site": "static\nsite",
}


def _rename(response):
    for period in response["ResultsByTime"]:
        for group in period["Groups"]:
            service, tag = group["Keys"]
            key, value = tag.split("$", 1)
            group["Keys"] = [SERVICE_NAMES.get(service, service), f"{key}${TAG_VALUES.get(value, value)}"]


def test_names_with_any_characters_reach_the_database_site_and_slack_intact_and_escaped(
        tmp_path, clean_env):
    with CostExplorerStandIn(TODAY) as ce, running_standin() as slack:
        ce.demo = MangledDemo(ce.demo, _rename)
        code = run_bot([], tmp_path, TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       COST_TRACKING_LOOKBACK_DAYS="90", COST_TRACKING_MIN_DAILY_USD="1000000000",
                       COST_TRACKING_SITE_URL="https://costs.example.com/site/", **slack_env(slack))
        delivered = slack.delivered()
    assert code == 0

    # The database: every name exactly as Cost Explorer sent it.
    with sqlite3.connect(tmp_path / "cost_tracking.db") as conn:
        services = {r[0] for r in conn.execute("SELECT DISTINCT service FROM cost_daily")}
        groups = {r[0] for r in conn.execute("SELECT DISTINCT group_value FROM cost_daily")}
    assert set(SERVICE_NAMES.values()) <= services
    assert set(TAG_VALUES.values()) <= groups

    # The report: alerts on hostile names, names intact in report.json.
    report_dir = tmp_path / "site" / "reports" / DAY.isoformat()
    report = json.loads((report_dir / "report.json").read_text())
    hostile = [a for a in report["alerts"]
               if a["service"] in SERVICE_NAMES.values() or a["group"] in TAG_VALUES.values()]
    assert len(hostile) >= 2, [a["service"] for a in report["alerts"]]

    # The site: safe, unique file names; every link resolves; names escaped, never markup.
    names = [p.name for p in report_dir.iterdir()]
    assert all(re.fullmatch(r"[a-z0-9][a-z0-9._-]*", n) for n in names), names
    page = (report_dir / "index.html").read_text()
    hrefs = [h for h in re.findall(r'href="([^"]+)"', page) if not h.startswith(("http", "#", "mailto"))]
    assert hrefs
    for href in hrefs:
        assert (report_dir / html.unescape(href)).resolve().exists(), href
    site_html = "\n".join(p.read_text() for p in (tmp_path / "site").rglob("*.html"))
    for raw in ("<script>", "<i>", "<!channel>", "<http://evil"):
        assert raw not in site_html
    for alert in hostile:
        plot_page = (report_dir / alert["plot_url"].rsplit("/", 1)[1]).read_text()
        name = alert["group"] if alert["group"] in TAG_VALUES.values() else alert["service"]
        assert html.escape(visible_controls(name)) in plot_page

    # Slack: delivered once; names escaped for mrkdwn, no mention or link injected.
    assert len(delivered) == 1
    blocks = delivered[0].fields["blocks"]
    texts = json.dumps(blocks, ensure_ascii=False)
    for raw in ("<script>", "<!channel>", "<@U123ABC>", "<http://evil"):
        assert raw not in texts
    shown = [a for a in hostile if a["service"] in SERVICE_NAMES.values()]
    for alert in shown:
        assert mrkdwn_name(alert["service"])[:40] in texts
    urls = [e["url"] for b in blocks for e in ([b.get("accessory")] + b.get("elements", [])) if isinstance(e, dict) and "url" in e]
    assert urls and all(u.startswith("https://costs.example.com/site/reports/2026-11-22/") for u in urls)

    # Control characters inert: a right-to-left override isolated on pages and shown as a
    # marker in Slack; NUL and SOH as visible pictures, never raw bytes (stored exactly).
    bidi_group = TAG_VALUES["api-prod"]
    assert bidi_group in groups
    assert any(a["group"] == bidi_group or a["top_group"] == bidi_group for a in hostile)
    assert "\x00" not in site_html and "\x01" not in site_html
    assert "<bdi>api 🚀 ü/ß \u202eright-to-left␀nul␁soh</bdi>" in page
    shown_text = "".join(b["text"]["text"] for b in blocks if b["type"] == "section")
    assert "\u202e" not in shown_text and "api 🚀 ü/ß \\u202eright-to-left" in shown_text


# ---------------------------------------------------------------- days not stored

@pytest.mark.parametrize("template,line", [
    ("aws", "error: --skip-fetch: the database holds no costs for 2026-11-24 (it holds "
            "2025-11-23..2026-11-22; the newest stored day is 2026-11-22): run without "
            "--skip-fetch to fetch it, or use --date 2026-11-22"),
    (None, "error: --skip-fetch: the database holds no costs yet; run without --skip-fetch "
           "first to fetch them"),
], ids=["after-the-newest-day", "empty-database"])
def test_skip_fetch_for_a_day_the_database_does_not_hold_is_refused_and_nothing_is_made(
        tmp_path, tmp_path_factory, clean_env, capsys, template, line):
    if template:
        copy_template(tmp_path_factory, template, tmp_path)
    with running_standin() as slack:
        code = run_bot(["--skip-fetch"], tmp_path, dt.date(2026, 11, 25), **slack_env(slack))
        assert slack.requests == []
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == line
    assert not (tmp_path / "site").exists() and not (tmp_path / "slack").exists()


# ---------------------------------------------------------------- operator mistakes

@pytest.mark.parametrize("setup,out,args,line", [
    (lambda p: (p / "afile").write_text("x"), "afile", ["--demo", "--dry-run"],
     "error: cannot write {tmp}/afile (File exists): a file stands where a folder should be "
     "(or the reverse): move it"),
    (lambda p: (p / "conf").mkdir(), "out", ["--demo", "--dry-run", "--config", "{tmp}/conf"],
     "error: --config {tmp}/conf is a folder: name the TOML file in it"),
    (lambda p: (p / "bad.toml").write_bytes(b"z = 3\n\xff\xfe\n"), "out",
     ["--demo", "--dry-run", "--config", "{tmp}/bad.toml"],
     "error: --config file {tmp}/bad.toml is not UTF-8 text (byte 6): save it as UTF-8"),
    (None, "out", ["--demo", "--dry-run", "--skip-fetch", "--date", "0001-01-01"],
     "error: --date 0001-01-01 is before AWS billed anything; the oldest day allowed is "
     "2006-01-01"),
    (None, "out", ["--demo", "--backtest-from", "1999-12-31", "--date", "2026-11-01"],
     "error: --backtest-from 1999-12-31 is before AWS billed anything; the oldest day "
     "allowed is 2006-01-01"),
], ids=["output-is-a-file", "config-is-a-folder", "config-not-utf8", "date-year-1",
        "backtest-before-aws"])
def test_each_operator_mistake_is_one_line_and_exit_2(tmp_path, clean_env, capsys, setup, out,
                                                      args, line):
    if setup:
        setup(tmp_path)
    code = run_bot([a.format(tmp=tmp_path) for a in args], tmp_path / out, TODAY)
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines() == [line.format(tmp=tmp_path)]


def _mount_tiny_disk(path, size: str) -> bool:
    import subprocess

    path.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)
    return done.returncode == 0


def test_a_full_disk_while_writing_pages_is_one_line_and_leaves_no_half_file(
        tmp_path, tmp_path_factory, clean_env, capsys):
    import subprocess

    disk = tmp_path / "disk"
    if not _mount_tiny_disk(disk, "400k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        db = copy_template(tmp_path_factory, "demo", tmp_path / "db")
        code = run_bot(["--demo", "--dry-run", "--skip-fetch"], disk / "out", TODAY,
                       COST_TRACKING_DB_URL=f"sqlite:///{db}")
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1]
        assert code == 2, err[-2000:]
        assert last.startswith(f"error: cannot write {disk / 'out'}/")
        assert last.endswith("(No space left on device): free space on that disk (or set "
                             "COST_TRACKING_OUTPUT_DIR to another one)")
        assert "Logging error" not in err and "Traceback" not in err
        files = [p for p in (disk / "out").rglob("*") if p.is_file()]
        assert not [p for p in files if p.name.endswith(".tmp")]
        assert not [p for p in files if p.suffix in (".png", ".html", ".json") and p.stat().st_size == 0]
    finally:
        import logging

        for handler in logging.getLogger().handlers:  # the log file is on the small disk
            handler.close()
        logging.getLogger().handlers.clear()
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_read_only_output_folder_is_one_line_before_the_run_starts(tmp_path, clean_env, capsys):
    import subprocess

    disk = tmp_path / "ro"
    if not _mount_tiny_disk(disk, "100k"):
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True, capture_output=True)
        code = run_bot(["--demo", "--dry-run"], disk / "out", TODAY)
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        assert err == [f"error: cannot write {disk / 'out'} (Read-only file system): let the "
                       "bot's user write there, or set COST_TRACKING_OUTPUT_DIR to a folder it "
                       "can write"]
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)
