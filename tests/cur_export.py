"""Cost and Usage Report (CUR 2.0) Parquet exports generated from the demo account.

Tests and the benchmark need report files shaped as AWS Data Exports writes them, and
they need to know what the answer is: an account served through the demo Cost Explorer
and exported here aggregates to the same daily cost per (day, service, Name tag), for
UnblendedCost with Credit and Refund excluded (the bot's default filter).

What is written, per demo series (service, tag) and day with amount A:
- `items_per_series_day` 'Usage' lines one hour long, at different hours of the UTC day,
  in linked accounts of the series, whose unblended costs sum to A (the last one is the
  remainder). The tag is `resource_tags['user_Name']`; the untagged group has no such key.
- "EC2 - Other" is `AmazonEC2` with a non-compute product family (Storage, NAT Gateway,
  ...); "... - Compute" is `AmazonEC2` with family 'Compute Instance'.
- CE's "Tax" is 'Tax' lines on the first of the month carrying real services' product
  codes (AmazonEC2 among them), from the billing period's start to its end.
- About half the EC2 compute lines gain a Savings Plans pair: 'SavingsPlanCoveredUsage'
  of on-demand cost X (effective cost 0.72 X) and 'SavingsPlanNegation' of -X, on the same
  resource and tags. They are usage on top of A, as in Cost Explorer, where covered usage
  and its negation cancel in UnblendedCost.
- The demo Cost Explorer's daily credit (-12.5 on the first service's untagged group) as
  'Credit' lines, so CUR and demo agree with credits included too; 'Refund' lines (the
  demo has none) on the 7th and 21st.
- 'SavingsPlanRecurringFee' lines only with `savings_plan_fee=True`: one a month under
  `ComputeSavingsPlans`, a service the demo lacks, so totals then differ by it.

Every day's lines are a function of (seed, day) alone, so any date range gives the same
lines for its days, and a seed gives the same files byte for byte. Lines are numbers built
with numpy; their text columns are pandas categoricals (codes into small tables), which
DuckDB reads cheaply and in order before writing the files: no pyarrow, and memory
bounded by `file_rows`.

    python -m tests.cur_export OUT --days 365 --services 60 --groups 5 --accounts 200
"""
from __future__ import annotations

import argparse
import datetime as dt
import time
from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from _util.sources.cur_services import EC2_OTHER_CODE, product_code, service_name
from _util.sources.demo_account import SERVICES, DemoAccount, scaled_account

EXPORT_NAME = "cost-export"
SP_COVERED_SHARE = 0.5  # of EC2 compute usage lines
SP_DISCOUNT = 0.28
SP_UTILISATION = 0.95
DEMO_CREDIT = -12.5  # DemoCostExplorer's daily credit
REFUND_DAYS = (7, 21)
TAX_SERVICE = "Tax"  # Cost Explorer's name for the Tax line items
TAXED_CODES = 5  # tax is split over the product codes of the first few services

USAGE, TAX, CREDIT, REFUND, SP_COVERED, SP_NEGATION, SP_FEE = range(7)
_KINDS = pd.DataFrame({
    "line_type": ["Usage", "Tax", "Credit", "Refund", "SavingsPlanCoveredUsage",
                  "SavingsPlanNegation", "SavingsPlanRecurringFee"],
    "line_description": [None, None, "AWS Promotional Credit", "Refund for service issue",
                         None, "SavingsPlanNegation for covered usage", None],
    "has_usage": [True, False, False, False, True, False, False],
    "is_savings_plan": [False, False, False, False, True, True, True],
}).astype({"line_type": "category", "line_description": "category"})

# (region code, usage type prefix, location)
REGIONS = (("us-east-1", "USE1", "US East (N. Virginia)"),
           ("eu-west-1", "EU", "EU (Ireland)"),
           ("us-west-2", "USW2", "US West (Oregon)"),
           ("ap-southeast-2", "APS2", "Asia Pacific (Sydney)"))


@dataclass(frozen=True)
class ProductShape:
    """What one kind of usage of a service looks like on a line item."""

    family: str
    usage_type: str
    operation: str
    unit: str
    rate: float
    resource_prefix: str


def _shapes(*rows: tuple) -> tuple[ProductShape, ...]:
    return tuple(ProductShape(*row) for row in rows)


