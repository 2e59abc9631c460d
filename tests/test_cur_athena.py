"""The Athena engine's request flow: moto's Athena, Glue and S3 (results are canned by
moto, so the SQL itself is tested on DuckDB in test_cur_source.py), and botocore's
Stubber for the answers moto cannot give (a FAILED query, a second result page, a
denied request)."""
from __future__ import annotations

import datetime as dt

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws
from moto.athena.models import QueryResults, athena_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.moto_api import state_manager

from _util.errors import EXIT_USAGE, SourceError, SourceUnavailable
from _util.sources.cur_engines import AthenaEngine, AthenaTable, DailyCost
from _util.sources.cur_sql import DailyQuery

REGION = "us-east-1"
QUERY = DailyQuery("UnblendedCost", "LINKED_ACCOUNT", ("Credit", "Refund"), ("2026-11",),
                   dt.date(2026, 11, 1), dt.date(2026, 11, 2))
COLUMNS = ["line_item_usage_start_date", "line_item_product_code", "line_item_line_item_type",
           "line_item_unblended_cost", "line_item_usage_account_id",
           "line_item_usage_account_name", "line_item_currency_code", "product_product_family",
           "resource_tags"]
HEADER = ["usage_date", "product_code", "group_value", "group_name", "unit", "amount"]
ROWS = [["2026-11-01", "AmazonEC2", "111111111111", "prod-web", "USD", "12.5"],
        ["2026-11-01", "AWSLambda", "222222222222", "", "USD", "0.25"],
        ["2026-11-02", "AmazonEC2", "111111111111", "prod-web", "USD", "13.0"]]
EXPECTED = [DailyCost(dt.date(2026, 11, 1), "AmazonEC2", "111111111111", "prod-web", "USD", 12.5),
            DailyCost(dt.date(2026, 11, 1), "AWSLambda", "222222222222", "", "USD", 0.25),
            DailyCost(dt.date(2026, 11, 2), "AmazonEC2", "111111111111", "prod-web", "USD", 13.0)]


def _cells(values: list[str]) -> dict:
    return {"Data": [{"VarCharValue": v} for v in values]}


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def aws(clean_env, monkeypatch):
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        glue = boto3.client("glue", region_name=REGION)
        glue.create_database(DatabaseInput={"Name": "cur"})
        glue.create_table(DatabaseName="cur", TableInput={
            "Name": "data",
            "StorageDescriptor": {"Columns": [{"Name": c, "Type": "string"} for c in COLUMNS]},
            "PartitionKeys": [{"Name": "billing_period", "Type": "string"}]})
        s3 = boto3.client("s3", region_name=REGION)
        s3.create_bucket(Bucket="athena-results")
        yield {"athena": boto3.client("athena", region_name=REGION), "glue": glue, "s3": s3}
    state_manager.unset_transition("athena::execution")


def _engine(aws, clock: FakeClock | None = None, **table) -> AthenaEngine:
    clock = clock or FakeClock()
    spec = {"database": "cur", "table": "data", "output": "s3://athena-results/q/",
            "timeout_seconds": 60, "poll_seconds": 2, **table}
    return AthenaEngine(AthenaTable(**spec), aws["athena"], aws["glue"], aws["s3"],
                        sleep=clock.sleep, clock=clock)


def _queue_results(rows: list[list[str]]) -> None:
    backend = athena_backends[DEFAULT_ACCOUNT_ID][REGION]
    backend.query_results_queue.append(QueryResults(
        rows=[_cells(HEADER)] + [_cells(r) for r in rows],
        column_info=[{"Name": h, "Type": "varchar"} for h in HEADER]))


def test_a_query_is_started_in_the_table_s_database_polled_until_it_succeeds_and_read(aws):
    state_manager.set_transition("athena::execution", {"progression": "manual", "times": 3})
    _queue_results(ROWS)
    clock = FakeClock()
    aggregation = _engine(aws, clock).aggregate(QUERY, [])
    assert list(aggregation) == EXPECTED
    assert clock.sleeps and set(clock.sleeps) == {2}  # polled every poll_seconds
    (execution,) = athena_backends[DEFAULT_ACCOUNT_ID][REGION].executions.values()
    assert execution.context == {"Database": "cur"}
    assert '"cur"."data"' in execution.query and "billing_period IN ('2026-11')" in execution.query
    # The account name is read: the table has the column.
    assert "line_item_usage_account_name" in execution.query
    assert aggregation.requests >= 2  # the query and its result page


