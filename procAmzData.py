"""Ingest: a cost source (Cost Explorer, the demo account, ...) -> the `cost_daily` table.

Cost Explorer bills $0.01 a request, so the plan asks for as little as possible: the first
run backfills the lookback window with one range (and its pages); later runs fetch only
from the earliest day the source said may still change (Cost Explorer's Estimated days),
or the day after the last fetched day, up to the run's day. A daily run on an up-to-date
database costs one request plus pages. Nothing here knows a source's wire format.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, replace

from sqlalchemy.engine import Engine

from _util.errors import CostTrackingError
from _util.sources.base import CostQuery, CostSource
from _util.sources.cost_explorer import CE_DAILY_RETENTION_DAYS
from _util.sources.progress import with_progress
from _util.store.account_names import save_account_names
from _util.store.cost_store import (
    SourceState,
    read_marks,
    read_source_state,
    replace_days,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FetchPlan:
    """Days to fetch (inclusive), or none; `wipe` when the stored grouping changed."""

    start: dt.date | None
    end: dt.date
    wipe: bool = False
    reason: str = ""


@dataclass(frozen=True)
class IngestResult:
    plan: FetchPlan
    requests: int  # made to the source (billed by Cost Explorer)
    rows_upserted: int


def plan_fetch(state: SourceState | None, day: dt.date, today: dt.date, lookback_days: int,
               group_by: str, record_types: str, account: str = "aws",
               retention_days: int = CE_DAILY_RETENTION_DAYS) -> FetchPlan:
    """Decide which days to ask the source for; pure, so every case is a table test.
    `retention_days`: how far back before `today` the source keeps daily data."""
    window_start = day - dt.timedelta(days=lookback_days - 1)
    oldest = today - dt.timedelta(days=retention_days)
    backfill_start = max(window_start, oldest)
    if state is None:
        return FetchPlan(backfill_start, day, reason="empty database: backfill")
    if state.account != account:
        return FetchPlan(backfill_start, day, wipe=True,
                         reason=f"stored costs came from the {state.account} account: backfill")
    if (state.group_by, state.record_types) != (group_by, record_types):
        return FetchPlan(backfill_start, day, wipe=True,
                         reason=f"grouping or filter changed (was {state.group_by}, "
                                f"excluding {state.record_types or 'nothing'}): backfill")
    due = [d for d in (state.estimated_from, state.last_day + dt.timedelta(days=1))
           if d is not None and d <= day]
    if backfill_start < state.first_day:
        # The window reaches before what was ever fetched: one range covers the gap and,
        # when the run's day is due too, everything up to it.
        end = day if due else min(day, state.first_day - dt.timedelta(days=1))
        return FetchPlan(backfill_start, end, reason="lookback reaches before stored history")
    if not due:
        return FetchPlan(None, day, reason="up to date")
    return FetchPlan(max(min(due), backfill_start), day, reason="incremental")


def state_after(state: SourceState | None, plan: FetchPlan, unsettled_days: set[dt.date],
                account: str, group_by: str, record_types: str,
                fetched_through: dt.date | None = None) -> SourceState:
    """The bookkeeping once the plan's days are stored; `unsettled_days` are the fetched
    days the source said may still change (Cost Explorer: Estimated). `fetched_through`:
    the newest day the source had costs for, when it may lag behind the plan's end (the
    report source: AWS writes a day into the export hours after it ends); the days after
    it are not stored yet, so they stay due."""
    keep_old = state is not None and not plan.wipe
    estimated = sorted(unsettled_days)
    if keep_old and state.estimated_from is not None and state.last_day > plan.end:
        # Days after a re-run past day may still be Estimated: keep them due for a fetch.
        estimated.append(max(state.estimated_from, plan.end + dt.timedelta(days=1)))
    last_day = plan.end if fetched_through is None else min(plan.end, fetched_through)
    return SourceState(
        account=account,
        group_by=group_by,
        record_types=record_types,
        first_day=min(plan.start, state.first_day) if keep_old else plan.start,
        last_day=max(last_day, state.last_day) if keep_old else last_day,
        estimated_from=estimated[0] if estimated else None,
    )


def _fetched_through(fetch, plan: FetchPlan) -> dt.date | None:
    """The newest day a lagging source had costs for (`newest_day`, None when it had none:
    the day before the plan's start); None for a source that has every planned day."""
    if not hasattr(fetch, "newest_day"):
        return None
    return fetch.newest_day or plan.start - dt.timedelta(days=1)


def narrowed(plan: FetchPlan, source: CostSource, query: CostQuery,
             marks: dict[str, str]) -> FetchPlan:
    """An incremental plan cut to the days whose source data changed since it was stored,
    for a source that can tell (the report source, by its files' fingerprints)."""
    changed_from = getattr(source, "changed_from", None)
    if changed_from is None:
        return plan
    start = changed_from(plan.start, plan.end, query, marks)
    if start is None:
        return replace(plan, start=None, reason=f"{plan.reason}, but nothing changed at the source")
    if start > plan.start:
        return replace(plan, start=start, reason=f"{plan.reason} from the first changed day")
    return plan


def ingest(engine: Engine, source: CostSource, query: CostQuery, *, day: dt.date,
           today: dt.date, lookback_days: int) -> IngestResult:
    """Fetch what the plan says and replace those days in one transaction, writing each
    day while the source is still answering for the next."""
    state = read_source_state(engine, query.metric)
    plan = plan_fetch(state, day, today, lookback_days, query.group_by, query.record_types,
                      source.account, source.retention_days)
    if plan.start is not None and state is not None and not plan.wipe:
        plan = narrowed(plan, source, query, read_marks(engine, query.metric))
    log.info("fetch plan for %s: %s%s", day, plan.reason,
             f" ({plan.start}..{plan.end})" if plan.start else "")
    if plan.start is None:
        return IngestResult(plan, 0, 0)

    fetch = source.fetch(plan.start, plan.end, query)
    # Rows go to the database as the pages arrive (a first backfill of a large account is
    # millions of rows); an unusable page or an outage mid-way rolls the whole fetch back.
    try:
        written = replace_days(
            engine, query.metric, plan.start, plan.end,
            with_progress(fetch, plan.start, plan.end),
            lambda: state_after(state, plan, fetch.unsettled_days, source.account,
                                query.group_by, query.record_types, _fetched_through(fetch, plan)),
            wipe_metric=plan.wipe, marks=lambda: getattr(fetch, "marks", {}))
    except CostTrackingError as exc:  # the source's, or the database's while writing
        exc.requests = fetch.requests
        raise
    log.info("stored %d rows for %s..%s", written, plan.start, plan.end)
    names = getattr(fetch, "group_names", None)
    if names:
        save_account_names(engine, names, source.name)
    return IngestResult(plan, fetch.requests, written)
