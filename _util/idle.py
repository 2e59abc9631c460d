"""Idle capacity: EC2 instances, ECS services and EKS managed node groups that ran for
days while nobody used them, and what each costs a day.

A resource is idle when it ran for the whole of the last `days` days (running since
before the first of them, with a datapoint on each) and on every one of those days its
highest CPU stayed under `cpu_pct` and its network in+out under `network_mb` (where the
resource has network metrics: ECS services' CPU only). A node group counts by its nodes:
the highest CPU of any node, and the network of its busiest node. How long it has been
idle counts the days back from the report's day that pass the same test, up to the
metrics' window (30 days).

Pure: the section fetches (`_util/sources/idle_resources.py`) and passes in what it found.
"""
from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass, field, replace
from typing import Mapping, Sequence

EC2 = "ec2"
ECS_SERVICE = "ecs_service"
EKS_NODEGROUP = "eks_nodegroup"
KINDS = (EC2, ECS_SERVICE, EKS_NODEGROUP)
KIND_NAMES = {EC2: "EC2 instance", ECS_SERVICE: "ECS service", EKS_NODEGROUP: "EKS node group"}
WINDOW_DAYS = 30  # days of metrics read, plotted, and the longest idle spell counted
MB = 1_000_000  # network thresholds are in megabytes (10^6 bytes), as CloudWatch's console
HOURS_A_DAY = 24.0
# Cost Explorer's services whose day cost is shared out when a resource has no price.
SERVICE_OF_KIND = {EC2: "Amazon Elastic Compute Cloud - Compute",
                   EKS_NODEGROUP: "Amazon Elastic Compute Cloud - Compute",
                   ECS_SERVICE: "Amazon Elastic Container Service"}
PRICE = "price"  # daily cost from the instance type's on-demand price
SHARE = "share"  # daily cost as its share of the service's cost that day


@dataclass(frozen=True)
class IdleThresholds:
    days: int = 7
    cpu_pct: float = 5.0
    network_mb: float = 50.0


@dataclass(frozen=True)
class WatchedResource:
    """A running resource as the source found it, with its daily metrics over the window
    (oldest day first; None on a day without a datapoint)."""

    kind: str
    id: str  # instance ID; cluster/service; cluster/node group
    region: str
    name: str | None
    tags: tuple[tuple[str, str], ...]
    running_since: dt.datetime | None  # launch or creation time, None when unknown
    units: int  # instances, nodes or desired tasks: what a price is multiplied by
    instance_types: tuple[str, ...]  # of the instance or the nodes; () for ECS
    cpu_max_pct: tuple[float | None, ...]
    network_mb: tuple[float | None, ...] | None  # None: the kind has no network metric

    def tag(self, key: str) -> str | None:
        return dict(self.tags).get(key)


@dataclass(frozen=True)
class IdleResource:
    kind: str
    id: str
    region: str
    name: str | None
    owner: str | None
    idle_days: int
    max_cpu_pct: float  # the highest daily maximum over the last `days` days
    network_mb_per_day: float | None  # the mean of the last `days` days
    daily_usd: float | None
    cost_basis: str | None  # PRICE, SHARE or None (no estimate)
    schedule: str | None
    tags: tuple[tuple[str, str], ...]
    days: tuple[dt.date, ...]  # the metrics' window, for the plot
    cpu_max_pct: tuple[float | None, ...]
    network_mb: tuple[float | None, ...] | None


@dataclass(frozen=True)
class IdleReport:
    """The section's data for a day: the idle resources, the largest cost first."""

    day: dt.date
    thresholds: IdleThresholds
    resources: tuple[IdleResource, ...]
    watched: int  # running resources looked at
    regions: tuple[str, ...]
    notes: tuple[str, ...] = ()
    metrics_requested: int = 0  # GetMetricData bills per 1,000 metrics
    requests: int = 0
    source: str = "aws"  # "aws", or "stored" for a run that did not fetch

    @property
    def daily_usd(self) -> float:
        return round(float(sum(r.daily_usd or 0.0 for r in self.resources)), 2)

    @property
    def unpriced(self) -> int:
        return sum(1 for r in self.resources if r.daily_usd is None)


def window_days(day: dt.date, days: int = WINDOW_DAYS) -> tuple[dt.date, ...]:
    """The metrics' days, oldest first, ending with the report's day."""
    return tuple(day - dt.timedelta(days=days - 1 - i) for i in range(days))


def _idle_on(cpu: float | None, network: float | None, has_network: bool,
             limits: IdleThresholds) -> bool:
    if cpu is None or math.isnan(cpu) or cpu >= limits.cpu_pct:
        return False
    if not has_network:
        return True
    return network is not None and not math.isnan(network) and network < limits.network_mb


