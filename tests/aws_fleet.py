"""A small fleet in moto's AWS for the idle resources and scheduler tests: EC2 instances
with daily CloudWatch metrics, ECS services, EKS node groups with their nodes, Auto
Scaling groups, and clients that record every API call made through them.

moto sets an instance's LaunchTime to the real clock's now, so the tests' report day is
`launch day + N`: the instances have run for N whole days by then (metrics at future
timestamps are fine for moto).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import boto3

from _util.sources.idle_resources import RegionClients

ROLE = "arn:aws:iam::123456789012:role/test"
# The API calls that change something: a test asserts none is made where none may be.
MUTATING = frozenset({"StopInstances", "StartInstances", "TerminateInstances",
                      "UpdateService", "DeleteService", "UpdateNodegroupConfig",
                      "DeleteNodegroup", "UpdateAutoScalingGroup", "DeleteAutoScalingGroup",
                      "SetDesiredCapacity", "TerminateInstanceInAutoScalingGroup",
                      "CreateTags", "DeleteTags", "TagResource", "UntagResource"})


def launch_day() -> dt.date:
    """The UTC day moto gives new instances as their launch day."""
    return dt.datetime.now(dt.timezone.utc).date()


@dataclass
class Calls:
    """Every API call made through the recorded clients: (service, operation, params)."""

    made: list[tuple[str, str, dict]] = field(default_factory=list)

    def hook(self, service: str):
        def record(model, params, **_kwargs):
            self.made.append((service, model.name, dict(params)))
        return record

    def mutating(self) -> list[tuple[str, str, dict]]:
        return [c for c in self.made if c[1] in MUTATING]


class MotoClients:
    """boto3 clients on moto, one set per region, each call recorded; prices from a
    Stubber on the Price List's client (moto has none)."""

    def __init__(self, regions: tuple[str, ...] = ("eu-west-1",),
                 prices: dict[tuple[str, str], float] | None = None) -> None:
        self._regions = list(regions)
        self.calls = Calls()
        self.prices = prices or {}

    def _client(self, service: str, region: str) -> Any:
        client = boto3.client(service, region_name=region)
        client.meta.events.register("before-parameter-build.*.*", self.calls.hook(service))
        return client

    def regions(self) -> list[str]:
        return list(self._regions)

    def region(self, region: str) -> RegionClients:
        return RegionClients(region, self._client("ec2", region),
                             self._client("cloudwatch", region), self._client("ecs", region),
                             self._client("eks", region), self._client("autoscaling", region))

    def pricing(self) -> Any:
        return PriceList(self.prices)


class PriceList:
    """The Price List's get_products for the tests' (region, type) prices, in its real
    answer's shape (a type without a price gets an empty PriceList, as AWS answers)."""

    def __init__(self, prices: dict[tuple[str, str], float]) -> None:
        self.prices = prices
        self.asked: list[tuple[str, str]] = []

    def get_products(self, **params: Any) -> dict:
        wanted = {f["Field"]: f["Value"] for f in params["Filters"]}
        pair = (wanted["regionCode"], wanted["instanceType"])
        self.asked.append(pair)
        found = self.prices.get(pair)
        return {"FormatVersion": "aws_v1",
                "PriceList": [] if found is None else [price_json(found)]}


def price_json(usd: float) -> str:
    import json

    return json.dumps({"terms": {"OnDemand": {"T": {"priceDimensions": {
        "D": {"unit": "Hrs", "pricePerUnit": {"USD": f"{usd:.4f}"}}}}}}})