# Line items of item k of a series use shape k % len(shapes) of its product code.
SHAPES: dict[str, tuple[ProductShape, ...]] = {
    "AmazonEC2": _shapes(
        ("Compute Instance", "BoxUsage:m5.large", "RunInstances", "Hrs", 0.096, "i-"),
        ("Compute Instance", "BoxUsage:c6g.xlarge", "RunInstances", "Hrs", 0.136, "i-"),
        ("Compute Instance", "SpotUsage:m5.2xlarge", "RunInstances:SV001", "Hrs", 0.15, "i-")),
    EC2_OTHER_CODE: _shapes(
        ("Storage", "EBS:VolumeUsage.gp3", "CreateVolume-Gp3", "GB-Mo", 0.08, "vol-"),
        ("NAT Gateway", "NatGateway-Hours", "NatGateway", "Hrs", 0.045, "nat-"),
        ("Storage Snapshot", "EBS:SnapshotUsage", "CreateSnapshot", "GB-Mo", 0.05, "snap-"),
        ("IP Address", "PublicIPv4:InUseAddress", "AssociateAddressVPC", "Hrs", 0.005,
         "eipalloc-")),
    "AmazonRDS": _shapes(
        ("Database Instance", "InstanceUsage:db.r6g.large", "CreateDBInstance:0016", "Hrs",
         0.225, "db-"),
        ("Database Storage", "RDS:GP3-Storage", "CreateDBInstance:0016", "GB-Mo", 0.115, "db-")),
    "AmazonS3": _shapes(
        ("Storage", "TimedStorage-ByteHrs", "StandardStorage", "GB-Mo", 0.023, "bucket-"),
        ("API Request", "Requests-Tier1", "PutObject", "Requests", 0.000005, "bucket-")),
    "AWSLambda": _shapes(
        ("Serverless", "Lambda-GB-Second", "Invoke", "Lambda-GB-Second", 0.0000166667,
         "function-"),
        ("Serverless", "Request", "Invoke", "Requests", 0.0000002, "function-")),
    "AmazonCloudFront": _shapes(
        ("Data Transfer", "DataTransfer-Out-Bytes", "GET", "GB", 0.085, "E")),
    "AmazonDynamoDB": _shapes(
        ("Amazon DynamoDB PayPerRequest Throughput", "ReadRequestUnits",
         "PayPerRequestThroughput", "ReadRequestUnits", 0.00000025, "table-"),
        ("Database Storage", "TimedStorage-ByteHrs", "StandardStorage", "GB-Mo", 0.25,
         "table-")),
    "AmazonElastiCache": _shapes(
        ("Cache Instance", "NodeUsage:cache.r6g.large", "CreateCacheCluster:0002", "Hrs",
         0.206, "cluster-")),
    "AWSELB": _shapes(
        ("Load Balancer-Application", "LoadBalancerUsage", "LoadBalancing:Application",
         "Hrs", 0.0225, "app-"),
        ("Load Balancer-Application", "LCUUsage", "LoadBalancing:Application", "LCU-Hrs",
         0.008, "app-")),
    "AmazonVPC": _shapes(
        ("VpcEndpoint", "VpcEndpoint-Hours", "VpcEndpoint", "Hrs", 0.01, "vpce-")),
    "AmazonCloudWatch": _shapes(
        ("Metric", "CW:MetricMonitorUsage", "MetricStorage", "Metrics", 0.3, "metric-"),
        ("Storage Snapshot", "TimedStorage-ByteHrs", "HourlyStorageMetering", "GB-Mo", 0.03,
         "log-group-")),
    "awskms": _shapes(("Encryption Key", "KMS-Keys", "CreateKey", "Keys", 1.0, "key-")),
    "AmazonRoute53": _shapes(("DNS Zone", "HostedZone", "", "HostedZone", 0.5, "Z")),
    "AWSQueueService": _shapes(
        ("API Request", "Requests-Tier1", "ReceiveMessage", "Requests", 0.0000004, "queue-")),
    "AmazonSNS": _shapes(
        ("Message Delivery", "Requests-Tier1", "Publish", "Requests", 0.0000005, "topic-")),
    "AWSGlue": _shapes(("AWS Glue", "ETL-DPU-Hour", "Jobrun", "DPU-Hour", 0.44, "job-")),
    "AmazonAthena": _shapes(
        ("Athena Queries", "DataScannedInTB", "RunQuery", "Terabytes", 5.0, "workgroup-")),
    "AmazonES": _shapes(
        ("Amazon OpenSearch Service Instance", "ESInstance:r6g.large", "ESDomain", "Hrs",
         0.167, "domain-")),
    "AmazonECS": _shapes(
        ("Compute", "Fargate-vCPU-Hours:perCPU", "FargateTask", "hours", 0.04048, "task-"),
        ("Compute", "Fargate-GB-Hours", "FargateTask", "hours", 0.004445, "task-")),
    "AmazonEKS": _shapes(
        ("Compute", "AmazonEKS-Hours:perCluster", "CreateOperation", "Hours", 0.1, "cluster-")),
    "AmazonEFS": _shapes(
        ("Storage", "TimedStorage-ByteHrs", "", "GB-Mo", 0.3, "fs-")),
    "AWSSecretsManager": _shapes(
        ("Secret", "AWSSecretsManager-Secrets", "StorageSecret", "Secrets", 0.4, "secret-")),
    "AmazonSageMaker": _shapes(
        ("ML Instance", "Train:ml.g5.xlarge", "RunInstance", "Hrs", 1.408, "training-job-")),
    "AmazonKinesis": _shapes(
        ("Kinesis Streams", "Storage-ShardHour", "shardHourStorage", "ShardHour", 0.015,
         "stream-")),
    "AWSBackup": _shapes(
        ("Storage", "WarmStorage-ByteHrs-EBS", "Storage", "GB-Mo", 0.05, "recovery-point-")),
    "ComputeSavingsPlans": _shapes(
        ("Savings Plan", "ComputeSP:1yrNoUpfront", "", "Hrs", 1.0, "")),
}
GENERIC_SHAPES = _shapes(
    ("API Request", "Requests", "Call", "Requests", 0.0004, "res-"),
    ("Storage", "TimedStorage-ByteHrs", "Store", "GB-Mo", 0.1, "res-"))
