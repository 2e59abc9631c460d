"""Reading a day's EC2 instance usage from CloudTrail and EC2 (`_util/sources/ec2_usage.py`):
CloudTrail through botocore's Stubber (moto has no LookupEvents; the Stubber checks every
request and answer against the CloudTrail and EC2 models), EC2 through moto where it fits."""
from __future__ import annotations

import datetime as dt
import json
import logging
import time

import boto3
import botocore.session
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from _util.ec2_intervals import RUN, START, STOP, TERMINATE
from _util.sources.ec2_usage import (
    DESCRIBE_INSTANCES,
    LOOKUP_EVENTS,
    InstanceFacts,
    RateLimiter,
    RegionCaller,
    enabled_regions,
    fetch_day,
    fetch_region_day,
)

DAY = dt.date(2026, 11, 22)
UTC = dt.timezone.utc
LOW = dt.datetime(2026, 11, 22, tzinfo=UTC)
pytestmark = pytest.mark.usefixtures("clean_env")  # any call left unstubbed fails at once
HIGH = LOW + dt.timedelta(days=1)


def at(hour: int, minute: int = 0, day: dt.date = DAY) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=UTC)


def client(service: str, region: str = "us-east-1"):
    return botocore.session.get_session().create_client(
        service, region_name=region, aws_access_key_id="testing",
        aws_secret_access_key="testing")


def event(name: str, when: dt.datetime, *ids: str, user: str = "alice", event_id: str = "",
          instance_type: str = "m5.large", spot: bool = False, tag: str | None = None,
          error: str | None = None) -> dict:
    """A LookupEvents event as CloudTrail answers it, its CloudTrailEvent JSON included."""
    detail: dict = {
        "eventVersion": "1.08", "eventTime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "eventSource": "ec2.amazonaws.com", "eventName": name,
        "userIdentity": {"type": "IAMUser", "userName": user,
                         "arn": f"arn:aws:iam::123456789012:user/{user}"},
        "requestParameters": {"instancesSet": {"items": [{"instanceId": i} for i in ids]}},
        "responseElements": {"instancesSet": {"items": [{"instanceId": i} for i in ids]}},
    }
    if name == RUN:
        request = {"instanceType": instance_type, "minCount": len(ids), "maxCount": len(ids)}
        if spot:
            request["instanceMarketOptions"] = {"marketType": "spot"}
        if tag is not None:
            request["tagSpecificationSet"] = {"items": [
                {"resourceType": "instance", "tags": [{"key": "Name", "value": tag}]}]}
        detail["requestParameters"] = request
        detail["responseElements"] = {"instancesSet": {"items": [
            {"instanceId": i, "instanceType": instance_type,
             **({"instanceLifecycle": "spot"} if spot else {})} for i in ids]}}
    if error:
        detail["errorCode"] = error
        detail["responseElements"] = None
    return {"EventId": event_id or f"{name}-{when:%H%M}-{'-'.join(ids)}", "EventName": name,
            "ReadOnly": "false", "EventTime": when, "EventSource": "ec2.amazonaws.com",
            "Username": user,
            "Resources": [{"ResourceType": "AWS::EC2::Instance", "ResourceName": i}
                          for i in ids],
            "CloudTrailEvent": json.dumps(detail)}


def lookup(name: str, token: str | None = None) -> dict:
    params = {"LookupAttributes": [{"AttributeKey": "EventName", "AttributeValue": name}],
              "StartTime": LOW, "EndTime": HIGH, "MaxResults": 50}
    if token:
        params["NextToken"] = token
    return params


def stub_lookups(stub: Stubber, answers: dict[str, list[list[dict]]]) -> None:
    """Each event name's pages, in the order the fetch asks (NextToken between pages)."""
    for name in (RUN, START, STOP, TERMINATE):
        pages = answers.get(name) or [[]]
        for n, events in enumerate(pages):
            response = {"Events": events}
            if n + 1 < len(pages):
                response["NextToken"] = f"{name}-page-{n + 1}"
            stub.add_response("lookup_events", response,
                              lookup(name, f"{name}-page-{n}" if n else None))


def caller_for(cloudtrail, ec2=None, region="us-east-1", **kwargs) -> RegionCaller:
    return RegionCaller(region, cloudtrail, ec2 or client("ec2", region),
                        limiter=kwargs.pop("limiter", RateLimiter(1000.0)), **kwargs)


def hours(instances) -> dict[str, float]:
    return {i.usage.instance_id: round(i.usage.hours, 4) for i in instances}


