"""Every team its own digest: [[route]] entries send each channel its alerts and figures.

Runs go through real boto3 to the Cost Explorer stand-in (the demo account, with one
service renamed to something hostile) and post to the Slack stand-in; the database is a
real SQLite file. The day (2026-11-22) has the demo's planted ECS spike and RDS trends.
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import sqlite3
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

from _util.errors import EXIT_PARTIAL, EXIT_USAGE
from _util.sources.demo_account import SERVICES, DemoAccount, DemoCostExplorer
from tests.ce_standin import CostExplorerStandIn
from tests.ops_support import DAY, TODAY, backfill, run_bot, slack_env
from tests.slack_standin import running_standin

HOSTILE = "<!channel> Amazon Elastic Container Service <@U1>"
ACCOUNT = DemoAccount([dataclasses.replace(s, name=HOSTILE)
                       if s.name == "Amazon Elastic Container Service" else s for s in SERVICES])
CONFIG = '''
slack_channel = "C0OPS"

[[route]]
name = "platform"
channel = "C0PLAT"
service = ["*Elastic Container Service*", "Amazon Elastic Kubernetes Service"]
mention = ["U0PLAT1", "S0TEAM1"]

[[route]]
name = "data"
channel = "C0DATA"
group = "analytics-*"

[[route]]
name = "quiet"
channel = "C0QUIET"
service = "AWS Secrets Manager"
'''


def _demo(today: dt.date = TODAY) -> DemoCostExplorer:
    return DemoCostExplorer(today, ACCOUNT)


@pytest.fixture
def routed(tmp_path, clean_env):
    """A backfilled database, the config file, and a function that runs the day."""
    backfill(f"sqlite:///{tmp_path / 'cost_tracking.db'}", account="aws", client=_demo())
    config = tmp_path / "bot.toml"
    config.write_text(CONFIG)

    def run(slack, *args: str, **env: str) -> int:
        with CostExplorerStandIn(TODAY) as ce:
            ce.demo = _demo()
            settings = {k: v for k, v in slack_env(slack).items() if k != "COST_TRACKING_SLACK_CHANNEL"}
            return run_bot(["--config", str(config), *args], tmp_path, TODAY,
                           AWS_ENDPOINT_URL_COST_EXPLORER=ce.url, **settings, **env)
    return tmp_path, run


def _report(out: Path) -> dict:
    return json.loads((out / "site" / "reports" / DAY.isoformat() / "report.json").read_text())


def _posted(slack, channel: str) -> list[dict]:
    return [r.fields for r in slack.delivered() if r.fields.get("channel") == channel]


def _matches(alert: dict, services=(), groups=()) -> bool:
    group = alert["group"] if alert["group"] is not None else alert["top_group"]
    return ((not services or any(fnmatchcase(alert["service"], p) for p in services))
            and (not groups or (group is not None and any(fnmatchcase(group, p) for p in groups))))


def test_each_channel_gets_exactly_its_alerts_and_figures(routed, capsys):
    out, run = routed
    with running_standin() as slack:
        assert run(slack) == 0
        posted = {c: _posted(slack, c) for c in ("C0OPS", "C0PLAT", "C0DATA", "C0QUIET")}
    report = _report(out)
    routes = {r["name"]: r for r in report["routes"]}
    assert set(routes) == {"platform", "data", "quiet"}
    keys = lambda alerts: sorted((a["kind"], a["direction"], a["service"], str(a["group"])) for a in alerts)  # noqa: E731
    platform_globs = ("*Elastic Container Service*", "Amazon Elastic Kubernetes Service")
    assert keys(routes["platform"]["alerts"]) == keys(
        [a for a in report["alerts"] if _matches(a, services=platform_globs)])
    assert keys(routes["data"]["alerts"]) == keys(
        [a for a in report["alerts"] if _matches(a, groups=("analytics-*",))])
    assert routes["platform"]["alerts"] and routes["data"]["alerts"] and not routes["quiet"]["alerts"]
    # One message per channel with alerts; none for the quiet route (and the log says so).
    assert [len(posted[c]) for c in ("C0OPS", "C0PLAT", "C0DATA", "C0QUIET")] == [1, 1, 1, 0]
    assert "route quiet (C0QUIET): no alerts today, no message" in capsys.readouterr().err
    # Each route's figures are its slice's spend, as the stored rows add up.
    with sqlite3.connect(out / "cost_tracking.db") as conn:
        rows = conn.execute("SELECT service, group_value, amount FROM cost_daily WHERE "
                            "usage_date = ?", (DAY.isoformat(),)).fetchall()
    platform_day = sum(a for s, _, a in rows if any(fnmatchcase(s, p) for p in platform_globs))
    data_day = sum(a for _, g, a in rows if fnmatchcase(g, "analytics-*"))
    assert routes["platform"]["totals"]["day"] == pytest.approx(platform_day)
    assert routes["data"]["totals"]["day"] == pytest.approx(data_day)
    assert report["totals"]["day"] > platform_day + data_day
    # The route's digest: its header names the route, its mentions come next, then its
    # total; its alerts' buttons go to the day's plot pages.
    (platform,) = posted["C0PLAT"]
    blocks = platform["blocks"]
    assert blocks[0]["text"]["text"].endswith("· platform")
    assert blocks[1]["text"]["text"] == "For <@U0PLAT1> <!subteam^S0TEAM1>"
    assert f"${platform_day:,.2f}" in blocks[2]["text"]["text"]
    assert platform["text"].startswith("<@U0PLAT1> <!subteam^S0TEAM1> AWS costs")
    # Pages and payloads of every route with a message.
    day_dir = out / "site" / "reports" / DAY.isoformat()
    for name in ("platform", "data"):
        assert (out / "slack" / f"{DAY}.{name}.json").exists()
        page = (day_dir / "routes" / f"{name}.html").read_text()
        assert 'href="../' in page and (day_dir / "routes" / f"{name}.slack.html").exists()
    assert not (out / "slack" / f"{DAY}.quiet.json").exists()


def test_names_from_aws_never_mention_anyone_in_any_channel(routed):
    out, run = routed
    with running_standin() as slack:
        assert run(slack) == 0
        delivered = slack.delivered()
    assert {r.fields["channel"] for r in delivered} == {"C0OPS", "C0PLAT", "C0DATA"}
    for request in delivered:
        text = json.dumps(request.fields, ensure_ascii=False)
        assert "<!channel>" not in text and "<@U1>" not in text
    platform = json.dumps([r.fields for r in delivered if r.fields["channel"] == "C0PLAT"])
    assert "&lt;!channel&gt; Amazon Elastic Container Service &lt;@U1&gt;" in platform
    # The only live mentions anywhere are the configured ones.
    for request in delivered:
        text = json.dumps(request.fields)
        live = {m for m in ("<@U0PLAT1>", "<!subteam^S0TEAM1>") if m in text}
        assert live == ({"<@U0PLAT1>", "<!subteam^S0TEAM1>"} if request.fields["channel"] == "C0PLAT" else set())


def test_a_channel_the_bot_is_not_in_is_one_line_and_is_retried_alone(routed, capsys):
    out, run = routed
    with running_standin() as slack:
        slack.refuse["C0DATA"] = "not_in_channel"
        assert run(slack) == EXIT_PARTIAL
        err = capsys.readouterr().err
        assert "route data: the bot is not in channel C0DATA (not_in_channel)" in err
        assert {r.fields["channel"] for r in slack.delivered()} == {"C0OPS", "C0PLAT"}

        slack.refuse.clear()
        assert run(slack) == 0
        assert [r.fields["channel"] for r in slack.delivered()].count("C0DATA") == 1
        assert len(slack.delivered()) == 3  # nothing else posted twice

        assert run(slack, "--force") == 0
        assert len(slack.delivered()) == 6  # --force posts every channel again


def test_the_main_channel_can_get_only_what_no_route_took(routed):
    out, run = routed
    with running_standin() as slack:
        assert run(slack, COST_TRACKING_MAIN_CHANNEL_GETS="unrouted") == 0
        (main,) = _posted(slack, "C0OPS")
    report = _report(out)
    routed_keys = {(a["kind"], a["direction"], a["service"], a["group"])
                   for r in report["routes"] for a in r["alerts"]}
    text = json.dumps(main["blocks"], ensure_ascii=False)
    # The platform team's alerts are not items here (the service still appears among the
    # account's top spenders in the summary line).
    assert "*&lt;!channel&gt; Amazon Elastic Container Service" not in text
    assert "*&lt;!channel&gt; Amazon Elastic Container Service" in json.dumps(
        json.loads((out / "slack" / f"{DAY}.platform.json").read_text())["blocks"], ensure_ascii=False)
    assert any(k not in routed_keys for k in
               ((a["kind"], a["direction"], a["service"], a["group"]) for a in report["alerts"]))


def test_a_quiet_route_that_asks_for_it_gets_a_message(routed, tmp_path):
    out, run = routed
    config = out / "bot.toml"
    config.write_text(CONFIG + "post_when_quiet = true\n")
    with running_standin() as slack:
        assert run(slack) == 0
        (quiet,) = _posted(slack, "C0QUIET")
    assert "No alerts" in json.dumps(quiet["blocks"]) or "no alerts" in quiet["text"]


@pytest.mark.parametrize(("route", "message"), [
    ('name = "x"\nservice = "AWS Glue"', "route entry 1 needs a channel"),
    ('channel = "C0X"', "route 'C0X' matches nothing: give service, group or account"),
    ('channel = "C0OPS"\nservice = "*"', "channel C0OPS is listed twice (also the main channel"),
    ('channel = "C0X"\nservice = "*"\nteam = "data"', "route entry 1 has unknown key(s) team"),
    ('channel = "C0X"\naccount = "1234*"', "matches by account, but costs are grouped by TAG:Name"),
    ('channel = "C0X"\nservice = "*"\nmention = ["@here"]', "mention must list Slack user or group IDs"),
    ('channel = "C0X"\nname = "a/b"\nservice = "*"', "name 'a/b' must be letters, digits"),
])
def test_a_bad_route_is_one_line_naming_the_entry_and_exit_2(route, message, tmp_path, clean_env, capsys):
    config = tmp_path / "bot.toml"
    config.write_text(f'slack_channel = "C0OPS"\n[[route]]\n{route}\n')
    assert run_bot(["--demo", "--dry-run", "--config", str(config)], tmp_path) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if line.strip()]) == 1


def test_routes_by_account_with_linked_account_grouping(tmp_path, clean_env):
    config = tmp_path / "bot.toml"
    config.write_text('slack_channel = "C0OPS"\ngroup_by = "LINKED_ACCOUNT"\n'
                      '[[route]]\nname = "acct"\nchannel = "C0ACCT"\naccount = "1234567890*"\n'
                      'post_when_quiet = true\n')
    assert run_bot(["--demo", "--dry-run", "--config", str(config)], tmp_path) == 0
    report = json.loads(next((tmp_path / "site" / "reports").glob("*/report.json")).read_text())
    (acct,) = report["routes"]
    for alert in acct["alerts"]:
        group = alert["group"] if alert["group"] is not None else alert["top_group"]
        assert fnmatchcase(group, "1234567890*")
    assert list((tmp_path / "slack").glob("*.acct.json"))


def test_a_route_by_service_shows_the_tag_coverage_of_its_services_only(routed):
    """The demo tags all of the platform team's spend (ECS, EKS) and 84% of the account's:
    the platform digest says 100%, the main one the account's share."""
    out, run = routed
    with running_standin() as slack:
        assert run(slack, COST_TRACKING_COVERAGE_TAG="Spend_Category") == 0
        posted = {c: json.dumps(_posted(slack, c)[0]["blocks"]) for c in ("C0OPS", "C0PLAT", "C0DATA")}
    coverage = json.loads((out / "site" / "reports" / DAY.isoformat() / "report.json").read_text())["tag_coverage"]
    platform = [s for s in coverage["by_service"]
                if any(fnmatchcase(s["service"], p) for p in ("*Elastic Container Service*",
                                                               "Amazon Elastic Kubernetes Service"))]
    assert platform and all(s["untagged_usd"] == 0 for s in platform)
    assert "month to date 100.0%" in posted["C0PLAT"]
    assert coverage["mtd_pct"] < 95 and f"month to date {coverage['mtd_pct']:.1f}%" in posted["C0OPS"]
    # A route by group cannot be told its coverage from per-service figures: none shown.
    assert "Tag coverage" not in posted["C0DATA"]