PRODUCT_TEXT = ("product_code", "family", "usage_type", "operation", "unit", "rate_text",
                "resource_prefix", "region_code", "location", "product_name",
                "product_description")
PRODUCT_NAMES = {"AmazonEC2": "Amazon Elastic Compute Cloud",
                 "ComputeSavingsPlans": "Savings Plans for AWS Compute usage"}


def _written_code(code: str) -> str:
    """The product code a line carries: EC2's "Other" pseudo code is plain AmazonEC2."""
    return "AmazonEC2" if code == EC2_OTHER_CODE else code


def _categories(frame: pd.DataFrame, *keep: str) -> pd.DataFrame:
    """`frame` with its text columns as categoricals (all but `keep`), for `_pick`."""
    return frame.astype({c: "category" for c in frame.columns if c not in keep})


def _pick(column: pd.Series, index: np.ndarray) -> pd.Categorical:
    """column[index] as a categorical: DuckDB reads codes and a few strings, not a string
    per row, and reading a frame keeps its order (a join would not)."""
    return pd.Categorical.from_codes(column.cat.codes.to_numpy()[index],
                                     column.cat.categories)


def _constant(value: str, size: int) -> pd.Categorical:
    return pd.Categorical.from_codes(np.zeros(size, dtype=np.int8), [value])