def idle_spell(resource: WatchedResource, limits: IdleThresholds) -> int:
    """Days in a row, back from the window's last day, that count as idle."""
    network = resource.network_mb or (None,) * len(resource.cpu_max_pct)
    spell = 0
    for cpu, net in zip(reversed(resource.cpu_max_pct), reversed(network)):
        if not _idle_on(cpu, net, resource.network_mb is not None, limits):
            break
        spell += 1
    return spell


def find_idle(watched: Sequence[WatchedResource], day: dt.date, limits: IdleThresholds,
              owner_tag: str, schedule_tag: str) -> list[IdleResource]:
    """The idle resources among those watched, without cost estimates (`with_costs`)."""
    first = dt.datetime.combine(day - dt.timedelta(days=limits.days - 1), dt.time(0),
                                tzinfo=dt.timezone.utc)
    days = window_days(day, len(watched[0].cpu_max_pct)) if watched else ()
    found = []
    for resource in watched:
        if resource.running_since is not None and resource.running_since > first:
            continue  # started (or restarted) inside the window: not idle the whole time
        spell = idle_spell(resource, limits)
        if resource.running_since is not None:
            # Idle no longer than it has run: whole days since its launch (or start).
            since = resource.running_since.astimezone(dt.timezone.utc)
            whole = (day - since.date()).days + (since.time() == dt.time(0))
            spell = min(spell, whole)
        if spell < limits.days:
            continue
        recent_cpu = [c for c in resource.cpu_max_pct[-limits.days:] if c is not None]
        recent_net = ([n for n in resource.network_mb[-limits.days:] if n is not None]
                      if resource.network_mb is not None else [])
        found.append(IdleResource(
            kind=resource.kind, id=resource.id, region=resource.region, name=resource.name,
            owner=resource.tag(owner_tag), idle_days=spell,
            max_cpu_pct=round(max(recent_cpu), 3),
            network_mb_per_day=(round(sum(recent_net) / len(recent_net), 3)
                                if resource.network_mb is not None else None),
            daily_usd=None, cost_basis=None, schedule=resource.tag(schedule_tag),
            tags=resource.tags, days=days, cpu_max_pct=resource.cpu_max_pct,
            network_mb=resource.network_mb))
    return found


@dataclass(frozen=True)
class CostBasis:
    """What the estimates are made from: on-demand prices (USD an hour, by region and
    instance type; None when the Price List has none) and, for what has no price, the
    day's cost of each service in US dollars (empty when the bill is in another currency:
    a share of it would not be dollars)."""

    hourly_usd: Mapping[tuple[str, str], float | None] = field(default_factory=dict)
    service_day_usd: Mapping[str, float] = field(default_factory=dict)


def _priced(resource: WatchedResource, basis: CostBasis) -> float | None:
    types = resource.instance_types
    if not types:
        return None
    prices = [basis.hourly_usd.get((resource.region, t)) for t in types]
    if any(p is None for p in prices):
        return None
    # Nodes of several types: the mean of their prices per node.
    return sum(prices) / len(prices) * HOURS_A_DAY * resource.units


def _share(resource: WatchedResource, watched: Sequence[WatchedResource],
           basis: CostBasis) -> float | None:
    service = SERVICE_OF_KIND[resource.kind]
    day_cost = basis.service_day_usd.get(service)
    if not day_cost or day_cost <= 0:
        return None
    # Shared by units (instances and nodes for EC2; desired tasks for ECS) among every
    # running resource of the service that was looked at, idle or not.
    same = [w for w in watched if SERVICE_OF_KIND[w.kind] == service]
    units = sum(max(w.units, 0) for w in same)
    if units <= 0:
        return None
    return day_cost * resource.units / units


def with_costs(idle: Sequence[IdleResource], watched: Sequence[WatchedResource],
               basis: CostBasis) -> list[IdleResource]:
    """Each idle resource with its estimated daily cost, the largest first."""
    by_id = {(w.region, w.id): w for w in watched}
    costed = []
    for resource in idle:
        source = by_id[(resource.region, resource.id)]
        usd, how = _priced(source, basis), PRICE
        if usd is None:
            usd, how = _share(source, watched, basis), SHARE
        costed.append(replace(resource, daily_usd=None if usd is None else round(usd, 2),
                              cost_basis=None if usd is None else how))
    return sorted(costed, key=lambda r: (-(r.daily_usd or 0.0), r.kind, r.region, r.id))