def test_pages_are_followed_and_run_instances_gives_type_spot_name_and_user():
    ct, ec2 = client("cloudtrail"), client("ec2")
    first = [event(RUN, at(1, n), f"i-{n:03d}", tag=f"web-{n}", user="alice")
             for n in range(50)]
    second = [event(RUN, at(3), "i-100", "i-101", spot=True, instance_type="c5.xlarge",
                    tag="batch", user="bob")]
    with Stubber(ct) as stub, Stubber(ec2) as ec2_stub:
        stub_lookups(stub, {RUN: [first, second]})
        ec2_stub.add_response("describe_spot_instance_requests", {"SpotInstanceRequests": []},
                              {"Filters": [{"Name": "instance-id",
                                            "Values": ["i-100", "i-101"]}]})
        caller = caller_for(ct, ec2)
        found = fetch_region_day(caller, DAY)
        stub.assert_no_pending_responses()
        ec2_stub.assert_no_pending_responses()
    assert len(found) == 52 and caller.requests == 6
    by_id = {i.usage.instance_id: i for i in found}
    assert by_id["i-100"].facts == InstanceFacts("c5.xlarge", True, "batch", "bob")
    assert by_id["i-007"].facts == InstanceFacts("m5.large", False, "web-7", "alice")
    assert by_id["i-101"].usage.still_running and by_id["i-101"].usage.hours == 21.0


def test_every_interval_case_through_cloudtrail_and_ec2():
    """Crossing midnight (a stop first, facts from DescribeInstances), still running, the
    same stop sent twice, one event naming two instances, a failed call that changed
    nothing, a spot instance ended by its request, and one launched too long ago for
    DescribeInstances whose facts come from its earliest event."""
    ct, ec2 = client("cloudtrail"), client("ec2")
    run = event(RUN, at(8), "i-run", "i-two", tag="api", user="alice")
    spot_run = event(RUN, at(20), "i-spot", spot=True, instance_type="c5.large", user="bob")
    start_old = event(START, at(6), "i-old", user="carol")
    stop_twice = [event(STOP, at(10), "i-run", event_id="stop-1"),
                  event(STOP, at(10), "i-run", event_id="stop-2")]
    crossed = event(STOP, at(4, 30), "i-night", user="carol")
    failed = event(START, at(12), "i-nope", error="UnauthorizedOperation")
    term = event(TERMINATE, at(9), "i-two")
    with Stubber(ct) as cts, Stubber(ec2) as ec2s:
        stub_lookups(cts, {RUN: [[run, spot_run]], START: [[start_old, failed]],
                           STOP: [stop_twice + [crossed]], TERMINATE: [[term]]})
        ec2s.add_response("describe_instances", {"Reservations": [{"Instances": [
            {"InstanceId": "i-night", "InstanceType": "r5.large",
             "Tags": [{"Key": "Name", "Value": "nightly"}]}]}]},
            {"Filters": [{"Name": "instance-id", "Values": ["i-night", "i-old"]}]})
        cts.add_response("lookup_events", {"Events": [
            event(START, at(6), "i-old", user="carol"),
            event(RUN, at(9, day=DAY - dt.timedelta(days=40)), "i-old", user="dave",
                  instance_type="t3.micro", tag="legacy")]},
            {"LookupAttributes": [{"AttributeKey": "ResourceName", "AttributeValue": "i-old"}],
             "StartTime": HIGH - dt.timedelta(days=90), "EndTime": HIGH, "MaxResults": 50})
        ec2s.add_response("describe_spot_instance_requests", {"SpotInstanceRequests": [
            {"SpotInstanceRequestId": "sir-1", "InstanceId": "i-spot", "State": "closed",
             "Status": {"Code": "instance-terminated-by-schedule",
                        "UpdateTime": at(23, 15)},
             "ValidUntil": at(23, 15)}]},
            {"Filters": [{"Name": "instance-id", "Values": ["i-spot"]}]})
        found = fetch_region_day(caller_for(ct, ec2), DAY)
        cts.assert_no_pending_responses()
        ec2s.assert_no_pending_responses()
    assert hours(found) == {"i-run": 2.0, "i-two": 1.0, "i-spot": 3.25, "i-old": 18.0,
                            "i-night": 4.5}
    by_id = {i.usage.instance_id: i for i in found}
    assert by_id["i-night"].facts == InstanceFacts("r5.large", False, "nightly", "carol")
    assert by_id["i-night"].usage.running_at_midnight
    assert by_id["i-old"].facts == InstanceFacts("t3.micro", False, "legacy", "dave")
    assert by_id["i-old"].usage.still_running
    assert not by_id["i-spot"].usage.still_running
    assert by_id["i-two"].usage.started_and_terminated


