"""The demo account's EC2, CloudWatch, ECS, EKS and Auto Scaling stand-ins
(`_util/sources/demo_idle.py`): every answer in the service models' shapes (each call
passed through botocore's Stubber on a real client), the planted idle and busy resources,
daily metrics, pages, filters, and the acting calls' changes."""
from __future__ import annotations

import datetime as dt
import json

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber

from _util.idle import IdleThresholds, find_idle
from _util.sources.demo_idle import (
    CLUSTER_TAG,
    MAX_DATAPOINTS,
    NODEGROUP_TAG,
    SCHEDULE_TAG,
    DemoIdleClients,
    demo_idle_clients,
)
from _util.sources.ec2_prices import hourly_usd, product_filters
from _util.sources.idle_resources import RegionClients, watch_region
from tests.ops_support import QUIET, copy_template, run_bot

pytestmark = pytest.mark.usefixtures("clean_env")  # a call left to boto3 fails at once

UTC = dt.timezone.utc
TODAY = dt.date(2026, 11, 23)
DAY = TODAY - dt.timedelta(days=1)  # the report's day
NOW = dt.datetime(2026, 11, 23, 10, 30, tzinfo=UTC)
LIMITS = IdleThresholds(days=7, cpu_pct=5.0, network_mb=50.0)
IDLE = {"staging-api": 30, "jenkins-legacy": 12, "metrics-collector": 30, "nightly-batch": 9,
        "report-renderer": 21, "ml-notebook": 20, "ci-runners": 16}
NOT_IDLE = {"web-prod-1", "api-prod-1", "queue-worker", "feature-env", "load-test-runner",
            "eu-web-1", "vpn-gateway", "web-frontend", "general"}
EVERY_METHOD = {
    ("ec2", "describe_regions"), ("ec2", "describe_instances"), ("ec2", "stop_instances"),
    ("ec2", "start_instances"), ("cloudwatch", "get_metric_data"),
    ("cloudwatch", "list_metrics"), ("ecs", "list_clusters"), ("ecs", "list_services"),
    ("ecs", "describe_services"), ("ecs", "update_service"), ("eks", "list_clusters"),
    ("eks", "list_nodegroups"), ("eks", "describe_nodegroup"),
    ("eks", "update_nodegroup_config"), ("autoscaling", "describe_auto_scaling_instances"),
    ("autoscaling", "describe_auto_scaling_groups"),
    ("autoscaling", "update_auto_scaling_group"), ("pricing", "get_products")}


def clients(max_datapoints: int = MAX_DATAPOINTS) -> DemoIdleClients:
    """The demo's clients for TODAY, acting at NOW."""
    return DemoIdleClients(TODAY, lambda: NOW, max_datapoints)


class Validated:
    """A demo stand-in whose every answer goes through a Stubber on boto3's client of the
    service, so botocore checks the request and the response against the service model."""

    def __init__(self, demo, service: str, checked: set) -> None:
        self.demo, self.service, self.checked = demo, service, checked
        self.client = boto3.client(service, region_name="us-east-1")

    def __getattr__(self, method: str):
        def call(**params):
            answer = getattr(self.demo, method)(**params)
            with Stubber(self.client) as stubber:
                stubber.add_response(method, answer, params)
                checked = getattr(self.client, method)(**params)
                stubber.assert_no_pending_responses()
            self.checked.add((self.service, method))
            checked.pop("ResponseMetadata", None)
            return checked
        return call


def validated_region(demo: DemoIdleClients, region: str, checked: set) -> RegionClients:
    rc = demo.region(region)
    return RegionClients(region, Validated(rc.ec2, "ec2", checked),
                         Validated(rc.cloudwatch, "cloudwatch", checked),
                         Validated(rc.ecs, "ecs", checked), Validated(rc.eks, "eks", checked),
                         Validated(rc.autoscaling, "autoscaling", checked))


def watched_by_name(demo: DemoIdleClients, day: dt.date = DAY) -> dict[str, list]:
    found: dict[str, list] = {}
    for region in demo.regions():
        for w in watch_region(demo.region(region), day)[0]:
            found.setdefault(w.name, []).append(w)
    return found


def instance_named(rc: RegionClients, name: str) -> dict:
    answer = rc.ec2.describe_instances(Filters=[{"Name": "tag:Name", "Values": [name]}])
    [instance] = [i for r in answer["Reservations"] for i in r["Instances"]
                  if i["State"]["Name"] != "terminated"]
    return instance


