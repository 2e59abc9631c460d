"""A built-in demo AWS account that answers like boto3's Cost Explorer client.

`DemoCostExplorer.get_cost_and_usage` takes the same parameters and returns the same
response shape as the real call (TimePeriod End exclusive, amounts as strings, tag keys as
`Name$value`, NextPageToken pages, the newest days Estimated), so `--demo` runs the
production ingestion code end to end. Its series carry a Name tag; any other tag key
(e.g. Spend_Category, for tag coverage) is derived from it, with some spend lacking it
(`spend_category`).

Every amount is a pure function of its usage day, never of the day the demo runs: a
database filled day by day equals one backfilled at once. Planted events recur on a
calendar schedule, so every run date has recent ones to report:
- a spike every SPIKE_EVERY days, on a rotating spike-prone service and group;
- trend reversals: trend-prone services follow a triangle wave of TREND_PERIOD days
  whose turning points are upward and downward reversals.
"""
from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from _util.alert_kinds import DOWN, SPIKE, TREND, UP
from _util.detection.labels import Incident
from _util.report import Rules
from _util.sources.cost_explorer import CostExplorerSource
from _util.sources.demo_commitments import DemoCommitments

if TYPE_CHECKING:
    from _util.settings import Settings

SEED = 20240611
SPIKE_EVERY = 3
TREND_PERIOD = 56
EPOCH = dt.date(2020, 1, 1)
DEFAULT_PAGE_GROUPS = 2000
# --write-demo-labels without --backtest-from: the half year the README scores.
DEMO_LABEL_DAYS = 180
# What detection reads with the default rules: the lookback window and the echo days.
DEMO_HISTORY_DAYS = Rules().lookback_days + Rules().echo_days

_GROUP_DIMENSIONS = {"LINKED_ACCOUNT", "REGION", "USAGE_TYPE"}


@dataclass(frozen=True)
class DemoService:
    """How one demo service behaves; `groups` are (tag value, share of spend)."""

    name: str
    daily_usd: float
    groups: tuple[tuple[str, float], ...] = (("", 1.0),)
    weekend: float = 1.0
    growth_per_year: float = 0.0
    noise: float = 0.05
    spike_prone: bool = False
    trend_prone: bool = False
    active_days: int = 0
    cycle_days: int = 0
    monthly_only: bool = False


@dataclass(frozen=True)
class PlantedEvent:
    """A cost change the demo plants on purpose, so tests can check it is found."""

    kind: str
    direction: str
    service: str
    group: str | None
    day: dt.date


