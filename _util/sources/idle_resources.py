"""What runs in a region and how busy it was: EC2 instances, ECS services and EKS managed
node groups, with 30 days of daily CloudWatch metrics, for the idle resources section.

Per region:
- EC2 `DescribeInstances` (running ones, every page). Instances tagged
  `eks:nodegroup-name` are an EKS node group's nodes and count with their node group.
- ECS `ListClusters`, `ListServices`, `DescribeServices` (10 at a time, with their tags):
  services that want tasks (desired count above 0).
- EKS `ListClusters`, `ListNodegroups`, `DescribeNodegroup`: node groups scaled above 0.
- CloudWatch `GetMetricData` with a daily period: `CPUUtilization` (Maximum) and
  `NetworkIn` + `NetworkOut` (Sum) of each instance and node, the `AWS/ECS`
  `CPUUtilization` (Maximum) of each service, and for nodes that Container Insights
  watches its `node_cpu_utilization` instead (found with one `ListMetrics` per cluster).
  Up to 500 metrics go in one request (CloudWatch's limit), pages followed; CloudWatch
  bills $0.01 per 1,000 metrics asked.

A refused action is `IdleAccessDenied` naming the region and the IAM action; the section
reports that region and goes on with the others.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

from botocore.exceptions import ClientError

from _util.errors import SourceError
from _util.idle import EC2, ECS_SERVICE, EKS_NODEGROUP, MB, WINDOW_DAYS, WatchedResource
from _util.sources.ec2_usage import DENIED_CODES

log = logging.getLogger(__name__)

METRICS_PER_REQUEST = 500  # GetMetricData's limit of queries per request
DAY_SECONDS = 86_400
DESCRIBE_SERVICES_BATCH = 10  # DescribeServices' limit of services per request
NODEGROUP_TAG = "eks:nodegroup-name"
CLUSTER_TAG = "eks:cluster-name"
CONTAINER_INSIGHTS = "ContainerInsights"

READ_ACTIONS = ("ec2:DescribeRegions", "ec2:DescribeInstances", "ecs:ListClusters",
                "ecs:ListServices", "ecs:DescribeServices", "eks:ListClusters",
                "eks:ListNodegroups", "eks:DescribeNodegroup", "cloudwatch:GetMetricData",
                "cloudwatch:ListMetrics")


class IdleAccessDenied(SourceError):
    """An action the idle resources section needs is denied in a region."""

    def __init__(self, region: str, action: str, code: str) -> None:
        super().__init__(f"{action} is denied in {region} ({code})")
        self.region, self.action, self.code = region, action, code


@dataclass
class RegionClients:
    """One region's clients (boto3's, moto's or the demo's), counting requests."""

    region: str
    ec2: Any
    cloudwatch: Any
    ecs: Any
    eks: Any
    autoscaling: Any = None
    requests: int = 0

    def call(self, client: Any, method: str, action: str, **params: Any) -> dict:
        self.requests += 1
        try:
            return getattr(client, method)(**params)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in DENIED_CODES:
                raise IdleAccessDenied(self.region, action, code) from exc
            raise

    def pages(self, client: Any, method: str, action: str, token_key: str,
              next_key: str | None = None, **params: Any) -> Iterator[dict]:
        """Every page of a listing call (`token_key` names the request's token parameter
        and `next_key` the answer's, when they differ)."""
        token = None
        while True:
            page = self.call(client, method, action,
                             **params, **({token_key: token} if token else {}))
            yield page
            token = page.get(next_key or token_key)
            if not token:
                return


@dataclass(frozen=True)
class Instance:
    id: str
    instance_type: str | None
    launch_time: dt.datetime | None
    tags: tuple[tuple[str, str], ...]

    def tag(self, key: str) -> str | None:
        return dict(self.tags).get(key)


def _tags(items: Sequence[dict] | None, key: str = "Key", value: str = "Value"
          ) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((str(t.get(key, "")), str(t.get(value, ""))) for t in items or ()))