class Fleet:
    """Makes resources in one region of moto's AWS."""

    def __init__(self, region: str = "eu-west-1") -> None:
        self.region = region
        self.ec2 = boto3.client("ec2", region_name=region)
        self.cloudwatch = boto3.client("cloudwatch", region_name=region)
        self.ecs = boto3.client("ecs", region_name=region)
        self.eks = boto3.client("eks", region_name=region)
        self.autoscaling = boto3.client("autoscaling", region_name=region)
        self.ami = self.ec2.describe_images(Owners=["amazon"])["Images"][0]["ImageId"]

    def instance(self, name: str, instance_type: str = "m5.large", **tags: str) -> str:
        all_tags = [{"Key": "Name", "Value": name}, *({"Key": k, "Value": v}
                                                     for k, v in tags.items())]
        return self.ec2.run_instances(
            ImageId=self.ami, MinCount=1, MaxCount=1, InstanceType=instance_type,
            TagSpecifications=[{"ResourceType": "instance", "Tags": all_tags}],
        )["Instances"][0]["InstanceId"]

    def ec2_metrics(self, instance_id: str, day: dt.date, days: int, cpu: float,
                    network_mb: float) -> None:
        """`days` daily datapoints up to `day`: the day's CPU maximum (a second, lower
        datapoint shows the Maximum is taken) and network split in and out."""
        dims = [{"Name": "InstanceId", "Value": instance_id}]
        for back in range(days):
            noon = dt.datetime.combine(day - dt.timedelta(days=back), dt.time(12),
                                       tzinfo=dt.timezone.utc)
            self.cloudwatch.put_metric_data(Namespace="AWS/EC2", MetricData=[
                {"MetricName": "CPUUtilization", "Dimensions": dims, "Timestamp": noon,
                 "Value": cpu},
                {"MetricName": "CPUUtilization", "Dimensions": dims,
                 "Timestamp": noon + dt.timedelta(hours=1), "Value": cpu / 2},
                {"MetricName": "NetworkIn", "Dimensions": dims, "Timestamp": noon,
                 "Value": network_mb * 1e6 * 0.75},
                {"MetricName": "NetworkOut", "Dimensions": dims, "Timestamp": noon,
                 "Value": network_mb * 1e6 * 0.25}])

    def ecs_service(self, cluster: str, name: str, desired: int, **tags: str) -> None:
        self.ecs.create_cluster(clusterName=cluster)
        self.ecs.register_task_definition(
            family=name, containerDefinitions=[{"name": "app", "image": "app", "memory": 128}])
        self.ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=name,
                                desiredCount=desired,
                                tags=[{"key": k, "value": v} for k, v in tags.items()])

    def ecs_metrics(self, cluster: str, service: str, day: dt.date, days: int,
                    cpu: float) -> None:
        dims = [{"Name": "ClusterName", "Value": cluster}, {"Name": "ServiceName", "Value": service}]
        for back in range(days):
            noon = dt.datetime.combine(day - dt.timedelta(days=back), dt.time(12),
                                       tzinfo=dt.timezone.utc)
            self.cloudwatch.put_metric_data(Namespace="AWS/ECS", MetricData=[
                {"MetricName": "CPUUtilization", "Dimensions": dims, "Timestamp": noon,
                 "Value": cpu}])

    def cluster(self, name: str) -> None:
        self.eks.create_cluster(name=name, roleArn=ROLE, resourcesVpcConfig={})

    def node_group(self, cluster: str, name: str, nodes: int, instance_type: str = "m5.large",
                   **tags: str) -> list[str]:
        """A managed node group scaled to `nodes`, and its nodes as EC2 instances tagged
        the way EKS tags them (moto does not launch them)."""
        self.eks.create_nodegroup(
            clusterName=cluster, nodegroupName=name, nodeRole=ROLE, subnets=["subnet-1"],
            scalingConfig={"minSize": 1, "maxSize": max(nodes, 1) + 2, "desiredSize": nodes},
            instanceTypes=[instance_type], tags=dict(tags))
        return [self.instance(f"{name}-node-{i}", instance_type,
                              **{"eks:cluster-name": cluster, "eks:nodegroup-name": name,
                                 "aws:autoscaling:groupName": f"eks-{name}"})
                for i in range(nodes)]

    def container_insights(self, cluster: str, instance_id: str, day: dt.date, days: int,
                           cpu: float) -> None:
        dims = [{"Name": "ClusterName", "Value": cluster},
                {"Name": "InstanceId", "Value": instance_id},
                {"Name": "NodeName", "Value": f"ip-{instance_id}.internal"}]
        for back in range(days):
            noon = dt.datetime.combine(day - dt.timedelta(days=back), dt.time(12),
                                       tzinfo=dt.timezone.utc)
            self.cloudwatch.put_metric_data(Namespace="ContainerInsights", MetricData=[
                {"MetricName": "node_cpu_utilization", "Dimensions": dims, "Timestamp": noon,
                 "Value": cpu}])

    def auto_scaling_group(self, name: str, size: int, **tags: str) -> list[str]:
        self.autoscaling.create_launch_configuration(
            LaunchConfigurationName=f"{name}-lc", ImageId=self.ami, InstanceType="t3.micro")
        self.autoscaling.create_auto_scaling_group(
            AutoScalingGroupName=name, LaunchConfigurationName=f"{name}-lc", MinSize=size,
            MaxSize=size + 2, DesiredCapacity=size, AvailabilityZones=[f"{self.region}a"],
            Tags=[{"Key": k, "Value": v, "PropagateAtLaunch": True} for k, v in tags.items()])
        group = self.autoscaling.describe_auto_scaling_groups(
            AutoScalingGroupNames=[name])["AutoScalingGroups"][0]
        return [i["InstanceId"] for i in group["Instances"]]
