"""Where tag coverage rows come from when the costs are not grouped by the tag: one more
Cost Explorer `GetCostAndUsage` request (DAILY, the run's metric and record type filter,
grouped by SERVICE and `TAG:<tag>`, every page followed), kept in `tag_coverage_daily`.

Cost Explorer bills $0.01 a request, so it is incremental exactly as ingest is for the
costs, with the same plan (`procAmzData.plan_fetch`): the first run fetches the
COVERAGE_DAYS days the plot shows, later runs only from the earliest stored day still
Estimated (or the day after the last fetched day) to the report's day: one request a day
plus pages. The request is the source's own fetch (`CostExplorerSource.fetch`: the same
request builder, retries, page handling and answer checks as the costs), asked for the tag
as its second grouping; its rows are folded into tagged and untagged spend per service and
day as they arrive, and stored with the bookkeeping in one transaction.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine

from _util.errors import CostTrackingError
from _util.sources.base import CostQuery, CostSource
from _util.store.cost_store import CostRow
from _util.store.tag_coverage import (
    CoverageRow,
    read_coverage_state,
    replace_coverage_days,
    tag_grouping,
)
from _util.tag_coverage import COVERAGE_DAYS
from procAmzData import plan_fetch, state_after  # the costs' plan, the same rules

log = logging.getLogger(__name__)


def is_cost_explorer_like(source: Any) -> bool:
    """A source that asks boto3's Cost Explorer client (or the demo account, or a stand-in)
    and so can be asked for the spend grouped by a tag: the report source cannot."""
    return callable(getattr(getattr(source, "client", None), "get_cost_and_usage", None))


def fold_coverage(rows: Iterable[CostRow]) -> Iterator[CoverageRow]:
    """Rows grouped by (service, tag value), a day at a time, as one row per (day,
    service): the group "" (no value, or no tag) is untagged, every other one tagged."""
    day: dt.date | None = None
    merged: dict[str, list] = {}  # service -> [tagged, untagged, unit, estimated]

    def flush() -> Iterator[CoverageRow]:
        for service, (tagged, untagged, unit, estimated) in merged.items():
            yield CoverageRow(day, service, tagged, untagged, unit, estimated)

    for row in rows:
        if row.usage_date != day:
            yield from flush()
            day, merged = row.usage_date, {}
        slot = merged.setdefault(row.service, [0.0, 0.0, row.unit, False])
        slot[0 if row.group_value else 1] += row.amount
        slot[3] = slot[3] or row.estimated
    yield from flush()


@dataclass(frozen=True)
class CoverageRefresh:
    """What one refresh did: the days asked for (none when up to date), the requests made
    (billed $0.01 each) and the rows stored."""

    start: dt.date | None
    end: dt.date
    reason: str
    requests: int
    rows: int


def refresh_coverage(engine: Engine, source: CostSource, query: CostQuery, tag: str, *,
                     day: dt.date, today: dt.date) -> CoverageRefresh:
    """Fetch the days of `tag`'s coverage not stored yet (or still Estimated) up to `day`
    from a Cost Explorer-like `source` and store them; `query` is the costs' (its metric
    and record type filter are used, its grouping is replaced by the tag)."""
    grouping = tag_grouping(tag)
    state = read_coverage_state(engine, query.metric, tag)
    plan = plan_fetch(state, day, today, COVERAGE_DAYS, grouping, query.record_types,
                      source.account, source.retention_days)
    log.info("tag coverage of %s: fetch plan for %s: %s%s", tag, day, plan.reason,
             f" ({plan.start}..{plan.end})" if plan.start else "")
    if plan.start is None:
        return CoverageRefresh(None, day, plan.reason, 0, 0)
    fetch = source.fetch(plan.start, plan.end,
                         CostQuery(query.metric, grouping, query.exclude_record_types))
    try:
        written = replace_coverage_days(
            engine, query.metric, tag, plan.start, plan.end, fold_coverage(fetch),
            lambda: state_after(state, plan, fetch.unsettled_days, source.account, grouping,
                                query.record_types),
            wipe=plan.wipe)
    except CostTrackingError as exc:
        exc.requests = fetch.requests
        raise
    log.info("tag coverage of %s: stored %d rows for %s..%s (%d Cost Explorer request(s))",
             tag, written, plan.start, plan.end, fetch.requests)
    return CoverageRefresh(plan.start, plan.end, plan.reason, fetch.requests, written)
