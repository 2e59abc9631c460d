"""Idle resources against moto's EC2, CloudWatch, ECS and EKS: idle and busy resources
mixed, the thresholds at their edges, node groups by their nodes (Container Insights when
present), the estimated daily cost, and the section through the driver (report.json's
`idle`, the digest, the page and its plots, the stored day)."""
from __future__ import annotations

import datetime as dt
import json

import pytest
from moto import mock_aws

from _util.idle import (
    EC2,
    ECS_SERVICE,
    EKS_NODEGROUP,
    CostBasis,
    IdleThresholds,
    find_idle,
    with_costs,
)
from _util.sections.idle_resources import IdleResourcesSection
from _util.sources.idle_resources import watch_region
from tests.aws_fleet import Fleet, MotoClients, launch_day
from tests.ops_support import QUIET, run_bot

LIMITS = IdleThresholds(days=7, cpu_pct=5.0, network_mb=50.0)
SCHEDULE_TAG = "cost-tracking:schedule"


@pytest.fixture
def aws(clean_env, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-west-1")
    with mock_aws():
        yield Fleet()


def _found(fleet: Fleet, day: dt.date, limits: IdleThresholds = LIMITS):
    clients = MotoClients()
    rc = clients.region(fleet.region)
    watched, metrics = watch_region(rc, day)
    return watched, find_idle(watched, day, limits, "Owner", SCHEDULE_TAG), clients, metrics


def test_idle_and_busy_instances_are_told_apart_at_the_thresholds_edges(aws):
    day = launch_day() + dt.timedelta(days=8)
    cases = {  # name: (CPU max, network MB a day, idle?)
        "idle": (1.0, 10.0, True),
        "cpu-just-under": (4.99, 10.0, True),
        "cpu-at-threshold": (5.0, 10.0, False),
        "net-just-under": (1.0, 49.9, True),
        "net-at-threshold": (1.0, 50.0, False),
        "busy": (60.0, 900.0, False),
    }
    ids = {}
    for name, (cpu, net, _idle) in cases.items():
        ids[name] = aws.instance(name, Owner=f"{name}-owner")
        aws.ec2_metrics(ids[name], day, 30, cpu, net)
    watched, idle, _clients, metrics = _found(aws, day)
    assert {w.id for w in watched} == set(ids.values())
    assert metrics == 3 * len(ids)  # CPU, network in and out per instance
    assert sorted(r.name for r in idle) == sorted(n for n, c in cases.items() if c[2])
    first = next(r for r in idle if r.name == "cpu-just-under")
    assert (first.kind, first.owner, first.max_cpu_pct) == (EC2, "cpu-just-under-owner", 4.99)
    assert first.network_mb_per_day == pytest.approx(10.0)
    assert first.idle_days == 8  # no longer than it has run: eight whole days


def test_an_instance_idle_only_lately_or_without_every_day_of_metrics_is_not_listed(aws):
    day = launch_day() + dt.timedelta(days=10)
    lately = aws.instance("idle-three-days")
    aws.ec2_metrics(lately, day - dt.timedelta(days=3), 27, 40.0, 500.0)
    aws.ec2_metrics(lately, day, 3, 1.0, 1.0)
    gap = aws.instance("missing-a-day")
    aws.ec2_metrics(gap, day, 2, 1.0, 1.0)
    aws.ec2_metrics(gap, day - dt.timedelta(days=3), 27, 1.0, 1.0)  # nothing on day - 2
    _watched, idle, _clients, _metrics = _found(aws, day)
    assert idle == []
    _watched, idle, _clients, _metrics = _found(aws, day, IdleThresholds(days=3))
    assert [r.name for r in idle] == ["idle-three-days"]
    assert idle[0].idle_days == 3


def test_a_resource_started_inside_the_window_is_not_idle_the_whole_time(aws):
    day = launch_day() + dt.timedelta(days=6)  # running six whole days, seven asked
    instance = aws.instance("young")
    aws.ec2_metrics(instance, day, 30, 1.0, 1.0)
    assert _found(aws, day)[1] == []
    assert [r.name for r in _found(aws, day, IdleThresholds(days=6))[1]] == ["young"]


def test_ecs_services_count_by_cpu_alone_and_only_when_they_want_tasks(aws):
    day = launch_day() + dt.timedelta(days=8)
    aws.ecs_service("apps", "quiet", 2, Owner="team-a")
    aws.ecs_service("apps", "busy", 3)
    aws.ecs_service("apps", "scaled-to-zero", 0)
    aws.ecs_metrics("apps", "quiet", day, 30, 2.0)
    aws.ecs_metrics("apps", "busy", day, 30, 35.0)
    aws.ecs_metrics("apps", "scaled-to-zero", day, 30, 0.0)
    watched, idle, _clients, _metrics = _found(aws, day)
    assert sorted(w.id for w in watched if w.kind == ECS_SERVICE) == ["apps/busy", "apps/quiet"]
    assert [(r.kind, r.id, r.owner, r.network_mb_per_day) for r in idle] == [
        (ECS_SERVICE, "apps/quiet", "team-a", None)]


def test_a_node_group_is_idle_when_all_its_nodes_are_and_container_insights_wins(aws):
    day = launch_day() + dt.timedelta(days=8)
    aws.cluster("k8s")
    quiet = aws.node_group("k8s", "quiet", 2, Owner="platform")
    busy = aws.node_group("k8s", "busy", 2)
    for node in quiet:
        aws.ec2_metrics(node, day, 30, 2.0, 5.0)
    aws.ec2_metrics(busy[0], day, 30, 2.0, 5.0)
    aws.ec2_metrics(busy[1], day, 30, 80.0, 5.0)  # one busy node keeps its group busy
    # Container Insights sees a node the EC2 metric calls idle as busy: it wins.
    aws.cluster("insights")
    watched_nodes = aws.node_group("insights", "seen", 1)
    aws.ec2_metrics(watched_nodes[0], day, 30, 1.0, 5.0)
    aws.container_insights("insights", watched_nodes[0], day, 30, 45.0)
    watched, idle, _clients, _metrics = _found(aws, day)
    groups = {w.id: w for w in watched if w.kind == EKS_NODEGROUP}
    assert sorted(groups) == ["insights/seen", "k8s/busy", "k8s/quiet"]
    assert not [w for w in watched if w.kind == EC2]  # nodes count with their group
    assert [(r.id, r.owner) for r in idle] == [("k8s/quiet", "platform")]
    assert groups["k8s/quiet"].units == 2
    assert max(groups["insights/seen"].cpu_max_pct) == 45.0


def test_the_daily_cost_is_the_price_times_24_or_else_a_share_of_the_service(aws):
    day = launch_day() + dt.timedelta(days=8)
    priced = aws.instance("priced", "m5.large")
    unpriced = aws.instance("unpriced", "x9.odd")
    busy = aws.instance("busy", "m5.large")
    for instance, cpu in ((priced, 1.0), (unpriced, 1.0), (busy, 50.0)):
        aws.ec2_metrics(instance, day, 30, cpu, 1.0)
    aws.ecs_service("apps", "quiet", 2)
    aws.ecs_service("apps", "busy", 6)
    aws.ecs_metrics("apps", "quiet", day, 30, 1.0)
    aws.ecs_metrics("apps", "busy", day, 30, 50.0)
    watched, idle, _clients, _metrics = _found(aws, day)
    basis = CostBasis({("eu-west-1", "m5.large"): 0.107, ("eu-west-1", "x9.odd"): None},
                      {"Amazon Elastic Compute Cloud - Compute": 30.0,
                       "Amazon Elastic Container Service": 16.0})
    costed = {r.name: (r.daily_usd, r.cost_basis) for r in with_costs(idle, watched, basis)}
    assert costed == {"priced": (2.57, "price"),  # 0.107 * 24
                      "unpriced": (10.0, "share"),  # 30 / 3 running instances
                      "quiet": (4.0, "share")}  # 16 * 2 of 8 desired tasks
    no_costs = with_costs(idle, watched, CostBasis())
    assert {r.name: r.daily_usd for r in no_costs} == {"priced": None, "unpriced": None,
                                                       "quiet": None}


# ---------------------------------------------------------------- through the driver


def _moto_section(monkeypatch, prices):
    clients = MotoClients(prices=prices)
    monkeypatch.setattr(IdleResourcesSection, "make_clients",
                        staticmethod(lambda settings, today: clients))
    return clients


def test_the_section_reports_idle_resources_in_report_json_slack_and_a_page(aws, tmp_path,
                                                                           monkeypatch):
    today = launch_day() + dt.timedelta(days=9)
    day = today - dt.timedelta(days=1)
    idle = aws.instance("forgotten-box", "m5.large", Owner="ann",
                        **{SCHEDULE_TAG: "office-hours"})
    aws.ec2_metrics(idle, day, 30, 1.5, 3.0)
    busy = aws.instance("web", "m5.large")
    aws.ec2_metrics(busy, day, 30, 55.0, 800.0)
    clients = _moto_section(monkeypatch, {("eu-west-1", "m5.large"): 0.107})
    env = {"COST_TRACKING_IDLE": "on", "COST_TRACKING_IDLE_REGIONS": "eu-west-1", **QUIET}
    assert run_bot(["--demo", "--dry-run"], tmp_path, today, **env) == 0
    report_dir = tmp_path / "site" / "reports" / day.isoformat()
    part = json.loads((report_dir / "report.json").read_text())["idle"]
    assert part["daily_usd"] == 2.57
    assert part["resources"] == [{
        "kind": "ec2", "id": idle, "region": "eu-west-1", "name": "forgotten-box",
        "owner": "ann", "idle_days": 8, "max_cpu_pct": 1.5, "network_mb_per_day": 3.0,
        "daily_usd": 2.57, "cost_basis": "price", "schedule": "office-hours"}]
    payload = json.loads((tmp_path / "slack" / f"{day.isoformat()}.json").read_text())
    text = "\n".join(b["text"]["text"] for b in payload["blocks"] if b.get("type") == "section")
    assert "*Idle resources*" in text and "forgotten-box" in text and "US$2.57 a day" in text
    page = (report_dir / "idle-resources.html").read_text()
    assert "forgotten-box" in page and idle in page
    plots = list((report_dir / "idle-resources").glob("*.png"))
    assert len(plots) == 1 and plots[0].stat().st_size > 5_000
    # No mutating call: the section only reads.
    assert clients.calls.mutating() == []
    # A run that does not fetch shows the stored day, without asking AWS.
    asked = len(clients.calls.made)
    assert run_bot(["--demo", "--dry-run", "--skip-fetch", "--date", day.isoformat()],
                   tmp_path, today, **env) == 0
    again = json.loads((report_dir / "report.json").read_text())["idle"]
    assert again["resources"] == part["resources"]
    assert len(clients.calls.made) == asked


def test_a_denied_region_is_one_note_and_the_others_are_reported(aws, tmp_path, monkeypatch):
    from botocore.exceptions import ClientError

    today = launch_day() + dt.timedelta(days=9)
    day = today - dt.timedelta(days=1)
    idle = aws.instance("forgotten-box")
    aws.ec2_metrics(idle, day, 30, 1.0, 1.0)

    class OneRegionDenied(MotoClients):
        def region(self, region):
            rc = super().region(region)
            if region == "us-west-2":
                def refuse(**_params):
                    raise ClientError({"Error": {"Code": "UnauthorizedOperation",
                                                 "Message": "no"}}, "DescribeInstances")
                rc.ec2.describe_instances = refuse
            return rc

    clients = OneRegionDenied(regions=("eu-west-1", "us-west-2"))
    monkeypatch.setattr(IdleResourcesSection, "make_clients",
                        staticmethod(lambda settings, today: clients))
    env = {"COST_TRACKING_IDLE": "on", **QUIET}
    assert run_bot(["--demo", "--dry-run"], tmp_path, today, **env) == 0
    part = json.loads((tmp_path / "site" / "reports" / day.isoformat() / "report.json"
                       ).read_text())["idle"]
    assert [r["id"] for r in part["resources"]] == [idle]
    assert part["regions"] == ["eu-west-1", "us-west-2"]
    page = (tmp_path / "site" / "reports" / day.isoformat() / "idle-resources.html").read_text()
    assert "us-west-2: ec2:DescribeInstances is denied" in page


def test_idle_off_makes_no_call_and_report_json_says_null(clean_env, tmp_path, monkeypatch):
    def refuse(settings, today):
        raise AssertionError("no client may be made with COST_TRACKING_IDLE=off")

    monkeypatch.setattr(IdleResourcesSection, "make_clients", staticmethod(refuse))
    today = dt.date(2026, 11, 23)
    assert run_bot(["--demo", "--dry-run"], tmp_path, today, **QUIET) == 0
    report = json.loads((tmp_path / "site" / "reports" / "2026-11-22" / "report.json").read_text())
    assert report["idle"] is None