@dataclass
class _Tables:
    """The small tables line items point into, and what a day's lines need per series."""

    products: pd.DataFrame
    series: pd.DataFrame  # sid -> tag; the last sid is an untagged one for credits
    accounts: pd.DataFrame
    payer: tuple[str, str]
    sp_arn: str
    pid_first: np.ndarray  # per series: product of its first shape in its region
    shape_count: np.ndarray  # per series: how many shapes its service has
    home_account: np.ndarray  # per series: the account of its first item
    is_tax: np.ndarray
    is_ec2_compute: np.ndarray
    credit_pid: int | None  # the first service's product, when the demo gives credits
    first_service: np.ndarray  # series of the first service
    fee_pid: int

    @classmethod
    def build(cls, account: DemoAccount, accounts: int, seed: int) -> "_Tables":
        rng = np.random.default_rng([seed, 1])
        services = account.services
        codes = [product_code(s.name) for s in services]
        taxed = list(dict.fromkeys(_written_code(c) for c, s in zip(codes, services)
                                   if s.name != TAX_SERVICE))[:TAXED_CODES]
        rows: list[dict] = []
        service_first: list[int] = []
        service_shapes: list[int] = []
        for svc, code in [*zip(services, codes), (None, "ComputeSavingsPlans")]:
            tax = svc is not None and svc.name == TAX_SERVICE
            if tax:
                shapes = [ProductShape("", "", "", "", 1.0, "") for _ in taxed]
            else:
                shapes = SHAPES.get(code, GENERIC_SHAPES)
            service_first.append(len(rows))
            service_shapes.append(len(shapes))
            for i, shape in enumerate(shapes):
                written = taxed[i] if tax else _written_code(code)
                name = PRODUCT_NAMES.get(written) or service_name(written)
                for region, prefix, location in REGIONS:
                    usage_type = f"{prefix}-{shape.usage_type}" if shape.usage_type else ""
                    rows.append({
                        "product_code": written, "family": shape.family,
                        "usage_type": usage_type, "operation": shape.operation,
                        "unit": shape.unit, "rate": shape.rate, "rate_text": f"{shape.rate:.10f}",
                        "resource_prefix": shape.resource_prefix,
                        "region_code": "" if tax else region,
                        "location": "" if tax else location, "product_name": name,
                        "product_description": (
                            f"Tax for product code {written}" if tax
                            else f"${shape.rate:.10f} per {shape.unit} for {usage_type}"),
                    })
        products = _categories(pd.DataFrame(rows), "rate")

        svc_idx = np.array([i for i, s in enumerate(services) for _ in s.groups], dtype=np.int64)
        tags = [g for s in services for g, _ in s.groups] + [""]
        n = len(svc_idx)
        region = rng.integers(0, len(REGIONS), n)
        tax_service = np.array([s.name == TAX_SERVICE for s in services], dtype=bool)
        ec2_compute = np.array([c == "AmazonEC2" for c in codes], dtype=bool)
        ids = rng.choice(9 * 10**11, size=accounts + 1, replace=False) + 10**11
        accounts_frame = _categories(pd.DataFrame({
            "account_id": [str(i) for i in ids[1:]],
            "account_name": [f"workload-{i + 1:04d}" for i in range(accounts)],
            "environment": [("production", "staging", "development")[i % 3]
                            for i in range(accounts)],
        }))
        sp_id = "".join(f"{b:02x}" for b in rng.integers(0, 256, 16))
        has_credit = bool(services) and services[0].name == SERVICES[0].name
        return cls(
            products=products,
            series=_categories(pd.DataFrame({"tag": tags})),
            accounts=accounts_frame,
            payer=(str(ids[0]), "management"),
            sp_arn=f"arn:aws:savingsplans::{ids[0]}:savingsplan/{sp_id[:8]}-{sp_id[8:12]}-"
                   f"{sp_id[12:16]}-{sp_id[16:20]}-{sp_id[20:]}",
            pid_first=np.array(service_first[:-1])[svc_idx] + region,
            shape_count=np.array(service_shapes[:-1])[svc_idx],
            home_account=rng.integers(0, accounts, n),
            is_tax=tax_service[svc_idx],
            is_ec2_compute=ec2_compute[svc_idx],
            credit_pid=service_first[0] if has_credit else None,
            first_service=svc_idx == 0,
            fee_pid=service_first[-1],
        )


def _lines(sid, pid, aid, kind, rid, start, end, cost, sp_effective=0.0, sp_commitment=0.0,
           sp_used=0.0) -> pd.DataFrame:
    """Line items as the integer codes and numbers the export query expands."""
    size = len(cost)
    return pd.DataFrame({
        "sid": np.broadcast_to(sid, size).astype(np.int64),
        "pid": np.broadcast_to(pid, size).astype(np.int64),
        "aid": np.broadcast_to(aid, size).astype(np.int64),
        "kind": np.full(size, kind, dtype=np.int64),
        "rid": np.broadcast_to(rid, size).astype(np.int64),
        "start_time": np.broadcast_to(start, size).astype("datetime64[us]"),
        "end_time": np.broadcast_to(end, size).astype("datetime64[us]"),
        "cost": np.asarray(cost, dtype=np.float64),
        "sp_effective": np.broadcast_to(sp_effective, size).astype(np.float64),
        "sp_commitment": np.broadcast_to(sp_commitment, size).astype(np.float64),
        "sp_used": np.broadcast_to(sp_used, size).astype(np.float64),
    })