def daily(rc: RegionClients, namespace: str, name: str, dims: dict, stat: str = "Maximum",
          start: dt.date = TODAY - dt.timedelta(days=30), end: dt.date = TODAY, **params):
    answer = rc.cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "m0", "MetricStat": {
            "Metric": {"Namespace": namespace, "MetricName": name,
                       "Dimensions": [{"Name": k, "Value": v} for k, v in dims.items()]},
            "Period": 86_400, "Stat": stat}}],
        StartTime=dt.datetime.combine(start, dt.time(0), tzinfo=UTC),
        EndTime=dt.datetime.combine(end, dt.time(0), tzinfo=UTC), **params)
    [result] = answer["MetricDataResults"]
    return dict(zip(result["Timestamps"], result["Values"]))


# ---------------------------------------------------------------- the real shapes


def test_every_call_the_section_and_the_scheduler_make_passes_botocores_shape_checks():
    demo, checked = clients(), set()
    regions = demo.regions()
    for region in regions:
        watch_region(validated_region(demo, region, checked), DAY)
    us = validated_region(demo, "us-east-1", checked)
    eu = validated_region(demo, "eu-west-1", checked)
    us.ec2.describe_regions(AllRegions=False)
    tagged = us.ec2.describe_instances(Filters=[{"Name": "tag-key", "Values": [SCHEDULE_TAG]}])
    ids = [i["InstanceId"] for r in tagged["Reservations"] for i in r["Instances"]]
    us.ec2.describe_instances(InstanceIds=ids[:2])
    us.ec2.describe_instances(Filters=[{"Name": "instance-state-name", "Values": ["running"]}],
                              MaxResults=5)
    us.autoscaling.describe_auto_scaling_instances(InstanceIds=ids)
    us.autoscaling.describe_auto_scaling_groups(
        Filters=[{"Name": "tag-key", "Values": [SCHEDULE_TAG]}])
    us.autoscaling.describe_auto_scaling_groups(AutoScalingGroupNames=["nightly-batch"])
    staging = instance_named(us, "staging-api")["InstanceId"]
    us.ec2.stop_instances(InstanceIds=[staging])
    us.ec2.start_instances(InstanceIds=[staging])
    us.ecs.update_service(cluster="apps", service="report-renderer", desiredCount=0)
    eu.eks.update_nodegroup_config(clusterName="platform", nodegroupName="ci-runners",
                                   scalingConfig={"minSize": 0, "maxSize": 4, "desiredSize": 0})
    us.autoscaling.update_auto_scaling_group(AutoScalingGroupName="nightly-batch", MinSize=0,
                                             DesiredCapacity=0)
    us.cloudwatch.list_metrics(Namespace="AWS/EC2", MetricName="CPUUtilization")
    us.cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "cpu", "Label": "cpu", "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization",
                       "Dimensions": [{"Name": "InstanceId", "Value": staging}]},
            "Period": 86_400, "Stat": "Average"}}],
        StartTime=dt.datetime(2026, 11, 1, tzinfo=UTC), EndTime=dt.datetime(2026, 11, 23,
                                                                           tzinfo=UTC),
        ScanBy="TimestampDescending", MaxDatapoints=10)
    pricing = Validated(demo.pricing(), "pricing", checked)
    answer = pricing.get_products(ServiceCode="AmazonEC2", FormatVersion="aws_v1",
                                  Filters=product_filters("eu-west-1", "m5.large"),
                                  MaxResults=10)
    assert hourly_usd(answer["PriceList"]) == pytest.approx(0.096 * 1.07)
    assert checked == EVERY_METHOD


# ---------------------------------------------------------------- what the account holds


