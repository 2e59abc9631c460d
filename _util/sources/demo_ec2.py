"""The demo account's EC2 instances, answering like boto3's CloudTrail and EC2 clients.

`DemoCloudTrail.lookup_events`, `DemoEc2.describe_regions`, `describe_instances` and
`describe_spot_instance_requests` take the real calls' parameters and return their
response shapes (events newest first, 50 a page with `NextToken`, `CloudTrailEvent` as a
JSON string, datetimes for times), so `--demo` runs the production fetch, intervals,
store and section end to end, rate limit included.

What runs, every instance a pure function of its launch day and region (a database filled
day by day equals one filled at once): in three regions, six to ten launches a day at
times spread over the day, running 1 to 16 hours (so some cross midnight), about a third
of them spot, launched by two users (`alice`, an IAM user, and `deploy-bot`, a role's
session); in us-east-1 one launched at 21:30 still running at 24:00, and one stop sent
twice; in eu-west-1 one spot instance ended by its request's end time (no API call); in
ap-southeast-2 a development box launched long ago, started in the morning and stopped in
the evening (its facts come from DescribeInstances). On the days the demo's costs plant a
spike on "Amazon Elastic Compute Cloud - Compute", us-east-1 also runs a burst of 18 spot
batch workers (two RunInstances calls of nine, one TerminateInstances of all 18).
"""
from __future__ import annotations

import datetime as dt
import functools
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

from _util.ec2_intervals import RUN, SPOT_END, START, STOP, TERMINATE, day_bounds
from _util.sources.ec2_usage import RegionCaller

REGIONS = ("us-east-1", "eu-west-1", "ap-southeast-2")
ACCOUNT_ID = "123456789012"
EC2_COMPUTE = "Amazon Elastic Compute Cloud - Compute"
TYPES = ("t3.medium", "m5.large", "m5.xlarge", "c5.2xlarge", "r5.large", "g4dn.xlarge")
NAMES = ("web-prod", "api-prod", "batch-workers", "analytics-etl", "ml-experiments", "")
USERS = ("alice", "deploy-bot")
BURST = 18
DEV_BOX_LAUNCH = dt.datetime(2025, 3, 3, 9, 0, tzinfo=dt.timezone.utc)
LOOKBACK_DAYS = 1  # runs last at most 16 hours: only the day before's launches reach a day


