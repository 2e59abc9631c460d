"""The scheduler against moto's EC2, ECS, EKS and Auto Scaling: what a schedule stops and
starts (and nothing else: every API call is recorded and checked), counts restored
exactly, Auto Scaling members left alone, --dry-run calling nothing that changes anything,
the action records and runs/schedule-<timestamp>.json, the Slack message, a run killed
between a call and its record, and two runs at once."""
from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError
from moto import mock_aws
from moto.server import ThreadedMotoServer

from _util.run import schedule_run
from _util.run.schedule_run import run_schedule
from _util.settings import load_settings
from _util.slack.delivery import make_slack_client
from _util.store.database import create_tables, make_engine
from _util.store.idle_resources import actions, pending_actions, save_idle_day
from tests.aws_fleet import Fleet, MotoClients

ROOT = Path(__file__).resolve().parents[1]
TAG = "cost-tracking:schedule"
REGION = "eu-west-1"
CONFIG = """
[schedule.office-hours]
timezone = "Europe/Berlin"
on = "Mon-Fri 08:00"
off = "Mon-Fri 19:00"

[schedule.lazy]
timezone = "UTC"
on = "Mon-Sun 00:00"
idle_stop = true
"""
SATURDAY_NOON = dt.datetime(2026, 12, 5, 12, 0, tzinfo=dt.timezone.utc)
MONDAY_0801_BERLIN = dt.datetime(2026, 12, 7, 7, 1, tzinfo=dt.timezone.utc)  # CET = UTC+1


@pytest.fixture
def aws(clean_env, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield Fleet(REGION)


def _settings(tmp_path: Path, dry_run: bool = False, actions_on: bool = True, **env: str):
    config = tmp_path / "bot.toml"
    config.write_text(CONFIG)
    environ = {"COST_TRACKING_OUTPUT_DIR": str(tmp_path / "out"),
               "COST_TRACKING_IDLE_REGIONS": REGION,
               "COST_TRACKING_SCHEDULE_ACTIONS": "on" if actions_on else "off", **env}
    flags = {"config": str(config), "schedule": True, **({"dry_run": True} if dry_run else {})}
    (tmp_path / "out").mkdir(exist_ok=True)
    return load_settings(flags, environ, dt.date(2026, 12, 1))


class EcsDenied(MotoClients):
    """moto's clients, ECS's UpdateService refused as IAM refuses it."""

    def region(self, region):
        rc = super().region(region)

        def refuse(**_params):
            raise ClientError({"Error": {"Code": "AccessDeniedException",
                                         "Message": "not allowed"}}, "UpdateService")
        rc.ecs.update_service = refuse
        return rc


def _run(settings, clients, now, engine=None, slack=None):
    engine = engine or make_engine(settings.db_url)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    create_tables(engine)
    return run_schedule(settings, engine, clients, slack, now)


def _state(fleet: Fleet, instance_id: str) -> str:
    answer = fleet.ec2.describe_instances(InstanceIds=[instance_id])
    return answer["Reservations"][0]["Instances"][0]["State"]["Name"]


def _ecs_desired(fleet: Fleet, service: str) -> int:
    return fleet.ecs.describe_services(cluster="apps", services=[service])["services"][0][
        "desiredCount"]


def _scaling(fleet: Fleet, group: str) -> dict:
    return fleet.eks.describe_nodegroup(clusterName="k8s", nodegroupName=group)["nodegroup"][
        "scalingConfig"]


def _asg(fleet: Fleet, name: str) -> tuple[int, int, int]:
    g = fleet.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=[name])[
        "AutoScalingGroups"][0]
    return g["MinSize"], g["DesiredCapacity"], g["MaxSize"]