def test_the_planted_idle_resources_are_found_with_the_default_thresholds_and_no_others():
    found = watched_by_name(clients())
    watched = [w for ws in found.values() for w in ws]
    idle = find_idle(watched, DAY, LIMITS, "Owner", SCHEDULE_TAG)
    assert {r.name: r.idle_days for r in idle} == IDLE
    assert sorted(r.name for r in idle).count("nightly-batch") == 2
    assert not NOT_IDLE & {r.name for r in idle}
    assert NOT_IDLE | set(IDLE) == set(found)  # nothing stopped or scaled to 0 is watched
    by_name = {r.name: r for r in idle}
    assert by_name["metrics-collector"].max_cpu_pct == 4.9
    assert by_name["jenkins-legacy"].owner is None
    assert {n: r.schedule for n, r in by_name.items() if r.schedule} == {
        "staging-api": "office-hours", "nightly-batch": "office-hours",
        "report-renderer": "office-hours", "ci-runners": "office-hours",
        "ml-notebook": "weekend-off"}
    assert by_name["ci-runners"].network_mb_per_day is not None
    assert by_name["report-renderer"].network_mb_per_day is None


def test_the_edge_cases_sit_either_side_of_the_thresholds():
    found = watched_by_name(clients())
    [under], [over] = found["metrics-collector"], found["queue-worker"]
    assert max(under.cpu_max_pct[-7:]) == 4.9 and under.cpu_max_pct[-3] == 4.9
    assert over.cpu_max_pct[-4] == 5.1 and max(over.cpu_max_pct[-3:]) < 5.0
    [vpn] = found["vpn-gateway"]
    assert max(vpn.cpu_max_pct) < 5.0 and min(vpn.network_mb) > 50.0
    [recent] = found["feature-env"]
    assert max(recent.cpu_max_pct[-3:]) < 5.0 and recent.cpu_max_pct[-4] >= 20.0
    [new] = found["load-test-runner"]
    assert new.running_since.date() == TODAY - dt.timedelta(days=2)
    assert new.cpu_max_pct[:-2] == (None,) * 28 and None not in new.cpu_max_pct[-2:]


def test_node_groups_carry_their_nodes_types_and_container_insights_cpu():
    found = watched_by_name(clients())
    [idle], [busy] = found["ci-runners"], found["general"]
    assert idle.units == 2 and idle.instance_types == ("m5.large", "m5.large")
    assert busy.instance_types == ("m5.xlarge", "m5.xlarge")
    assert dict(idle.tags)[SCHEDULE_TAG] == "office-hours"
    eu = clients().region("eu-west-1")
    listed = eu.cloudwatch.list_metrics(Namespace="ContainerInsights",
                                        MetricName="node_cpu_utilization",
                                        Dimensions=[{"Name": "ClusterName", "Value": "platform"}])
    dims = [{d["Name"] for d in m["Dimensions"]} for m in listed["Metrics"]]
    assert dims.count({"ClusterName", "InstanceId", "NodeName"}) == 4
    assert dims.count({"ClusterName"}) == 1


def test_the_demo_is_a_pure_function_of_today():
    a, b = demo_idle_clients(TODAY), demo_idle_clients(TODAY)
    assert a.regions() == b.regions() == ["ap-southeast-2", "eu-west-1", "us-east-1"]
    for region in a.regions():
        first, second = watch_region(a.region(region), DAY), watch_region(b.region(region), DAY)
        assert first == second
    later = DemoIdleClients(TODAY + dt.timedelta(days=5), lambda: NOW)
    assert {r.name: r.idle_days for r in find_idle(
        [w for ws in watched_by_name(later, DAY + dt.timedelta(days=5)).values() for w in ws],
        DAY + dt.timedelta(days=5), LIMITS, "Owner", SCHEDULE_TAG)} == IDLE


def test_the_price_list_prices_every_instance_type_the_demo_runs():
    demo = clients()
    pairs = {(w.region, t) for ws in watched_by_name(demo).values() for w in ws
             for t in w.instance_types}
    for region, instance_type in pairs:
        answer = demo.pricing().get_products(ServiceCode="AmazonEC2", FormatVersion="aws_v1",
                                             Filters=product_filters(region, instance_type),
                                             MaxResults=10)
        assert hourly_usd(answer["PriceList"]) is not None


# ---------------------------------------------------------------- CloudWatch