def test_the_result_csv_athena_writes_is_read_in_one_request_when_it_is_there(aws):
    engine = _engine(aws)
    real_get = aws["athena"].get_query_execution

    def with_csv(**kwargs):
        answer = real_get(**kwargs)
        location = answer["QueryExecution"]["ResultConfiguration"]["OutputLocation"]
        body = "\n".join(",".join(f'"{v}"' for v in r) for r in [HEADER] + ROWS) + "\n"
        aws["s3"].put_object(Bucket="athena-results", Key=location.split("/", 3)[3], Body=body)
        return answer

    engine.athena.get_query_execution = with_csv
    aggregation = engine.aggregate(QUERY, [])
    assert list(aggregation) == EXPECTED
    assert aggregation.requests == 2  # the query and the CSV; no GetQueryResults pages


def test_a_query_still_running_at_the_timeout_is_stopped_and_the_run_goes_on_stale(aws):
    state_manager.set_transition("athena::execution", {"progression": "manual", "times": 1000})
    clock = FakeClock()
    with pytest.raises(SourceUnavailable, match=r"did not finish within 60 s .*stopped"):
        list(_engine(aws, clock).aggregate(QUERY, []))
    (execution,) = athena_backends[DEFAULT_ACCOUNT_ID][REGION].executions.values()
    assert execution.status == "CANCELLED"
    assert sum(clock.sleeps) >= 60


def test_a_missing_table_is_one_line_and_exit_2(aws):
    with pytest.raises(SourceError, match=r"Athena table cur.nope does not exist") as info:
        list(_engine(aws, table="nope").aggregate(QUERY, []))
    assert info.value.exit_code == EXIT_USAGE and "\n" not in str(info.value)


def test_a_failed_query_gives_athena_s_reason_in_one_line(aws):
    engine = _engine(aws)
    athena = boto3.client("athena", region_name=REGION)
    stub = Stubber(athena)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
    stub.add_response("get_query_execution", {"QueryExecution": {
        "QueryExecutionId": "q1", "Status": {
            "State": "FAILED",
            "StateChangeReason": "COLUMN_NOT_FOUND: line 3:5: Column 'x' cannot be resolved\nmore"}}})
    engine.athena = athena
    with stub, pytest.raises(SourceError) as info:
        list(engine.aggregate(QUERY, []))
    assert str(info.value) == ("the Athena query q1 ended FAILED: COLUMN_NOT_FOUND: line 3:5: "
                               "Column 'x' cannot be resolved")
    assert info.value.exit_code == EXIT_USAGE


def test_results_without_a_csv_are_paged_1000_rows_at_a_time(aws):
    engine = _engine(aws, output=None)
    athena = boto3.client("athena", region_name=REGION)
    stub = Stubber(athena)
    stub.add_response("start_query_execution", {"QueryExecutionId": "q1"})
    stub.add_response("get_query_execution", {"QueryExecution": {
        "QueryExecutionId": "q1", "Status": {"State": "SUCCEEDED"},
        "Statistics": {"DataScannedInBytes": 123456}}})
    stub.add_response("get_query_results",
                      {"ResultSet": {"Rows": [_cells(HEADER), _cells(ROWS[0])]}, "NextToken": "t2"},
                      {"QueryExecutionId": "q1", "MaxResults": 1000})
    stub.add_response("get_query_results",
                      {"ResultSet": {"Rows": [_cells(r) for r in ROWS[1:]]}},
                      {"QueryExecutionId": "q1", "MaxResults": 1000, "NextToken": "t2"})
    engine.athena = athena
    with stub:
        aggregation = engine.aggregate(QUERY, [])
        assert list(aggregation) == EXPECTED
    assert aggregation.requests == 3 and aggregation.bytes_scanned == 123456


def test_denied_access_names_what_the_bot_needs(aws):
    engine = _engine(aws)
    athena = boto3.client("athena", region_name=REGION)
    stub = Stubber(athena)
    stub.add_client_error("start_query_execution", "AccessDeniedException",
                          "User: arn:aws:iam::1:role/bot is not authorized")
    engine.athena = athena
    with stub, pytest.raises(SourceError) as info:
        list(engine.aggregate(QUERY, []))
    assert "AccessDeniedException" in str(info.value)
    assert "athena:StartQueryExecution" in str(info.value) and info.value.exit_code == EXIT_USAGE


def test_the_table_s_names_are_quoted_as_identifiers_even_with_a_quote_inside():
    assert AthenaTable("cur", "data").quoted == '"cur"."data"'
    assert AthenaTable('my"db', "t").quoted == '"my""db"."t"'
