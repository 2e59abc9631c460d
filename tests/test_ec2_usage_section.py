"""The EC2 instance usage section end to end on the demo (its CloudTrail and EC2 stand-ins
answer like boto3's clients): report.json's `ec2_usage`, the digest, the page and the
link from EC2 alert pages, the store (incremental per day, --force), and a denied region."""
from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pytest

from _util.ec2_intervals import RUN, SPOT_END, STOP, TERMINATE, DayUsage
from _util.sections.ec2_usage import Ec2UsageSection
from _util.sources import demo_ec2
from _util.sources.demo_ec2 import DemoEc2UsageClients, region_events
from _util.sources.ec2_usage import LOOKUP_EVENTS, InstanceDay, InstanceFacts, RegionDay
from _util.store.instance_usage import (
    day_before,
    fetched_regions,
    load_day,
    save_region_day,
)
from tests.ops_support import DAY, QUIET, TODAY, copy_template, run_bot

SPIKE_DAY = dt.date(2026, 11, 25)  # the demo plants a spike on EC2 compute that day
ON = {"COST_TRACKING_EC2_USAGE": "on", **QUIET}


class Counting(DemoEc2UsageClients):
    """The demo's clients, counting the CloudTrail and EC2 requests made through them."""

    made: list = []

    def caller(self, region):
        caller = super().caller(region)
        Counting.made.append(caller)
        return caller


@pytest.fixture
def counted(monkeypatch):
    Counting.made = []
    monkeypatch.setattr(Ec2UsageSection, "make_clients",
                        staticmethod(lambda settings, today: Counting(today)))
    return lambda: sum(c.requests for c in Counting.made)


def _report(out: Path, day: dt.date = DAY) -> dict:
    return json.loads((out / "site" / "reports" / day.isoformat() / "report.json").read_text())


def _digest_text(out: Path, day: dt.date = DAY) -> str:
    payload = json.loads((out / "slack" / f"{day.isoformat()}.json").read_text())
    return "\n".join(b["text"]["text"] for b in payload["blocks"] if b.get("type") == "section")


def test_the_demo_reports_its_instances_in_report_json_slack_and_a_page(tmp_path, clean_env,
                                                                       tmp_path_factory):
    copy_template(tmp_path_factory, "demo", tmp_path)
    assert run_bot(["--demo", "--dry-run"], tmp_path, TODAY, **ON) == 0
    usage = _report(tmp_path)["ec2_usage"]
    assert set(usage) == {"day", "regions", "total_hours", "instances"}
    assert usage["day"] == DAY.isoformat()
    assert [(r["region"], r["status"]) for r in usage["regions"]] == [
        ("ap-southeast-2", "ok"), ("eu-west-1", "ok"), ("us-east-1", "ok")]
    instances = usage["instances"]
    assert 20 <= len(instances) <= 60
    assert set(instances[0]) == {"region", "instance_id", "instance_type", "spot", "name", "user",
                                 "intervals", "hours", "still_running", "estimated_usd"}
    assert usage["total_hours"] == pytest.approx(sum(i["hours"] for i in instances))
    assert [i["hours"] for i in instances] == sorted((i["hours"] for i in instances), reverse=True)
    assert all(0 < i["hours"] <= 24 for i in instances)
    assert {i["spot"] for i in instances} == {True, False}
    assert {i["user"] for i in instances} == {"alice", "deploy-bot"}
    assert any(i["still_running"] for i in instances)
    assert any(i["intervals"][0]["start"] == "2026-11-22T00:00:00Z" for i in instances)
    assert all(i["intervals"][-1]["end"] == "2026-11-23T00:00:00Z"
               for i in instances if i["still_running"])
    dev_box = [i for i in instances if i["name"] == "dev-box"]  # facts from DescribeInstances
    assert [(d["instance_type"], d["hours"]) for d in dev_box] == [("m5.2xlarge", 10.0)]
    text = _digest_text(tmp_path)
    assert "*EC2 instance usage*" in text and "Still running at 24:00" in text
    assert "Started and terminated the same day" in text
    page = tmp_path / "site" / "reports" / DAY.isoformat() / "ec2-usage.html"
    assert all(i["instance_id"] in page.read_text() for i in instances)
    assert (page.parent / "ec2-usage.png").stat().st_size > 0
    assert "ec2-usage.html" in (page.parent / "index.html").read_text()


def test_the_demo_has_the_cases_the_issue_lists():
    events = region_events("us-east-1", DAY, DAY)
    stops = [e for e in events if e["EventName"] == STOP]
    stopped = [e["Resources"][0]["ResourceName"] for e in stops]
    assert len(stopped) > len(set(stopped))  # a stop sent twice
    eu = demo_ec2.launches("eu-west-1", DAY)
    assert any(r.spot and r.end_event == SPOT_END for r in eu)  # ended by its request
    burst = region_events("us-east-1", SPIKE_DAY, SPIKE_DAY)
    runs = [e for e in burst if e["EventName"] == RUN and len(e["Resources"]) == 9]
    ends = [e for e in burst if e["EventName"] == TERMINATE and len(e["Resources"]) == 18]
    assert len(runs) == 2 and len(ends) == 1
    assert demo_ec2.is_ec2_spike_day(SPIKE_DAY) and not demo_ec2.is_ec2_spike_day(DAY)