def test_metrics_are_one_datapoint_a_utc_day_at_midnight_for_past_days_only():
    us = clients().region("us-east-1")
    staging = instance_named(us, "staging-api")["InstanceId"]
    start, end = TODAY - dt.timedelta(days=3), TODAY + dt.timedelta(days=2)
    newest_first = daily(us, "AWS/EC2", "CPUUtilization", {"InstanceId": staging},
                         start=start, end=end)
    assert list(newest_first) == [dt.datetime.combine(TODAY - dt.timedelta(days=n),
                                                      dt.time(0), tzinfo=UTC) for n in (1, 2, 3)]
    ascending = daily(us, "AWS/EC2", "CPUUtilization", {"InstanceId": staging}, start=start,
                      end=end, ScanBy="TimestampAscending")
    assert list(ascending) == sorted(newest_first) and ascending == newest_first
    network = daily(us, "AWS/EC2", "NetworkIn", {"InstanceId": staging}, "Sum", start, end)
    assert all(1e6 < v < 20e6 for v in network.values())  # bytes: an idle 2-20 MB a day
    assert daily(us, "AWS/EC2", "CPUUtilization", {"InstanceId": "i-0nothing"}) == {}


def test_a_query_without_return_data_is_left_out_and_labels_default_to_the_metric_name():
    us = clients().region("us-east-1")
    staging = instance_named(us, "staging-api")["InstanceId"]
    metric = {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization",
              "Dimensions": [{"Name": "InstanceId", "Value": staging}]}
    answer = us.cloudwatch.get_metric_data(
        MetricDataQueries=[{"Id": "a", "MetricStat": {"Metric": metric, "Period": 86_400,
                                                      "Stat": "Maximum"}, "ReturnData": False},
                           {"Id": "b", "MetricStat": {"Metric": metric, "Period": 86_400,
                                                      "Stat": "Maximum"}}],
        StartTime=dt.datetime(2026, 11, 20, tzinfo=UTC), EndTime=dt.datetime(2026, 11, 23,
                                                                            tzinfo=UTC))
    assert [(r["Id"], r["Label"], r["StatusCode"]) for r in answer["MetricDataResults"]] == [
        ("b", "CPUUtilization", "Complete")]


def test_get_metric_data_pages_datapoints_with_next_token_and_marks_partial_results():
    us = clients().region("us-east-1")
    staging = instance_named(us, "staging-api")["InstanceId"]
    whole = daily(us, "AWS/EC2", "CPUUtilization", {"InstanceId": staging})
    assert len(whole) == 30
    query = [{"Id": "m0", "MetricStat": {"Metric": {
        "Namespace": "AWS/EC2", "MetricName": "CPUUtilization",
        "Dimensions": [{"Name": "InstanceId", "Value": staging}]},
        "Period": 86_400, "Stat": "Maximum"}}]
    params = {"MetricDataQueries": query, "MaxDatapoints": 12,
              "StartTime": dt.datetime.combine(TODAY - dt.timedelta(days=30), dt.time(0),
                                               tzinfo=UTC),
              "EndTime": dt.datetime.combine(TODAY, dt.time(0), tzinfo=UTC)}
    pages, token = [], None
    while True:
        page = us.cloudwatch.get_metric_data(**params, **({"NextToken": token} if token else {}))
        pages.append(page)
        token = page.get("NextToken")
        if not token:
            break
    assert [len(p["MetricDataResults"][0]["Values"]) for p in pages] == [12, 12, 6]
    assert [p["MetricDataResults"][0]["StatusCode"] for p in pages] == [
        "PartialData", "PartialData", "Complete"]
    stitched = {t: v for p in pages for r in p["MetricDataResults"]
                for t, v in zip(r["Timestamps"], r["Values"])}
    assert stitched == whole


def test_the_section_reads_the_same_metrics_when_they_come_in_small_pages():
    assert watched_by_name(clients(max_datapoints=7)) == watched_by_name(clients())


@pytest.mark.parametrize("change, code", [
    ({"queries": 501}, "ValidationError"),
    ({"period": 3600}, "InvalidParameterCombination"),
    ({"duplicate": True}, "ValidationError"),
])
def test_get_metric_data_refuses_what_cloudwatch_or_the_demo_cannot_answer(change, code):
    us = clients().region("us-east-1")
    metric = {"Namespace": "AWS/EC2", "MetricName": "CPUUtilization",
              "Dimensions": [{"Name": "InstanceId", "Value": "i-0x"}]}
    count = change.get("queries", 2)
    queries = [{"Id": "m0" if change.get("duplicate") else f"m{n}", "MetricStat": {
        "Metric": metric, "Period": change.get("period", 86_400), "Stat": "Maximum"}}
        for n in range(count)]
    with pytest.raises(ClientError) as refused:
        us.cloudwatch.get_metric_data(MetricDataQueries=queries,
                                      StartTime=dt.datetime(2026, 11, 1, tzinfo=UTC),
                                      EndTime=dt.datetime(2026, 11, 23, tzinfo=UTC))
    assert refused.value.response["Error"]["Code"] == code