@pytest.fixture
def office(aws):
    """One of each kind tagged office-hours, and what must never be touched."""
    ids = {
        "tagged": aws.instance("build-box", **{TAG: "office-hours"}),
        "untagged": aws.instance("prod-db"),
        "unknown-schedule": aws.instance("typo-box", **{TAG: "ofice-hours"}),
    }
    aws.ecs_service("apps", "reports", 3, **{TAG: "office-hours"})
    aws.ecs_service("apps", "api", 4)  # untagged
    aws.cluster("k8s")
    aws.node_group("k8s", "dev-nodes", 2, **{TAG: "office-hours"})
    aws.node_group("k8s", "prod-nodes", 3)  # untagged
    members = aws.auto_scaling_group("ci-runners", 2, **{TAG: "office-hours"})
    lone = aws.auto_scaling_group("web", 1)
    aws.ec2.create_tags(Resources=lone, Tags=[{"Key": TAG, "Value": "office-hours"}])
    ids["asg-members"] = members
    ids["lone-member"] = lone[0]
    return aws, ids


def test_off_hours_stop_what_is_tagged_and_nothing_else(office, tmp_path):
    fleet, ids = office
    settings = _settings(tmp_path)
    clients = MotoClients((REGION,))
    outcome = _run(settings, clients, SATURDAY_NOON)
    stops = {(a.kind, a.resource): a for a in outcome.actions}
    assert set(stops) == {("ec2", ids["tagged"]), ("ecs_service", "apps/reports"),
                          ("eks_nodegroup", "k8s/dev-nodes"), ("asg", "ci-runners")}
    assert {a.result for a in outcome.actions} == {"ok"}
    assert {a.action for a in outcome.actions} == {"stop"}
    assert stops[("ecs_service", "apps/reports")].previous == {"state": "running", "desired": 3}
    # Every call that changed something, exactly: nothing untagged, nothing terminated.
    assert sorted((c[1], json.dumps(c[2], sort_keys=True)) for c in clients.calls.mutating()) == sorted([
        ("StopInstances", json.dumps({"InstanceIds": [ids["tagged"]]})),
        ("UpdateService", json.dumps({"cluster": "apps", "desiredCount": 0,
                                      "service": "reports"}, sort_keys=True)),
        ("UpdateNodegroupConfig", json.dumps({"clusterName": "k8s", "nodegroupName": "dev-nodes",
                                              "scalingConfig": {"desiredSize": 0, "maxSize": 4,
                                                                "minSize": 0}}, sort_keys=True)),
        ("UpdateAutoScalingGroup", json.dumps({"AutoScalingGroupName": "ci-runners",
                                               "DesiredCapacity": 0, "MinSize": 0},
                                              sort_keys=True)),
    ])
    assert _state(fleet, ids["tagged"]) == "stopped"
    assert _state(fleet, ids["untagged"]) == "running"
    assert _ecs_desired(fleet, "api") == 4 and _ecs_desired(fleet, "reports") == 0
    assert _scaling(fleet, "prod-nodes")["desiredSize"] == 3
    assert _asg(fleet, "web") == (1, 1, 3)
    alone = {a["resource"]: a["reason"] for a in outcome.left_alone}
    assert alone[ids["unknown-schedule"]] == "no [schedule.ofice-hours] in the config"
    assert all("its Auto Scaling group ci-runners is scheduled" == alone[m]
               for m in ids["asg-members"])
    assert "in Auto Scaling group web, which would replace it" in alone[ids["lone-member"]]
    # The record and the run's file.
    rows = actions(make_engine(settings.db_url))
    assert sorted((r.kind, r.action, r.result) for r in rows) == sorted(
        (k, "stop", "ok") for k, _ in stops)
    assert all(r.reason == "office-hours:off@2026-12-04T18:00Z" for r in rows)
    written = json.loads((settings.paths.runs / "schedule-20261205T120000Z.json").read_text())
    assert {(a["resource"], a["region"], a["action"], a["result"]) for a in written["actions"]} \
        == {(a.resource, REGION, "stop", "ok") for a in outcome.actions}
    assert all({"resource", "region", "action", "previous", "result"} <= set(a)
               for a in written["actions"])


