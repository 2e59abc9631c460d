"""The demo account's running capacity, answering like boto3's EC2, CloudWatch, ECS, EKS
and Auto Scaling clients, for the idle resources section and `--schedule`.

Each stand-in takes the real calls' parameter names and answers in the real response
shapes (datetimes for times, the real page tokens: EC2's and Auto Scaling's `NextToken`,
ECS's and EKS's `nextToken`, CloudWatch's `NextToken` after MaxDatapoints datapoints), so
`--demo` runs the production fetch, detection, costs, store and section end to end, and
`--demo --schedule` the production stopper. The acting calls (StopInstances,
StartInstances, UpdateService, UpdateNodegroupConfig, UpdateAutoScalingGroup) change the
demo's state in memory at once (a stopping instance is stopped, a scaled group has its new
instances) for the life of the clients object.

What runs, a pure function of `today` (the calendar day: metrics exist for the days before
it, one daily datapoint at 00:00 UTC) and hashes; "idle N days" means the N days up to the
report's day (`today - 1`) were, as the section counts them with the default thresholds
(7 days, 5% CPU, 50 MB a day):
- us-east-1: `web-prod-1` and `api-prod-1` busy; `staging-api` idle every day of the
  window (office-hours); `jenkins-legacy` idle 12 days, no Owner tag; `metrics-collector`
  idle with a peak of exactly 4.9% CPU three days before today (just under);
  `queue-worker` like it but 5.1% four days before today (just over: idle 3 days);
  `feature-env` idle only 3 days (office-hours); `load-test-runner` launched 2 days ago;
  `design-review` stopped 5 days ago (office-hours: one for the scheduler to start); the
  Auto Scaling group
  `nightly-batch` of two t3.medium, idle 9 days, tagged office-hours and propagating it to
  its instances; ECS cluster `apps` with `web-frontend` busy (3 tasks),
  `report-renderer` idle 21 days (2 tasks, office-hours) and `nightly-export` scaled to 0.
- eu-west-1: `eu-web-1` busy; `ml-notebook` idle 20 days (weekend-off); `vpn-gateway`
  with idle CPU but 80-150 MB of network a day (not idle); EKS cluster `platform` with
  Container Insights, node groups `general` (2 m5.xlarge, busy) and `ci-runners` (2
  m5.large, idle 16 days, office-hours; EKS does not copy node group tags to its Auto
  Scaling group).
- ap-southeast-2: enabled, nothing running.
The Price List is the EC2 usage section's demo (`demo_ec2.DemoPricing`).
"""
from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Sequence

from botocore.exceptions import ClientError

from _util.idle import MB
from _util.sources.demo_ec2 import ACCOUNT_ID, REGIONS, DemoPricing
from _util.sources.idle_resources import (
    CLUSTER_TAG,
    CONTAINER_INSIGHTS,
    NODEGROUP_TAG,
    RegionClients,
)

UTC = dt.timezone.utc
ASG_TAG = "aws:autoscaling:groupName"
SCHEDULE_TAG = "cost-tracking:schedule"  # the setting's default
OWNER_TAG = "Owner"
OFFICE_HOURS, WEEKEND_OFF = "office-hours", "weekend-off"
STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48,
               "stopping": 64, "stopped": 80}
DAY_SECONDS = 86_400
MAX_DATAPOINTS = 100_800  # GetMetricData's default page of datapoints
MAX_QUERIES = 500
SAMPLES_A_DAY = 288  # five-minute (basic monitoring) datapoints a day
METRIC_DAYS_LISTED = 14  # ListMetrics lists what had datapoints in the last two weeks
BUSY_CPU, BUSY_NETWORK = (20.0, 70.0), (200.0, 900.0)
PERCENT, BYTES = "percent", "bytes"  # what a metric measures
NODE_CPU = "node_cpu_utilization"


