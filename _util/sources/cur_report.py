"""The Cost and Usage Report (CUR 2.0) as a cost source, aggregated by DuckDB or Athena.

For organisations past what Cost Explorer serves well (two GroupBy keys, $0.01 a page,
about 14 months of history): AWS Data Exports writes the whole bill as Parquet files, and
one SQL aggregation (cur_sql.py) turns them into the same daily rows the store holds, with
services named as Cost Explorer names them (cur_services.py), so detection, the site and
Slack work unchanged and a user switching source keeps their names.

Incremental like Cost Explorer: AWS rewrites the current billing period's files during the
month and may restate the previous one for about two weeks after it ends. Days of those
periods are reported as unsettled, so every run asks for them again; a period whose files
did not change since they were read (its fingerprint, kept with the rows as a mark) is
skipped (`changed_from`), and older periods are read once.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Iterator

from _util.errors import ConfigError, UnusableResponse
from _util.sources.base import CostQuery
from _util.sources.cur_engines import (
    AthenaEngine,
    AthenaTable,
    DailyCost,
    DuckDbEngine,
    check_athena_table,
)
from _util.sources.cur_files import (
    LocalReport,
    ReportFile,
    S3Report,
    fingerprints,
    open_report,
)
from _util.sources.cur_services import service_name
from _util.sources.cur_sql import DailyQuery
from _util.store.cost_store import CostRow

log = logging.getLogger(__name__)

# The previous billing period may still be restated until this day of the next month.
RESTATED_UNTIL_DAY = 15
# The report keeps what the export holds; the lookback window bounds what is read.
CUR_RETENTION_DAYS = 100 * 366


def period(day: dt.date) -> str:
    return f"{day.year:04d}-{day.month:02d}"


def period_days(name: str) -> tuple[dt.date, dt.date]:
    """First and last day of billing period 'YYYY-MM'."""
    first = dt.date(int(name[:4]), int(name[5:7]), 1)
    after = (first + dt.timedelta(days=32)).replace(day=1)
    return first, after - dt.timedelta(days=1)


def unsettled_periods(today: dt.date) -> set[str]:
    """Billing periods AWS may still rewrite on `today`: the current one, and the previous
    one until the 15th."""
    periods = {period(today)}
    if today.day <= RESTATED_UNTIL_DAY:
        periods.add(period(today.replace(day=1) - dt.timedelta(days=1)))
    return periods


def mark_value(fingerprint: str, last_read: dt.date) -> str:
    """A period's mark: its files' fingerprint and the last of its days read with them."""
    return f"{fingerprint}@{last_read.isoformat()}"


def _mark_reaches(mark: str | None, fingerprint: str, wanted_end: dt.date) -> bool:
    """Whether a stored mark says the period's days up to `wanted_end` were read from
    files with this fingerprint."""
    if not mark or "@" not in mark:
        return False
    stored, _, last = mark.partition("@")
    try:
        return stored == fingerprint and dt.date.fromisoformat(last) >= wanted_end
    except ValueError:
        return False


class CurFetch:
    """Days start..end aggregated from the report's files, a day at a time."""

    def __init__(self, source: "CurSource", start: dt.date, end: dt.date, query: CostQuery) -> None:
        self.source = source
        self.start = start
        self.end = end
        self.query = query
        self.requests = 0
        self.bytes_scanned = 0
        self.unsettled_days: set[dt.date] = set()
        self.marks: dict[str, str] = {}
        self.group_names: dict[str, str] = {}
        # The newest day with costs: the export lags the calendar by hours to a day.
        self.newest_day: dt.date | None = None

    def __iter__(self) -> Iterator[CostRow]:
        files = self.source.files_between(self.start, self.end)
        periods = sorted({f.period for f in files})
        self.unsettled_days = self.source.unsettled_days(self.start, self.end)
        if not periods:
            log.warning("the report at %s has no files for %s..%s", self.source.report.uri,
                        self.start, self.end)
            return
        daily = DailyQuery(self.query.metric, self.query.group_by,
                           self.query.exclude_record_types, tuple(periods), self.start, self.end)
        aggregation = self.source.engine.aggregate(daily, files)
        try:
            yield from self._rows(aggregation)
        finally:
            self.requests = aggregation.requests
            self.bytes_scanned = aggregation.bytes_scanned
        prints = fingerprints(files)
        self.marks = {p: mark_value(prints[p], min(self.end, period_days(p)[1]))
                      for p in periods}
        log.info("aggregated %s..%s from %d file(s) of %s (%.1f MB scanned by %s)",
                 self.start, self.end, len(files), ", ".join(periods),
                 self.bytes_scanned / 1e6, self.source.engine.name)

    def _rows(self, costs: Iterator[DailyCost]) -> Iterator[CostRow]:
        """Rows with Cost Explorer's service names, a day at a time; codes that map to one
        name (a code kept as it is that equals a known name) are summed."""
        day: dt.date | None = None
        done: set[dt.date] = set()
        merged: dict[tuple[str, str], list] = {}
        for cost in costs:
            if cost.usage_date != day:
                yield from self._day_rows(day, merged)
                if cost.usage_date in done:
                    raise UnusableResponse(f"the report aggregation returned {cost.usage_date} "
                                           "twice, out of day order; nothing was stored")
                done.add(cost.usage_date)
                day, merged = cost.usage_date, {}
            if not self.start <= cost.usage_date <= self.end:
                raise UnusableResponse(f"the report aggregation returned {cost.usage_date}, "
                                       f"outside {self.start}..{self.end}; nothing was stored")
            key = (service_name(cost.product_code or ""), cost.group_value or "")
            if key in merged:
                if merged[key][1] != cost.unit:
                    merged[key][0] = None  # two currencies: the store refuses it below
                else:
                    merged[key][0] += cost.amount
            else:
                merged[key] = [cost.amount, cost.unit]
            if cost.group_name and self.query.group_by == "LINKED_ACCOUNT":
                self.group_names[cost.group_value] = cost.group_name
        yield from self._day_rows(day, merged)

    def _day_rows(self, day: dt.date | None, merged: dict) -> Iterator[CostRow]:
        if day is None:
            return
        self.newest_day = day
        for (service, group), (amount, unit) in merged.items():
            if amount is None:
                raise UnusableResponse(f"the report has {service!r} in two currencies on {day}; "
                                       "nothing was stored")
            yield CostRow(day, service, group, amount, unit, False)