def test_monday_morning_restores_exactly_what_was_stopped(office, tmp_path, db_engine):
    fleet, ids = office
    settings = _settings(tmp_path)
    engine = db_engine
    _run(settings, MotoClients((REGION,)), SATURDAY_NOON, engine)
    outcome = _run(settings, MotoClients((REGION,)), MONDAY_0801_BERLIN, engine)
    assert {(a.kind, a.action, a.result) for a in outcome.actions} == {
        ("ec2", "start", "ok"), ("ecs_service", "start", "ok"), ("eks_nodegroup", "start", "ok"),
        ("asg", "start", "ok")}
    assert _state(fleet, ids["tagged"]) == "running"
    assert _ecs_desired(fleet, "reports") == 3
    assert _scaling(fleet, "dev-nodes") == {"minSize": 1, "maxSize": 4, "desiredSize": 2}
    assert _asg(fleet, "ci-runners") == (2, 2, 4)


def test_a_second_run_does_not_act_again_and_a_start_by_hand_is_not_overruled(office, tmp_path):
    fleet, ids = office
    settings = _settings(tmp_path)
    engine = make_engine(settings.db_url)
    _run(settings, MotoClients((REGION,)), SATURDAY_NOON, engine)
    fleet.ec2.start_instances(InstanceIds=[ids["tagged"]])  # someone works on Saturday
    clients = MotoClients((REGION,))
    again = _run(settings, clients, SATURDAY_NOON + dt.timedelta(minutes=15), engine)
    assert again.actions == [] and clients.calls.mutating() == []
    assert _state(fleet, ids["tagged"]) == "running"


def test_dry_run_lists_the_actions_and_calls_nothing_that_changes_anything(office, tmp_path):
    fleet, ids = office
    for settings in (_settings(tmp_path, dry_run=True), _settings(tmp_path, actions_on=False)):
        clients = MotoClients((REGION,))
        outcome = _run(settings, clients, SATURDAY_NOON)
        assert clients.calls.mutating() == []
        assert {(a.kind, a.action, a.result) for a in outcome.actions} == {
            ("ec2", "stop", "dry-run"), ("ecs_service", "stop", "dry-run"),
            ("eks_nodegroup", "stop", "dry-run"), ("asg", "stop", "dry-run")}
        written = json.loads((settings.paths.runs / f"{outcome.run_id}.json").read_text())
        assert written["acting"] is False and len(written["actions"]) == 4
        assert actions(make_engine(settings.db_url)) == []
    assert _state(fleet, ids["tagged"]) == "running"


def test_a_retagged_resource_follows_its_new_schedule(office, tmp_path):
    fleet, ids = office
    settings = _settings(tmp_path)
    engine = make_engine(settings.db_url)
    _run(settings, MotoClients((REGION,)), SATURDAY_NOON, engine)
    # Moved to "lazy" (on every day from 00:00): its current transition is "on".
    fleet.ecs.tag_resource(resourceArn=fleet.ecs.describe_services(
        cluster="apps", services=["reports"])["services"][0]["serviceArn"],
        tags=[{"key": TAG, "value": "lazy"}])
    outcome = _run(settings, MotoClients((REGION,)), SATURDAY_NOON + dt.timedelta(minutes=15),
                   engine)
    assert [(a.resource, a.schedule, a.action) for a in outcome.actions] == [
        ("apps/reports", "lazy", "start")]
    assert _ecs_desired(fleet, "reports") == 3  # what office-hours saved is restored


def test_an_idle_resource_of_an_idle_stop_schedule_is_stopped_once_for_that_day(aws, tmp_path):
    from _util.idle import EC2, IdleReport, IdleResource, IdleThresholds

    lazy = aws.instance("lazy-box", **{TAG: "lazy"})
    settings = _settings(tmp_path)
    engine = make_engine(settings.db_url)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    create_tables(engine)
    day = SATURDAY_NOON.date() - dt.timedelta(days=1)
    save_idle_day(engine, IdleReport(day, IdleThresholds(), (IdleResource(
        EC2, lazy, REGION, "lazy-box", None, 9, 1.0, 2.0, 2.57, "price", "lazy", (), (day,),
        (1.0,), (2.0,)),), 1, (REGION,)))
    outcome = _run(settings, MotoClients((REGION,)), SATURDAY_NOON, engine)
    assert [(a.resource, a.action, a.reason) for a in outcome.actions] == [
        (lazy, "stop", f"idle:{day}")]
    aws.ec2.start_instances(InstanceIds=[lazy])  # its owner wants it back today
    assert _run(settings, MotoClients((REGION,)), SATURDAY_NOON + dt.timedelta(hours=1),
                engine).actions == []


