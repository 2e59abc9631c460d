"""Tag coverage figures: how much of the spend carries a tag (a non-empty value).

Pure: rows of daily spend per service, split into tagged and untagged, in; one
`TagCoverage` out. Where the rows come from (the stored costs when the bot groups by that
tag, else a Cost Explorer request of its own) is `_util/sources/tag_coverage.py`'s
business; how the figures are shown, `_util/sections/tag_coverage.py`'s.

Definitions, for the report's day D:
- a share is 100 x tagged spend / all spend (None when there was no positive spend);
- `day_pct` is D's share, `mtd_pct` the share of the month to date (D's month up to D);
- `change_30d_pts` is D's share minus the share of D - 30 days, in percentage points;
- `prev7_mean_pct` is the mean of the daily shares of D - 7 .. D - 1, and a drop of more
  than the threshold (COST_TRACKING_COVERAGE_DROP_PCT points) below it is an alert;
- per service, the same for the month to date and for D, ranked by untagged spend.

`coverage_for(coverage, services)` recomputes every figure for the services a predicate
picks (a route's slice of the spend), from the rows the coverage keeps.
"""
from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from _util.store.tag_coverage import CoverageRow

COVERAGE_DAYS = 90  # the plot's window, and what the first fetch stores
CHANGE_DAYS = 30
DROP_BASELINE_DAYS = 7
DEFAULT_DROP_PCT = 5.0


def share(tagged: float, untagged: float) -> float | None:
    """Tagged spend as a percentage of all spend; None without positive spend."""
    total = tagged + untagged
    return 100.0 * tagged / total if total > 0 else None


@dataclass(frozen=True)
class DayCoverage:
    """One day's spend, tagged and untagged, across the services considered."""

    day: dt.date
    tagged_usd: float
    untagged_usd: float

    @property
    def pct(self) -> float | None:
        return share(self.tagged_usd, self.untagged_usd)


@dataclass(frozen=True)
class ServiceCoverage:
    """One service: its untagged spend and tagged share, month to date and on the day."""

    service: str
    untagged_usd: float  # month to date
    tagged_pct: float | None  # month to date
    day_untagged_usd: float
    day_tagged_pct: float | None


@dataclass(frozen=True)
class TagCoverage:
    """The share of spend carrying `tag` on `day`, month to date, over the last
    COVERAGE_DAYS days and per service; `rows` are what it was computed from (so a slice
    can be computed again: `coverage_for`). `source` says where the rows came from
    ("costs": the stored costs, grouped by the tag; "cost-explorer": the request of its
    own; "stored": kept from earlier runs, nothing fetched now) and `note` what went
    wrong getting them, if anything."""

    tag: str
    day: dt.date
    drop_threshold_pts: float
    daily: tuple[DayCoverage, ...]  # every day of the window, oldest first
    mtd_tagged_usd: float
    mtd_untagged_usd: float
    by_service: tuple[ServiceCoverage, ...]  # the most untagged spend month to date first
    rows: tuple[CoverageRow, ...] = ()
    source: str = ""
    note: str | None = None

    def _on(self, day: dt.date) -> DayCoverage | None:
        return next((d for d in reversed(self.daily) if d.day == day), None)

    @property
    def day_totals(self) -> DayCoverage:
        return self._on(self.day) or DayCoverage(self.day, 0.0, 0.0)

    @property
    def day_pct(self) -> float | None:
        return self.day_totals.pct

    @property
    def mtd_pct(self) -> float | None:
        return share(self.mtd_tagged_usd, self.mtd_untagged_usd)

    @property
    def pct_30d_ago(self) -> float | None:
        then = self._on(self.day - dt.timedelta(days=CHANGE_DAYS))
        return then.pct if then else None

    @property
    def change_30d_pts(self) -> float | None:
        if self.day_pct is None or self.pct_30d_ago is None:
            return None
        return self.day_pct - self.pct_30d_ago

    @property
    def prev7_mean_pct(self) -> float | None:
        start = self.day - dt.timedelta(days=DROP_BASELINE_DAYS)
        shares = [d.pct for d in self.daily if start <= d.day < self.day and d.pct is not None]
        return sum(shares) / len(shares) if shares else None

    @property
    def drop_pts(self) -> float | None:
        """How many points D's share is below the mean of the 7 days before (negative: above)."""
        if self.day_pct is None or self.prev7_mean_pct is None:
            return None
        return self.prev7_mean_pct - self.day_pct

    @property
    def drop_alert(self) -> bool:
        return self.drop_pts is not None and self.drop_pts > self.drop_threshold_pts