@dataclass
class CurSource:
    """The report at `report`, aggregated by `engine`."""

    report: LocalReport | S3Report
    engine: DuckDbEngine | AthenaEngine
    today: dt.date
    name: str = "cur"
    account: str = "cur"
    retention_days: int = CUR_RETENTION_DAYS

    def __post_init__(self) -> None:
        self._files: list[ReportFile] | None = None

    def all_files(self) -> list[ReportFile]:
        """The export's files, listed once per run."""
        if self._files is None:
            self._files = self.report.list_files()
        return self._files

    def files_between(self, start: dt.date, end: dt.date) -> list[ReportFile]:
        wanted = {p for p in _periods_between(start, end)}
        return [f for f in self.all_files() if f.period in wanted]

    def unsettled_days(self, start: dt.date, end: dt.date) -> set[dt.date]:
        days = set()
        for p in unsettled_periods(self.today):
            first, last = period_days(p)
            lo, hi = max(first, start), min(last, end)
            days.update(lo + dt.timedelta(days=i) for i in range((hi - lo).days + 1))
        return days

    def changed_from(self, start: dt.date, end: dt.date, query: CostQuery,
                     marks: dict[str, str]) -> dt.date | None:
        """The first day of start..end whose billing period's files changed since they
        were read (or were never read up to `end`); None when none did."""
        prints = fingerprints(self.files_between(start, end))
        for p in _periods_between(start, end):
            first, last = period_days(p)
            if p not in prints:
                continue  # no files yet: nothing to read
            if not _mark_reaches(marks.get(p), prints[p], min(end, last)):
                return max(first, start)
        return None

    def fetch(self, start: dt.date, end: dt.date, query: CostQuery) -> CurFetch:
        return CurFetch(self, start, end, query)


def _periods_between(start: dt.date, end: dt.date) -> list[str]:
    periods = []
    day = start.replace(day=1)
    while day <= end:
        periods.append(period(day))
        day = (day + dt.timedelta(days=32)).replace(day=1)
    return periods


def cur_source(settings, today: dt.date) -> CurSource:
    """The report source from the settings (COST_TRACKING_CUR_*, COST_TRACKING_ATHENA_*)."""
    import boto3
    from botocore.config import Config

    if not settings.cur_uri:
        raise ConfigError("COST_TRACKING_SOURCE=cur needs COST_TRACKING_CUR_URI (s3://bucket/"
                          "prefix/ or a local folder holding the export's BILLING_PERIOD=... "
                          "folders)")
    report = open_report(settings.cur_uri, lambda: boto3.client("s3"))
    if settings.cur_engine == "athena":
        if not isinstance(report, S3Report):
            raise ConfigError("COST_TRACKING_CUR_ENGINE=athena reads the export in S3: "
                              "COST_TRACKING_CUR_URI must be an s3:// URI")
        table = AthenaTable(settings.athena_database or "", settings.athena_table or "",
                            settings.athena_workgroup or "primary", settings.athena_output,
                            settings.athena_timeout_seconds)
        check_athena_table(table)
        # botocore's standard retry mode: throttling and 5xx are retried with backoff.
        retries = Config(retries={"mode": "standard"})
        engine = AthenaEngine(table, boto3.client("athena", config=retries),
                              boto3.client("glue", config=retries), report.client)
    else:
        engine = DuckDbEngine(report)
    return CurSource(report, engine, today)