def test_on_the_ec2_spike_day_the_burst_shows_and_ec2_alert_pages_link_to_the_usage_page(
        tmp_path, clean_env, tmp_path_factory):
    copy_template(tmp_path_factory, "demo", tmp_path)
    today = SPIKE_DAY + dt.timedelta(days=1)
    assert run_bot(["--demo", "--dry-run", "--date", SPIKE_DAY.isoformat()], tmp_path, today,
                   COST_TRACKING_EC2_USAGE="on") == 0
    report = _report(tmp_path, SPIKE_DAY)
    burst = [i for i in report["ec2_usage"]["instances"] if i["instance_type"] == "c5.4xlarge"]
    assert len(burst) == 18 and all(i["spot"] and i["user"] == "deploy-bot" for i in burst)
    assert any(a["service"] == "Amazon Elastic Compute Cloud - Compute" for a in report["alerts"])
    folder = tmp_path / "site" / "reports" / SPIKE_DAY.isoformat()
    pages = list(folder.glob("*amazon-elastic-compute-cloud-compute*.html"))
    assert pages
    assert all('<a href="ec2-usage.html">' in p.read_text() for p in pages)
    assert "ec2-usage.html" not in (folder / "daily-by-service.html").read_text()


def test_a_stored_day_is_not_asked_again_unless_forced_and_skip_fetch_shows_it(
        tmp_path, clean_env, tmp_path_factory, counted):
    copy_template(tmp_path_factory, "demo", tmp_path)
    assert run_bot(["--demo", "--dry-run"], tmp_path, TODAY, **ON) == 0
    first = counted()
    assert first >= 15  # 4 lookups in each of 3 regions, and DescribeInstances
    shown = _report(tmp_path)["ec2_usage"]
    assert run_bot(["--demo", "--dry-run"], tmp_path, TODAY, **ON) == 0
    assert counted() == first
    assert _report(tmp_path)["ec2_usage"] == shown
    assert run_bot(["--demo", "--dry-run", "--skip-fetch"], tmp_path, TODAY, **ON) == 0
    assert counted() == first and _report(tmp_path)["ec2_usage"] == shown
    assert run_bot(["--demo", "--dry-run", "--force"], tmp_path, TODAY, **ON) == 0
    assert counted() == 2 * first and _report(tmp_path)["ec2_usage"] == shown


def test_off_is_null_in_report_json_and_nothing_in_slack_or_the_site(tmp_path, clean_env,
                                                                    tmp_path_factory, counted):
    copy_template(tmp_path_factory, "demo", tmp_path)
    assert run_bot(["--demo", "--dry-run"], tmp_path, TODAY, **QUIET) == 0  # clean_env: off
    assert _report(tmp_path)["ec2_usage"] is None and counted() == 0
    assert "EC2 instance usage" not in _digest_text(tmp_path)
    assert not (tmp_path / "site" / "reports" / DAY.isoformat() / "ec2-usage.html").exists()


def test_a_denied_region_is_one_warning_naming_it_and_the_action_and_the_run_exits_0(
        tmp_path, clean_env, tmp_path_factory, monkeypatch, capsys):
    copy_template(tmp_path_factory, "demo", tmp_path)
    monkeypatch.setattr(Ec2UsageSection, "make_clients", staticmethod(
        lambda settings, today: DemoEc2UsageClients(today, denied=("eu-west-1",))))
    assert run_bot(["--demo", "--dry-run"], tmp_path, TODAY, **ON) == 0
    usage = _report(tmp_path)["ec2_usage"]
    assert {r["region"]: r["status"] for r in usage["regions"]} == {
        "ap-southeast-2": "ok", "eu-west-1": "denied", "us-east-1": "ok"}
    assert {i["region"] for i in usage["instances"]} == {"ap-southeast-2", "us-east-1"}
    warnings = [line for line in capsys.readouterr().err.splitlines()
                if " WARNING " in line or " ERROR " in line]
    assert len(warnings) == 1
    assert "eu-west-1" in warnings[0] and LOOKUP_EVENTS in warnings[0]
    assert f"eu-west-1: access denied ({LOOKUP_EVENTS})" in _digest_text(tmp_path)
    assert fetched_regions_of(tmp_path) == {"ap-southeast-2", "us-east-1"}  # asked again later


def fetched_regions_of(out: Path) -> set[str]:
    from _util.store.database import make_engine

    engine = make_engine(f"sqlite:///{out / 'cost_tracking.db'}")
    try:
        return set(fetched_regions(engine, DAY))
    finally:
        engine.dispose()


