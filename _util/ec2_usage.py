"""A day's EC2 instance usage as the digest, the page and report.json show it: pure
figures from the instances each region answered (or the store holds).

Each instance is one row (its intervals, hours, facts); each region one line (its
instances and hours, and whether it answered: `ok`, `denied`, `error`). Rows are ordered
by hours, longest first; instances started and terminated on the day are counted apart.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from _util.sources.ec2_usage import InstanceDay

OK, DENIED, ERROR = "ok", "denied", "error"


@dataclass(frozen=True)
class InstanceRow:
    region: str
    instance_id: str
    instance_type: str | None
    spot: bool
    name: str | None
    user: str | None
    intervals: tuple[tuple[dt.datetime, dt.datetime], ...]
    hours: float
    still_running: bool
    running_at_midnight: bool
    terminated: bool
    estimated_usd: float | None = None

    @property
    def started_and_terminated(self) -> bool:
        return self.terminated and not self.running_at_midnight


@dataclass(frozen=True)
class RegionRow:
    region: str
    status: str  # ok | denied | error
    instances: int = 0
    hours: float = 0.0
    action: str | None = None  # the IAM action refused, when denied


@dataclass(frozen=True)
class Ec2Usage:
    """The section's data for one day. `source`: `cloudtrail` (asked in this run, at
    least in part) or `stored`; `requests` and `seconds`: what asking took."""

    day: dt.date
    regions: tuple[RegionRow, ...]
    instances: tuple[InstanceRow, ...]
    source: str = "stored"
    requests: int = 0
    seconds: float = 0.0
    notes: tuple[str, ...] = field(default_factory=tuple)

    @property
    def total_hours(self) -> float:
        return sum(i.hours for i in self.instances)

    @property
    def total_usd(self) -> float | None:
        """The estimated on-demand cost of the instances with a price (None: none has)."""
        prices = [i.estimated_usd for i in self.instances if i.estimated_usd is not None]
        return float(sum(prices)) if prices else None

    @property
    def unpriced(self) -> int:
        return sum(i.estimated_usd is None for i in self.instances)

    @property
    def still_running(self) -> list[InstanceRow]:
        return [i for i in self.instances if i.still_running]

    @property
    def started_and_terminated(self) -> list[InstanceRow]:
        return [i for i in self.instances if i.started_and_terminated]

    @property
    def answered(self) -> bool:
        return any(r.status == OK for r in self.regions)


def usage_figures(day: dt.date, statuses: Mapping[str, tuple[str, str | None]],
                  instances: Mapping[str, Iterable[InstanceDay]],
                  prices: Mapping[tuple[str, str], float] | None = None, *,
                  source: str = "stored", requests: int = 0, seconds: float = 0.0,
                  notes: Iterable[str] = ()) -> Ec2Usage:
    """The day's figures: `statuses` is each region's (status, refused action), in the
    order to show them; `instances` the instances of the regions that answered; `prices`
    on-demand USD an hour by (region, instance type), when known."""
    rows = []
    for region, found in instances.items():
        for inst in found:
            price = (prices or {}).get((region, inst.facts.instance_type or ""))
            rows.append(InstanceRow(
                region, inst.usage.instance_id, inst.facts.instance_type, inst.facts.spot,
                inst.facts.name, inst.facts.user, inst.usage.intervals, inst.usage.hours,
                inst.usage.still_running, inst.usage.running_at_midnight,
                inst.usage.terminated, None if price is None else price * inst.usage.hours))
    rows.sort(key=lambda r: (-r.hours, r.region, r.instance_id))
    regions = []
    for region, (status, action) in statuses.items():
        mine = [r for r in rows if r.region == region]
        regions.append(RegionRow(region, status, len(mine), sum(r.hours for r in mine), action))
    return Ec2Usage(day, tuple(regions), tuple(rows), source, requests, seconds, tuple(notes))
