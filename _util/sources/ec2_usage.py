"""Who ran what on a day: the EC2 instances run, started, stopped and terminated in each
region, read from CloudTrail, with their facts (type, spot, Name tag, who launched them).

Per region (regions in parallel, one thread each; each region's calls in order):
- CloudTrail `LookupEvents` for the UTC day, once per event name (`RunInstances`,
  `StartInstances`, `StopInstances`, `TerminateInstances`: one lookup attribute per call,
  CloudTrail has no OR), every `NextToken` page followed (50 events a page). CloudTrail
  allows 2 of these requests a second per region, so each region's calls wait for their
  turn (`RateLimiter`), and a `ThrottlingException` is retried after a growing pause (on
  top of botocore's standard retries, which a real client also does).
- Facts come from the `RunInstances` event (`CloudTrailEvent` JSON), else from the day
  before as stored (the caller passes them), else from one `DescribeInstances` call for
  every instance still unknown, else from the earliest event CloudTrail still has for it
  (90 days back).
- A spot instance still running at 24:00 by its events is looked up in
  `DescribeSpotInstanceRequests` (one call): a request that ended it (terminated or stopped
  by the request, its end time reached) gives its end.

A region where an action is denied is `RegionAccessDenied`, naming the region and the IAM
action; the caller reports that region as `denied` and the others as usual.
"""
from __future__ import annotations

import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from _util.ec2_intervals import (
    EVENT_NAMES,
    RUN,
    SPOT_END,
    DayUsage,
    InstanceEvent,
    day_bounds,
    usage_by_instance,
)
from _util.errors import SourceError

log = logging.getLogger(__name__)

LOOKUPS_PER_SECOND = 2.0  # CloudTrail's LookupEvents quota, per account and region
PAGE_EVENTS = 50  # the most LookupEvents returns a page
THROTTLE_RETRIES = 5
THROTTLE_PAUSE_SECONDS = 1.0  # doubled at each retry
TRAIL_DAYS = 90  # how far back CloudTrail's event history goes
FILTER_VALUES = 200  # instance IDs per DescribeInstances / DescribeSpotInstanceRequests filter
# Instances a region looks up one by one in CloudTrail when DescribeInstances no longer
# knows them (each is a lookup at 2 a second): beyond this many they stay without facts.
MAX_HISTORY_LOOKUPS = 20
DENIED_CODES = frozenset({"AccessDenied", "AccessDeniedException", "UnauthorizedOperation",
                          "UnauthorizedAccess", "AuthFailure", "OptInRequired"})
THROTTLING_CODES = frozenset({"ThrottlingException", "Throttling", "RequestLimitExceeded",
                              "TooManyRequestsException"})
# Spot request status codes that mean the request, not an API call, ended the instance.
SPOT_ENDED_PREFIXES = ("instance-terminated-by-", "instance-stopped-by-")
SPOT_ENDED_BY_USER = ("instance-terminated-by-user", "instance-stopped-by-user")

LOOKUP_EVENTS = "cloudtrail:LookupEvents"
DESCRIBE_INSTANCES = "ec2:DescribeInstances"
DESCRIBE_SPOT_REQUESTS = "ec2:DescribeSpotInstanceRequests"
DESCRIBE_REGIONS = "ec2:DescribeRegions"
IAM_ACTIONS = (LOOKUP_EVENTS, DESCRIBE_REGIONS, DESCRIBE_INSTANCES, DESCRIBE_SPOT_REQUESTS)


class RegionAccessDenied(SourceError):
    """An AWS action the EC2 usage section needs is denied in a region."""

    def __init__(self, region: str, action: str, code: str) -> None:
        super().__init__(f"{action} is denied in {region} ({code})")
        self.region, self.action, self.code = region, action, code


# ---------------------------------------------------------------- calling AWS politely