def test_a_refused_action_is_one_line_and_the_others_go_on(office, tmp_path):
    fleet, ids = office
    settings = _settings(tmp_path)
    engine = make_engine(settings.db_url)
    outcome = _run(settings, EcsDenied((REGION,)), SATURDAY_NOON, engine)
    results = {a.kind: a.result for a in outcome.actions}
    assert results == {"ec2": "ok", "ecs_service": "denied", "eks_nodegroup": "ok", "asg": "ok"}
    assert outcome.problems == [f"stop ecs_service apps/reports ({REGION}): denied"]
    # Tried again next run (and done, once allowed).
    retry = _run(settings, MotoClients((REGION,)), SATURDAY_NOON + dt.timedelta(minutes=15),
                 engine)
    assert [(a.resource, a.result) for a in retry.actions] == [("apps/reports", "ok")]


def test_a_run_killed_between_the_call_and_its_record_is_reconciled(office, tmp_path,
                                                                    monkeypatch, db_engine):
    fleet, ids = office
    settings = _settings(tmp_path)
    engine = db_engine
    real_finish = schedule_run.finish_action

    def killed(*args, **kwargs):
        raise KeyboardInterrupt  # the process dies right after its first API call

    monkeypatch.setattr(schedule_run, "finish_action", killed)
    with pytest.raises(KeyboardInterrupt):
        _run(settings, MotoClients((REGION,)), SATURDAY_NOON, engine)
    monkeypatch.setattr(schedule_run, "finish_action", real_finish)
    [pending] = pending_actions(engine)
    assert pending.action == "stop"
    clients = MotoClients((REGION,))
    outcome = _run(settings, clients, SATURDAY_NOON + dt.timedelta(minutes=15), engine)
    assert outcome.reconciled == [{"resource": pending.resource_id, "kind": pending.kind,
                                   "region": REGION, "action": "stop", "run": pending.run_id,
                                   "result": "ok"}]
    # The interrupted one is not called again; the three not reached yet are.
    assert pending.resource_id not in {a.resource for a in outcome.actions}
    assert len(outcome.actions) == 3 and pending_actions(engine) == []
    assert _ecs_desired(fleet, "reports") == 0 and _state(fleet, ids["tagged"]) == "stopped"
    # ... and Monday still restores the count saved before the interrupted call.
    _run(settings, MotoClients((REGION,)), MONDAY_0801_BERLIN, engine)
    assert _ecs_desired(fleet, "reports") == 3


def test_the_run_posts_one_short_message_when_it_did_something(office, tmp_path, slack):
    settings = _settings(tmp_path, **{"COST_TRACKING_SLACK_CHANNEL": "C0OPS"})
    make_slack = lambda: make_slack_client("xoxb-test", slack.base_url, retries=0)  # noqa: E731
    engine = make_engine(settings.db_url)
    _run(settings, MotoClients((REGION,)), SATURDAY_NOON, engine, make_slack)
    [message] = slack.posted()
    text = message.fields["text"]
    assert text.splitlines() == [
        "Stopped 1 Auto Scaling group of office-hours: ci-runners",
        "Stopped 1 instance of office-hours: build-box",
        "Stopped 1 ECS service of office-hours: reports",
        "Stopped 1 EKS node group of office-hours: dev-nodes",
    ]
    _run(settings, MotoClients((REGION,)), SATURDAY_NOON + dt.timedelta(minutes=15), engine,
         make_slack)
    assert len(slack.posted()) == 1  # nothing done: nothing posted


