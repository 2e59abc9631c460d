"""What a cost source is: anything that yields tidy daily rows for a range of days.

Ingest (`procAmzData`) plans which days to ask for and stores what comes back; it never
sees a source's wire format (Cost Explorer's JSON, a report's Parquet files). A source
says how far back it keeps daily data and which of the days it gave may still change,
and counts the requests it made (Cost Explorer bills $0.01 each).

A new source is one module with a class that fits `CostSource`, and one line in
`_util/sources/__init__.py` that registers its factory by name.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterator, Protocol

from _util.store.cost_store import CostRow


@dataclass(frozen=True)
class CostQuery:
    """What every source is asked for: one metric, by service and one more grouping."""

    metric: str
    group_by: str
    exclude_record_types: tuple[str, ...] = ()

    @property
    def record_types(self) -> str:
        """The excluded record types as stored in the bookkeeping ("Credit,Refund")."""
        return ",".join(self.exclude_record_types)


class SourceFetch(Protocol):
    """Days start..end of one query, given out a day at a time (every row of a day
    before the next day's), to be iterated once inside the transaction that stores them.
    An answer that cannot be stored raises `UnusableResponse` where it shows, so nothing
    of the fetch is kept. `requests` and `unsettled_days` are complete when iteration
    ends (and `requests` counts what a failure cost).

    Optional (read with getattr): `marks`, what the fetch read, stored with its rows for
    the source's `changed_from` of a later run (the report source: file fingerprints per
    billing period); `group_names`, names of group values the source knows (account IDs'
    account names)."""

    requests: int
    unsettled_days: set[dt.date]  # days the source says may still change

    def __iter__(self) -> Iterator[CostRow]: ...


class CostSource(Protocol):
    """A source of daily costs.

    `account` names whose costs these are in the database's bookkeeping: stored history
    from another account is wiped and fetched again rather than mixed.
    """

    name: str
    account: str
    retention_days: int  # how many days back the source keeps daily data

    def fetch(self, start: dt.date, end: dt.date, query: CostQuery) -> SourceFetch: ...

    # Optional: `changed_from(start, end, query, marks) -> date | None`, the first day of an
    # incremental plan's start..end whose data may differ from what is stored, given the
    # marks stored with it (None: nothing changed). A source without it is asked for
    # every planned day.