def test_the_regions_setting_names_the_regions_read(tmp_path, clean_env, tmp_path_factory):
    copy_template(tmp_path_factory, "demo", tmp_path)
    assert run_bot(["--demo", "--dry-run"], tmp_path, TODAY,
                   COST_TRACKING_EC2_USAGE_REGIONS="us-east-1, eu-west-1", **ON) == 0
    assert [r["region"] for r in _report(tmp_path)["ec2_usage"]["regions"]] == [
        "us-east-1", "eu-west-1"]


def test_an_instance_left_running_by_the_stored_day_before_counts_from_midnight(
        tmp_path, clean_env, tmp_path_factory):
    copy_template(tmp_path_factory, "demo", tmp_path)
    before = DAY - dt.timedelta(days=1)
    assert run_bot(["--demo", "--dry-run", "--date", before.isoformat()], tmp_path, TODAY,
                   **ON) == 0
    left_running = {i["instance_id"] for i in _report(tmp_path, before)["ec2_usage"]["instances"]
                    if i["still_running"]}
    assert left_running
    assert run_bot(["--demo", "--dry-run"], tmp_path, TODAY, **ON) == 0
    today = {i["instance_id"]: i for i in _report(tmp_path)["ec2_usage"]["instances"]}
    for instance_id in left_running:
        assert today[instance_id]["intervals"][0]["start"] == "2026-11-22T00:00:00Z"


# ---------------------------------------------------------------- the store


def _instance(instance_id: str, *spans: tuple[int, int], still: bool = False,
              facts: InstanceFacts = InstanceFacts("m5.large", True, "web", "alice")):
    base = dt.datetime(2026, 11, 22, tzinfo=dt.timezone.utc)
    intervals = tuple((base + dt.timedelta(hours=a), base + dt.timedelta(hours=b))
                      for a, b in spans)
    return InstanceDay("us-east-1", DayUsage(instance_id, intervals, spans[0][0] == 0, still,
                                             False), facts)


def test_a_region_day_is_stored_replaced_as_a_whole_and_read_back(db_engine):
    first = RegionDay("us-east-1", "ok", [_instance("i-a", (0, 2), (5, 24), still=True),
                                          _instance("i-b", (3, 4))], requests=5)
    assert save_region_day(db_engine, DAY, first) == 3
    assert load_day(db_engine, DAY) == {"us-east-1": first.instances}
    again = RegionDay("us-east-1", "ok", [_instance("i-c", (1, 2))], requests=4)
    save_region_day(db_engine, DAY, again)
    assert load_day(db_engine, DAY) == {"us-east-1": again.instances}
    assert fetched_regions(db_engine, DAY) == {"us-east-1": 1}
    known, running = day_before(db_engine, DAY + dt.timedelta(days=1))
    assert running == {"us-east-1": set()}
    assert known["us-east-1"]["i-c"] == InstanceFacts("m5.large", True, "web", "alice")
    with pytest.raises(ValueError):
        save_region_day(db_engine, DAY, RegionDay("eu-west-1", "denied"))


def test_each_instance_gets_an_on_demand_estimate_from_prices_cached_for_a_week(
        tmp_path, clean_env, tmp_path_factory, monkeypatch):
    from _util.sources.demo_ec2 import DEMO_PRICES, REGION_FACTOR, DemoPricing

    asked = []
    monkeypatch.setattr(DemoPricing, "get_products", lambda self, real=DemoPricing.get_products,
                        **kw: asked.append(kw) or real(self, **kw))
    copy_template(tmp_path_factory, "demo", tmp_path)
    assert run_bot(["--demo", "--dry-run"], tmp_path, TODAY, **ON) == 0
    instances = _report(tmp_path)["ec2_usage"]["instances"]
    for i in instances:
        price = DEMO_PRICES[i["instance_type"]] * REGION_FACTOR[i["region"]]
        assert i["estimated_usd"] == pytest.approx(price * i["hours"])
    pairs = {(i["region"], i["instance_type"]) for i in instances}
    assert len(asked) == len(pairs)
    assert "at on-demand prices" in _digest_text(tmp_path)
    assert run_bot(["--demo", "--dry-run", "--force"], tmp_path, TODAY, **ON) == 0
    assert len(asked) == len(pairs)  # cached: not asked again within the week


def test_through_boto3_with_ec2_unreachable_the_section_says_so_and_the_run_exits_0(
        tmp_path, clean_env, capsys):
    from tests.ce_standin import CostExplorerStandIn

    with CostExplorerStandIn(TODAY) as ce:  # EC2 and CloudTrail: clean_env's closed port
        code = run_bot(["--dry-run"], tmp_path, TODAY, AWS_ENDPOINT_URL_COST_EXPLORER=ce.url,
                       AWS_MAX_ATTEMPTS="1", **ON)
    assert code == 0
    assert _report(tmp_path)["ec2_usage"] == {"day": DAY.isoformat(), "regions": [],
                                              "total_hours": 0, "instances": []}
    warnings = [line for line in capsys.readouterr().err.splitlines() if " WARNING " in line]
    assert len(warnings) == 1 and "enabled regions could not be listed" in warnings[0]
    assert "could not be listed" in _digest_text(tmp_path)