def test_two_schedule_processes_at_once_act_once(clean_env, tmp_path, monkeypatch):
    """Two real `--schedule` processes against a moto server: the second waits for the
    first's lock and then finds nothing left to do."""
    server = ThreadedMotoServer(port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://{host}:{port}")
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        fleet = Fleet(REGION)
        instance = fleet.instance("build-box", **{TAG: "always-off"})
        config = tmp_path / "bot.toml"
        config.write_text('[schedule.always-off]\ntimezone = "UTC"\noff = "daily 00:00"\n')
        env = {**os.environ, "COST_TRACKING_OUTPUT_DIR": str(tmp_path / "out"),
               "COST_TRACKING_IDLE_REGIONS": REGION, "COST_TRACKING_SCHEDULE_ACTIONS": "on",
               "COST_TRACKING_LOCK_TIMEOUT_SECONDS": "60", "COST_TRACKING_CONFIG": str(config)}
        runs = [subprocess.Popen([sys.executable, str(ROOT / "runCostReporting.py"),
                                  "--schedule"], env=env, cwd=tmp_path,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for _ in range(2)]
        outputs = [r.communicate(timeout=120) for r in runs]
        assert [r.returncode for r in runs] == [0, 0], outputs
        engine = make_engine(f"sqlite:///{tmp_path / 'out' / 'cost_tracking.db'}")
        rows = actions(engine)
        assert [(r.resource_id, r.action, r.result) for r in rows] == [(instance, "stop", "ok")]
        files = sorted((tmp_path / "out" / "runs").glob("schedule-*.json"))
        counts = sorted(len(json.loads(f.read_text())["actions"]) for f in files)
        assert counts == [0, 1] or (len(files) == 1 and counts == [1])
        assert _state(fleet, instance) == "stopped"
    finally:
        server.stop()


def test_a_start_restores_once_and_a_stop_by_hand_afterwards_is_the_owners(office, tmp_path):
    fleet, ids = office
    settings = _settings(tmp_path)
    engine = make_engine(settings.db_url)
    _run(settings, MotoClients((REGION,)), SATURDAY_NOON, engine)
    # Something raises the stopped service to 1 over the weekend; the next off saves
    # nothing over the 3 the first stop saved.
    fleet.ecs.update_service(cluster="apps", service="reports", desiredCount=1)
    friday_off = dt.datetime(2026, 12, 11, 18, 30, tzinfo=dt.timezone.utc)
    _run(settings, MotoClients((REGION,)), MONDAY_0801_BERLIN - dt.timedelta(hours=1), engine)
    assert _ecs_desired(fleet, "reports") == 1  # Monday 07:01 Berlin: still the weekend's off
    _run(settings, MotoClients((REGION,)), MONDAY_0801_BERLIN, engine)
    assert _ecs_desired(fleet, "reports") == 3
    # Its owner scales it to 0 by hand on Tuesday; the off and the next on leave it at 0.
    fleet.ecs.update_service(cluster="apps", service="reports", desiredCount=0)
    _run(settings, MotoClients((REGION,)), friday_off, engine)
    outcome = _run(settings, MotoClients((REGION,)),
                   dt.datetime(2026, 12, 14, 7, 1, tzinfo=dt.timezone.utc), engine)
    assert "apps/reports" not in {a.resource for a in outcome.actions}
    assert _ecs_desired(fleet, "reports") == 0


def test_the_same_failure_is_posted_once_not_every_run(office, tmp_path, slack):
    settings = _settings(tmp_path, **{"COST_TRACKING_SLACK_CHANNEL": "C0OPS"})
    make_slack = lambda: make_slack_client("xoxb-test", slack.base_url, retries=0)  # noqa: E731
    engine = make_engine(settings.db_url)
    first = _run(settings, EcsDenied((REGION,)), SATURDAY_NOON, engine, make_slack)
    again = _run(settings, EcsDenied((REGION,)), SATURDAY_NOON + dt.timedelta(minutes=15),
                 engine, make_slack)
    assert [a.result for a in first.actions if a.kind == "ecs_service"] == ["denied"]
    assert [(a.result, a.repeated) for a in again.actions] == [("denied", True)]
    assert again.problems  # still a partial run (exit 3) and in the log and run file
    [message] = slack.posted()  # the second run did nothing new: nothing posted
    assert ":warning: could not stop reports" in message.fields["text"]