# ---------------------------------------------------------------- EC2


def _names(answer: dict) -> list[str]:
    return sorted({t["Value"] for r in answer["Reservations"] for i in r["Instances"]
                   for t in i.get("Tags", []) if t["Key"] == "Name"})


def test_describe_instances_filters_by_state_tag_key_tag_value_and_ids():
    us = clients().region("us-east-1")
    ec2 = us.ec2
    running = ec2.describe_instances(Filters=[{"Name": "instance-state-name",
                                               "Values": ["running"]}])
    assert "design-review" not in _names(running) and "staging-api" in _names(running)
    tagged = ec2.describe_instances(Filters=[{"Name": "tag-key", "Values": [SCHEDULE_TAG]}])
    assert _names(tagged) == ["design-review", "feature-env", "nightly-batch", "staging-api"]
    both = ec2.describe_instances(Filters=[
        {"Name": "tag-key", "Values": [SCHEDULE_TAG]},
        {"Name": "instance-state-name", "Values": ["stopped"]}])
    assert _names(both) == ["design-review"]
    eu = clients().region("eu-west-1").ec2
    weekend = eu.describe_instances(Filters=[{"Name": f"tag:{SCHEDULE_TAG}",
                                              "Values": ["weekend-off"]}])
    assert _names(weekend) == ["ml-notebook"]
    nodes = eu.describe_instances(Filters=[{"Name": "tag-key", "Values": [NODEGROUP_TAG]}])
    node_tags = [{t["Key"]: t["Value"] for t in i["Tags"]}
                 for r in nodes["Reservations"] for i in r["Instances"]]
    assert len(node_tags) == 4 and all(
        t[CLUSTER_TAG] == "platform" and t["aws:autoscaling:groupName"].startswith("eks-")
        for t in node_tags)
    ids = [i["InstanceId"] for r in tagged["Reservations"] for i in r["Instances"]][:2]
    by_id = ec2.describe_instances(InstanceIds=ids)
    assert [i["InstanceId"] for r in by_id["Reservations"] for i in r["Instances"]] == ids
    wild = ec2.describe_instances(Filters=[{"Name": "tag-key", "Values": ["cost-tracking:*"]}])
    assert _names(wild) == _names(tagged)


def test_describe_instances_pages_with_max_results_and_next_token():
    ec2 = clients().region("us-east-1").ec2
    whole = ec2.describe_instances()["Reservations"]
    assert "NextToken" not in ec2.describe_instances()
    seen, token = [], None
    while True:
        page = ec2.describe_instances(MaxResults=5, **({"NextToken": token} if token else {}))
        assert len(page["Reservations"]) <= 5
        seen += page["Reservations"]
        token = page.get("NextToken")
        if not token:
            break
    assert seen == whole and len(whole) == 11


@pytest.mark.parametrize("params, code", [
    ({"Filters": [{"Name": "instance-state", "Values": ["running"]}]}, "InvalidParameterValue"),
    ({"InstanceIds": ["i-0123456789abcdef0"]}, "InvalidInstanceID.NotFound"),
    ({"MaxResults": 2}, "InvalidParameterValue"),
])
def test_describe_instances_refuses_like_ec2(params, code):
    with pytest.raises(ClientError) as refused:
        clients().region("us-east-1").ec2.describe_instances(**params)
    assert refused.value.response["Error"]["Code"] == code


