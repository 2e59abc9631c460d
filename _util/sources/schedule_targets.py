"""The scheduler's AWS side: the resources tagged with a schedule in a region, and the
stop and start calls.

Found per region (every page): EC2 `DescribeInstances` filtered on the tag key (and
`DescribeAutoScalingInstances` for their groups), Auto Scaling `DescribeAutoScalingGroups`
filtered on the tag key, ECS services and EKS node groups as the idle section lists them,
kept when they carry the tag. Nothing without the tag is ever asked to change.

The calls (one resource each, so one refusal costs only that resource):
- EC2: `StopInstances` / `StartInstances`;
- ECS: `UpdateService` with the desired count (0 to stop, the saved count to start);
- EKS: `UpdateNodegroupConfig` scaling to min 0, desired 0 (max kept: EKS needs it at
  least 1), then back to the saved min and desired;
- Auto Scaling: `UpdateAutoScalingGroup` to min 0, desired 0, then back.
Nothing is ever terminated or deleted.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Mapping

from botocore.exceptions import BotoCoreError, ClientError

from _util.scheduler import (
    ASG,
    CHANGING,
    EC2,
    ECS_SERVICE,
    EKS_NODEGROUP,
    RUNNING,
    START,
    STOP,
    STOPPED,
    Planned,
    Target,
)
from _util.sources.ec2_usage import DENIED_CODES
from _util.sources.idle_resources import (
    IdleAccessDenied,
    RegionClients,
    ecs_services,
    node_groups,
)

log = logging.getLogger(__name__)

ASG_TAG = "aws:autoscaling:groupName"
ASG_INSTANCES_BATCH = 50  # DescribeAutoScalingInstances' limit
GONE_CODES = frozenset({"InvalidInstanceID.NotFound", "InvalidInstanceID.Malformed",
                        "ServiceNotFoundException", "ServiceNotActiveException",
                        "ClusterNotFoundException", "ResourceNotFoundException"})
OK = "ok"
FAILED = "failed"
DENIED = "denied"
GONE = "gone"
DRY_RUN = "dry-run"

ACT_ACTIONS = ("ec2:StopInstances", "ec2:StartInstances", "ecs:UpdateService",
               "eks:UpdateNodegroupConfig", "autoscaling:UpdateAutoScalingGroup")
FIND_ACTIONS = ("ec2:DescribeInstances", "autoscaling:DescribeAutoScalingInstances",
                "autoscaling:DescribeAutoScalingGroups", "ecs:ListClusters",
                "ecs:ListServices", "ecs:DescribeServices", "eks:ListClusters",
                "eks:ListNodegroups", "eks:DescribeNodegroup")

_EC2_STATES = {"running": RUNNING, "stopped": STOPPED}


def _tag(tags: Any, key: str) -> str | None:
    if isinstance(tags, Mapping):
        return tags.get(key)
    for item in tags or ():
        if isinstance(item, (tuple, list)) and item[0] == key:
            return item[1]
        if isinstance(item, Mapping) and item.get("Key", item.get("key")) == key:
            return item.get("Value", item.get("value"))
    return None


def _instances(rc: RegionClients, tag: str) -> list[Target]:
    found = []
    for page in rc.pages(rc.ec2, "describe_instances", "ec2:DescribeInstances", "NextToken",
                         Filters=[{"Name": "tag-key", "Values": [tag]}]):
        for reservation in page.get("Reservations", []):
            for i in reservation.get("Instances", []):
                state = i.get("State", {}).get("Name", "")
                if state in ("terminated", "shutting-down"):
                    continue
                tags = i.get("Tags") or []
                found.append(Target(EC2, i["InstanceId"], rc.region, _tag(tags, "Name"),
                                    _tag(tags, tag) or "", _EC2_STATES.get(state, CHANGING),
                                    {}, _tag(tags, ASG_TAG)))
    return _with_groups(rc, found)


def _with_groups(rc: RegionClients, instances: list[Target]) -> list[Target]:
    """The instances with their Auto Scaling group, from the group tag AWS sets and, for
    those without it, `DescribeAutoScalingInstances`."""
    unknown = [t.id for t in instances if not t.auto_scaling_group]
    groups: dict[str, str] = {}
    if rc.autoscaling is not None:
        for start in range(0, len(unknown), ASG_INSTANCES_BATCH):
            answer = rc.call(rc.autoscaling, "describe_auto_scaling_instances",
                             "autoscaling:DescribeAutoScalingInstances",
                             InstanceIds=unknown[start:start + ASG_INSTANCES_BATCH])
            for member in answer.get("AutoScalingInstances", []):
                groups[member["InstanceId"]] = member["AutoScalingGroupName"]
    return [t if t.auto_scaling_group or t.id not in groups
            else Target(t.kind, t.id, t.region, t.name, t.schedule, t.state, t.counts,
                        groups[t.id]) for t in instances]


def _groups(rc: RegionClients, tag: str) -> list[Target]:
    if rc.autoscaling is None:
        return []
    found = []
    for page in rc.pages(rc.autoscaling, "describe_auto_scaling_groups",
                         "autoscaling:DescribeAutoScalingGroups", "NextToken",
                         Filters=[{"Name": "tag-key", "Values": [tag]}]):
        for g in page.get("AutoScalingGroups", []):
            value = _tag(g.get("Tags"), tag)
            if value is None:
                continue
            counts = {"min": int(g.get("MinSize", 0)), "max": int(g.get("MaxSize", 0)),
                      "desired": int(g.get("DesiredCapacity", 0))}
            found.append(Target(ASG, g["AutoScalingGroupName"], rc.region,
                                _tag(g.get("Tags"), "Name"), value,
                                RUNNING if counts["desired"] > 0 else STOPPED, counts))
    return found


def _services(rc: RegionClients, tag: str) -> list[Target]:
    return [Target(ECS_SERVICE, s.id, rc.region, s.name, _tag(s.tags, tag) or "",
                   RUNNING if s.desired > 0 else STOPPED, {"desired": s.desired})
            for s in ecs_services(rc) if _tag(s.tags, tag) is not None]


def _node_groups(rc: RegionClients, tag: str) -> list[Target]:
    return [Target(EKS_NODEGROUP, g.id, rc.region, g.name, _tag(g.tags, tag) or "",
                   RUNNING if g.desired > 0 else STOPPED,
                   {"min": g.min_size, "max": g.max_size, "desired": g.desired})
            for g in node_groups(rc) if _tag(g.tags, tag) is not None]


def tagged_targets(rc: RegionClients, tag: str) -> list[Target]:
    """Every resource of the region that carries the schedule tag."""
    return [*_instances(rc, tag), *_groups(rc, tag), *_services(rc, tag),
            *_node_groups(rc, tag)]


# ---------------------------------------------------------------- acting


@dataclass(frozen=True)
class Outcome:
    result: str  # OK, FAILED, DENIED or GONE
    message: str | None = None


STOP_COUNTS = {"min": 0, "desired": 0}  # what a stop sets a service or group to


def _call(rc: RegionClients, planned: Planned) -> None:
    t, stopping = planned.target, planned.action == STOP
    counts = STOP_COUNTS if stopping else dict(planned.restore or {})
    if t.kind == EC2:
        method = "stop_instances" if stopping else "start_instances"
        rc.call(rc.ec2, method, f"ec2:{'Stop' if stopping else 'Start'}Instances",
                InstanceIds=[t.id])
    elif t.kind == ECS_SERVICE:
        cluster, service = t.id.split("/", 1)
        rc.call(rc.ecs, "update_service", "ecs:UpdateService", cluster=cluster,
                service=service, desiredCount=int(counts["desired"]))
    elif t.kind == EKS_NODEGROUP:
        cluster, group = t.id.split("/", 1)
        # The group's max as it is now, raised only as far as the start needs.
        maximum = max(int(t.counts.get("max", 1)), int(counts.get("desired", 0)),
                      int(counts.get("min", 0)), 1)
        rc.call(rc.eks, "update_nodegroup_config", "eks:UpdateNodegroupConfig",
                clusterName=cluster, nodegroupName=group,
                scalingConfig={"minSize": int(counts["min"]), "maxSize": maximum,
                               "desiredSize": int(counts["desired"])})
    elif t.kind == ASG:
        # MaxSize raised only when the group's max was lowered below what is restored.
        maximum = max(int(t.counts.get("max", 0)), int(counts["desired"]), int(counts["min"]))
        rc.call(rc.autoscaling, "update_auto_scaling_group",
                "autoscaling:UpdateAutoScalingGroup", AutoScalingGroupName=t.id,
                MinSize=int(counts["min"]), DesiredCapacity=int(counts["desired"]),
                **({"MaxSize": maximum} if maximum > int(t.counts.get("max", 0)) else {}))
    else:
        raise ValueError(f"unknown kind {t.kind}")


def act(rc: RegionClients, planned: Planned) -> Outcome:
    """Make one call; what AWS said, never raised (one resource's refusal must not stop
    the others)."""
    try:
        _call(rc, planned)
    except IdleAccessDenied as exc:
        return Outcome(DENIED, str(exc))
    except ClientError as exc:
        error = exc.response.get("Error", {})
        code = error.get("Code", "")
        message = f"{code}: {error.get('Message', '')}".strip(": ")
        if code in DENIED_CODES:
            return Outcome(DENIED, message)
        if code in GONE_CODES:
            return Outcome(GONE, message)
        return Outcome(FAILED, message)
    except BotoCoreError as exc:
        return Outcome(FAILED, str(exc))
    return Outcome(OK)


def reached(target: Target, action: str) -> bool:
    """Whether a resource as AWS shows it now is where `action` would have put it (for a
    run killed between the call and its record). A start counts once it is not stopped."""
    if action == STOP:
        return target.state == STOPPED or (target.kind == EC2 and target.state == CHANGING)
    if action == START:
        return target.state == RUNNING or (target.kind == EC2 and target.state == CHANGING)
    return False
