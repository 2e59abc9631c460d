"""The Commitments section's figures, from the stored rows: for Savings Plans and for
Reserved Instances, utilisation, coverage and unused commitment on the day and month to
date, each plan or reservation, the largest on-demand spend no commitment covered, and
the daily series the pages plot. Pure: rows in, dataclasses out.

Month to date is weighted, not a mean of daily percentages: utilisation is used over
purchased (commitment dollars for plans, hours for reservations), coverage is covered
over all (spend for plans, running hours for reservations, as Cost Explorer reports each).
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable

from _util.commitment_alerts import CommitmentAlert
from _util.store.commitments import (
    KINDS,
    RESERVATIONS,
    TOTAL,
    CoverageRow,
    Recommendation,
    UtilisationRow,
)

TOP_UNCOVERED = 5
# Reservation coverage is asked for without a SERVICE filter: Cost Explorer then reports EC2.
RI_COVERAGE_SERVICE = "Amazon Elastic Compute Cloud - Compute"


@dataclass(frozen=True)
class DayPoint:
    day: dt.date
    utilisation_pct: float | None
    coverage_pct: float | None


@dataclass(frozen=True)
class Item:
    """One plan or reservation on the day, with its daily utilisation for the plot."""

    id: str
    type: str
    utilisation_pct: float | None
    unused_usd: float
    end_date: dt.date | None
    daily: tuple[DayPoint, ...] = ()


@dataclass(frozen=True)
class Uncovered:
    """On-demand spend on the day that no commitment covered."""

    service: str
    key: str | None
    usd: float


@dataclass(frozen=True)
class KindFigures:
    """Savings Plans' or Reserved Instances' figures for the report's day."""

    kind: str
    day_utilisation_pct: float | None
    mtd_utilisation_pct: float | None
    day_coverage_pct: float | None
    mtd_coverage_pct: float | None
    day_unused_usd: float
    mtd_unused_usd: float
    items: tuple[Item, ...]
    uncovered: tuple[Uncovered, ...]
    daily: tuple[DayPoint, ...]  # the kind's totals, oldest first
    recommendations: tuple[Recommendation, ...] = ()
    alerts: tuple[CommitmentAlert, ...] = ()


@dataclass(frozen=True)
class Commitments:
    """The section's data: one KindFigures per kind the account has (None: none)."""

    day: dt.date
    savings_plans: KindFigures | None
    reservations: KindFigures | None
    note: str | None = None
    requests: int = 0  # Cost Explorer requests this report's refresh made
    threshold_pct: float = 80.0  # the utilisation alert's line, drawn on the plots

    def of(self, kind: str) -> KindFigures | None:
        return self.reservations if kind == RESERVATIONS else self.savings_plans

    @property
    def alerts(self) -> list[CommitmentAlert]:
        return [a for k in KINDS if self.of(k) for a in self.of(k).alerts]


def _ratio(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def _coverage_parts(rows: Iterable[CoverageRow], kind: str) -> tuple[float, float]:
    """(covered, all) of coverage rows: hours for reservations, spend for plans."""
    covered = total = 0.0
    for r in rows:
        if kind == RESERVATIONS:
            covered += r.covered_hours or 0.0
            total += (r.covered_hours or 0.0) + (r.on_demand_hours or 0.0)
        else:
            covered += r.covered_usd or 0.0
            total += (r.covered_usd or 0.0) + r.on_demand_usd
    return covered, total


def kind_figures(kind: str, day: dt.date, utilisation: list[UtilisationRow],
                 coverage: list[CoverageRow], recommendations: Iterable[Recommendation] = (),
                 alerts: Iterable[CommitmentAlert] = ()) -> KindFigures | None:
    """`kind`'s figures on `day` from the window's rows (all kinds; those of `kind` are
    picked); None when the window holds nothing of it."""
    u = [r for r in utilisation if r.kind == kind]
    c = [r for r in coverage if r.kind == kind]
    if not u and not c:
        return None
    month = day.replace(day=1)
    u_total = {r.usage_date: r for r in u if r.subject == TOTAL}
    c_total = {r.usage_date: r for r in c if r.key == TOTAL}
    mtd_u = [r for d, r in u_total.items() if month <= d <= day]
    mtd_c = [r for d, r in c_total.items() if month <= d <= day]
    today_u = u_total.get(day)
    today_c = c_total.get(day)
    days = sorted(set(u_total) | set(c_total))
    daily = tuple(DayPoint(d, u_total[d].utilisation_pct if d in u_total else None,
                           c_total[d].coverage_pct if d in c_total else None) for d in days)
    subjects: dict[str, list[UtilisationRow]] = {}
    for r in u:
        if r.subject != TOTAL:
            subjects.setdefault(r.subject, []).append(r)
    items = []
    for subject, rows in subjects.items():
        on_day = next((r for r in rows if r.usage_date == day), None)
        if on_day is None:
            continue  # ended, or not bought yet
        items.append(Item(subject, on_day.subject_type, on_day.utilisation_pct,
                          on_day.unused_usd, on_day.end_date,
                          tuple(DayPoint(r.usage_date, r.utilisation_pct,
                                         c_total[r.usage_date].coverage_pct
                                         if r.usage_date in c_total else None)
                                for r in sorted(rows, key=lambda r: r.usage_date))))
    items.sort(key=lambda i: (-i.unused_usd, i.id))
    uncovered = sorted(
        (Uncovered(RI_COVERAGE_SERVICE if kind == RESERVATIONS else r.key,
                   r.key if kind == RESERVATIONS else None, r.on_demand_usd)
         for r in c if r.usage_date == day and r.key != TOTAL and r.on_demand_usd > 0),
        key=lambda x: (-x.usd, x.service, x.key or ""))[:TOP_UNCOVERED]
    return KindFigures(
        kind=kind,
        day_utilisation_pct=today_u.utilisation_pct if today_u else None,
        mtd_utilisation_pct=_ratio(sum(r.used for r in mtd_u), sum(r.purchased for r in mtd_u)),
        day_coverage_pct=today_c.coverage_pct if today_c else None,
        mtd_coverage_pct=_ratio(*_coverage_parts(mtd_c, kind)),
        day_unused_usd=today_u.unused_usd if today_u else 0.0,
        mtd_unused_usd=sum(r.unused_usd for r in mtd_u),
        items=tuple(items), uncovered=tuple(uncovered), daily=daily,
        recommendations=tuple(r for r in recommendations if r.kind == kind),
        alerts=tuple(a for a in alerts if a.kind == kind))