def test_stopping_and_starting_an_instance_changes_what_ec2_and_the_section_see():
    demo = clients()
    us = demo.region("us-east-1")
    staging = instance_named(us, "staging-api")["InstanceId"]
    stopped = us.ec2.stop_instances(InstanceIds=[staging])
    assert stopped == {"StoppingInstances": [{
        "InstanceId": staging, "CurrentState": {"Code": 64, "Name": "stopping"},
        "PreviousState": {"Code": 16, "Name": "running"}}]}
    described = instance_named(us, "staging-api")
    assert described["State"] == {"Code": 80, "Name": "stopped"}
    assert "User initiated (2026-11-23 10:30:00 GMT)" == described["StateTransitionReason"]
    assert "staging-api" not in watched_by_name(demo)
    again = us.ec2.stop_instances(InstanceIds=[staging])["StoppingInstances"][0]
    assert again["CurrentState"]["Name"] == again["PreviousState"]["Name"] == "stopped"
    started = demo.region("us-east-1").ec2.start_instances(InstanceIds=[staging])
    assert started["StartingInstances"][0]["CurrentState"] == {"Code": 0, "Name": "pending"}
    assert started["StartingInstances"][0]["PreviousState"] == {"Code": 80, "Name": "stopped"}
    assert instance_named(us, "staging-api")["LaunchTime"] == NOW
    [watched] = watched_by_name(demo)["staging-api"]
    assert watched.running_since == NOW  # started inside the window: not idle any more
    assert "staging-api" not in {r.name for r in find_idle(
        [w for ws in watched_by_name(demo).values() for w in ws], DAY, LIMITS, "Owner",
        SCHEDULE_TAG)}


def test_a_started_instance_has_no_datapoints_for_the_days_it_was_stopped():
    demo = clients()
    us = demo.region("us-east-1")
    review = instance_named(us, "design-review")
    assert review["State"]["Name"] == "stopped"
    before = daily(us, "AWS/EC2", "CPUUtilization", {"InstanceId": review["InstanceId"]})
    us.ec2.start_instances(InstanceIds=[review["InstanceId"]])
    after = daily(us, "AWS/EC2", "CPUUtilization", {"InstanceId": review["InstanceId"]})
    assert after == before and max(after).date() == TODAY - dt.timedelta(days=5)


def test_stop_and_start_refuse_unknown_and_terminated_instances():
    demo = clients()
    us = demo.region("us-east-1")
    with pytest.raises(ClientError) as unknown:
        us.ec2.stop_instances(InstanceIds=["i-0123456789abcdef0"])
    assert unknown.value.response["Error"]["Code"] == "InvalidInstanceID.NotFound"
    us.autoscaling.update_auto_scaling_group(AutoScalingGroupName="nightly-batch", MinSize=0,
                                             DesiredCapacity=0)
    gone = [i["InstanceId"] for r in us.ec2.describe_instances(Filters=[
        {"Name": "instance-state-name", "Values": ["terminated"]}])["Reservations"]
        for i in r["Instances"]]
    assert len(gone) == 2
    with pytest.raises(ClientError) as terminated:
        us.ec2.start_instances(InstanceIds=gone[:1])
    assert terminated.value.response["Error"]["Code"] == "IncorrectInstanceState"


# ---------------------------------------------------------------- ECS


def test_ecs_lists_in_pages_and_describes_services_with_tags_only_when_asked():
    ecs = clients().region("us-east-1").ecs
    [cluster] = ecs.list_clusters()["clusterArns"]
    assert cluster == "arn:aws:ecs:us-east-1:123456789012:cluster/apps"
    first = ecs.list_services(cluster=cluster, maxResults=2)
    rest = ecs.list_services(cluster=cluster, nextToken=first["nextToken"], maxResults=2)
    arns = first["serviceArns"] + rest["serviceArns"]
    assert "nextToken" not in rest and len(arns) == 3
    plain = ecs.describe_services(cluster=cluster, services=arns)["services"]
    assert all("tags" not in s for s in plain)
    tagged = ecs.describe_services(cluster="apps", services=arns, include=["TAGS"])["services"]
    by_name = {s["serviceName"]: s for s in tagged}
    assert by_name["report-renderer"]["tags"] == [
        {"key": "Owner", "value": "reporting-team"},
        {"key": SCHEDULE_TAG, "value": "office-hours"}]
    assert (by_name["web-frontend"]["desiredCount"], by_name["report-renderer"]["desiredCount"],
            by_name["nightly-export"]["desiredCount"]) == (3, 2, 0)
    missing = ecs.describe_services(cluster="apps", services=["gone"])
    assert missing["services"] == [] and missing["failures"][0]["reason"] == "MISSING"
    with pytest.raises(ClientError) as too_many:
        ecs.describe_services(cluster="apps", services=[f"s{n}" for n in range(11)])
    assert too_many.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(ClientError) as no_cluster:
        ecs.list_services(cluster="nope")
    assert no_cluster.value.response["Error"]["Code"] == "ClusterNotFoundException"