def _unit(*parts: object) -> float:
    """A number in [0, 1) fixed by its inputs."""
    digest = hashlib.sha256("|".join(map(str, ("idle",) + parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _hex(*parts: object, size: int = 17) -> str:
    return hashlib.sha256("|".join(map(str, ("idle",) + parts)).encode()).hexdigest()[:size]


def _error(code: str, message: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": message},
                        "ResponseMetadata": {"HTTPStatusCode": 400}}, operation)


def _utc(moment: dt.datetime) -> dt.datetime:
    """A request's time in UTC (a naive one is UTC, as botocore sends it)."""
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _page(items: Sequence[Any], token: str | None, limit: int, operation: str,
          code: str = "InvalidNextToken") -> tuple[Sequence[Any], str | None]:
    """One page of `items` from `token` (an offset the demo wrote), and the next token."""
    try:
        start = int(token or 0)
    except ValueError:
        raise _error(code, f"The token {token!r} is invalid", operation) from None
    end = start + limit
    return items[start:end], (str(end) if end < len(items) else None)


# ---------------------------------------------------------------- how busy, day by day


@dataclass(frozen=True)
class Load:
    """A resource's daily maximum CPU and network: busy, except the last `idle_for` days
    before today (None: every day) which are quiet; `peak` sets one day's CPU exactly
    (days before today, percent)."""

    idle_for: int | None = 0
    idle_cpu: tuple[float, float] = (0.5, 3.0)
    idle_network: tuple[float, float] = (2.0, 20.0)
    peak: tuple[int, float] | None = None

    def is_idle(self, day: dt.date, today: dt.date) -> bool:
        return self.idle_for is None or (today - day).days <= self.idle_for

    def cpu(self, key: str, day: dt.date, today: dt.date) -> float:
        if self.peak is not None and (today - day).days == self.peak[0]:
            return self.peak[1]
        low, high = self.idle_cpu if self.is_idle(day, today) else BUSY_CPU
        return round(low + (high - low) * _unit("cpu", key, day), 4)

    def network_mb(self, key: str, day: dt.date, today: dt.date) -> float:
        low, high = self.idle_network if self.is_idle(day, today) else BUSY_NETWORK
        return round(low + (high - low) * _unit("net", key, day), 3)


BUSY = Load()


@dataclass(frozen=True)
class InstanceSpec:
    region: str
    name: str
    instance_type: str
    age_days: int  # launched this many days before today
    load: Load
    owner: str | None
    schedule: str | None = None
    stopped_days: int | None = None  # stopped this many days before today


@dataclass(frozen=True)
class GroupSpec:
    """An Auto Scaling group (not EKS's) whose tags propagate to its instances."""

    region: str
    name: str
    instance_type: str
    size: int
    age_days: int
    load: Load
    tags: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ServiceSpec:
    region: str
    cluster: str
    name: str
    desired: int
    age_days: int
    load: Load
    tags: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class NodegroupSpec:
    region: str
    cluster: str
    name: str
    instance_type: str
    size: int
    age_days: int
    load: Load
    tags: tuple[tuple[str, str], ...]


EDGE_CPU = (2.0, 4.5)
INSTANCES = (
    InstanceSpec("us-east-1", "web-prod-1", "m5.xlarge", 180, BUSY, "web-team"),
    InstanceSpec("us-east-1", "api-prod-1", "m5.large", 150, BUSY, "api-team"),
    InstanceSpec("us-east-1", "staging-api", "m5.large", 95, Load(None), "alice", OFFICE_HOURS),
    InstanceSpec("us-east-1", "jenkins-legacy", "m5.xlarge", 400, Load(12), None),
    InstanceSpec("us-east-1", "metrics-collector", "t3.medium", 60,
                 Load(None, EDGE_CPU, (10.0, 30.0), peak=(3, 4.9)), "data-team"),
    InstanceSpec("us-east-1", "queue-worker", "t3.medium", 60,
                 Load(None, EDGE_CPU, (10.0, 30.0), peak=(4, 5.1)), "api-team"),
    InstanceSpec("us-east-1", "feature-env", "m5.large", 40, Load(3), "bob", OFFICE_HOURS),
    InstanceSpec("us-east-1", "load-test-runner", "m5.xlarge", 2, Load(None), "carol"),
    InstanceSpec("us-east-1", "design-review", "t3.medium", 70, Load(None), "alice",
                 OFFICE_HOURS, stopped_days=5),
    InstanceSpec("eu-west-1", "eu-web-1", "m5.large", 120, BUSY, "web-team"),
    InstanceSpec("eu-west-1", "ml-notebook", "m5.xlarge", 45, Load(20), "dana", WEEKEND_OFF),
    InstanceSpec("eu-west-1", "vpn-gateway", "t3.medium", 300,
                 Load(None, (0.5, 2.5), (80.0, 150.0)), "netops"),
)
GROUPS = (
    GroupSpec("us-east-1", "nightly-batch", "t3.medium", 2, 45, Load(9),
              (("Name", "nightly-batch"), (OWNER_TAG, "data-team"),
               (SCHEDULE_TAG, OFFICE_HOURS))),
)
SERVICES = (
    ServiceSpec("us-east-1", "apps", "web-frontend", 3, 200, BUSY, ((OWNER_TAG, "web-team"),)),
    ServiceSpec("us-east-1", "apps", "report-renderer", 2, 90, Load(21, (0.3, 2.0)),
                ((OWNER_TAG, "reporting-team"), (SCHEDULE_TAG, OFFICE_HOURS))),
    ServiceSpec("us-east-1", "apps", "nightly-export", 0, 300, Load(None),
                ((OWNER_TAG, "data-team"),)),
)
NODEGROUPS = (
    NodegroupSpec("eu-west-1", "platform", "general", "m5.xlarge", 2, 200, BUSY,
                  ((OWNER_TAG, "platform-team"),)),
    NodegroupSpec("eu-west-1", "platform", "ci-runners", "m5.large", 2, 150,
                  Load(16, (1.5, 3.5)), ((OWNER_TAG, "platform-team"),
                                         (SCHEDULE_TAG, OFFICE_HOURS))),
)
INSIGHTS_CLUSTERS = frozenset({"platform"})  # EKS clusters with Container Insights on
KUBERNETES_VERSION, NODE_AMI_RELEASE = "1.31", "1.31.3-20250101"


# ---------------------------------------------------------------- one region's state


@dataclass
class DemoInstance:
    id: str
    instance_type: str
    launch_time: dt.datetime
    since: dt.date  # its metrics begin that day
    until: dt.date | None  # ... and end that day (stopped or gone), None while running
    state: str
    tags: list[tuple[str, str]]
    load: Load
    group: str | None = None  # its Auto Scaling group
    reason: str = ""
    gaps: list[tuple[dt.date, dt.date]] = field(default_factory=list)  # stopped, then started

    def tag(self, key: str) -> str | None:
        return dict(self.tags).get(key)

    @property
    def key(self) -> str:
        return self.id

    def ran_on(self, day: dt.date, today: dt.date) -> bool:
        return _ran_on(day, today, self.since, self.until, self.gaps)

    @property
    def node_name(self) -> str:
        return f"ip-10-0-{int(self.id[3:5], 16)}-{int(self.id[5:7], 16)}"


@dataclass
class DemoGroup:
    name: str
    instance_type: str
    min_size: int
    max_size: int
    desired: int
    created: dt.datetime
    tags: list[tuple[str, str]]  # propagated at launch
    load: Load
    launched: int = 0  # instances launched by scaling out, for their IDs


@dataclass
class DemoService:
    cluster: str
    name: str
    desired: int
    created: dt.datetime
    load: Load
    tags: tuple[tuple[str, str], ...]
    until: dt.date | None = None  # tasks ran until that day (scaled to 0 before)
    gaps: list[tuple[dt.date, dt.date]] = field(default_factory=list)

    @property
    def key(self) -> str:
        return self.name

    def ran_on(self, day: dt.date, today: dt.date) -> bool:
        return _ran_on(day, today, self.created.date(), self.until, self.gaps)


@dataclass
class DemoNodegroup:
    cluster: str
    name: str
    instance_type: str
    min_size: int
    max_size: int
    desired: int
    created: dt.datetime
    tags: tuple[tuple[str, str], ...]
    group: str  # its Auto Scaling group
    uuid: str
    updates: int = 0


def _ran_on(day: dt.date, today: dt.date, since: dt.date, until: dt.date | None,
            gaps: Sequence[tuple[dt.date, dt.date]]) -> bool:
    """Whether a resource has a datapoint on `day`: a past day it ran on."""
    return (since <= day < today and (until is None or day <= until)
            and not any(a <= day <= b for a, b in gaps))


def _resumed(resource: Any, today: dt.date) -> None:
    """A stopped resource runs again today: the days it was stopped stay without data."""
    if resource.until is not None and resource.until + dt.timedelta(days=1) < today:
        resource.gaps.append((resource.until + dt.timedelta(days=1),
                              today - dt.timedelta(days=1)))
    resource.until = None


@dataclass(frozen=True)
class DemoMetric:
    """A metric's daily value, from its resources' loads: their highest (a cluster's
    nodes), None on a day none of them ran."""

    measure: str  # PERCENT: the daily maximum; BYTES: the daily sum
    resources: tuple[Any, ...]  # DemoInstance or DemoService
    salt: str = ""  # another series of the same resource (Container Insights' CPU)
    share: float = 1.0  # of the network's bytes (in or out)

    def daily(self, day: dt.date, today: dt.date) -> float | None:
        values = [self._of(r, day, today) for r in self.resources if r.ran_on(day, today)]
        return max(values) if values else None

    def _of(self, resource: Any, day: dt.date, today: dt.date) -> float:
        key = self.salt + resource.key
        if self.measure == PERCENT:
            return resource.load.cpu(key, day, today)
        return resource.load.network_mb(key, day, today) * MB * self.share


def _launched(today: dt.date, days: int, *key: object) -> dt.datetime:
    day = dt.datetime.combine(today - dt.timedelta(days=days), dt.time(0), tzinfo=UTC)
    return day + dt.timedelta(minutes=int(_unit("launch", *key) * 1440))


class DemoRegion:
    """One region's instances, Auto Scaling groups, ECS services and EKS node groups, and
    their metrics; what the stand-ins read and the acting calls change."""

    def __init__(self, region: str, today: dt.date, clock: Callable[[], dt.datetime]) -> None:
        self.region, self.today, self.clock = region, today, clock
        self.instances: dict[str, DemoInstance] = {}
        self.groups: dict[str, DemoGroup] = {}
        self.services: dict[tuple[str, str], DemoService] = {}
        self.nodegroups: dict[tuple[str, str], DemoNodegroup] = {}
        self.ecs_clusters: list[str] = []
        self.eks_clusters: list[str] = []
        for spec in INSTANCES:
            if spec.region == region:
                self._add_instance(spec)
        for g in GROUPS:
            if g.region == region:
                self.groups[g.name] = DemoGroup(
                    g.name, g.instance_type, g.size, g.size * 2, g.size,
                    _launched(today, g.age_days, region, g.name), list(g.tags), g.load)
                for _ in range(g.size):
                    self._launch_into(self.groups[g.name], g.age_days)
        for s in SERVICES:
            if s.region == region:
                if s.cluster not in self.ecs_clusters:
                    self.ecs_clusters.append(s.cluster)
                self.services[(s.cluster, s.name)] = DemoService(
                    s.cluster, s.name, s.desired, _launched(today, s.age_days, region, s.name),
                    s.load, s.tags, None if s.desired else today - dt.timedelta(days=40))
        for n in NODEGROUPS:
            if n.region == region:
                self._add_nodegroup(n)

    # -- building

    def _add_instance(self, spec: InstanceSpec) -> None:
        launch = _launched(self.today, spec.age_days, self.region, spec.name)
        tags = [("Name", spec.name)] + ([(OWNER_TAG, spec.owner)] if spec.owner else [])
        tags += [(SCHEDULE_TAG, spec.schedule)] if spec.schedule else []
        until = None
        state, reason = "running", ""
        if spec.stopped_days is not None:
            until = self.today - dt.timedelta(days=spec.stopped_days)
            stopped = _launched(self.today, spec.stopped_days, self.region, spec.name, "stop")
            state, reason = "stopped", f"User initiated ({stopped:%Y-%m-%d %H:%M:%S} GMT)"
        instance_id = f"i-0{_hex(self.region, spec.name, size=16)}"
        self.instances[instance_id] = DemoInstance(instance_id, spec.instance_type, launch,
                                                   launch.date(), until, state, tags, spec.load,
                                                   reason=reason)

    def _add_nodegroup(self, spec: NodegroupSpec) -> None:
        if spec.cluster not in self.eks_clusters:
            self.eks_clusters.append(spec.cluster)
        digits = _hex(self.region, spec.cluster, spec.name, size=32)
        uuid = "-".join((digits[:8], digits[8:12], digits[12:16], digits[16:20], digits[20:]))
        group_name = f"eks-{spec.name}-{uuid}"
        created = _launched(self.today, spec.age_days, self.region, spec.cluster, spec.name)
        self.nodegroups[(spec.cluster, spec.name)] = DemoNodegroup(
            spec.cluster, spec.name, spec.instance_type, 0, spec.size * 2, spec.size, created,
            spec.tags, group_name, uuid)
        # EKS tags its group and nodes with the cluster and node group, not with the node
        # group's own tags.
        self.groups[group_name] = DemoGroup(
            group_name, spec.instance_type, 0, spec.size * 2, spec.size, created,
            [(CLUSTER_TAG, spec.cluster), (NODEGROUP_TAG, spec.name),
             (f"kubernetes.io/cluster/{spec.cluster}", "owned"),
             ("k8s.io/cluster-autoscaler/enabled", "true")], spec.load)
        for _ in range(spec.size):
            self._launch_into(self.groups[group_name], spec.age_days - 30)

    def _launch_into(self, group: DemoGroup, age_days: int | None = None) -> DemoInstance:
        """A new instance of an Auto Scaling group: at build time `age_days` old, else now."""
        group.launched += 1
        instance_id = f"i-0{_hex(self.region, group.name, group.launched, size=16)}"
        if age_days is None:
            launch, since = self.clock(), self.today
        else:
            launch = _launched(self.today, age_days, self.region, group.name, group.launched)
            since = launch.date()
        tags = [(ASG_TAG, group.name)] + list(group.tags)
        instance = DemoInstance(instance_id, group.instance_type, launch, since, None,
                                "running", tags, group.load, group.name)
        self.instances[instance_id] = instance
        return instance

    # -- acting

    def members(self, group: str) -> list[DemoInstance]:
        return [i for i in self.instances.values()
                if i.group == group and i.state not in ("terminated", "shutting-down")]

    def resize(self, group: DemoGroup, min_size: int, max_size: int, desired: int) -> None:
        """Sizes as Auto Scaling applies them: the newest instances end first."""
        group.min_size, group.max_size, group.desired = min_size, max_size, desired
        members = self.members(group.name)
        for extra in sorted(members, key=lambda i: i.launch_time)[desired:]:
            extra.state, extra.until = "terminated", self.today
            extra.reason = f"User initiated ({self.clock():%Y-%m-%d %H:%M:%S} GMT)"
        for _ in range(desired - len(members)):
            self._launch_into(group)

    # -- metrics

    def metrics(self) -> dict[tuple[str, str, frozenset], DemoMetric]:
        """Every metric of the region by (namespace, name, dimensions)."""
        found: dict[tuple[str, str, frozenset], DemoMetric] = {}
        nodes: dict[str, list[DemoInstance]] = {}
        for i in self.instances.values():
            dims = frozenset({("InstanceId", i.id)})
            found[("AWS/EC2", "CPUUtilization", dims)] = DemoMetric(PERCENT, (i,))
            found[("AWS/EC2", "NetworkIn", dims)] = DemoMetric(BYTES, (i,), share=0.55)
            found[("AWS/EC2", "NetworkOut", dims)] = DemoMetric(BYTES, (i,), share=0.45)
            cluster = i.tag(CLUSTER_TAG)
            if cluster in INSIGHTS_CLUSTERS:
                nodes.setdefault(cluster, []).append(i)
                dims = frozenset({("ClusterName", cluster), ("InstanceId", i.id),
                                  ("NodeName", self.node_dns(i))})
                found[(CONTAINER_INSIGHTS, NODE_CPU, dims)] = DemoMetric(PERCENT, (i,), "ci-")
        for cluster, members in nodes.items():
            found[(CONTAINER_INSIGHTS, NODE_CPU, frozenset({("ClusterName", cluster)}))] = (
                DemoMetric(PERCENT, tuple(members), "ci-"))
        for service in self.services.values():
            dims = frozenset({("ClusterName", service.cluster), ("ServiceName", service.name)})
            found[("AWS/ECS", "CPUUtilization", dims)] = DemoMetric(PERCENT, (service,))
        return found

    def node_dns(self, instance: DemoInstance) -> str:
        return f"{instance.node_name}.{self.region}.compute.internal"

    def arn(self, service: str, resource: str) -> str:
        return f"arn:aws:{service}:{self.region}:{ACCOUNT_ID}:{resource}"


# ---------------------------------------------------------------- EC2


def _tag_matches(tags: Iterable[tuple[str, str]], name: str, values: Sequence[str]) -> bool:
    def any_of(text: str) -> bool:
        return any(fnmatch.fnmatchcase(text, v) for v in values)

    if name == "tag-key":
        return any(any_of(k) for k, _ in tags)
    if name == "tag-value":
        return any(any_of(v) for _, v in tags)
    key = name[len("tag:"):]
    return any(k == key and any_of(v) for k, v in tags)


class DemoIdleEc2:
    """EC2's DescribeRegions, DescribeInstances, StopInstances and StartInstances."""

    FILTERS = ("instance-state-name", "instance-id", "tag-key", "tag-value")

    def __init__(self, state: DemoRegion) -> None:
        self.state = state

    def describe_regions(self, AllRegions: bool = False) -> dict:  # noqa: N803
        return {"Regions": [{"Endpoint": f"ec2.{r}.amazonaws.com", "RegionName": r,
                             "OptInStatus": "opt-in-not-required"} for r in REGIONS]}

    def _matches(self, instance: DemoInstance, f: dict) -> bool:
        name, values = f["Name"], f["Values"]
        if name == "instance-state-name":
            return instance.state in values
        if name == "instance-id":
            return instance.id in values
        return _tag_matches(instance.tags, name, values)

    def _described(self, instance: DemoInstance) -> dict:
        described: dict[str, Any] = {
            "InstanceId": instance.id, "InstanceType": instance.instance_type,
            "ImageId": "ami-0demo", "LaunchTime": instance.launch_time,
            "State": {"Code": STATE_CODES[instance.state], "Name": instance.state},
            "StateTransitionReason": instance.reason,
            "Placement": {"AvailabilityZone": f"{self.state.region}a", "Tenancy": "default"},
            "PrivateDnsName": self.state.node_dns(instance),
            "Monitoring": {"State": "disabled"}, "Architecture": "x86_64",
            "Tags": [{"Key": k, "Value": v} for k, v in instance.tags]}
        return described

    def describe_instances(self, Filters: list[dict] | None = None,  # noqa: N803
                           InstanceIds: list[str] | None = None,  # noqa: N803
                           MaxResults: int | None = None, NextToken: str | None = None,  # noqa: N803
                           DryRun: bool = False) -> dict:  # noqa: N803
        if DryRun:
            raise _error("DryRunOperation", "Request would have succeeded, but DryRun flag "
                         "is set.", "DescribeInstances")
        for f in Filters or []:
            if f["Name"] not in self.FILTERS and not f["Name"].startswith("tag:"):
                raise _error("InvalidParameterValue", f"The filter '{f['Name']}' is invalid",
                             "DescribeInstances")
        if InstanceIds and MaxResults is not None:
            raise _error("InvalidParameterCombination", "The parameter instancesSet cannot "
                         "be used with the parameter maxResults", "DescribeInstances")
        if MaxResults is not None and not 5 <= MaxResults <= 1000:
            raise _error("InvalidParameterValue", "Value for parameter maxResults is invalid. "
                         "Expecting a value between 5 and 1000.", "DescribeInstances")
        found = list(self.state.instances.values())
        if InstanceIds:
            missing = [i for i in InstanceIds if i not in self.state.instances]
            if missing:
                raise _error("InvalidInstanceID.NotFound", f"The instance IDs '{', '.join(missing)}'"
                             " do not exist", "DescribeInstances")
            found = [self.state.instances[i] for i in InstanceIds]
        found = [i for i in found if all(self._matches(i, f) for f in Filters or [])]
        page, token = _page(found, NextToken, MaxResults or len(found) or 1,
                            "DescribeInstances", "InvalidParameterValue")
        answer: dict[str, Any] = {"Reservations": [
            {"ReservationId": f"r-0{i.id[3:19]}", "OwnerId": ACCOUNT_ID,
             "Groups": [], "Instances": [self._described(i)]} for i in page]}
        if token:
            answer["NextToken"] = token
        return answer

    def _change(self, ids: list[str], operation: str, key: str, to: str, showing: str,
                dry_run: bool) -> dict:
        missing = [i for i in ids if i not in self.state.instances]
        if missing:
            raise _error("InvalidInstanceID.NotFound",
                         f"The instance ID '{missing[0]}' does not exist", operation)
        for i in ids:
            if self.state.instances[i].state in ("terminated", "shutting-down"):
                raise _error("IncorrectInstanceState", f"The instance '{i}' is not in a state "
                             "from which it can be stopped or started.", operation)
        if dry_run:
            raise _error("DryRunOperation", "Request would have succeeded, but DryRun flag "
                         "is set.", operation)
        changes = []
        now = self.state.clock()
        for i in ids:
            instance = self.state.instances[i]
            before = instance.state
            current = before if before == to else showing
            if before != to:
                instance.state = to
                if to == "running":
                    instance.launch_time, instance.reason = now, ""
                    _resumed(instance, self.state.today)
                else:
                    instance.until = self.state.today
                    instance.reason = f"User initiated ({now:%Y-%m-%d %H:%M:%S} GMT)"
            changes.append({"InstanceId": i,
                            "CurrentState": {"Code": STATE_CODES[current], "Name": current},
                            "PreviousState": {"Code": STATE_CODES[before], "Name": before}})
        return {key: changes}

    def stop_instances(self, InstanceIds: list[str], Hibernate: bool = False,  # noqa: N803
                       DryRun: bool = False, Force: bool = False) -> dict:  # noqa: N803
        return self._change(InstanceIds, "StopInstances", "StoppingInstances", "stopped",
                            "stopping", DryRun)

    def start_instances(self, InstanceIds: list[str], DryRun: bool = False) -> dict:  # noqa: N803
        return self._change(InstanceIds, "StartInstances", "StartingInstances", "running",
                            "pending", DryRun)


# ---------------------------------------------------------------- CloudWatch


def _statistic(measure: str, stat: str, daily: float) -> float:
    """A day's statistic of a metric whose daily maximum (percent) or sum (bytes) is
    `daily`, over five-minute datapoints."""
    if stat == "SampleCount":
        return float(SAMPLES_A_DAY)
    if measure == PERCENT:
        average = daily * 0.45
        return {"Maximum": daily, "Average": average, "Minimum": daily * 0.1,
                "Sum": average * SAMPLES_A_DAY}.get(stat, average)
    mean = daily / SAMPLES_A_DAY
    return {"Sum": daily, "Average": mean, "Maximum": mean * 3.0,
            "Minimum": mean * 0.2}.get(stat, mean)


class DemoCloudWatch:
    """CloudWatch's GetMetricData (daily periods: the demo keeps daily values) and
    ListMetrics."""

    def __init__(self, state: DemoRegion, max_datapoints: int = MAX_DATAPOINTS) -> None:
        self.state, self.max_datapoints = state, max_datapoints

    def get_metric_data(self, MetricDataQueries: list[dict], StartTime: dt.datetime,  # noqa: N803
                        EndTime: dt.datetime, NextToken: str | None = None,  # noqa: N803
                        ScanBy: str = "TimestampDescending",  # noqa: N803
                        MaxDatapoints: int | None = None) -> dict:  # noqa: N803
        operation = "GetMetricData"
        if len(MetricDataQueries) > MAX_QUERIES:
            raise _error("ValidationError", "The collection MetricDataQueries must not have "
                         f"a size greater than {MAX_QUERIES}.", operation)
        ids = [q["Id"] for q in MetricDataQueries]
        if len(set(ids)) != len(ids):
            raise _error("ValidationError", "The values for parameter id in "
                         "MetricDataQueries are not unique.", operation)
        metrics = self.state.metrics()
        start = dt.datetime.combine(_utc(StartTime).date(), dt.time(0), tzinfo=UTC)
        end = _utc(EndTime)
        points: list[tuple[str, str, dt.datetime, float]] = []
        answered: list[tuple[str, str]] = []
        for q in MetricDataQueries:
            stat = q.get("MetricStat")
            if stat is None:
                raise _error("ValidationError", "The demo's CloudWatch answers MetricStat "
                             "queries only", operation)
            if stat["Period"] != DAY_SECONDS:
                raise _error("InvalidParameterCombination", "The demo's CloudWatch keeps one "
                             f"datapoint a day: Period must be {DAY_SECONDS}", operation)
            metric = stat["Metric"]
            key = (metric.get("Namespace"), metric.get("MetricName"),
                   frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", [])))
            if not q.get("ReturnData", True):
                continue
            label = q.get("Label") or metric.get("MetricName", "")
            answered.append((q["Id"], label))
            found = metrics.get(key)
            stamps = []
            moment = start
            while found is not None and moment < end:
                daily = found.daily(moment.date(), self.state.today)
                if daily is not None:
                    stamps.append((moment, _statistic(found.measure, stat["Stat"], daily)))
                moment += dt.timedelta(days=1)
            if ScanBy == "TimestampDescending":
                stamps.reverse()
            points += [(q["Id"], label, t, v) for t, v in stamps]
        page, token = _page(points, NextToken, MaxDatapoints or self.max_datapoints, operation)
        results: dict[str, dict] = {}
        if not NextToken:  # a query without data answers on the first page
            results = {qid: {"Id": qid, "Label": label, "Timestamps": [], "Values": [],
                             "StatusCode": "Complete"} for qid, label in answered}
        for qid, label, stamp, value in page:
            entry = results.setdefault(qid, {"Id": qid, "Label": label, "Timestamps": [],
                                             "Values": [], "StatusCode": "Complete"})
            entry["Timestamps"].append(stamp)
            entry["Values"].append(value)
        if token is not None:
            rest = {p[0] for p in points[int(token):]}
            for qid in rest & results.keys():
                results[qid]["StatusCode"] = "PartialData"
        answer: dict[str, Any] = {"MetricDataResults": list(results.values()), "Messages": []}
        if token:
            answer["NextToken"] = token
        return answer

    def list_metrics(self, Namespace: str | None = None, MetricName: str | None = None,  # noqa: N803
                     Dimensions: list[dict] | None = None,  # noqa: N803
                     NextToken: str | None = None) -> dict:  # noqa: N803
        recent = [self.state.today - dt.timedelta(days=n)
                  for n in range(1, METRIC_DAYS_LISTED + 1)]
        found = []
        for (namespace, name, dims), metric in self.state.metrics().items():
            if Namespace is not None and namespace != Namespace:
                continue
            if MetricName is not None and name != MetricName:
                continue
            held = dict(dims)
            if any(d["Name"] not in held or ("Value" in d and held[d["Name"]] != d["Value"])
                   for d in Dimensions or []):
                continue
            if all(metric.daily(d, self.state.today) is None for d in recent):
                continue
            found.append({"Namespace": namespace, "MetricName": name,
                          "Dimensions": [{"Name": k, "Value": v} for k, v in sorted(dims)]})
        page, token = _page(found, NextToken, 500, "ListMetrics")
        answer: dict[str, Any] = {"Metrics": list(page)}
        if token:
            answer["NextToken"] = token
        return answer


# ---------------------------------------------------------------- ECS


class DemoEcs:
    """ECS's ListClusters, ListServices, DescribeServices and UpdateService."""

    def __init__(self, state: DemoRegion) -> None:
        self.state = state

    @staticmethod
    def _name(name_or_arn: str | None, default: str = "default") -> str:
        return (name_or_arn or default).rsplit("/", 1)[-1]

    def _cluster(self, cluster: str | None, operation: str) -> str:
        name = self._name(cluster)
        if name not in self.state.ecs_clusters:
            raise _error("ClusterNotFoundException", "Cluster not found.", operation)
        return name

    def _described(self, s: DemoService, tags: bool) -> dict:
        described: dict[str, Any] = {
            "serviceArn": self.state.arn("ecs", f"service/{s.cluster}/{s.name}"),
            "serviceName": s.name,
            "clusterArn": self.state.arn("ecs", f"cluster/{s.cluster}"),
            "status": "ACTIVE", "desiredCount": s.desired, "runningCount": s.desired,
            "pendingCount": 0, "launchType": "FARGATE", "platformVersion": "LATEST",
            "taskDefinition": self.state.arn("ecs", f"task-definition/{s.name}:7"),
            "schedulingStrategy": "REPLICA", "createdAt": s.created, "createdBy":
                f"arn:aws:iam::{ACCOUNT_ID}:role/deploy", "propagateTags": "NONE"}
        if tags:
            described["tags"] = [{"key": k, "value": v} for k, v in s.tags]
        return described

    def list_clusters(self, nextToken: str | None = None,  # noqa: N803
                      maxResults: int | None = None) -> dict:  # noqa: N803
        arns = [self.state.arn("ecs", f"cluster/{c}") for c in self.state.ecs_clusters]
        page, token = _page(arns, nextToken, maxResults or 100, "ListClusters",
                            "InvalidParameterException")
        return {"clusterArns": list(page), **({"nextToken": token} if token else {})}

    def list_services(self, cluster: str | None = None, nextToken: str | None = None,  # noqa: N803
                      maxResults: int | None = None) -> dict:  # noqa: N803
        name = self._cluster(cluster, "ListServices")
        arns = [self.state.arn("ecs", f"service/{s.cluster}/{s.name}")
                for s in self.state.services.values() if s.cluster == name]
        page, token = _page(arns, nextToken, maxResults or 10, "ListServices",
                            "InvalidParameterException")
        return {"serviceArns": list(page), **({"nextToken": token} if token else {})}

    def describe_services(self, services: list[str], cluster: str | None = None,
                          include: list[str] | None = None) -> dict:
        name = self._cluster(cluster, "DescribeServices")
        if len(services) > 10:
            raise _error("InvalidParameterException", "services can have at most 10 items.",
                         "DescribeServices")
        found, failures = [], []
        for s in services:
            service = self.state.services.get((name, self._name(s)))
            if service is None:
                failures.append({"arn": self.state.arn("ecs", f"service/{name}/{self._name(s)}"),
                                 "reason": "MISSING"})
            else:
                found.append(self._described(service, "TAGS" in (include or [])))
        return {"services": found, "failures": failures}

    def update_service(self, service: str, cluster: str | None = None,
                       desiredCount: int | None = None) -> dict:  # noqa: N803
        name = self._cluster(cluster, "UpdateService")
        found = self.state.services.get((name, self._name(service)))
        if found is None:
            raise _error("ServiceNotFoundException", "Service not found.", "UpdateService")
        if desiredCount is not None:
            if desiredCount < 0:
                raise _error("InvalidParameterException", "desiredCount must be 0 or more.",
                             "UpdateService")
            if desiredCount == 0 and found.desired > 0:
                found.until = self.state.today
            elif desiredCount > 0 and found.desired == 0:
                _resumed(found, self.state.today)
            found.desired = desiredCount
        return {"service": self._described(found, False)}


# ---------------------------------------------------------------- EKS


class DemoEks:
    """EKS's ListClusters, ListNodegroups, DescribeNodegroup and UpdateNodegroupConfig."""

    def __init__(self, state: DemoRegion) -> None:
        self.state = state

    def _group(self, cluster: str, name: str, operation: str) -> DemoNodegroup:
        if cluster not in self.state.eks_clusters:
            raise _error("ResourceNotFoundException", f"No cluster found for name: {cluster}.",
                         operation)
        found = self.state.nodegroups.get((cluster, name))
        if found is None:
            raise _error("ResourceNotFoundException", f"No node group found for name: {name}.",
                         operation)
        return found

    def list_clusters(self, maxResults: int | None = None,  # noqa: N803
                      nextToken: str | None = None) -> dict:  # noqa: N803
        page, token = _page(self.state.eks_clusters, nextToken, maxResults or 100,
                            "ListClusters", "InvalidParameterException")
        return {"clusters": list(page), **({"nextToken": token} if token else {})}

    def list_nodegroups(self, clusterName: str, maxResults: int | None = None,  # noqa: N803
                        nextToken: str | None = None) -> dict:  # noqa: N803
        if clusterName not in self.state.eks_clusters:
            raise _error("ResourceNotFoundException", f"No cluster found for name: "
                         f"{clusterName}.", "ListNodegroups")
        names = [g.name for g in self.state.nodegroups.values() if g.cluster == clusterName]
        page, token = _page(names, nextToken, maxResults or 100, "ListNodegroups",
                            "InvalidParameterException")
        return {"nodegroups": list(page), **({"nextToken": token} if token else {})}

    def describe_nodegroup(self, clusterName: str, nodegroupName: str) -> dict:  # noqa: N803
        g = self._group(clusterName, nodegroupName, "DescribeNodegroup")
        return {"nodegroup": {
            "nodegroupName": g.name,
            "nodegroupArn": self.state.arn("eks", f"nodegroup/{g.cluster}/{g.name}/{g.uuid}"),
            "clusterName": g.cluster, "version": KUBERNETES_VERSION,
            "releaseVersion": NODE_AMI_RELEASE, "createdAt": g.created, "modifiedAt": g.created,
            "status": "ACTIVE", "capacityType": "ON_DEMAND",
            "scalingConfig": {"minSize": g.min_size, "maxSize": g.max_size,
                              "desiredSize": g.desired},
            "instanceTypes": [g.instance_type], "subnets": ["subnet-0demo1", "subnet-0demo2"],
            "amiType": "AL2023_x86_64_STANDARD",
            "nodeRole": f"arn:aws:iam::{ACCOUNT_ID}:role/eks-node-role",
            "labels": {}, "resources": {"autoScalingGroups": [{"name": g.group}]},
            "diskSize": 20, "health": {"issues": []}, "updateConfig": {"maxUnavailable": 1},
            "tags": dict(g.tags)}}

    def update_nodegroup_config(self, clusterName: str, nodegroupName: str,  # noqa: N803
                                scalingConfig: dict | None = None,  # noqa: N803
                                clientRequestToken: str | None = None) -> dict:  # noqa: N803
        operation = "UpdateNodegroupConfig"
        g = self._group(clusterName, nodegroupName, operation)
        sizes = {"minSize": g.min_size, "maxSize": g.max_size, "desiredSize": g.desired,
                 **(scalingConfig or {})}
        low, high, desired = sizes["minSize"], sizes["maxSize"], sizes["desiredSize"]
        if high < 1 or low < 0 or not low <= desired <= high:
            raise _error("InvalidParameterException", "Minimum capacity "
                         f"{low} can't be greater than desired size {desired}, desired size "
                         f"can't be greater than maximum capacity {high}, and maximum "
                         "capacity must be at least 1", operation)
        g.min_size, g.max_size, g.desired = low, high, desired
        self.state.resize(self.state.groups[g.group], low, high, desired)
        g.updates += 1
        params = [{"type": t, "value": str(sizes[k])} for t, k in (
            ("MinSize", "minSize"), ("MaxSize", "maxSize"), ("DesiredSize", "desiredSize"))
            if k in (scalingConfig or {})]
        update_id = _hex(g.cluster, g.name, g.updates, size=32)
        return {"update": {
            "id": "-".join((update_id[:8], update_id[8:12], update_id[12:16], update_id[16:20],
                            update_id[20:])),
            "status": "InProgress", "type": "ConfigUpdate", "params": params,
            "createdAt": self.state.clock(), "errors": []}}


# ---------------------------------------------------------------- Auto Scaling


class DemoAutoScaling:
    """Auto Scaling's DescribeAutoScalingInstances, DescribeAutoScalingGroups and
    UpdateAutoScalingGroup."""

    FILTERS = ("tag-key", "tag-value")

    def __init__(self, state: DemoRegion) -> None:
        self.state = state

    def _az(self) -> str:
        return f"{self.state.region}a"

    def describe_auto_scaling_instances(self, InstanceIds: list[str] | None = None,  # noqa: N803
                                        MaxRecords: int | None = None,  # noqa: N803
                                        NextToken: str | None = None) -> dict:  # noqa: N803
        members = [i for i in self.state.instances.values()
                   if i.group and i.state not in ("terminated", "shutting-down")
                   and (InstanceIds is None or i.id in InstanceIds)]
        page, token = _page(members, NextToken, MaxRecords or 50,
                            "DescribeAutoScalingInstances")
        answer: dict[str, Any] = {"AutoScalingInstances": [
            {"InstanceId": i.id, "InstanceType": i.instance_type,
             "AutoScalingGroupName": i.group, "AvailabilityZone": self._az(),
             "LifecycleState": "InService",
             "HealthStatus": "HEALTHY" if i.state == "running" else "UNHEALTHY",
             "ProtectedFromScaleIn": False,
             "LaunchTemplate": {"LaunchTemplateId": f"lt-0{_hex(i.group, size=16)}",
                                "LaunchTemplateName": i.group, "Version": "1"}}
            for i in page]}
        if token:
            answer["NextToken"] = token
        return answer

    def _described(self, g: DemoGroup) -> dict:
        return {
            "AutoScalingGroupName": g.name,
            "AutoScalingGroupARN": self.state.arn(
                "autoscaling", f"autoScalingGroup:{_hex(g.name, size=8)}-demo:"
                               f"autoScalingGroupName/{g.name}"),
            "LaunchTemplate": {"LaunchTemplateId": f"lt-0{_hex(g.name, size=16)}",
                               "LaunchTemplateName": g.name, "Version": "1"},
            "MinSize": g.min_size, "MaxSize": g.max_size, "DesiredCapacity": g.desired,
            "DefaultCooldown": 300, "AvailabilityZones": [self._az()],
            "HealthCheckType": "EC2", "HealthCheckGracePeriod": 300, "CreatedTime": g.created,
            "Instances": [{"InstanceId": i.id, "InstanceType": i.instance_type,
                           "AvailabilityZone": self._az(), "LifecycleState": "InService",
                           "HealthStatus": "Healthy" if i.state == "running" else "Unhealthy",
                           "ProtectedFromScaleIn": False}
                          for i in self.state.members(g.name)],
            "Tags": [{"ResourceId": g.name, "ResourceType": "auto-scaling-group",
                      "Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in g.tags],
            "TerminationPolicies": ["Default"], "NewInstancesProtectedFromScaleIn": False}

    def describe_auto_scaling_groups(self, AutoScalingGroupNames: list[str] | None = None,  # noqa: N803
                                     Filters: list[dict] | None = None,  # noqa: N803
                                     MaxRecords: int | None = None,  # noqa: N803
                                     NextToken: str | None = None) -> dict:  # noqa: N803
        for f in Filters or []:
            if f["Name"] not in self.FILTERS and not f["Name"].startswith("tag:"):
                raise _error("ValidationError", f"Filter name '{f['Name']}' is not valid",
                             "DescribeAutoScalingGroups")
        groups = [g for g in self.state.groups.values()
                  if (AutoScalingGroupNames is None or g.name in AutoScalingGroupNames)
                  and all(_tag_matches(g.tags, f["Name"], f["Values"]) for f in Filters or [])]
        page, token = _page(groups, NextToken, MaxRecords or 50, "DescribeAutoScalingGroups")
        answer: dict[str, Any] = {"AutoScalingGroups": [self._described(g) for g in page]}
        if token:
            answer["NextToken"] = token
        return answer

    def update_auto_scaling_group(self, AutoScalingGroupName: str,  # noqa: N803
                                  MinSize: int | None = None, MaxSize: int | None = None,  # noqa: N803
                                  DesiredCapacity: int | None = None) -> dict:  # noqa: N803
        operation = "UpdateAutoScalingGroup"
        g = self.state.groups.get(AutoScalingGroupName)
        if g is None:
            raise _error("ValidationError", f"AutoScalingGroup name not found - "
                         f"{AutoScalingGroupName}", operation)
        low = g.min_size if MinSize is None else MinSize
        high = g.max_size if MaxSize is None else MaxSize
        desired = g.desired if DesiredCapacity is None else DesiredCapacity
        if low > high:
            raise _error("ValidationError", f"Max bound, {high}, must be greater than or "
                         f"equal to min bound, {low}", operation)
        if not low <= desired <= high:
            raise _error("ValidationError", f"Desired capacity:{desired} must be between the "
                         f"specified min size:{low} and max size:{high}", operation)
        self.state.resize(g, low, high, desired)
        return {}


# ---------------------------------------------------------------- every region


@dataclass
class DemoIdleClients:
    """The demo's stand-ins, one set per region sharing that region's state (what one
    client stops another sees stopped), like `AwsIdleClients`. `clock` gives the time of
    an acting call (a started instance's LaunchTime)."""

    today: dt.date
    clock: Callable[[], dt.datetime] = field(default=lambda: dt.datetime.now(UTC))
    max_datapoints: int = MAX_DATAPOINTS
    _states: dict[str, DemoRegion] = field(default_factory=dict, init=False, repr=False)

    def state(self, region: str) -> DemoRegion:
        if region not in self._states:
            self._states[region] = DemoRegion(region, self.today, self.clock)
        return self._states[region]

    def regions(self) -> list[str]:
        from _util.sources.ec2_usage import enabled_regions

        return enabled_regions(DemoIdleEc2(self.state(REGIONS[0])))

    def region(self, region: str) -> RegionClients:
        state = self.state(region)
        return RegionClients(region, DemoIdleEc2(state),
                             DemoCloudWatch(state, self.max_datapoints), DemoEcs(state),
                             DemoEks(state), DemoAutoScaling(state))

    def pricing(self) -> DemoPricing:
        return DemoPricing()


def demo_idle_clients(today: dt.date, clock: Callable[[], dt.datetime] | None = None
                      ) -> DemoIdleClients:
    """The demo account's clients for the idle resources section and `--schedule`, as of
    the calendar day `today` (metrics up to the day before)."""
    return DemoIdleClients(today, clock or (lambda: dt.datetime.now(UTC)))
