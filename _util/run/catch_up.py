"""Catching up: days whose own run could not fetch their costs, reported once they are
stored, so a one-day spike on a missed day is never lost."""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from _util.run.pending import PENDING_MAX_AGE_DAYS
from _util.run.run_record import fetch_failed, read_record


@dataclass(frozen=True)
class CatchUpPlan:
    """Missed days to report (oldest first, each with its failed run's record), and the
    days whose folders stale runs wrote into, to be made again without posting."""

    missed: dict[dt.date, dict[str, Any]] = field(default_factory=dict)
    remake: tuple[dt.date, ...] = ()


def missed_days(runs_dir: Path, day: dt.date, today: dt.date,
                stored_until: dt.date | None) -> dict[dt.date, dict]:
    """Days before `day`, and no more than PENDING_MAX_AGE_DAYS before yesterday, whose
    own run could not fetch them and so reported an earlier day or nothing (its record:
    the ingest stage failed, `report_day` is not the record's day), and that the database
    now holds (up to `stored_until`), oldest first, each with that failed run's record.

    A run that reported its own day from stored data (a re-run of a stored day while the
    source was down) missed nothing."""
    if stored_until is None:
        return {}
    oldest = max(day, today - dt.timedelta(days=1)) - dt.timedelta(days=PENDING_MAX_AGE_DAYS)
    missed = {}
    for back in range((day - oldest).days, 0, -1):
        candidate = day - dt.timedelta(days=back)
        if candidate > stored_until:
            continue
        record = read_record(runs_dir / f"{candidate.isoformat()}.json")
        if record is None:
            continue
        if fetch_failed(record) and record.get("report_day") != candidate.isoformat():
            missed[candidate] = record
    return missed


def plan_catch_up(runs_dir: Path, day: dt.date, today: dt.date,
                  stored_until: dt.date | None) -> CatchUpPlan:
    """What to report again before the run's own day."""
    missed = missed_days(runs_dir, day, today, stored_until)
    stale = {dt.date.fromisoformat(r["report_day"]) for r in missed.values()
             if r.get("report_day")}
    return CatchUpPlan(missed, tuple(sorted(stale - set(missed))))