class RateLimiter:
    """At most `per_second` calls a second: each call waits until 1/per_second after the
    one before it. Thread-safe; one per region."""

    def __init__(self, per_second: float = LOOKUPS_PER_SECOND,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.interval = 1.0 / per_second
        self._clock, self._sleep = clock, sleep
        self._next = float("-inf")
        self._lock = threading.Lock()

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            if now < self._next:
                self._sleep(self._next - now)
                now = self._next
            self._next = now + self.interval


@dataclass
class RegionCaller:
    """Calls one region's clients: counts requests, rate-limits CloudTrail, retries
    throttling with a growing pause and turns a refusal into `RegionAccessDenied`."""

    region: str
    cloudtrail: Any
    ec2: Any
    limiter: RateLimiter = field(default_factory=RateLimiter)
    sleep: Callable[[float], None] = time.sleep
    throttle_pause: float = THROTTLE_PAUSE_SECONDS
    requests: int = 0
    throttled: int = 0

    def call(self, client: Any, method: str, action: str, **params: Any) -> dict:
        for attempt in range(THROTTLE_RETRIES + 1):
            if client is self.cloudtrail:
                self.limiter.wait()
            self.requests += 1
            try:
                return getattr(client, method)(**params)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in DENIED_CODES:
                    raise RegionAccessDenied(self.region, action, code) from exc
                if code not in THROTTLING_CODES or attempt == THROTTLE_RETRIES:
                    raise
                self.throttled += 1
                pause = self.throttle_pause * 2 ** attempt
                log.debug("%s in %s throttled; again in %.1f s", action, self.region, pause)
                self.sleep(pause)
        raise AssertionError("unreachable")

    def lookup_pages(self, attribute: str, value: str, start: dt.datetime,
                     end: dt.datetime) -> Iterator[dict]:
        """Every event of one lookup attribute between start and end, page by page."""
        params: dict[str, Any] = {
            "LookupAttributes": [{"AttributeKey": attribute, "AttributeValue": value}],
            "StartTime": start, "EndTime": end, "MaxResults": PAGE_EVENTS}
        while True:
            page = self.call(self.cloudtrail, "lookup_events", LOOKUP_EVENTS, **params)
            yield from page.get("Events", [])
            token = page.get("NextToken")
            if not token:
                return
            params["NextToken"] = token


# ---------------------------------------------------------------- reading events


@dataclass(frozen=True)
class InstanceFacts:
    """What the digest says of an instance besides its hours (None: not known)."""

    instance_type: str | None = None
    spot: bool = False
    name: str | None = None
    user: str | None = None

    def known(self) -> bool:
        return self.instance_type is not None


@dataclass(frozen=True)
class ParsedEvent:
    """One CloudTrail event as the interval logic needs it, with the facts it carries."""

    event_id: str
    name: str
    time: dt.datetime
    instance_ids: tuple[str, ...]
    user: str | None
    facts: dict[str, InstanceFacts]  # RunInstances: per launched instance


def _utc(value: Any) -> dt.datetime:
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    return value.astimezone(dt.timezone.utc)


def user_of(event: dict, detail: dict) -> str | None:
    """Who made the call: CloudTrail's `Username`, else the identity's user name or the
    last part of its ARN (an assumed role's session)."""
    if event.get("Username"):
        return str(event["Username"])
    identity = detail.get("userIdentity") or {}
    if identity.get("userName"):
        return str(identity["userName"])
    issuer = ((identity.get("sessionContext") or {}).get("sessionIssuer") or {})
    arn = identity.get("arn") or issuer.get("arn")
    return str(arn).split("/", 1)[-1] if arn else None


def _items(section: Any, key: str = "items") -> list:
    return list((section or {}).get(key) or []) if isinstance(section, dict) else []


def _name_tag(tag_specifications: Any) -> str | None:
    for spec in _items(tag_specifications):
        if spec.get("resourceType") not in (None, "instance"):
            continue
        for tag in spec.get("tags") or []:
            if tag.get("key") == "Name":
                return str(tag.get("value", ""))
    return None


def _run_facts(detail: dict, user: str | None) -> dict[str, InstanceFacts]:
    request = detail.get("requestParameters") or {}
    market = (request.get("instanceMarketOptions") or {}).get("marketType")
    name = _name_tag(request.get("tagSpecificationSet"))
    facts = {}
    for item in _items((detail.get("responseElements") or {}).get("instancesSet")):
        spot = (market == "spot" or item.get("instanceLifecycle") == "spot"
                or bool(item.get("spotInstanceRequestId")))
        facts[item["instanceId"]] = InstanceFacts(
            item.get("instanceType") or request.get("instanceType"), spot, name, user)
    return facts


def parse_event(event: dict) -> ParsedEvent | None:
    """A LookupEvents event as an instance state change, or None when it changed nothing
    (the call failed, or was a dry run)."""
    try:
        detail = json.loads(event.get("CloudTrailEvent") or "{}")
    except ValueError:
        detail = {}
    if detail.get("errorCode") or (detail.get("requestParameters") or {}).get("dryRun"):
        return None
    ids = [r["ResourceName"] for r in event.get("Resources") or []
           if r.get("ResourceType") == "AWS::EC2::Instance" and r.get("ResourceName")]
    if not ids:
        ids = [item["instanceId"] for item in _items(
            (detail.get("responseElements") or {}).get("instancesSet")) if "instanceId" in item]
    if not ids:
        return None
    user = user_of(event, detail)
    name = event.get("EventName") or detail.get("eventName")
    facts = _run_facts(detail, user) if name == RUN else {}
    return ParsedEvent(event.get("EventId") or detail.get("eventID") or "", name,
                       _utc(event["EventTime"]), tuple(dict.fromkeys(ids)), user, facts)


# ---------------------------------------------------------------- one region's day


@dataclass
class InstanceDay:
    """One instance's day in a region: its usage and its facts."""

    region: str
    usage: DayUsage
    facts: InstanceFacts


@dataclass
class RegionDay:
    """What one region said about a day: `ok` with its instances, or `denied` (with the
    IAM action) or `error` (with the reason), and the requests it took."""

    region: str
    status: str
    instances: list[InstanceDay] = field(default_factory=list)
    requests: int = 0
    seconds: float = 0.0
    action: str | None = None
    reason: str | None = None


def _chunks(values: Sequence[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(values), size):
        yield list(values[i:i + size])


def _tags_name(tags: Iterable[dict] | None) -> str | None:
    for tag in tags or []:
        if tag.get("Key") == "Name":
            return str(tag.get("Value", ""))
    return None


def describe_facts(caller: RegionCaller, ids: Sequence[str]) -> dict[str, InstanceFacts]:
    """Type, spot and Name of instances, by ID, from DescribeInstances (one call per 200
    IDs; a filter, so an ID EC2 no longer knows is simply absent instead of failing the
    call)."""
    found = {}
    for chunk in _chunks(sorted(ids), FILTER_VALUES):
        params: dict[str, Any] = {"Filters": [{"Name": "instance-id", "Values": chunk}]}
        while True:
            page = caller.call(caller.ec2, "describe_instances", DESCRIBE_INSTANCES, **params)
            for reservation in page.get("Reservations", []):
                for inst in reservation.get("Instances", []):
                    found[inst["InstanceId"]] = InstanceFacts(
                        inst.get("InstanceType"), inst.get("InstanceLifecycle") == "spot",
                        _tags_name(inst.get("Tags")))
            if not page.get("NextToken"):
                break
            params["NextToken"] = page["NextToken"]
    return found


def earliest_event_facts(caller: RegionCaller, instance_id: str,
                         end: dt.datetime) -> InstanceFacts | None:
    """The facts the oldest event CloudTrail still has for an instance says (its launch,
    when that is within 90 days; else at least who acted on it first)."""
    oldest: ParsedEvent | None = None
    for raw in caller.lookup_pages("ResourceName", instance_id,
                                   end - dt.timedelta(days=TRAIL_DAYS), end):
        parsed = parse_event(raw)
        if parsed is not None and (oldest is None or parsed.time <= oldest.time):
            oldest = parsed
    if oldest is None:
        return None
    return oldest.facts.get(instance_id) or InstanceFacts(user=oldest.user)


def spot_ends(caller: RegionCaller, ids: Sequence[str], day: dt.date) -> dict[str, dt.datetime]:
    """When the spot requests of these instances ended them on `day`, by instance ID: a
    request whose status says it terminated or stopped the instance (not a user's call,
    which CloudTrail has) at its status time, or one whose end time (`ValidUntil`) passed
    on the day and is closed."""
    low, high = day_bounds(day)
    ends = {}
    for chunk in _chunks(sorted(ids), FILTER_VALUES):
        params: dict[str, Any] = {"Filters": [{"Name": "instance-id", "Values": chunk}]}
        while True:
            page = caller.call(caller.ec2, "describe_spot_instance_requests",
                               DESCRIBE_SPOT_REQUESTS, **params)
            for request in page.get("SpotInstanceRequests", []):
                instance_id = request.get("InstanceId")
                status = request.get("Status") or {}
                code = status.get("Code") or ""
                end = None
                if code.startswith(SPOT_ENDED_PREFIXES) and code not in SPOT_ENDED_BY_USER:
                    end = status.get("UpdateTime")
                elif request.get("State") == "closed" and request.get("ValidUntil"):
                    end = request["ValidUntil"]
                if instance_id and end is not None and low <= _utc(end) < high:
                    ends[instance_id] = _utc(end)
            if not page.get("NextToken"):
                break
            params["NextToken"] = page["NextToken"]
    return ends


def fetch_region_day(caller: RegionCaller, day: dt.date,
                     known: dict[str, InstanceFacts] | None = None,
                     running_at_midnight: Iterable[str] = ()) -> list[InstanceDay]:
    """The instances that ran in the caller's region on `day`. `known`: facts already
    stored (the day before), `running_at_midnight`: instance IDs the day before left
    running. Raises RegionAccessDenied, ClientError, BotoCoreError."""
    low, high = day_bounds(day)
    midnight = set(running_at_midnight)
    seen: dict[str, ParsedEvent] = {}
    for name in EVENT_NAMES:
        for raw in caller.lookup_pages("EventName", name, low, high):
            parsed = parse_event(raw)
            if parsed is not None and parsed.name == name:
                seen.setdefault(parsed.event_id or f"{name}:{len(seen)}", parsed)
    events = [InstanceEvent(i, e.name, e.time) for e in seen.values() for i in e.instance_ids]
    usage = usage_by_instance(events, day, midnight)

    facts: dict[str, InstanceFacts] = dict(known or {})
    first_user: dict[str, str] = {}
    for parsed in sorted(seen.values(), key=lambda e: e.time):
        facts.update(parsed.facts)
        for instance_id in parsed.instance_ids:
            if parsed.user:
                first_user.setdefault(instance_id, parsed.user)
    unknown = [i for i in usage if not facts.get(i, InstanceFacts()).known()]
    if unknown:
        facts.update(describe_facts(caller, unknown))
    still_unknown = [i for i in unknown if not facts.get(i, InstanceFacts()).known()]
    if len(still_unknown) > MAX_HISTORY_LOOKUPS:
        log.info("EC2 instance usage: %d instances in %s unknown to DescribeInstances; the "
                 "first %d looked up in CloudTrail", len(still_unknown), caller.region,
                 MAX_HISTORY_LOOKUPS)
    for instance_id in still_unknown[:MAX_HISTORY_LOOKUPS]:
        found = earliest_event_facts(caller, instance_id, high)
        if found is not None:
            facts[instance_id] = found

    spot_running = [i for i, u in usage.items()
                    if u.still_running and facts.get(i, InstanceFacts()).spot]
    ends = spot_ends(caller, spot_running, day) if spot_running else {}
    if ends:
        events += [InstanceEvent(i, SPOT_END, end) for i, end in ends.items()]
        usage = usage_by_instance(events, day, midnight)

    found = []
    for instance_id, instance_usage in usage.items():
        f = facts.get(instance_id, InstanceFacts())
        if f.user is None and instance_id in first_user:
            f = InstanceFacts(f.instance_type, f.spot, f.name, first_user[instance_id])
        found.append(InstanceDay(caller.region, instance_usage, f))
    return found


def region_day(caller: RegionCaller, day: dt.date, known: dict[str, InstanceFacts],
               running_at_midnight: Iterable[str]) -> RegionDay:
    """`fetch_region_day` with its outcome as a status: a refusal is `denied` (one warning
    naming the region and the IAM action), any other failure `error`."""
    start = time.perf_counter()
    try:
        instances = fetch_region_day(caller, day, known, running_at_midnight)
    except RegionAccessDenied as exc:
        log.warning("EC2 instance usage: %s is denied in %s (%s); that region is left out, "
                    "the others are reported", exc.action, caller.region, exc.code)
        return RegionDay(caller.region, "denied", requests=caller.requests,
                         seconds=time.perf_counter() - start, action=exc.action,
                         reason=str(exc))
    except (ClientError, BotoCoreError) as exc:
        log.warning("EC2 instance usage: %s failed (%s); that region is left out, the "
                    "others are reported", caller.region, exc)
        return RegionDay(caller.region, "error", requests=caller.requests,
                         seconds=time.perf_counter() - start, reason=str(exc))
    return RegionDay(caller.region, "ok", instances, caller.requests,
                     time.perf_counter() - start)


def enabled_regions(ec2: Any) -> list[str]:
    """The account's enabled regions (DescribeRegions: opted in, or needing no opt-in).
    Raises RegionAccessDenied naming ec2:DescribeRegions."""
    try:
        answer = ec2.describe_regions(AllRegions=False)
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        if code in DENIED_CODES:
            raise RegionAccessDenied(getattr(getattr(ec2, "meta", None), "region_name", "?"),
                                     DESCRIBE_REGIONS,
                                     code) from exc
        raise
    return sorted(r["RegionName"] for r in answer.get("Regions", [])
                  if r.get("OptInStatus") != "not-opted-in")


# ---------------------------------------------------------------- every region


class AwsEc2UsageClients:
    """boto3's CloudTrail and EC2 clients, one pair per region, from one session (the
    standard credential chain; AWS_ENDPOINT_URL_CLOUDTRAIL and AWS_ENDPOINT_URL_EC2
    redirect them as usual), with botocore's standard retry mode."""

    def __init__(self) -> None:
        import boto3

        from _util.sources.cost_explorer import ce_retry_config

        self._session = boto3.session.Session()
        self._config = ce_retry_config()

    def regions(self) -> list[str]:
        region = self._session.region_name or "us-east-1"
        return enabled_regions(self._session.client("ec2", region_name=region,
                                                    config=self._config))

    def caller(self, region: str) -> RegionCaller:
        return RegionCaller(region,
                            self._session.client("cloudtrail", region_name=region,
                                                 config=self._config),
                            self._session.client("ec2", region_name=region,
                                                 config=self._config))

    def pricing(self) -> Any:
        """The Price List's client (it answers from us-east-1)."""
        return self._session.client("pricing", region_name="us-east-1", config=self._config)


@dataclass
class DayFetch:
    """Every region's answer for a day, with the requests and seconds it took in all."""

    day: dt.date
    regions: list[RegionDay]
    requests: int
    seconds: float


def fetch_day(clients: Any, regions: Sequence[str], day: dt.date,
              known: dict[str, dict[str, InstanceFacts]],
              running_at_midnight: dict[str, set[str]], workers: int = 8) -> DayFetch:
    """Ask every region about `day`, regions in parallel (each has its own CloudTrail
    quota), each region's calls in order. `known` and `running_at_midnight` are by region
    (what the day before left stored)."""
    from concurrent.futures import ThreadPoolExecutor

    start = time.perf_counter()

    def one(region: str) -> RegionDay:
        try:
            caller = clients.caller(region)
        except (BotoCoreError, ClientError) as exc:
            log.warning("EC2 instance usage: no clients for %s (%s)", region, exc)
            return RegionDay(region, "error", reason=str(exc))
        return region_day(caller, day, known.get(region, {}),
                          running_at_midnight.get(region, set()))

    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(regions)))) as pool:
        answers = list(pool.map(one, regions))
    return DayFetch(day, answers, sum(r.requests for r in answers),
                    time.perf_counter() - start)