def test_ecs_update_service_scales_to_zero_and_back():
    demo = clients()
    ecs = demo.region("us-east-1").ecs
    answer = ecs.update_service(cluster="apps", service="report-renderer", desiredCount=0)
    assert answer["service"]["desiredCount"] == 0 and answer["service"]["runningCount"] == 0
    assert "report-renderer" not in watched_by_name(demo)
    ecs.update_service(cluster="arn:aws:ecs:us-east-1:123456789012:cluster/apps",
                       service="arn:aws:ecs:us-east-1:123456789012:service/apps/report-renderer",
                       desiredCount=2)
    [back] = watched_by_name(demo)["report-renderer"]
    assert back.units == 2
    with pytest.raises(ClientError) as unknown:
        ecs.update_service(cluster="apps", service="nope", desiredCount=1)
    assert unknown.value.response["Error"]["Code"] == "ServiceNotFoundException"


# ---------------------------------------------------------------- EKS and Auto Scaling


def _node_ids(rc: RegionClients, group: str) -> list[str]:
    answer = rc.ec2.describe_instances(Filters=[
        {"Name": f"tag:{NODEGROUP_TAG}", "Values": [group]},
        {"Name": "instance-state-name", "Values": ["running"]}])
    return [i["InstanceId"] for r in answer["Reservations"] for i in r["Instances"]]


def test_scaling_a_node_group_to_zero_ends_its_nodes_and_back_launches_new_ones():
    demo = clients()
    eu = demo.region("eu-west-1")
    described = eu.eks.describe_nodegroup(clusterName="platform", nodegroupName="ci-runners")
    group = described["nodegroup"]
    assert group["scalingConfig"] == {"minSize": 0, "maxSize": 4, "desiredSize": 2}
    assert group["tags"] == {"Owner": "platform-team", SCHEDULE_TAG: "office-hours"}
    [asg] = [a["name"] for a in group["resources"]["autoScalingGroups"]]
    old = _node_ids(eu, "ci-runners")
    assert len(old) == 2
    update = eu.eks.update_nodegroup_config(
        clusterName="platform", nodegroupName="ci-runners",
        scalingConfig={"minSize": 0, "maxSize": 4, "desiredSize": 0})["update"]
    assert update["type"] == "ConfigUpdate" and update["status"] == "InProgress"
    assert {p["type"]: p["value"] for p in update["params"]} == {
        "MinSize": "0", "MaxSize": "4", "DesiredSize": "0"}
    assert _node_ids(eu, "ci-runners") == []
    assert eu.eks.describe_nodegroup(clusterName="platform", nodegroupName="ci-runners")[
        "nodegroup"]["scalingConfig"]["desiredSize"] == 0
    [group_now] = eu.autoscaling.describe_auto_scaling_groups(
        AutoScalingGroupNames=[asg])["AutoScalingGroups"]
    assert group_now["DesiredCapacity"] == 0 and group_now["Instances"] == []
    assert "ci-runners" not in watched_by_name(demo)
    eu.eks.update_nodegroup_config(clusterName="platform", nodegroupName="ci-runners",
                                   scalingConfig={"minSize": 0, "maxSize": 4,
                                                  "desiredSize": 2})
    new = _node_ids(eu, "ci-runners")
    assert len(new) == 2 and not set(new) & set(old)
    assert all(instance_launch == NOW for instance_launch in (
        i["LaunchTime"] for r in eu.ec2.describe_instances(InstanceIds=new)["Reservations"]
        for i in r["Instances"]))