def running_instances(rc: RegionClients) -> list[Instance]:
    found = []
    for page in rc.pages(rc.ec2, "describe_instances", "ec2:DescribeInstances", "NextToken",
                         Filters=[{"Name": "instance-state-name", "Values": ["running"]}]):
        for reservation in page.get("Reservations", []):
            for i in reservation.get("Instances", []):
                found.append(Instance(i["InstanceId"], i.get("InstanceType"),
                                      i.get("LaunchTime"), _tags(i.get("Tags"))))
    return found


@dataclass(frozen=True)
class EcsService:
    cluster: str  # name
    name: str
    arn: str
    desired: int
    created: dt.datetime | None
    tags: tuple[tuple[str, str], ...]

    @property
    def id(self) -> str:
        return f"{self.cluster}/{self.name}"


def ecs_services(rc: RegionClients) -> list[EcsService]:
    services = []
    for page in rc.pages(rc.ecs, "list_clusters", "ecs:ListClusters", "nextToken"):
        for cluster_arn in page.get("clusterArns", []):
            arns = [arn for p in rc.pages(rc.ecs, "list_services", "ecs:ListServices",
                                          "nextToken", cluster=cluster_arn)
                    for arn in p.get("serviceArns", [])]
            for start in range(0, len(arns), DESCRIBE_SERVICES_BATCH):
                answer = rc.call(rc.ecs, "describe_services", "ecs:DescribeServices",
                                 cluster=cluster_arn,
                                 services=arns[start:start + DESCRIBE_SERVICES_BATCH],
                                 include=["TAGS"])
                for s in answer.get("services", []):
                    if s.get("status", "ACTIVE") != "ACTIVE":
                        continue
                    cluster = s.get("clusterArn", cluster_arn).rsplit("/", 1)[-1]
                    services.append(EcsService(
                        cluster, s["serviceName"], s["serviceArn"],
                        int(s.get("desiredCount") or 0), s.get("createdAt"),
                        _tags(s.get("tags"), "key", "value")))
    return services


@dataclass(frozen=True)
class NodeGroup:
    cluster: str
    name: str
    arn: str
    min_size: int
    desired: int
    max_size: int
    created: dt.datetime | None
    instance_types: tuple[str, ...]
    tags: tuple[tuple[str, str], ...]
    auto_scaling_groups: tuple[str, ...] = ()

    @property
    def id(self) -> str:
        return f"{self.cluster}/{self.name}"


def node_groups(rc: RegionClients) -> list[NodeGroup]:
    groups = []
    for page in rc.pages(rc.eks, "list_clusters", "eks:ListClusters", "nextToken"):
        for cluster in page.get("clusters", []):
            names = [n for p in rc.pages(rc.eks, "list_nodegroups", "eks:ListNodegroups",
                                         "nextToken", clusterName=cluster)
                     for n in p.get("nodegroups", [])]
            for name in names:
                g = rc.call(rc.eks, "describe_nodegroup", "eks:DescribeNodegroup",
                            clusterName=cluster, nodegroupName=name)["nodegroup"]
                scaling = g.get("scalingConfig") or {}
                groups.append(NodeGroup(
                    cluster, name, g.get("nodegroupArn", ""), int(scaling.get("minSize") or 0),
                    int(scaling.get("desiredSize") or 0), int(scaling.get("maxSize") or 0),
                    g.get("createdAt"), tuple(g.get("instanceTypes") or ()),
                    tuple(sorted((g.get("tags") or {}).items())),
                    tuple(a["name"] for a in (g.get("resources") or {}).get("autoScalingGroups", [])
                          if a.get("name"))))
    return groups


# ---------------------------------------------------------------- metrics


@dataclass(frozen=True)
class MetricQuery:
    """One daily metric of one resource: `key` says which (resource key, measure)."""

    key: tuple[str, str]
    namespace: str
    name: str
    dimensions: tuple[tuple[str, str], ...]
    stat: str


