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
from dataclasses import dataclass

from sqlalchemy.engine import Engine

from _util.errors import CostTrackingError
from _util.sources.base import CostQuery, CostSource
from _util.sources.cost_explorer import CE_DAILY_RETENTION_DAYS
from _util.sources.progress import with_progress
from _util.store.cost_store import SourceState, read_source_state, replace_days

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
                account: str, group_by: str, record_types: str) -> SourceState:
    """The bookkeeping once the plan's days are stored; `unsettled_days` are the fetched
    days the source said may still change (Cost Explorer: Estimated)."""
    keep_old = state is not None and not plan.wipe
    estimated = sorted(unsettled_days)
    if keep_old and state.estimated_from is not None and state.last_day > plan.end:
        # Days after a re-run past day may still be Estimated: keep them due for a fetch.
        estimated.append(max(state.estimated_from, plan.end + dt.timedelta(days=1)))
    return SourceState(
        account=account,
        group_by=group_by,
        record_types=record_types,
        first_day=min(plan.start, state.first_day) if keep_old else plan.start,
        last_day=max(plan.end, state.last_day) if keep_old else plan.end,
        estimated_from=estimated[0] if estimated else None,
    )


def ingest(engine: Engine, source: CostSource, query: CostQuery, *, day: dt.date,
           today: dt.date, lookback_days: int) -> IngestResult:
    """Fetch what the plan says and replace those days in one transaction, writing each
    day while the source is still answering for the next."""
    state = read_source_state(engine, query.metric)
    plan = plan_fetch(state, day, today, lookback_days, query.group_by, query.record_types,
                      source.account, source.retention_days)
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
                                query.group_by, query.record_types),
            wipe_metric=plan.wipe)
    except CostTrackingError as exc:  # the source's, or the database's while writing
        exc.requests = fetch.requests
        raise
    log.info("stored %d rows for %s..%s", written, plan.start, plan.end)
    return IngestResult(plan, fetch.requests, written)