def _resource_numbers(sid: np.ndarray, item: np.ndarray, aid: np.ndarray) -> np.ndarray:
    """A stable number per (series, item, account): the same resource every day."""
    mixed = ((sid.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15)
             ^ (item.astype(np.uint64) + np.uint64(1)) * np.uint64(0xBF58476D1CE4E5B9)
             ^ (aid.astype(np.uint64) + np.uint64(1)) * np.uint64(0x94D049BB133111EB))
    return (mixed >> np.uint64(1)).astype(np.int64)


def _day_lines(tables: _Tables, account: DemoAccount, day: dt.date, period_end: dt.date,
               items: int, accounts: int, seed: int) -> pd.DataFrame:
    """Every line item of one usage day; a function of (seed, day) alone."""
    rng = np.random.default_rng([seed, day.toordinal()])
    amounts = account.amounts(day)
    series = np.flatnonzero(amounts != 0.0)
    amount = amounts[series]
    weights = rng.uniform(0.5, 1.5, (len(series), items))
    costs = amount[:, None] * weights / weights.sum(axis=1, keepdims=True)
    costs[:, -1] = amount - costs[:, :-1].sum(axis=1)
    first_hour = rng.integers(0, 24, len(series))

    sid = np.repeat(series, items)
    item = np.tile(np.arange(items), len(series))
    hours = ((first_hour[:, None] + np.arange(items) * 24 // items) % 24).ravel()
    aid = (tables.home_account[sid] + item) % accounts
    pid = tables.pid_first[sid] + (item % tables.shape_count[sid]) * len(REGIONS)
    cost = costs.ravel()
    midnight = np.datetime64(day, "us")
    start = midnight + hours.astype("timedelta64[h]")
    parts = []

    usage = ~tables.is_tax[sid]
    rid = _resource_numbers(sid, item, aid)
    parts.append(_lines(sid[usage], pid[usage], aid[usage], USAGE, rid[usage], start[usage],
                        start[usage] + np.timedelta64(1, "h"), cost[usage]))
    tax = ~usage
    parts.append(_lines(sid[tax], pid[tax], aid[tax], TAX, -1, midnight,
                        np.datetime64(period_end, "us"), cost[tax]))

    covered = tables.is_ec2_compute[sid] & (rng.random(len(sid)) < SP_COVERED_SHARE)
    on_demand = cost[covered] * rng.uniform(0.5, 2.0, int(covered.sum()))
    for kind, sign, effective in ((SP_COVERED, 1.0, 1.0 - SP_DISCOUNT), (SP_NEGATION, -1.0, 0.0)):
        parts.append(_lines(sid[covered], pid[covered], aid[covered], kind, rid[covered],
                            start[covered], start[covered] + np.timedelta64(1, "h"),
                            sign * on_demand, sp_effective=effective * on_demand))

    untagged = len(tables.series) - 1
    if tables.credit_pid is not None and amounts[tables.first_service].any():
        parts.append(_lines(untagged, tables.credit_pid, 0, CREDIT, -1, midnight,
                            midnight + np.timedelta64(1, "D"), [DEMO_CREDIT]))
    billable = np.flatnonzero(usage)
    if day.day in REFUND_DAYS and len(billable):
        i = billable[rng.integers(len(billable))]
        parts.append(_lines(untagged, pid[i], aid[i], REFUND, -1, midnight,
                            midnight + np.timedelta64(1, "D"),
                            [-round(cost[i] * rng.uniform(0.1, 0.5), 2)]))
    return pd.concat(parts, ignore_index=True)


_EXPORT_SQL = """
COPY (
SELECT
    c.period_start::TIMESTAMP_MS AS bill_billing_period_start_date,
    c.period_end::TIMESTAMP_MS AS bill_billing_period_end_date,
    'Anniversary' AS bill_bill_type,
    'AWS' AS bill_billing_entity,
    'AWS' AS bill_invoicing_entity,
    c.payer_id AS bill_payer_account_id,
    c.payer_name AS bill_payer_account_name,
    md5(concat(c.salt, '-', c.line_id)) AS identity_line_item_id,
    c.time_interval AS identity_time_interval,
    c.line_type AS line_item_line_item_type,
    coalesce(c.line_description, c.product_description) AS line_item_line_item_description,
    'Amazon Web Services, Inc.' AS line_item_legal_entity,
    c.account_id AS line_item_usage_account_id,
    c.account_name AS line_item_usage_account_name,
    c.start_time::TIMESTAMP_MS AS line_item_usage_start_date,
    c.end_time::TIMESTAMP_MS AS line_item_usage_end_date,
    c.product_code AS line_item_product_code,
    c.usage_type AS line_item_usage_type,
    c.operation AS line_item_operation,
    CASE WHEN c.rid < 0 THEN '' ELSE c.resource_prefix || lpad(lower(to_hex(c.rid)), 17, '0')
        END AS line_item_resource_id,
    CASE WHEN c.has_usage THEN c.cost / c.rate ELSE 0.0 END AS line_item_usage_amount,
    c.currency AS line_item_currency_code,
    CASE WHEN c.has_usage THEN c.rate_text ELSE '' END AS line_item_unblended_rate,
    c.cost AS line_item_unblended_cost,
    CASE WHEN c.has_usage THEN c.rate_text ELSE '' END AS line_item_blended_rate,
    c.cost AS line_item_blended_cost,
    CASE WHEN c.has_usage THEN c.rate_text ELSE '' END AS line_item_net_unblended_rate,
    c.cost AS line_item_net_unblended_cost,
    c.family AS product_product_family,
    c.region_code AS product_region_code,
    c.location AS product_location,
    c.product_code AS product_servicecode,
    c.usage_type AS product_usagetype,
    c.operation AS product_operation,
    MAP {'product_name': c.product_name, 'servicename': c.product_name} AS product,
    c.unit AS pricing_unit,
    CASE WHEN c.has_usage THEN c.rate_text ELSE '' END AS pricing_public_on_demand_rate,
    CASE WHEN c.has_usage THEN c.cost ELSE 0.0 END AS pricing_public_on_demand_cost,
    CASE WHEN c.rid < 0 THEN MAP {}::MAP(VARCHAR, VARCHAR)
         WHEN c.tag = '' THEN MAP {'user_Environment': c.environment}
         ELSE MAP {'user_Environment': c.environment, 'user_Name': c.tag}
         END AS resource_tags,
    MAP {}::MAP(VARCHAR, VARCHAR) AS cost_category,
    0.0::DOUBLE AS reservation_effective_cost,
    0.0::DOUBLE AS reservation_unused_amortized_upfront_fee_for_billing_period,
    0.0::DOUBLE AS reservation_unused_recurring_fee,
    '' AS reservation_reservation_a_r_n,
    c.sp_effective AS savings_plan_savings_plan_effective_cost,
    c.sp_commitment AS savings_plan_total_commitment_to_date,
    c.sp_used AS savings_plan_used_commitment,
    CASE WHEN c.is_savings_plan THEN c.sp_arn ELSE '' END AS savings_plan_savings_plan_a_r_n
FROM lines c
) TO '{path}' (FORMAT parquet, COMPRESSION snappy)
"""


@dataclass(frozen=True)
class _Period:
    """What every line of one billing period's files shares."""

    start: dt.date
    end: dt.date
    payer_id: str
    payer_name: str
    currency: str
    sp_arn: str
    salt: str


def _interval(start: np.ndarray, end: np.ndarray) -> pd.Categorical:
    """identity_time_interval ('2024-01-01T05:00:00Z/2024-01-01T06:00:00Z'), formatted
    once per distinct (start, end) rather than once per line."""
    start_code, starts = pd.factorize(start)
    end_code, ends = pd.factorize(end)
    pair_code, pairs = pd.factorize(start_code.astype(np.int64) * len(ends) + end_code)
    starts = np.datetime_as_string(np.asarray(starts)[pairs // len(ends)], unit="s")
    ends = np.datetime_as_string(np.asarray(ends)[pairs % len(ends)], unit="s")
    return pd.Categorical.from_codes(pair_code, [f"{a}Z/{b}Z" for a, b in zip(starts, ends)])


def _expand(lines: pd.DataFrame, tables: _Tables, period: _Period) -> pd.DataFrame:
    """The columns the export query reads: text looked up by the lines' codes."""
    size = len(lines)
    pid, sid, aid, kind = (lines[c].to_numpy() for c in ("pid", "sid", "aid", "kind"))
    products, accounts = tables.products, tables.accounts
    return pd.DataFrame({
        "line_id": lines["line_id"].to_numpy(),
        "start_time": lines["start_time"].to_numpy(),
        "end_time": lines["end_time"].to_numpy(),
        "period_start": np.full(size, np.datetime64(period.start, "us")),
        "period_end": np.full(size, np.datetime64(period.end, "us")),
        "payer_id": _constant(period.payer_id, size),
        "payer_name": _constant(period.payer_name, size),
        "currency": _constant(period.currency, size),
        "sp_arn": _constant(period.sp_arn, size),
        "salt": _constant(period.salt, size),
        "time_interval": _interval(lines["start_time"].to_numpy(), lines["end_time"].to_numpy()),
        "line_type": _pick(_KINDS["line_type"], kind),
        "line_description": _pick(_KINDS["line_description"], kind),
        "has_usage": _KINDS["has_usage"].to_numpy()[kind],
        "is_savings_plan": _KINDS["is_savings_plan"].to_numpy()[kind],
        "account_id": _pick(accounts["account_id"], aid),
        "account_name": _pick(accounts["account_name"], aid),
        "environment": _pick(accounts["environment"], aid),
        "tag": _pick(tables.series["tag"], sid),
        **{c: _pick(products[c], pid) for c in PRODUCT_TEXT},
        "rate": products["rate"].to_numpy()[pid],
        "rid": lines["rid"].to_numpy(),
        "cost": lines["cost"].to_numpy(),
        "sp_effective": lines["sp_effective"].to_numpy(),
        "sp_commitment": lines["sp_commitment"].to_numpy(),
        "sp_used": lines["sp_used"].to_numpy(),
    })


class _MonthWriter:
    """Writes one billing period's lines as files of `file_rows` rows (the last shorter)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, folder: Path, tables: _Tables,
                 period: _Period, file_rows: int) -> None:
        self.con = con
        self.folder = folder
        self.tables = tables
        self.period = period
        self.file_rows = file_rows
        self.pending: list[pd.DataFrame] = []
        self.pending_rows = 0
        self.paths: list[Path] = []
        # AWS replaces a billing period's files on each delivery; so do we.
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob(f"{EXPORT_NAME}-*.snappy.parquet"):
            old.unlink()

    def add(self, lines: pd.DataFrame) -> None:
        self.pending.append(lines)
        self.pending_rows += len(lines)
        if self.pending_rows >= self.file_rows:
            frame = pd.concat(self.pending, ignore_index=True)
            while len(frame) >= self.file_rows:
                self._write(frame.iloc[:self.file_rows])
                frame = frame.iloc[self.file_rows:]
            self.pending, self.pending_rows = [frame], len(frame)

    def close(self) -> list[Path]:
        if self.pending_rows:
            self._write(pd.concat(self.pending, ignore_index=True))
        return self.paths

    def _write(self, lines: pd.DataFrame) -> None:
        path = self.folder / f"{EXPORT_NAME}-{len(self.paths) + 1:05d}.snappy.parquet"
        self.con.register("lines", _expand(lines, self.tables, self.period))
        self.con.execute(_EXPORT_SQL.replace("{path}", str(path).replace("'", "''"))).fetchall()
        self.con.unregister("lines")
        self.paths.append(path)


def _months(first_day: dt.date, last_day: dt.date) -> list[tuple[dt.date, dt.date, list[dt.date]]]:
    """(period start, period end, usage days in the range) per billing period."""
    out: list[tuple[dt.date, dt.date, list[dt.date]]] = []
    day = first_day
    while day <= last_day:
        start = day.replace(day=1)
        end = (start + dt.timedelta(days=32)).replace(day=1)
        stop = min(end, last_day + dt.timedelta(days=1))
        days = [day + dt.timedelta(days=i) for i in range((stop - day).days)]
        out.append((start, end, days))
        day = end
    return out


def write_cur_export(folder: Path, account: DemoAccount, first_day: dt.date,
                     last_day: dt.date, *, accounts: int = 3, items_per_series_day: int = 3,
                     seed: int = 0, file_rows: int = 500_000, currency: str | None = None,
                     savings_plan_fee: bool = False) -> list[Path]:
    """Write `account`'s costs for first_day..last_day (inclusive) as a CUR 2.0 export:
    `folder/data/BILLING_PERIOD=YYYY-MM/cost-export-NNNNN.snappy.parquet`.

    `currency` defaults to the account's, as the demo Cost Explorer answers in it.
    Returns the files written, in order.
    """
    if accounts < 1 or items_per_series_day < 1 or file_rows < 1:
        raise ValueError("accounts, items_per_series_day and file_rows must be at least 1")
    if last_day < first_day:
        raise ValueError(f"last_day {last_day} is before first_day {first_day}")
    tables = _Tables.build(account, accounts, seed)
    with duckdb.connect() as con:
        return _write_months(con, tables, Path(folder), account, first_day, last_day,
                             items_per_series_day, accounts, seed, file_rows,
                             currency or account.currency, savings_plan_fee)


def _write_months(con: duckdb.DuckDBPyConnection, tables: _Tables, folder: Path,
                  account: DemoAccount, first_day: dt.date, last_day: dt.date, items: int,
                  accounts: int, seed: int, file_rows: int, currency: str,
                  savings_plan_fee: bool) -> list[Path]:
    """write_cur_export's loop: billing periods, their days, their files."""
    paths: list[Path] = []
    for start, end, days in _months(first_day, last_day):
        period = _Period(start, end, *tables.payer, currency, tables.sp_arn,
                         f"{seed}-{start:%Y%m}")
        writer = _MonthWriter(con, folder / "data" / f"BILLING_PERIOD={start:%Y-%m}",
                              tables, period, file_rows)
        covered = 0.0
        for day in days:
            lines = _day_lines(tables, account, day, end, items, accounts, seed)
            lines.insert(0, "line_id", day.toordinal() * 10**10 + np.arange(len(lines)))
            covered += lines["sp_effective"][lines["kind"] == SP_COVERED].sum()
            writer.add(lines)
        if savings_plan_fee and covered:
            commitment = covered / SP_UTILISATION
            fee = _lines(len(tables.series) - 1, tables.fee_pid, 0, SP_FEE, -1,
                         np.datetime64(start, "us"), np.datetime64(end, "us"), [commitment],
                         sp_commitment=commitment, sp_used=covered)
            fee.insert(0, "line_id", end.toordinal() * 10**10)
            writer.add(fee)
        paths += writer.close()
    return paths


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write data/BILLING_PERIOD=... into")
    parser.add_argument("--days", type=int, default=365, help="usage days to write")
    parser.add_argument("--last-day", type=dt.date.fromisoformat,
                        default=dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1),
                        help="last usage day (default: yesterday, UTC)")
    parser.add_argument("--services", type=int, default=0,
                        help="synthetic services added to the demo account")
    parser.add_argument("--groups", type=int, default=5, help="tag values per synthetic service")
    parser.add_argument("--accounts", type=int, default=3, help="linked accounts")
    parser.add_argument("--items", type=int, default=3, help="line items per series and day")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--file-rows", type=int, default=500_000, help="rows per file")
    parser.add_argument("--savings-plan-fee", action="store_true",
                        help="add monthly SavingsPlanRecurringFee lines (not in the demo)")
    args = parser.parse_args(argv)
    if args.days < 1:
        parser.error(f"--days must be at least 1, not {args.days}")
    account = scaled_account((args.services, args.groups) if args.services else None)
    first_day = args.last_day - dt.timedelta(days=args.days - 1)
    began = time.perf_counter()
    try:
        paths = write_cur_export(args.out, account, first_day, args.last_day,
                                 accounts=args.accounts, items_per_series_day=args.items,
                                 seed=args.seed, file_rows=args.file_rows,
                                 savings_plan_fee=args.savings_plan_fee)
    except ValueError as error:
        parser.error(str(error))
    seconds = time.perf_counter() - began
    rows = 0
    if paths:
        with duckdb.connect() as con:
            rows = con.execute("SELECT count(*) FROM read_parquet($paths)",
                               {"paths": [str(p) for p in paths]}).fetchone()[0]
    size = sum(p.stat().st_size for p in paths)
    print(f"{rows:,} rows, {size:,} bytes in {len(paths)} files, {first_day}..{args.last_day}, "
          f"{seconds:.1f} s ({rows / max(seconds, 1e-9):,.0f} rows/s)")


if __name__ == "__main__":
    main()