@dataclass
class DailyMetrics:
    """Daily values by (resource key, measure) and day."""

    values: dict[tuple[str, str], dict[dt.date, float]] = field(
        default_factory=lambda: defaultdict(dict))
    requested: int = 0

    def series(self, key: tuple[str, str], days: Sequence[dt.date]) -> tuple[float | None, ...]:
        found = self.values.get(key, {})
        return tuple(found.get(d) for d in days)


def get_daily_metrics(rc: RegionClients, queries: Sequence[MetricQuery],
                      days: Sequence[dt.date]) -> DailyMetrics:
    """The queries' daily values over `days`, METRICS_PER_REQUEST at a time."""
    result = DailyMetrics()
    start = dt.datetime.combine(days[0], dt.time(0), tzinfo=dt.timezone.utc)
    end = dt.datetime.combine(days[-1] + dt.timedelta(days=1), dt.time(0),
                              tzinfo=dt.timezone.utc)
    for first in range(0, len(queries), METRICS_PER_REQUEST):
        batch = queries[first:first + METRICS_PER_REQUEST]
        by_id = {f"m{i}": q for i, q in enumerate(batch)}
        result.requested += len(batch)
        for page in rc.pages(
                rc.cloudwatch, "get_metric_data", "cloudwatch:GetMetricData", "NextToken",
                MetricDataQueries=[{
                    "Id": qid, "ReturnData": True,
                    "MetricStat": {"Metric": {"Namespace": q.namespace, "MetricName": q.name,
                                              "Dimensions": [{"Name": k, "Value": v}
                                                             for k, v in q.dimensions]},
                                   "Period": DAY_SECONDS, "Stat": q.stat}}
                    for qid, q in by_id.items()],
                StartTime=start, EndTime=end, ScanBy="TimestampAscending"):
            for answer in page.get("MetricDataResults", []):
                query = by_id.get(answer.get("Id"))
                if query is None:
                    continue
                for stamp, value in zip(answer.get("Timestamps", []), answer.get("Values", [])):
                    day = stamp.astimezone(dt.timezone.utc).date()
                    result.values[query.key][day] = float(value)
    return result


def _instance_queries(instance_id: str, key: str) -> list[MetricQuery]:
    dims = (("InstanceId", instance_id),)
    return [MetricQuery((key, "cpu"), "AWS/EC2", "CPUUtilization", dims, "Maximum"),
            MetricQuery((key, "in"), "AWS/EC2", "NetworkIn", dims, "Sum"),
            MetricQuery((key, "out"), "AWS/EC2", "NetworkOut", dims, "Sum")]