@pytest.mark.parametrize("scaling", [
    {"minSize": 0, "maxSize": 0, "desiredSize": 0},  # EKS needs a maximum of at least 1
    {"minSize": 3, "maxSize": 4, "desiredSize": 2},
    {"desiredSize": 9},
])
def test_update_nodegroup_config_refuses_sizes_eks_refuses(scaling):
    eks = clients().region("eu-west-1").eks
    with pytest.raises(ClientError) as refused:
        eks.update_nodegroup_config(clusterName="platform", nodegroupName="ci-runners",
                                    scalingConfig=scaling)
    assert refused.value.response["Error"]["Code"] == "InvalidParameterException"
    with pytest.raises(ClientError) as unknown:
        eks.describe_nodegroup(clusterName="platform", nodegroupName="nope")
    assert unknown.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_auto_scaling_finds_groups_by_tag_key_and_members_by_instance():
    us = clients().region("us-east-1")
    groups = us.autoscaling.describe_auto_scaling_groups(
        Filters=[{"Name": "tag-key", "Values": [SCHEDULE_TAG]}])["AutoScalingGroups"]
    [batch] = groups
    assert (batch["AutoScalingGroupName"], batch["MinSize"], batch["MaxSize"],
            batch["DesiredCapacity"], len(batch["Instances"])) == ("nightly-batch", 2, 4, 2, 2)
    assert {"Key": SCHEDULE_TAG, "Value": "office-hours", "ResourceId": "nightly-batch",
            "ResourceType": "auto-scaling-group", "PropagateAtLaunch": True} in batch["Tags"]
    # EKS does not copy a node group's tags to its Auto Scaling group.
    eu = clients().region("eu-west-1")
    assert eu.autoscaling.describe_auto_scaling_groups(
        Filters=[{"Name": "tag-key", "Values": [SCHEDULE_TAG]}])["AutoScalingGroups"] == []
    assert len(eu.autoscaling.describe_auto_scaling_groups()["AutoScalingGroups"]) == 2
    members = [i["InstanceId"] for i in batch["Instances"]]
    staging = instance_named(us, "staging-api")["InstanceId"]
    found = us.autoscaling.describe_auto_scaling_instances(InstanceIds=members + [staging])
    assert sorted((i["InstanceId"], i["AutoScalingGroupName"])
                  for i in found["AutoScalingInstances"]) == sorted(
        (m, "nightly-batch") for m in members)
    first = us.autoscaling.describe_auto_scaling_instances(MaxRecords=1)
    second = us.autoscaling.describe_auto_scaling_instances(MaxRecords=1,
                                                            NextToken=first["NextToken"])
    assert "NextToken" not in second and {first["AutoScalingInstances"][0]["InstanceId"],
                                          second["AutoScalingInstances"][0]["InstanceId"]} == set(
        members)


def test_update_auto_scaling_group_ends_and_relaunches_instances_within_its_bounds():
    demo = clients()
    us = demo.region("us-east-1")
    asg = us.autoscaling
    assert asg.update_auto_scaling_group(AutoScalingGroupName="nightly-batch", MinSize=0,
                                         DesiredCapacity=0) == {}
    [group] = asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=["nightly-batch"])["AutoScalingGroups"]
    assert (group["MinSize"], group["MaxSize"], group["DesiredCapacity"],
            group["Instances"]) == (0, 4, 0, [])
    assert "nightly-batch" not in watched_by_name(demo)
    asg.update_auto_scaling_group(AutoScalingGroupName="nightly-batch", MinSize=2,
                                  DesiredCapacity=2)
    [back] = asg.describe_auto_scaling_groups(
        AutoScalingGroupNames=["nightly-batch"])["AutoScalingGroups"]
    assert len(back["Instances"]) == 2
    relaunched = watched_by_name(demo)["nightly-batch"]
    assert [w.running_since for w in relaunched] == [NOW, NOW]
    assert all(dict(w.tags)[SCHEDULE_TAG] == "office-hours" for w in relaunched)
    for bad in ({"DesiredCapacity": 5}, {"MinSize": 5}, {"MinSize": 3, "MaxSize": 2}):
        with pytest.raises(ClientError) as refused:
            asg.update_auto_scaling_group(AutoScalingGroupName="nightly-batch", **bad)
        assert refused.value.response["Error"]["Code"] == "ValidationError"


# ---------------------------------------------------------------- through the driver


def test_a_demo_dry_run_reports_the_planted_idle_resources(tmp_path, tmp_path_factory):
    copy_template(tmp_path_factory, "demo", tmp_path)
    assert run_bot(["--demo", "--dry-run"], tmp_path, TODAY,
                   COST_TRACKING_IDLE="on", **QUIET) == 0
    report = json.loads((tmp_path / "site" / "reports" / DAY.isoformat() / "report.json"
                         ).read_text())
    part = report["idle"]
    assert {r["name"]: r["idle_days"] for r in part["resources"]} == IDLE
    assert part["watched"] == len(NOT_IDLE) + len(IDLE) + 1  # two nightly-batch instances
    assert all(r["daily_usd"] for r in part["resources"])