def _unit(*parts: object) -> float:
    """A number in [0, 1) fixed by its inputs."""
    digest = hashlib.sha256("|".join(map(str, ("ec2",) + parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _hex(*parts: object, size: int = 17) -> str:
    return hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()[:size]


@dataclass(frozen=True)
class DemoRun:
    """One launch and how it ends (`end` None: not before the horizon)."""

    instance_id: str
    region: str
    instance_type: str
    spot: bool
    name: str
    user: str
    launch: dt.datetime
    end: dt.datetime | None
    end_event: str  # TERMINATE, STOP or SPOT_END (the request ended it: no API call)
    duplicate_stop: bool = False
    launch_event: str = RUN
    batch: str = ""  # runs launched (and ended) by one call share it


def _launch_time(day: dt.date, fraction: float) -> dt.datetime:
    low, _ = day_bounds(day)
    return low + dt.timedelta(minutes=int(fraction * 1440))


@functools.lru_cache(maxsize=16)
def _ec2_spike_days(first: dt.date, last: dt.date) -> frozenset[dt.date]:
    from _util.sources.demo_account import DemoAccount

    account = DemoAccount()
    days = set()
    for n in range((last - first).days + 1):
        day = first + dt.timedelta(days=n)
        spike = account.spike_on(day)
        if spike is not None and account.services[spike[0]].name == EC2_COMPUTE:
            days.add(day)
    return frozenset(days)


def is_ec2_spike_day(day: dt.date) -> bool:
    """Whether the demo's costs plant a spike on EC2 compute that day."""
    return day in _ec2_spike_days(day, day)


@functools.lru_cache(maxsize=256)
def launches(region: str, day: dt.date) -> tuple[DemoRun, ...]:
    """The runs launched in `region` on `day`."""
    runs = []
    count = 6 + int(_unit("count", region, day) * 5)
    for k in range(count):
        u = functools.partial(_unit, region, day, k)
        spot = u("spot") < 0.33
        launch = _launch_time(day, u("at") * 0.95)
        hours = 1.0 + u("hours") * 15.0
        end_event = TERMINATE if u("end") < 0.5 or spot else STOP
        if region == "us-east-1" and k == 0:  # still running at 24:00
            launch, hours, spot, end_event = _launch_time(day, 21.5 / 24), 7.0, False, STOP
        if region == "eu-west-1" and k == 0:  # its spot request ends it
            launch, hours, spot, end_event = _launch_time(day, 13 / 24), 7.25, True, SPOT_END
        runs.append(DemoRun(
            instance_id=f"i-0{_hex(region, day, k, size=16)}", region=region,
            instance_type=TYPES[int(u("type") * len(TYPES))], spot=spot,
            name=NAMES[int(u("name") * len(NAMES))], user=USERS[int(u("user") * 2)],
            launch=launch, end=launch + dt.timedelta(hours=round(hours * 4) / 4),
            end_event=end_event,
            duplicate_stop=region == "us-east-1" and k == 1 and end_event == STOP))
    if region == "us-east-1" and not any(r.duplicate_stop for r in runs):
        first = runs[1]
        runs[1] = DemoRun(first.instance_id, region, first.instance_type, False, first.name,
                          first.user, first.launch, first.end, STOP, True)
    if region == "us-east-1" and is_ec2_spike_day(day):
        start = _launch_time(day, 9 / 24)
        for k in range(BURST):
            runs.append(DemoRun(
                f"i-0{_hex(region, day, 'burst', k, size=16)}", region, "c5.4xlarge", True,
                "batch-workers", "deploy-bot", start + dt.timedelta(minutes=5 * (k // 9)),
                _launch_time(day, 15 / 24), TERMINATE, batch=f"burst-{k // 9}"))
    if region == "ap-southeast-2":
        runs.append(DemoRun(
            f"i-0{_hex(region, 'dev-box', size=16)}", region, "m5.2xlarge", False, "dev-box",
            "alice", _launch_time(day, 8 / 24), _launch_time(day, 18 / 24), STOP,
            launch_event=START))
    return tuple(runs)


def _runs_reaching(region: str, first: dt.date, last: dt.date) -> list[DemoRun]:
    runs = []
    for n in range((last - first).days + 1 + LOOKBACK_DAYS):
        runs.extend(launches(region, first - dt.timedelta(days=LOOKBACK_DAYS - n)))
    return runs


# ---------------------------------------------------------------- CloudTrail's answers


def _identity(user: str) -> dict:
    if user == "deploy-bot":
        role = f"arn:aws:iam::{ACCOUNT_ID}:role/deploy"
        return {"type": "AssumedRole", "principalId": "AROADEMO:deploy-bot",
                "arn": f"arn:aws:sts::{ACCOUNT_ID}:assumed-role/deploy/deploy-bot",
                "accountId": ACCOUNT_ID, "accessKeyId": "ASIADEMO",
                "sessionContext": {"sessionIssuer": {"type": "Role", "arn": role,
                                                     "userName": "deploy"}}}
    return {"type": "IAMUser", "principalId": "AIDADEMO", "accountId": ACCOUNT_ID,
            "arn": f"arn:aws:iam::{ACCOUNT_ID}:user/{user}", "accessKeyId": "AKIADEMO",
            "userName": user}


def _event(name: str, when: dt.datetime, runs: list[DemoRun], region: str,
           salt: str = "") -> dict:
    """One LookupEvents event naming `runs`' instances, as CloudTrail records it."""
    ids = [r.instance_id for r in runs]
    event_id = "-".join(_hex(name, when.isoformat(), *ids, salt, size=n) for n in (8, 4, 4, 4, 12))
    user = runs[0].user
    items = [{"instanceId": i} for i in ids]
    if name == RUN:
        run = runs[0]
        request: dict[str, Any] = {"instanceType": run.instance_type, "minCount": len(ids),
                                   "maxCount": len(ids), "imageId": "ami-0demo"}
        if run.spot:
            request["instanceMarketOptions"] = {"marketType": "spot"}
        if run.name:
            request["tagSpecificationSet"] = {"items": [{"resourceType": "instance", "tags": [
                {"key": "Name", "value": run.name}]}]}
        response = {"instancesSet": {"items": [
            {"instanceId": r.instance_id, "instanceType": r.instance_type,
             "currentState": {"code": 0, "name": "pending"},
             **({"instanceLifecycle": "spot", "spotInstanceRequestId": f"sir-{r.instance_id[2:10]}"}
                if r.spot else {})} for r in runs]}}
    else:
        request = {"instancesSet": {"items": items}}
        response = {"instancesSet": {"items": items}}
    stamp = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    detail = {"eventVersion": "1.09", "userIdentity": _identity(user), "eventTime": stamp,
              "eventSource": "ec2.amazonaws.com", "eventName": name, "awsRegion": region,
              "sourceIPAddress": "203.0.113.10", "userAgent": "aws-cli/2.15.0",
              "requestParameters": request, "responseElements": response,
              "requestID": event_id[::-1], "eventID": event_id, "readOnly": False,
              "eventType": "AwsApiCall", "managementEvent": True,
              "recipientAccountId": ACCOUNT_ID, "eventCategory": "Management"}
    return {"EventId": event_id, "EventName": name, "ReadOnly": "false",
            "AccessKeyId": detail["userIdentity"]["accessKeyId"], "EventTime": when,
            "EventSource": "ec2.amazonaws.com", "Username": user,
            "Resources": [{"ResourceType": "AWS::EC2::Instance", "ResourceName": i}
                          for i in ids],
            "CloudTrailEvent": json.dumps(detail)}


def region_events(region: str, first: dt.date, last: dt.date) -> list[dict]:
    """Every event of `region` on the days first..last, newest first."""
    low, _ = day_bounds(first)
    _, high = day_bounds(last)
    events: list[dict] = []
    runs = _runs_reaching(region, first, last)
    batches: dict[str, list[DemoRun]] = {}
    for run in runs:
        if run.batch:
            batches.setdefault(run.batch + run.launch.date().isoformat(), []).append(run)
            continue
        events.append(_event(run.launch_event, run.launch, [run], region))
        if run.end is not None and run.end_event != SPOT_END:
            events.append(_event(run.end_event, run.end, [run], region))
            if run.duplicate_stop:
                events.append(_event(run.end_event, run.end + dt.timedelta(seconds=40), [run],
                                     region, salt="again"))
    for batch in batches.values():
        events.append(_event(RUN, batch[0].launch, batch, region))
    bursts = [r for r in runs if r.batch]
    for day in {r.launch.date() for r in bursts}:
        ended = [r for r in bursts if r.launch.date() == day]
        events.append(_event(TERMINATE, ended[0].end, ended, region))
    events = [e for e in events if low <= e["EventTime"] < high]
    return sorted(events, key=lambda e: e["EventTime"], reverse=True)


def _client_error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


class DemoCloudTrail:
    """`lookup_events` of one region (by EventName or ResourceName, paged)."""

    def __init__(self, region: str, denied: bool = False) -> None:
        self.region, self.denied = region, denied
        self.requests = 0

    def lookup_events(self, LookupAttributes: list[dict], StartTime: dt.datetime,  # noqa: N803
                      EndTime: dt.datetime, MaxResults: int = 50,  # noqa: N803
                      NextToken: str | None = None) -> dict:  # noqa: N803
        self.requests += 1
        if self.denied:
            raise _client_error("AccessDeniedException",
                                "User: arn:aws:sts::123456789012:assumed-role/cost-bot is not "
                                "authorized to perform: cloudtrail:LookupEvents", "LookupEvents")
        [attribute] = LookupAttributes
        last = (EndTime - dt.timedelta(microseconds=1)).date()
        first = max(StartTime.date(), last - dt.timedelta(days=3))
        events = [e for e in region_events(self.region, first, last)
                  if StartTime <= e["EventTime"] < EndTime]
        key, value = attribute["AttributeKey"], attribute["AttributeValue"]
        if key == "EventName":
            events = [e for e in events if e["EventName"] == value]
        elif key == "ResourceName":
            events = [e for e in events
                      if any(r["ResourceName"] == value for r in e["Resources"])]
        start = int(NextToken or 0)
        page = {"Events": events[start:start + MaxResults]}
        if start + MaxResults < len(events):
            page["NextToken"] = str(start + MaxResults)
        return page


class DemoEc2:
    """EC2's `describe_regions`, `describe_instances` and `describe_spot_instance_requests`
    for one region, knowing the instances of the last few days and the development box."""

    def __init__(self, region: str, today: dt.date) -> None:
        self.region, self.today = region, today
        self.requests = 0

    def _runs(self) -> dict[str, DemoRun]:
        runs = _runs_reaching(self.region, self.today - dt.timedelta(days=3), self.today)
        return {r.instance_id: r for r in sorted(runs, key=lambda r: r.launch)}

    @staticmethod
    def _ids(filters: list[dict]) -> set[str]:
        return {v for f in filters if f["Name"] == "instance-id" for v in f["Values"]}

    def describe_regions(self, AllRegions: bool = False) -> dict:  # noqa: N803
        self.requests += 1
        return {"Regions": [{"Endpoint": f"ec2.{r}.amazonaws.com", "RegionName": r,
                             "OptInStatus": "opt-in-not-required"} for r in REGIONS]}

    def describe_instances(self, Filters: list[dict], NextToken: str | None = None) -> dict:  # noqa: N803
        self.requests += 1
        wanted = self._ids(Filters)
        found = [r for r in self._runs().values() if r.instance_id in wanted]
        return {"Reservations": [{"ReservationId": f"r-0{r.instance_id[3:19]}",
                                  "OwnerId": ACCOUNT_ID, "Instances": [self._instance(r)]}
                                 for r in found]}

    def _instance(self, run: DemoRun) -> dict:
        launched = DEV_BOX_LAUNCH if run.launch_event == START else run.launch
        low, _ = day_bounds(self.today)
        running = run.end is None or run.end > low
        instance: dict[str, Any] = {
            "InstanceId": run.instance_id, "InstanceType": run.instance_type,
            "ImageId": "ami-0demo", "LaunchTime": launched,
            "Placement": {"AvailabilityZone": f"{self.region}a"},
            "State": {"Code": 16, "Name": "running"} if running else
            {"Code": 48 if run.end_event != STOP else 80,
             "Name": "terminated" if run.end_event != STOP else "stopped"}}
        if run.spot:
            instance["InstanceLifecycle"] = "spot"
        if run.name:
            instance["Tags"] = [{"Key": "Name", "Value": run.name}]
        return instance

    def describe_spot_instance_requests(self, Filters: list[dict],  # noqa: N803
                                        NextToken: str | None = None) -> dict:  # noqa: N803
        self.requests += 1
        wanted = self._ids(Filters)
        requests = []
        low, _ = day_bounds(self.today)
        for run in self._runs().values():
            if run.instance_id not in wanted or not run.spot:
                continue
            ended = run.end is not None and run.end <= low
            if ended and run.end_event == SPOT_END:
                state, status = "closed", {"Code": "instance-terminated-by-schedule",
                                           "Message": "Spot Instance terminated due to "
                                                      "the request's end time.",
                                           "UpdateTime": run.end}
            elif ended:
                state, status = "closed", {"Code": "instance-terminated-by-user",
                                           "UpdateTime": run.end}
            else:
                state, status = "active", {"Code": "fulfilled", "UpdateTime": run.launch}
            request = {"SpotInstanceRequestId": f"sir-{run.instance_id[2:10]}",
                       "InstanceId": run.instance_id, "State": state, "Status": status,
                       "Type": "one-time", "CreateTime": run.launch,
                       "LaunchSpecification": {"InstanceType": run.instance_type},
                       "ProductDescription": "Linux/UNIX"}
            if run.end_event == SPOT_END and run.end is not None:
                request["ValidUntil"] = run.end
            requests.append(request)
        return {"SpotInstanceRequests": requests}


class DemoEc2UsageClients:
    """The demo's stand-ins for the EC2 usage section, region by region, behind the same
    `RegionCaller` (rate limit and all) as boto3's clients. `denied`: regions whose
    CloudTrail refuses (for tests)."""

    def __init__(self, today: dt.date, denied: tuple[str, ...] = ()) -> None:
        self.today, self.denied = today, denied

    def regions(self) -> list[str]:
        from _util.sources.ec2_usage import enabled_regions

        return enabled_regions(DemoEc2("us-east-1", self.today))

    def caller(self, region: str) -> RegionCaller:
        return RegionCaller(region, DemoCloudTrail(region, region in self.denied),
                            DemoEc2(region, self.today))

    def pricing(self) -> "DemoPricing":
        return DemoPricing()


# ---------------------------------------------------------------- the Price List

# On-demand Linux USD an hour in us-east-1 (as listed in 2026); other regions cost more.
DEMO_PRICES = {"t3.medium": 0.0416, "m5.large": 0.096, "m5.xlarge": 0.192, "m5.2xlarge": 0.384,
               "c5.2xlarge": 0.34, "c5.4xlarge": 0.68, "r5.large": 0.126, "g4dn.xlarge": 0.526}
REGION_FACTOR = {"us-east-1": 1.0, "eu-west-1": 1.07, "ap-southeast-2": 1.2}


class DemoPricing:
    """The Price List's `get_products` for the demo's instance types: one product a
    (region, type), its on-demand term in the real answer's shape (a JSON string)."""

    def __init__(self) -> None:
        self.requests = 0

    def get_products(self, ServiceCode: str, Filters: list[dict],  # noqa: N803
                     FormatVersion: str = "aws_v1", MaxResults: int = 100,  # noqa: N803
                     NextToken: str | None = None) -> dict:  # noqa: N803
        self.requests += 1
        wanted = {f["Field"]: f["Value"] for f in Filters}
        region, instance_type = wanted.get("regionCode"), wanted.get("instanceType")
        if ServiceCode != "AmazonEC2" or instance_type not in DEMO_PRICES \
                or region not in REGION_FACTOR:
            return {"FormatVersion": FormatVersion, "PriceList": []}
        usd = DEMO_PRICES[instance_type] * REGION_FACTOR[region]
        sku = _hex("sku", region, instance_type, size=16).upper()
        product = {
            "product": {"productFamily": "Compute Instance", "sku": sku, "attributes": {
                "instanceType": instance_type, "regionCode": region, "operatingSystem": "Linux",
                "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
                "servicecode": "AmazonEC2"}},
            "serviceCode": "AmazonEC2",
            "terms": {"OnDemand": {f"{sku}.JRTCKXETXF": {
                "offerTermCode": "JRTCKXETXF", "sku": sku,
                "effectiveDate": "2026-11-01T00:00:00Z", "termAttributes": {},
                "priceDimensions": {f"{sku}.JRTCKXETXF.6YS6EN2CT7": {
                    "unit": "Hrs", "beginRange": "0", "endRange": "Inf",
                    "rateCode": f"{sku}.JRTCKXETXF.6YS6EN2CT7",
                    "description": f"${usd:.4f} per On Demand Linux {instance_type} Instance Hour",
                    "pricePerUnit": {"USD": f"{usd:.10f}"}, "appliesTo": []}}}}},
            "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z"}
        return {"FormatVersion": FormatVersion, "PriceList": [json.dumps(product)]}