def test_an_instance_the_day_before_left_running_counts_from_midnight_with_its_stored_facts():
    ct = client("cloudtrail")
    with Stubber(ct) as stub:
        stub_lookups(stub, {STOP: [[event(STOP, at(2), "i-a")]]})
        found = fetch_region_day(caller_for(ct), DAY,
                                 {"i-a": InstanceFacts("m5.large", False, "web", "alice"),
                                  "i-b": InstanceFacts("c5.large", False, None, "bob")},
                                 {"i-a", "i-b"})
    assert hours(found) == {"i-a": 2.0, "i-b": 24.0}
    assert {i.usage.instance_id: i.facts.user for i in found} == {"i-a": "alice", "i-b": "bob"}


@mock_aws
def test_facts_of_instances_launched_earlier_come_from_describe_instances_in_moto(monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    ec2 = boto3.client("ec2", region_name="eu-west-1")
    image = ec2.describe_images()["Images"][0]["ImageId"]
    launched = ec2.run_instances(ImageId=image, MinCount=1, MaxCount=1, InstanceType="m5.xlarge",
                                 TagSpecifications=[{"ResourceType": "instance", "Tags": [
                                     {"Key": "Name", "Value": "reports"}]}])
    instance_id = launched["Instances"][0]["InstanceId"]
    ct = client("cloudtrail", "eu-west-1")
    with Stubber(ct) as stub:
        stub_lookups(stub, {STOP: [[event(STOP, at(7), instance_id, user="erin")]]})
        found = fetch_region_day(RegionCaller("eu-west-1", ct, ec2,
                                              limiter=RateLimiter(1000.0)), DAY)
    assert [(i.facts, i.usage.hours) for i in found] == [
        (InstanceFacts("m5.xlarge", False, "reports", "erin"), 7.0)]
    assert enabled_regions(ec2)  # and DescribeRegions lists the enabled regions
    assert "eu-west-1" in enabled_regions(ec2)


def test_cloudtrail_calls_keep_to_two_a_second_per_region():
    ct = client("cloudtrail")
    pages = [[event(RUN, at(1, n), f"i-{n}")] for n in range(3)]
    with Stubber(ct) as stub:
        stub_lookups(stub, {RUN: pages})  # 3 pages + 3 other names: 6 requests
        caller = RegionCaller("us-east-1", ct, client("ec2"))  # the real limiter, 2/s
        began = time.monotonic()
        fetch_region_day(caller, DAY)
        took = time.monotonic() - began
    assert caller.requests == 6
    rate = (caller.requests - 1) / took  # the first call waits for nothing
    assert took >= 2.45 and rate <= 2.05


def test_throttling_is_retried_after_a_growing_pause():
    ct = client("cloudtrail")
    pauses: list[float] = []
    with Stubber(ct) as stub:
        stub.add_client_error("lookup_events", "ThrottlingException", "Rate exceeded", 400)
        stub.add_client_error("lookup_events", "ThrottlingException", "Rate exceeded", 400)
        stub_lookups(stub, {RUN: [[event(RUN, at(5), "i-1")]]})
        caller = caller_for(ct, sleep=pauses.append)
        found = fetch_region_day(caller, DAY)
        stub.assert_no_pending_responses()
    assert hours(found) == {"i-1": 19.0}
    assert pauses == [1.0, 2.0] and caller.throttled == 2 and caller.requests == 6


class _Regions:
    """Two regions' callers: us-east-1 answers, eu-west-1 refuses `denied`."""

    def __init__(self, denied: str) -> None:
        self.stubs = []
        self.denied = denied

    def caller(self, region: str) -> RegionCaller:
        ct, ec2 = client("cloudtrail", region), client("ec2", region)
        ct_stub, ec2_stub = Stubber(ct), Stubber(ec2)
        if region == "eu-west-1" and self.denied == LOOKUP_EVENTS:
            ct_stub.add_client_error("lookup_events", "AccessDeniedException",
                                     "User is not authorized to perform: cloudtrail:LookupEvents")
        elif region == "eu-west-1":
            stub_lookups(ct_stub, {STOP: [[event(STOP, at(3), "i-eu")]]})
            ec2_stub.add_client_error("describe_instances", "UnauthorizedOperation",
                                      "You are not authorized to perform this operation.")
        else:
            stub_lookups(ct_stub, {RUN: [[event(RUN, at(12), "i-us")]]})
        ct_stub.activate()
        ec2_stub.activate()
        self.stubs += [ct_stub, ec2_stub]
        return caller_for(ct, ec2, region)


@pytest.mark.parametrize("action", [LOOKUP_EVENTS, DESCRIBE_INSTANCES])
def test_a_region_that_denies_is_one_warning_naming_it_and_the_action_the_others_reported(
        action, caplog):
    with caplog.at_level(logging.WARNING):
        fetched = fetch_day(_Regions(action), ["us-east-1", "eu-west-1"], DAY, {}, {})
    by_region = {r.region: r for r in fetched.regions}
    assert by_region["eu-west-1"].status == "denied"
    assert by_region["eu-west-1"].action == action
    assert by_region["us-east-1"].status == "ok"
    assert hours(by_region["us-east-1"].instances) == {"i-us": 12.0}
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "eu-west-1" in warnings[0] and action in warnings[0]


def test_any_other_failure_is_an_error_for_that_region_alone(caplog):
    class Failing(_Regions):
        def caller(self, region):
            if region == "eu-west-1":
                ct = client("cloudtrail", region)
                stub = Stubber(ct)
                stub.add_client_error("lookup_events", "InternalServerError", "boom", 500)
                stub.activate()
                return caller_for(ct, None, region)
            return super().caller(region)

    fetched = fetch_day(Failing(""), ["us-east-1", "eu-west-1"], DAY, {}, {})
    assert [(r.region, r.status) for r in fetched.regions] == [("us-east-1", "ok"),
                                                              ("eu-west-1", "error")]
    assert fetched.requests == 5


# ---------------------------------------------------------------- on-demand prices


def test_the_price_list_answer_gives_the_on_demand_hourly_price_and_a_refusal_says_so():
    from _util.sources.demo_ec2 import DemoPricing
    from _util.sources.ec2_prices import PricesDenied, fetch_prices, product_filters

    pricing = client("pricing")
    demo = DemoPricing().get_products(ServiceCode="AmazonEC2", FormatVersion="aws_v1",
                                      Filters=product_filters("eu-west-1", "m5.large"))
    with Stubber(pricing) as stub:
        stub.add_response("get_products", demo, {
            "ServiceCode": "AmazonEC2", "FormatVersion": "aws_v1", "MaxResults": 10,
            "Filters": product_filters("eu-west-1", "m5.large")})
        stub.add_response("get_products", {"FormatVersion": "aws_v1", "PriceList": []})
        prices, requests = fetch_prices(pricing, [("eu-west-1", "m5.large"),
                                                  ("eu-west-1", "x9.unknown")])
    assert prices == {("eu-west-1", "m5.large"): pytest.approx(0.096 * 1.07),
                      ("eu-west-1", "x9.unknown"): None} and requests == 2
    with Stubber(pricing) as stub:
        stub.add_client_error("get_products", "AccessDeniedException", "not authorized")
        with pytest.raises(PricesDenied):
            fetch_prices(pricing, [("us-east-1", "m5.large")])


def test_the_demos_answers_have_the_real_response_shapes():
    """Every answer the demo gives passes the Stubber's check against the service models."""
    from _util.sources.demo_ec2 import (
        DemoCloudTrail,
        DemoEc2,
        DemoPricing,
        region_events,
    )
    from _util.sources.ec2_prices import product_filters

    today = DAY + dt.timedelta(days=1)
    spot_ids = [e["Resources"][0]["ResourceName"] for e in region_events("eu-west-1", DAY, DAY)
                if e["EventName"] == RUN and '"marketType": "spot"' in e["CloudTrailEvent"]]
    all_ids = [r["ResourceName"] for e in region_events("eu-west-1", DAY, DAY)
               for r in e["Resources"]]
    demo_ec2, ct, ec2 = DemoEc2("eu-west-1", today), client("cloudtrail"), client("ec2")
    pricing = client("pricing")
    answers = [
        (ct, "lookup_events", DemoCloudTrail("eu-west-1").lookup_events(
            LookupAttributes=[{"AttributeKey": "EventName", "AttributeValue": RUN}],
            StartTime=LOW, EndTime=HIGH, MaxResults=5)),
        (ec2, "describe_regions", demo_ec2.describe_regions()),
        (ec2, "describe_instances", demo_ec2.describe_instances(
            Filters=[{"Name": "instance-id", "Values": all_ids}])),
        (ec2, "describe_spot_instance_requests", demo_ec2.describe_spot_instance_requests(
            Filters=[{"Name": "instance-id", "Values": spot_ids}])),
        (pricing, "get_products", DemoPricing().get_products(
            ServiceCode="AmazonEC2", Filters=product_filters("eu-west-1", "r5.large"))),
    ]
    assert answers[0][2]["NextToken"] and answers[2][2]["Reservations"]
    assert answers[3][2]["SpotInstanceRequests"] and answers[4][2]["PriceList"]
    for aws, method, answer in answers:
        with Stubber(aws) as stub:
            stub.add_response(method, answer)  # raises when the shape is not the model's