def coverage_figures(rows: Iterable[CoverageRow], tag: str, day: dt.date,
                     drop_threshold_pts: float = DEFAULT_DROP_PCT, *,
                     days: int = COVERAGE_DAYS, source: str = "",
                     note: str | None = None) -> TagCoverage:
    """The figures of `day` from rows of (day, service, tagged, untagged); rows outside
    the `days` days ending on `day` are left out. A day without rows counts as no spend."""
    first = day - dt.timedelta(days=days - 1)
    month_start = day.replace(day=1)
    kept = tuple(r for r in rows if first <= r.usage_date <= day)
    frame = pd.DataFrame({
        "usage_date": [r.usage_date for r in kept],
        "service": pd.Series([r.service for r in kept], dtype=object),
        "tagged": np.array([r.tagged for r in kept], dtype=float),
        "untagged": np.array([r.untagged for r in kept], dtype=float),
    })
    window = [first + dt.timedelta(days=i) for i in range(days)]
    per_day = (frame.groupby("usage_date")[["tagged", "untagged"]].sum()
               .reindex(window, fill_value=0.0))
    daily = tuple(DayCoverage(d, float(t), float(u))
                  for d, t, u in zip(window, per_day["tagged"], per_day["untagged"]))

    month = frame[frame["usage_date"] >= month_start]
    on_day = frame[frame["usage_date"] == day]
    mtd = month.groupby("service")[["tagged", "untagged"]].sum()
    today = on_day.groupby("service")[["tagged", "untagged"]].sum().reindex(
        mtd.index, fill_value=0.0)
    services = [
        ServiceCoverage(str(name), float(m.untagged), share(m.tagged, m.untagged),
                        float(d.untagged), share(d.tagged, d.untagged))
        for (name, m), (_, d) in zip(mtd.iterrows(), today.iterrows())
        if m.tagged != 0 or m.untagged != 0
    ]
    services.sort(key=lambda s: (-s.untagged_usd, s.service))
    return TagCoverage(
        tag=tag, day=day, drop_threshold_pts=drop_threshold_pts, daily=daily,
        mtd_tagged_usd=float(month["tagged"].sum()),
        mtd_untagged_usd=float(month["untagged"].sum()),
        by_service=tuple(services), rows=kept, source=source, note=note)


def coverage_for(coverage: TagCoverage, services: Callable[[str], bool]) -> TagCoverage:
    """The same figures for the services `services` picks, e.g. a route's slice of spend
    (`lambda s: fnmatch(s, "Amazon Elastic*")`): totals, shares, the 30-day change, the
    drop alert and the per-service list, recomputed from the kept rows."""
    return coverage_figures((r for r in coverage.rows if services(r.service)), coverage.tag,
                            coverage.day, coverage.drop_threshold_pts,
                            days=len(coverage.daily) or COVERAGE_DAYS,
                            source=coverage.source, note=coverage.note)


def rows_from_history(history: pd.DataFrame, first: dt.date, last: dt.date,
                      unit: str = "USD") -> list[CoverageRow]:
    """Coverage rows from the stored costs when they are grouped by the tag itself: the
    group "" is the untagged spend, every other group carries the tag."""
    start, end = pd.Timestamp(first), pd.Timestamp(last)
    part = history[(history["usage_date"] >= start) & (history["usage_date"] <= end)]
    if part.empty:
        return []
    tagged = part["group_value"].astype(object) != ""
    frame = pd.DataFrame({
        "usage_date": part["usage_date"].dt.date,
        "service": part["service"].astype(object),
        "tagged": np.where(tagged, part["amount"], 0.0),
        "untagged": np.where(tagged, 0.0, part["amount"]),
        "estimated": part["estimated"].astype(bool),
    })
    summed = frame.groupby(["usage_date", "service"], sort=True).agg(
        tagged=("tagged", "sum"), untagged=("untagged", "sum"), estimated=("estimated", "any"))
    return [CoverageRow(d, s, float(r.tagged), float(r.untagged), unit, bool(r.estimated))
            for (d, s), r in summed.iterrows()]