def _container_insights_cpu(rc: RegionClients, cluster: str) -> dict[str, tuple]:
    """Container Insights' node CPU metrics of a cluster, by instance ID (none when it is
    not turned on)."""
    found: dict[str, tuple] = {}
    for page in rc.pages(rc.cloudwatch, "list_metrics", "cloudwatch:ListMetrics", "NextToken",
                         Namespace=CONTAINER_INSIGHTS, MetricName="node_cpu_utilization",
                         Dimensions=[{"Name": "ClusterName", "Value": cluster}]):
        for metric in page.get("Metrics", []):
            dims = tuple((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
            instance = dict(dims).get("InstanceId")
            if instance:
                found[instance] = dims
    return found


def _network(metrics: DailyMetrics, key: str, days: Sequence[dt.date]
             ) -> tuple[float | None, ...]:
    """In + out, in MB, per day (None when neither has a datapoint)."""
    into, out = metrics.series((key, "in"), days), metrics.series((key, "out"), days)
    return tuple(None if a is None and b is None else ((a or 0.0) + (b or 0.0)) / MB
                 for a, b in zip(into, out))


def _highest(series: Sequence[Sequence[float | None]]) -> tuple[float | None, ...]:
    """Day by day, the highest value of several series (None where all are None)."""
    out = []
    for values in zip(*series):
        known = [v for v in values if v is not None]
        out.append(max(known) if known else None)
    return tuple(out)


def _name(tags: tuple[tuple[str, str], ...]) -> str | None:
    return dict(tags).get("Name") or None


def watch_region(rc: RegionClients, day: dt.date, window: int = WINDOW_DAYS
                 ) -> tuple[list[WatchedResource], int]:
    """Every running resource of a region with its daily metrics, and the metrics asked."""
    days = [day - dt.timedelta(days=window - 1 - i) for i in range(window)]
    instances = running_instances(rc)
    services = [s for s in ecs_services(rc) if s.desired > 0]
    groups = [g for g in node_groups(rc) if g.desired > 0]
    nodes: dict[tuple[str, str], list[Instance]] = defaultdict(list)
    plain = []
    for i in instances:
        group = i.tag(NODEGROUP_TAG)
        if group:
            nodes[(i.tag(CLUSTER_TAG) or "", group)].append(i)
        else:
            plain.append(i)

    queries: list[MetricQuery] = []
    for i in instances:
        queries += _instance_queries(i.id, i.id)
    insights: dict[str, tuple] = {}
    for cluster in sorted({g.cluster for g in groups}):
        insights.update(_container_insights_cpu(rc, cluster))
    for i in instances:
        if i.id in insights:
            queries.append(MetricQuery((i.id, "ci_cpu"), CONTAINER_INSIGHTS,
                                       "node_cpu_utilization", insights[i.id], "Maximum"))
    for s in services:
        queries.append(MetricQuery((s.id, "cpu"), "AWS/ECS", "CPUUtilization",
                                   (("ClusterName", s.cluster), ("ServiceName", s.name)),
                                   "Maximum"))
    metrics = get_daily_metrics(rc, queries, days) if queries else DailyMetrics()

    watched = [WatchedResource(EC2, i.id, rc.region, _name(i.tags), i.tags, i.launch_time, 1,
                               (i.instance_type,) if i.instance_type else (),
                               metrics.series((i.id, "cpu"), days),
                               _network(metrics, i.id, days))
               for i in plain]
    watched += [WatchedResource(ECS_SERVICE, s.id, rc.region, s.name, s.tags, s.created,
                                s.desired, (), metrics.series((s.id, "cpu"), days), None)
                for s in services]
    for g in groups:
        members = nodes.get((g.cluster, g.name), [])
        cpu = [metrics.series((i.id, "ci_cpu" if i.id in insights else "cpu"), days)
               for i in members]
        network = [_network(metrics, i.id, days) for i in members]
        empty = (None,) * len(days)
        # A node replaced inside the window started late: the group ran since its own
        # creation, which is what counts for it.
        watched.append(WatchedResource(
            EKS_NODEGROUP, g.id, rc.region, g.name, g.tags, g.created, max(len(members), 1),
            tuple(i.instance_type for i in members if i.instance_type) or g.instance_types,
            _highest(cpu) if cpu else empty, _highest(network) if network else empty))
    return watched, metrics.requested


class AwsIdleClients:
    """boto3's clients, one set per region, from one session (the standard credential
    chain; AWS_ENDPOINT_URL_<SERVICE> redirect them as usual), with botocore's standard
    retry mode."""

    def __init__(self) -> None:
        import boto3

        from _util.sources.cost_explorer import ce_retry_config

        self._session = boto3.session.Session()
        self._config = ce_retry_config()

    def _client(self, service: str, region: str) -> Any:
        return self._session.client(service, region_name=region, config=self._config)

    def regions(self) -> list[str]:
        from _util.sources.ec2_usage import enabled_regions

        return enabled_regions(self._client("ec2", self._session.region_name or "us-east-1"))

    def region(self, region: str) -> RegionClients:
        return RegionClients(region, self._client("ec2", region),
                             self._client("cloudwatch", region), self._client("ecs", region),
                             self._client("eks", region), self._client("autoscaling", region))

    def pricing(self) -> Any:
        """The Price List's client (it answers from us-east-1)."""
        return self._client("pricing", "us-east-1")