SERVICES: tuple[DemoService, ...] = (
    DemoService("Amazon Elastic Compute Cloud - Compute", 420.0,
                (("web-prod", 0.45), ("api-prod", 0.3), ("batch-workers", 0.15), ("", 0.1)),
                weekend=0.8, growth_per_year=0.25, noise=0.03, spike_prone=True),
    DemoService("EC2 - Other", 95.0, (("web-prod", 0.5), ("api-prod", 0.3), ("", 0.2)),
                growth_per_year=0.2, noise=0.015, trend_prone=True),
    DemoService("Amazon Relational Database Service", 210.0,
                (("orders-db", 0.6), ("analytics-db", 0.4)), noise=0.01, trend_prone=True),
    DemoService("Amazon Simple Storage Service", 130.0,
                (("data-lake", 0.7), ("static-site", 0.05), ("", 0.25)),
                growth_per_year=0.4, noise=0.03, spike_prone=True),
    DemoService("AWS Lambda", 38.0, (("api-prod", 0.7), ("", 0.3)), weekend=0.6,
                noise=0.08, spike_prone=True),
    DemoService("Amazon CloudFront", 55.0, (("static-site", 0.8), ("", 0.2)), weekend=1.15,
                noise=0.06, spike_prone=True),
    DemoService("Amazon DynamoDB", 72.0, (("orders-db", 0.8), ("", 0.2)), noise=0.015,
                trend_prone=True),
    DemoService("Amazon ElastiCache", 64.0, (("web-prod", 1.0),), noise=0.01),
    DemoService("Elastic Load Balancing", 41.0, (("web-prod", 0.6), ("api-prod", 0.4)),
                noise=0.03, spike_prone=True),
    DemoService("Amazon Virtual Private Cloud", 33.0, (("", 1.0),), noise=0.015,
                trend_prone=True),
    DemoService("AmazonCloudWatch", 27.0, (("", 0.7), ("web-prod", 0.3)), noise=0.05,
                spike_prone=True),
    DemoService("AWS Key Management Service", 4.5, (("", 1.0),), noise=0.02),
    DemoService("Amazon Route 53", 3.2, (("", 1.0),), noise=0.02),
    DemoService("Amazon Simple Queue Service", 6.0, (("api-prod", 0.8), ("", 0.2)),
                weekend=0.7, noise=0.1),
    DemoService("Amazon Simple Notification Service", 1.4, (("", 1.0),), noise=0.15),
    DemoService("AWS Glue", 48.0, (("analytics-etl", 1.0),), weekend=0.3, noise=0.1,
                spike_prone=True),
    DemoService("Amazon Athena", 12.0, (("analytics-etl", 0.9), ("", 0.1)), weekend=0.4,
                noise=0.2),
    DemoService("Amazon OpenSearch Service", 88.0, (("search-prod", 1.0),), noise=0.01,
                trend_prone=True),
    DemoService("Amazon Elastic Container Service", 52.0,
                (("api-prod", 0.6), ("batch-workers", 0.4)), weekend=0.85, noise=0.04,
                spike_prone=True),
    DemoService("Amazon Elastic Kubernetes Service", 24.0, (("platform-eks", 1.0),),
                noise=0.01),
    DemoService("Amazon Elastic File System", 15.0, (("batch-workers", 0.5), ("", 0.5)),
                growth_per_year=0.5, noise=0.02),
    DemoService("AWS Secrets Manager", 2.1, (("", 1.0),), noise=0.01),
    DemoService("Amazon SageMaker", 140.0, (("ml-experiments", 1.0),), weekend=0.5,
                noise=0.1, active_days=75, cycle_days=150),
    DemoService("Amazon Kinesis", 36.0, (("clickstream", 1.0),), noise=0.05,
                active_days=40, cycle_days=120),
    DemoService("AWS Backup", 18.0, (("", 1.0),), growth_per_year=0.3, noise=0.03),
    DemoService("Tax", 0.0, (("", 1.0),), noise=0.0, monthly_only=True),
)


