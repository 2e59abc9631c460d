"""Catching up: days whose own run could not fetch their costs, or never started (the
box was down), reported once they are stored, so a one-day spike on a missed day is
never lost."""
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

    missed: dict[dt.date, dict[str, Any] | None] = field(default_factory=dict)
    remake: tuple[dt.date, ...] = ()


def missed_days(runs_dir: Path, day: dt.date, today: dt.date,
                stored_until: dt.date | None) -> dict[dt.date, dict | None]:
    """Days before `day`, and no more than PENDING_MAX_AGE_DAYS before yesterday, that
    the database now holds (up to `stored_until`) and whose own run missed them, oldest
    first: each with that failed run's record, or None for a run that never started.

    A run missed its day when it could not fetch it and so reported an earlier day or
    nothing (its record: the ingest stage failed, `report_day` is not the record's day),
    or when it left no record at all on a day the bot is run on: a scheduled run covered
    the same weekday one or two weeks before (so a fresh install, a cron that skips
    weekends, or a box used only for dry runs and --date re-runs catches up nothing). A
    run that reported its own day from stored data (a re-run of a stored day while the
    source was down) missed nothing."""
    if stored_until is None:
        return {}
    oldest = max(day, today - dt.timedelta(days=1)) - dt.timedelta(days=PENDING_MAX_AGE_DAYS)
    missed: dict[dt.date, dict | None] = {}
    for back in range((day - oldest).days, 0, -1):
        candidate = day - dt.timedelta(days=back)
        if candidate > stored_until:
            continue
        path = runs_dir / f"{candidate.isoformat()}.json"
        if not path.exists():
            if any(_scheduled_run(runs_dir, candidate - dt.timedelta(days=n)) for n in (7, 14)):
                missed[candidate] = None
            continue
        record = read_record(path)
        if record is None:
            continue
        if fetch_failed(record) and record.get("report_day") != candidate.isoformat():
            missed[candidate] = record
    return missed


def _scheduled_run(runs_dir: Path, day: dt.date) -> bool:
    """Whether a scheduled daily run (not a dry run or a --date re-run) covered `day`."""
    record = read_record(runs_dir / f"{day.isoformat()}.json")
    return bool(record and record.get("scheduled"))


def plan_catch_up(runs_dir: Path, day: dt.date, today: dt.date,
                  stored_until: dt.date | None) -> CatchUpPlan:
    """What to report again before the run's own day."""
    missed = missed_days(runs_dir, day, today, stored_until)
    stale = {dt.date.fromisoformat(r["report_day"]) for r in missed.values()
             if r and r.get("report_day")}
    return CatchUpPlan(missed, tuple(sorted(stale - set(missed))))
