"""The two engines that run the report's aggregation: DuckDB embedded, Athena remote.

Both take the same query (cur_sql.py) and give the same rows: one per (day, product code,
group, currency), with the group's name where the report has one. DuckDB scans the Parquet
files on this machine, aggregating while it reads (memory bounded by DuckDB's limit and
the number of series, never by line items); files in S3 are downloaded a batch at a time
with boto3, so the machine needs no DuckDB extension (the wheel has no httpfs, and
`INSTALL` would download at run time). Athena runs the query where the report lives and
the bot reads only the aggregated result.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import logging
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

from botocore.exceptions import BotoCoreError, ClientError
from sqlglot import exp

from _util.errors import ConfigError, SourceError, SourceUnavailable
from _util.sources.cur_files import LocalReport, ReportFile, S3Report
from _util.sources.cur_sql import ATHENA, DailyQuery, athena_sql, duckdb_sql

log = logging.getLogger(__name__)

# What DuckDB may hold in memory before it spills to its temporary folder.
DUCKDB_MEMORY_LIMIT = "1GB"
# Bytes of S3 objects downloaded (and aggregated) at a time.
DOWNLOAD_BATCH_BYTES = 1 << 30
ROWS_PER_FETCH = 100_000


@dataclass(frozen=True)
class DailyCost:
    """One aggregated row: a product code's cost in one group on one day."""

    usage_date: dt.date
    product_code: str
    group_value: str
    group_name: str
    unit: str
    amount: float


class Aggregation:
    """What one engine run gives: its rows (iterate once, in day order), with what it
    cost: bytes scanned and requests made (Athena's queries and result pages)."""

    def __init__(self, rows: Iterator[DailyCost]) -> None:
        self._rows = rows
        self.bytes_scanned = 0
        self.requests = 0

    def __iter__(self) -> Iterator[DailyCost]:
        return self._rows


# ---------------------------------------------------------------- DuckDB


class DuckDbEngine:
    name = "duckdb"

    def __init__(self, report: LocalReport | S3Report, memory_limit: str = DUCKDB_MEMORY_LIMIT,
                 batch_bytes: int = DOWNLOAD_BATCH_BYTES) -> None:
        self.report = report
        self.memory_limit = memory_limit
        self.batch_bytes = batch_bytes

    def aggregate(self, query: DailyQuery, files: list[ReportFile]) -> Aggregation:
        result = Aggregation(iter(()))
        result._rows = self._rows(query, files, result)
        return result

    def _rows(self, query: DailyQuery, files: list[ReportFile],
              result: Aggregation) -> Iterator[DailyCost]:
        import duckdb  # imported here: a Cost Explorer run never pays for it

        with tempfile.TemporaryDirectory(prefix="cost-tracking-cur-") as scratch:
            con = duckdb.connect(config={"memory_limit": self.memory_limit,
                                         "temp_directory": str(Path(scratch) / "spill"),
                                         "preserve_insertion_order": False,
                                         "threads": max(os.cpu_count() or 1, 1)})
            try:
                con.execute("SET enable_progress_bar = false")  # stdout is the bot's
                con.execute("CREATE TABLE partial (usage_date DATE, product_code VARCHAR, "
                            "group_value VARCHAR, group_name VARCHAR, unit VARCHAR, "
                            "amount DOUBLE)")
                for paths in self._batches(files, Path(scratch) / "download"):
                    self._aggregate_batch(con, query, paths)
                    result.bytes_scanned += sum(os.path.getsize(p) for p in paths)
                    if isinstance(self.report, S3Report):
                        for p in paths:
                            os.remove(p)
                cursor = con.execute(
                    "SELECT usage_date, product_code, group_value, MAX(group_name), unit, "
                    "SUM(amount) FROM partial GROUP BY usage_date, product_code, group_value, "
                    "unit ORDER BY usage_date")
                while chunk := cursor.fetchmany(ROWS_PER_FETCH):
                    for day, code, group, name, unit, amount in chunk:
                        yield DailyCost(day, code, group, name or "", unit, amount)
            except (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException) as exc:
                # The export lacks a column the metric or grouping needs: a setting to change.
                raise SourceError(f"DuckDB could not aggregate the report at "
                                  f"{self.report.uri}: {str(exc).splitlines()[0]}") from None
            except duckdb.Error as exc:
                # A file cut short or being rewritten by AWS: the next run reads it again.
                raise SourceUnavailable(f"DuckDB could not read the report at "
                                        f"{self.report.uri}: {str(exc).splitlines()[0]}") from None
            finally:
                con.close()

    def _aggregate_batch(self, con, query: DailyQuery, paths: list[str]) -> None:
        listed = ", ".join("'" + p.replace("'", "''") + "'" for p in paths)
        con.execute(f"CREATE OR REPLACE VIEW cur_report AS SELECT * FROM read_parquet([{listed}], "
                    "hive_partitioning = true, hive_types_autocast = false, "
                    "union_by_name = true)")
        columns = {row[0].lower() for row in con.execute("DESCRIBE cur_report").fetchall()}
        sql = duckdb_sql(athena_sql(query, "cur_report", columns))
        con.execute(f"INSERT INTO partial {sql}")

    def _batches(self, files: list[ReportFile], folder: Path) -> Iterator[list[str]]:
        """Local files all at once; S3 objects downloaded a batch at a time into
        `folder/BILLING_PERIOD=.../` (the partition stays in the path)."""
        if isinstance(self.report, LocalReport):
            if files:
                yield [f.name for f in files]
            return
        batch: list[str] = []
        size = 0
        for f in files:
            target = folder / f"BILLING_PERIOD={f.period}" / f.name.replace("/", "_")
            target.parent.mkdir(parents=True, exist_ok=True)
            self.report.download(f, target)
            batch.append(str(target))
            size += f.size
            if size >= self.batch_bytes:
                yield batch
                batch, size = [], 0
        if batch:
            yield batch