def _stable_unit(*parts: object) -> float:
    """A number in [0, 1) fixed by its inputs, the same on every machine and run."""
    digest = hashlib.sha256("|".join(map(str, parts)).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


@dataclass
class _SeriesTable:
    """All demo series flattened, so a day's amounts are one vectorised expression."""

    services: list[DemoService]
    service_idx: np.ndarray
    group_names: list[str]
    share: np.ndarray

    @classmethod
    def build(cls, services: list[DemoService]) -> "_SeriesTable":
        service_idx, group_names, share = [], [], []
        for i, svc in enumerate(services):
            for name, part in svc.groups:
                service_idx.append(i)
                group_names.append(name)
                share.append(part)
        return cls(services, np.array(service_idx), group_names, np.array(share))


def _synthetic_services(count: int, groups: int) -> list[DemoService]:
    """Extra services for benchmarks: `count` services of `groups` tag values each."""
    out = []
    for i in range(count):
        daily = 5.0 + 200.0 * _stable_unit("synthetic", i)
        tags = tuple((f"team-{j:03d}", 1.0 / groups) for j in range(groups))
        out.append(DemoService(f"Synthetic Service {i:05d}", daily, tags, weekend=0.9,
                               noise=0.05, spike_prone=(i % 10 == 0)))
    return out


def _spike_targets(services: list[DemoService]) -> list[tuple[int, int]]:
    """(service index, group index) pairs that take turns at spiking."""
    targets = []
    for i, svc in enumerate(services):
        if svc.spike_prone:
            biggest = max(range(len(svc.groups)), key=lambda g: svc.groups[g][1])
            targets.append((i, biggest))
    return targets


def _triangle(ordinal: int, phase: float) -> float:
    """A 0..1..0 wave over TREND_PERIOD days; its corners are the planted reversals."""
    pos = ((ordinal + phase * TREND_PERIOD) % TREND_PERIOD) / TREND_PERIOD
    return 2 * pos if pos < 0.5 else 2 * (1 - pos)


@dataclass
class DemoAccount:
    """The demo's cost model: amounts per (day, service, group), in `currency` (as an
    account billed in another currency answers: the same amounts, another Unit)."""

    services: list[DemoService] = field(default_factory=lambda: list(SERVICES))
    currency: str = "USD"

    def __post_init__(self) -> None:
        self._table = _SeriesTable.build(self.services)
        self._spike_targets = _spike_targets(self.services)
        self._phase = np.array([_stable_unit("phase", s.name) for s in self.services])

    def spike_on(self, day: dt.date) -> tuple[int, int] | None:
        ordinal = (day - EPOCH).days
        if ordinal % SPIKE_EVERY or not self._spike_targets:
            return None
        return self._spike_targets[(ordinal // SPIKE_EVERY) % len(self._spike_targets)]

    def amounts(self, day: dt.date) -> np.ndarray:
        """Cost of every series on `day`, in the order of the series table."""
        table = self._table
        ordinal = (day - EPOCH).days
        rng = np.random.default_rng([SEED, ordinal])
        noise = rng.standard_normal(len(table.share))
        per_service = np.empty(len(self.services))
        weekday_level = np.empty(len(self.services))
        for i, svc in enumerate(self.services):
            years = ordinal / 365.0
            level = svc.daily_usd * (1.0 + svc.growth_per_year) ** (years - 6.0)
            if svc.trend_prone:
                level *= 1.0 + 0.8 * _triangle(ordinal, self._phase[i])
            weekday_level[i] = level
            if day.weekday() >= 5:
                level *= svc.weekend
            if svc.cycle_days and (ordinal % svc.cycle_days) >= svc.active_days:
                level = 0.0
            if svc.monthly_only:
                level = 250.0 + 0.1 * (day.year * 12 + day.month - 24000) if day.day == 1 else 0.0
            per_service[i] = level
        noise_scale = np.array([s.noise for s in self.services])[table.service_idx]
        amounts = per_service[table.service_idx] * table.share * (1.0 + noise_scale * noise)
        spike = self.spike_on(day)
        if spike is not None:
            svc_i, grp_i = spike
            row = int(np.flatnonzero(table.service_idx == svc_i)[grp_i])
            amounts[row] += 3.0 * weekday_level[svc_i] * table.share[row] + 50.0
        return np.maximum(amounts, 0.0)

    def planted_events(self, run_day: dt.date, days: int = 90) -> list[PlantedEvent]:
        """Spikes and trend reversals planted in the `days` days up to `run_day`."""
        events: list[PlantedEvent] = []
        for back in range(days):
            day = run_day - dt.timedelta(days=back)
            ordinal = (day - EPOCH).days
            spike = self.spike_on(day)
            if spike is not None:
                svc = self.services[spike[0]]
                group = svc.groups[spike[1]][0]
                events.append(PlantedEvent(SPIKE, UP, svc.name, None, day))
                events.append(PlantedEvent(SPIKE, UP, svc.name, group, day))
            for i, svc in enumerate(self.services):
                if not svc.trend_prone:
                    continue
                pos = (ordinal + self._phase[i] * TREND_PERIOD) % TREND_PERIOD
                if pos < 1.0:
                    events.append(PlantedEvent(TREND, UP, svc.name, None, day))
                elif abs(pos - TREND_PERIOD / 2) < 0.5:
                    events.append(PlantedEvent(TREND, DOWN, svc.name, None, day))
        return sorted(events, key=lambda e: (e.day, e.kind, e.service, e.group or ""))

    def frame(self, start: dt.date, end: dt.date) -> pd.DataFrame:
        """Tidy rows (usage_date, service, group_value, amount) for days start..end-1."""
        table = self._table
        days = [start + dt.timedelta(days=i) for i in range((end - start).days)]
        if not days:
            return pd.DataFrame(columns=["usage_date", "service", "group_value", "amount"])
        matrix = np.vstack([self.amounts(d) for d in days])
        names = np.array([s.name for s in self.services], dtype=object)[table.service_idx]
        frame = pd.DataFrame({
            "usage_date": np.repeat(pd.to_datetime(days).values, len(table.share)),
            "service": np.tile(names, len(days)),
            "group_value": np.tile(np.array(table.group_names, dtype=object), len(days)),
            "amount": matrix.ravel(),
        })
        return frame[frame["amount"] != 0.0].reset_index(drop=True)


def _account_name(tag_value: str) -> str:
    """The invented name of the demo account a tag value's spend is put in."""
    return f"demo-{tag_value}" if tag_value else "demo-management"


# The demo's series carry a Name tag; every other tag key (a cost-category tag such as
# Spend_Category, the one COST_TRACKING_COVERAGE_TAG names) takes its value from the Name:
# most named resources have a category, but the ML team's experiments and the
# clickstream pipeline (newer teams, not tagged yet) and every resource without a Name
# lack it, so about a tenth to a fifth of the spend is untagged (more while SageMaker
# runs, which makes coverage dip for weeks at a time).
SPEND_CATEGORIES = {
    "web-prod": "product", "api-prod": "product", "orders-db": "product",
    "search-prod": "product", "static-site": "marketing", "batch-workers": "platform",
    "platform-eks": "platform", "data-lake": "data", "analytics-db": "data",
    "analytics-etl": "data",
}


def spend_category(name_tag: str) -> str:
    """The value of a series' other tags (Spend_Category, ...) from its Name tag; ""
    when it has none."""
    return SPEND_CATEGORIES.get(name_tag, "")


def _group_key(group_by: dict | None, service: str, tag_value: str) -> str:
    """The second key as Cost Explorer spells it for the configured grouping (a tag
    other than Name answers with the value `spend_category` derives from the Name)."""
    if group_by is None:
        return ""
    key = group_by["Key"]
    if group_by["Type"] == "TAG":
        return f"{key}${tag_value if key == 'Name' else spend_category(tag_value)}"
    if key == "LINKED_ACCOUNT":
        return "1234567890%02d" % (int(_stable_unit(tag_value) * 100))
    if key == "REGION":
        return ["us-east-1", "eu-west-1", "us-west-2", "ap-southeast-2"][
            int(_stable_unit(tag_value) * 4)] if tag_value else "global"
    if key == "USAGE_TYPE":
        return f"USE1-{service.split()[-1]}-{tag_value or 'Requests'}"
    return tag_value


def _excluded_record_types(flt: dict | None) -> set[str]:
    if not flt:
        return set()
    dims = flt.get("Not", {}).get("Dimensions", {})
    if dims.get("Key") == "RECORD_TYPE":
        return set(dims.get("Values", []))
    return set()


class DemoCostExplorer(DemoCommitments):
    """Stands in for `boto3.client("ce")`: only the calls the bot makes (the cost call
    here, the Reserved Instance and Savings Plans calls in `demo_commitments.py`).

    `today` is the day the demo runs (amounts exist up to the day before); the two newest
    days are Estimated, as in Cost Explorer.
    """

    def __init__(self, today: dt.date, account: DemoAccount | None = None,
                 page_groups: int = DEFAULT_PAGE_GROUPS) -> None:
        self.today = today
        self.account = account or DemoAccount()
        self.page_groups = page_groups
        self.calls: list[dict] = []
        self._query: tuple[dict, _DemoQuery] | None = None

    def get_cost_and_usage(self, **kwargs) -> dict:
        self.calls.append(kwargs)
        query = {k: v for k, v in kwargs.items() if k != "NextPageToken"}
        if self._query is None or self._query[0] != query:
            # Pages of one query share its results, as Cost Explorer's do.
            self._query = (query, _DemoQuery(self.account, self.today, **query))
        return self._query[1].page(kwargs.get("NextPageToken"), self.page_groups)


class _DemoQuery:
    """One GetCostAndUsage query, answered a page at a time.

    Only the days a page covers are computed and only its groups become dicts, so a year
    of 50,000 series never sits in memory as millions of response dicts: a client holds
    one page at a time, as with Cost Explorer. A page token is "<day>:<offset>".
    """

    def __init__(self, account: DemoAccount, today: dt.date, **kwargs) -> None:
        if kwargs.get("Granularity") != "DAILY":
            raise ValueError("the demo account only answers DAILY requests")
        self.account = account
        self.today = today
        self.start = dt.date.fromisoformat(kwargs["TimePeriod"]["Start"])
        end = min(dt.date.fromisoformat(kwargs["TimePeriod"]["End"]), today)
        self.n_days = max((end - self.start).days, 0)
        (self.metric,) = kwargs["Metrics"]
        self.group_defs = kwargs.get("GroupBy", [])
        second = self.group_defs[1] if len(self.group_defs) > 1 else None
        table = account._table
        names = [s.name for s in account.services]
        # Series whose keys coincide (two tag values in one REGION, say) are one group.
        index: dict[tuple[str, ...], int] = {}
        series_key = np.empty(len(table.share), dtype=np.int64)
        # Grouped by LINKED_ACCOUNT, each invented account ID has a name, as in Cost
        # Explorer's DimensionValueAttributes: the first tag value's put in it.
        by_account = (second is not None and second.get("Type") == "DIMENSION"
                      and second.get("Key") == "LINKED_ACCOUNT")
        self.account_names: dict[str, str] = {}
        for s, (svc_i, tag) in enumerate(zip(table.service_idx.tolist(), table.group_names)):
            service = names[svc_i]
            keys = (service,) if second is None else (service, _group_key(second, service, tag))
            series_key[s] = index.setdefault(keys, len(index))
            if by_account:
                self.account_names.setdefault(keys[1], _account_name(tag))
        self.credit_series: np.ndarray | None = None
        self.credit_key = -1
        if ("Credit" not in _excluded_record_types(kwargs.get("Filter"))
                and names and names[0] == SERVICES[0].name):
            # A daily credit on the first service's untagged group, on days it has a cost.
            self.credit_series = table.service_idx == 0
            keys = (names[0],) if second is None else (names[0], _group_key(second, names[0], ""))
            self.credit_key = index.setdefault(keys, len(index))
            if by_account:
                self.account_names.setdefault(keys[1], _account_name(""))
        self.keys = [list(k) for k in index]
        self.series_key = series_key
        self.merged = len(index) != len(series_key)
        self._day: tuple[int, list[int], list[float]] | None = None

    def groups_of(self, i: int) -> tuple[list[int], list[float]]:
        """(key ids, amounts) of the groups with a cost on day i, in the series' order."""
        if self._day is not None and self._day[0] == i:
            return self._day[1], self._day[2]
        amounts = self.account.amounts(self.start + dt.timedelta(days=i))
        present = amounts != 0.0
        if self.merged:
            n_keys = len(self.keys)
            sums = np.bincount(self.series_key, weights=np.where(present, amounts, 0.0),
                               minlength=n_keys)
            has = np.bincount(self.series_key, weights=present, minlength=n_keys) > 0
        else:
            sums, has = amounts, present
        if self.credit_series is not None and present[self.credit_series].any():
            sums, has = sums.copy(), has.copy()
            sums[self.credit_key] += -12.5
            has[self.credit_key] = True
        ids = np.flatnonzero(has)
        self._day = (i, ids.tolist(), sums[ids].tolist())
        return self._day[1], self._day[2]

    def _period(self, i: int, groups: list[dict]) -> dict:
        day = self.start + dt.timedelta(days=i)
        return {
            "TimePeriod": {"Start": day.isoformat(),
                           "End": (day + dt.timedelta(days=1)).isoformat()},
            "Total": {},
            "Groups": groups,
            "Estimated": day >= self.today - dt.timedelta(days=2),
        }

    def _attributes(self, periods: list[dict]) -> list[dict]:
        """The names of the accounts a page returns, as Cost Explorer attaches them."""
        if not self.account_names:
            return []
        accounts = dict.fromkeys(g["Keys"][1] for p in periods for g in p["Groups"])
        return [{"Value": a, "Attributes": {"description": self.account_names[a]}}
                for a in accounts if a in self.account_names]

    def page(self, token: str | None, page_groups: int) -> dict:
        """At most `page_groups` groups from `token` on, splitting days; a day without
        groups takes one slot."""
        i, j = (int(x) for x in token.split(":")) if token else (0, 0)
        periods = []
        room = page_groups
        while i < self.n_days and room > 0:
            ids, amounts = self.groups_of(i)
            take = ids[j:j + room]
            periods.append(self._period(i, [
                {"Keys": list(self.keys[k]),
                 "Metrics": {self.metric: {"Amount": f"{v:.10f}", "Unit": self.account.currency}}}
                for k, v in zip(take, amounts[j:j + room])]))
            room -= max(len(take), 1)
            j += len(take)
            if j >= len(ids):
                i, j = i + 1, 0
        response = {
            "GroupDefinitions": [{"Type": g["Type"], "Key": g["Key"]} for g in self.group_defs],
            "ResultsByTime": periods,
            "DimensionValueAttributes": self._attributes(periods),
            "ResponseMetadata": {"HTTPStatusCode": 200},
        }
        if i < self.n_days:
            response["NextPageToken"] = f"{i}:{j}"
        return response


def scaled_account(scale: tuple[int, int] | None) -> DemoAccount:
    """The demo account plus `services` x `groups` synthetic series (for benchmarks)."""
    if not scale:
        return DemoAccount()
    services, groups = scale
    return DemoAccount(list(SERVICES) + _synthetic_services(services, groups))


def demo_source(settings: "Settings", today: dt.date) -> CostExplorerSource:
    """The demo account posing as boto3's client under the Cost Explorer source, so
    `--demo` runs the production parsing end to end."""
    client = DemoCostExplorer(today, scaled_account(settings.demo_scale))
    return CostExplorerSource(client, account="demo", name="demo")


def planted_events(run_day: dt.date, days: int = 90) -> list[PlantedEvent]:
    """The default demo account's planted events up to `run_day`."""
    return DemoAccount().planted_events(run_day, days)


def planted_incidents(first: dt.date, last: dt.date,
                      scale: tuple[int, int] | None = None) -> list[Incident]:
    """The planted events of first..last as known incidents (a labels file's rows): a
    spike on the group it was planted in, a turn on its service."""
    events = scaled_account(scale).planted_events(last, (last - first).days + 1)
    return [Incident(day=e.day, service=e.service, group=e.group, kind=e.kind,
                     direction=e.direction)
            for e in events if e.kind != SPIKE or e.group is not None]


def demo_history(run_day: dt.date, lookback_days: int = DEMO_HISTORY_DAYS) -> pd.DataFrame:
    """The history frame a fresh demo database would hold for `run_day` (for tests): the
    default rules' lookback and the echo days before it."""
    account = DemoAccount()
    start = run_day - dt.timedelta(days=lookback_days - 1)
    frame = account.frame(start, run_day + dt.timedelta(days=1))
    frame["estimated"] = frame["usage_date"] >= pd.Timestamp(run_day - dt.timedelta(days=1))
    return frame