# ---------------------------------------------------------------- Athena


ATHENA_RESULT_PAGE = 1000
_RUNNING = ("QUEUED", "RUNNING")


@dataclass(frozen=True)
class AthenaTable:
    database: str
    table: str
    workgroup: str = "primary"
    output: str | None = None  # s3://bucket/prefix/ for results (else the workgroup's)
    timeout_seconds: float = 600.0
    poll_seconds: float = 2.0

    @property
    def quoted(self) -> str:
        """"db"."table" as Athena reads it, quotes inside the names escaped by sqlglot."""
        return exp.table_(self.table, db=self.database, quoted=True).sql(dialect=ATHENA)


class AthenaEngine:
    """The query run by Athena against the user's CUR table (partition-pruned by
    `billing_period`), polled to completion, its result read from the CSV Athena writes
    to S3 or, failing that, paged through GetQueryResults."""

    name = "athena"

    def __init__(self, table: AthenaTable, athena, glue, s3,
                 sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.table = table
        self.athena = athena
        self.glue = glue
        self.s3 = s3
        self.sleep = sleep
        self.clock = clock

    def columns(self) -> set[str]:
        """The table's columns (glue:GetTable); a missing table is one line, exit 2."""
        t = self.table
        try:
            found = self.glue.get_table(DatabaseName=t.database, Name=t.table)["Table"]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code == "EntityNotFoundException":
                raise SourceError(f"Athena table {t.database}.{t.table} does not exist: create it "
                                  "with the DDL in the README (COST_TRACKING_ATHENA_DATABASE, "
                                  "COST_TRACKING_ATHENA_TABLE)") from None
            raise _athena_error(exc, f"reading the table {t.database}.{t.table}") from None
        except BotoCoreError as exc:
            raise SourceUnavailable(f"cannot reach AWS Glue: {exc}") from None
        storage = found.get("StorageDescriptor", {})
        names = [c["Name"] for c in storage.get("Columns", [])]
        names += [c["Name"] for c in found.get("PartitionKeys", [])]
        return {n.lower() for n in names}

    def aggregate(self, query: DailyQuery, files: list[ReportFile]) -> Aggregation:
        result = Aggregation(iter(()))
        result._rows = self._rows(query, result)
        return result

    def _rows(self, query: DailyQuery, result: Aggregation) -> Iterator[DailyCost]:
        sql = athena_sql(query, self.table.quoted, self.columns(), ordered=True)
        execution = self._run(sql, result)
        yield from _parsed(self._result_rows(execution, result))

    def _run(self, sql: str, result: Aggregation) -> dict:
        t = self.table
        request = {"QueryString": sql, "QueryExecutionContext": {"Database": t.database},
                   "WorkGroup": t.workgroup}
        if t.output:
            request["ResultConfiguration"] = {"OutputLocation": t.output}
        try:
            query_id = self.athena.start_query_execution(**request)["QueryExecutionId"]
            result.requests += 1
            deadline = self.clock() + t.timeout_seconds
            while True:
                execution = self.athena.get_query_execution(
                    QueryExecutionId=query_id)["QueryExecution"]
                state = execution["Status"]["State"]
                if state == "SUCCEEDED":
                    stats = execution.get("Statistics", {})
                    result.bytes_scanned += int(stats.get("DataScannedInBytes", 0) or 0)
                    return execution
                if state not in _RUNNING:
                    reason = execution["Status"].get("StateChangeReason", "no reason given")
                    raise SourceError(f"the Athena query {query_id} ended {state}: "
                                      f"{reason.splitlines()[0] if reason else ''}")
                if self.clock() >= deadline:
                    self.athena.stop_query_execution(QueryExecutionId=query_id)
                    raise SourceUnavailable(
                        f"the Athena query {query_id} did not finish within "
                        f"{t.timeout_seconds:g} s (COST_TRACKING_ATHENA_TIMEOUT_SECONDS); "
                        "it was stopped")
                self.sleep(t.poll_seconds)
        except ClientError as exc:
            raise _athena_error(exc, "running the Athena query") from None
        except BotoCoreError as exc:
            raise SourceUnavailable(f"cannot reach Athena: {exc}") from None

    def _result_rows(self, execution: dict, result: Aggregation) -> Iterator[list[str]]:
        """The result's rows as text, header left out: from the CSV in S3 when it can be
        read (one request for any size), else 1,000 rows a GetQueryResults page."""
        location = execution.get("ResultConfiguration", {}).get("OutputLocation")
        if location and location.startswith("s3://"):
            bucket, _, key = location[len("s3://"):].partition("/")
            try:
                body = self.s3.get_object(Bucket=bucket, Key=key)["Body"]
                result.requests += 1
                reader = csv.reader(io.TextIOWrapper(body, encoding="utf-8", newline=""))
                next(reader, None)
                yield from reader
                return
            except (ClientError, BotoCoreError) as exc:
                log.info("reading Athena's result file %s failed (%s): paging through "
                         "GetQueryResults", location, exc)
        token = None
        first = True
        try:
            while True:
                args = {"QueryExecutionId": execution["QueryExecutionId"],
                        "MaxResults": ATHENA_RESULT_PAGE}
                if token:
                    args["NextToken"] = token
                page = self.athena.get_query_results(**args)
                result.requests += 1
                rows = page["ResultSet"]["Rows"]
                if first:
                    rows = rows[1:]  # the header row
                    first = False
                for row in rows:
                    yield [cell.get("VarCharValue", "") for cell in row["Data"]]
                token = page.get("NextToken")
                if not token:
                    return
        except ClientError as exc:
            raise _athena_error(exc, "reading the Athena query's results") from None


def _parsed(rows: Iterator[list[str]]) -> Iterator[DailyCost]:
    for row in rows:
        day, code, group, name, unit, amount = row
        yield DailyCost(dt.date.fromisoformat(day[:10]), code, group, name, unit, float(amount))


def _athena_error(exc: ClientError, doing: str) -> SourceError:
    code = exc.response.get("Error", {}).get("Code", "")
    message = exc.response.get("Error", {}).get("Message", "") or str(exc)
    line = f"{doing} failed ({code}): {message.splitlines()[0] if message else ''}"
    if code in ("ThrottlingException", "TooManyRequestsException", "InternalServerException"):
        return SourceUnavailable(line)
    if code in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException"):
        return SourceError(line + "; the bot needs athena:StartQueryExecution, "
                           "GetQueryExecution, GetQueryResults, glue:GetTable and s3 access "
                           "to the report and the result location (README)")
    return SourceError(line)


def check_athena_table(table: AthenaTable) -> None:
    if not table.database or not table.table:
        raise ConfigError("COST_TRACKING_CUR_ENGINE=athena needs COST_TRACKING_ATHENA_DATABASE "
                          "and COST_TRACKING_ATHENA_TABLE")
