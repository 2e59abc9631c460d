"""Ingestion: the fetch plan, request counts, Estimated re-fetch, and the real boto3 path."""
from __future__ import annotations

import datetime as dt

import boto3
import pytest

import procAmzData
from _util.errors import SourceUnavailable
from _util.sources.base import CostQuery
from _util.sources.cost_explorer import CostExplorerSource, ce_retry_config
from _util.sources.demo_account import DemoCostExplorer
from _util.store.cost_store import (
    SourceState,
    count_rows,
    load_history,
    read_source_state,
)
from procAmzData import FetchPlan, plan_fetch
from tests.ce_standin import CostExplorerStandIn

D = dt.date
TODAY = D(2026, 11, 23)
DAY = D(2026, 11, 22)


def _state(**kw) -> SourceState:
    base = dict(account="aws", group_by="TAG:Name", record_types="Credit,Refund",
                first_day=D(2025, 11, 23), last_day=D(2026, 11, 21), estimated_from=D(2026, 11, 20))
    base.update(kw)
    return SourceState(**base)


@pytest.mark.parametrize("state,day,expected", [
    (None, DAY, FetchPlan(D(2025, 11, 23), DAY, reason="empty database: backfill")),
    (_state(), DAY, FetchPlan(D(2026, 11, 20), DAY, reason="incremental")),
    (_state(estimated_from=None), DAY, FetchPlan(D(2026, 11, 22), DAY, reason="incremental")),
    (_state(last_day=DAY, estimated_from=None), DAY, FetchPlan(None, DAY, reason="up to date")),
    (_state(first_day=D(2025, 10, 1), last_day=DAY, estimated_from=D(2026, 11, 21)), D(2026, 10, 1),
     FetchPlan(None, D(2026, 10, 1), reason="up to date")),
    (_state(last_day=DAY, estimated_from=None), D(2026, 1, 5),
     FetchPlan(D(2025, 10, 24), D(2025, 11, 22), reason="lookback reaches before stored history")),
    (_state(first_day=D(2026, 6, 1)), DAY,
     FetchPlan(D(2025, 11, 23), DAY, reason="lookback reaches before stored history")),
])
def test_fetch_plan_asks_only_for_what_is_missing_or_estimated(state, day, expected):
    assert plan_fetch(state, day, TODAY, 365, "TAG:Name", "Credit,Refund") == expected


def test_fetch_plan_backfills_and_wipes_when_the_grouping_or_account_changed():
    assert plan_fetch(_state(group_by="REGION"), DAY, TODAY, 365, "TAG:Name", "Credit,Refund").wipe
    assert plan_fetch(_state(account="demo"), DAY, TODAY, 365, "TAG:Name", "Credit,Refund").wipe


def test_fetch_plan_never_asks_for_a_start_older_than_cost_explorer_keeps():
    plan = plan_fetch(None, D(2026, 1, 10), TODAY, 365, "TAG:Name", "")
    assert plan.start == TODAY - dt.timedelta(days=395)


def _ingest(engine, client, day=DAY, today=TODAY, account="demo", lookback_days=365, **kw):
    query = dict(metric="UnblendedCost", group_by="TAG:Name",
                 exclude_record_types=("Credit", "Refund"))
    query.update(kw)
    return procAmzData.ingest(engine, CostExplorerSource(client, account=account),
                              CostQuery(**query), day=day, today=today,
                              lookback_days=lookback_days)


def test_backfill_uses_one_time_period_and_exactly_the_pages_needed(db_engine):
    client = DemoCostExplorer(TODAY, page_groups=1000)
    result = _ingest(db_engine, client)
    periods = {(c["TimePeriod"]["Start"], c["TimePeriod"]["End"]) for c in client.calls}
    assert periods == {("2025-11-23", "2026-11-23")}
    rows = count_rows(db_engine)
    assert result.rows_upserted == rows
    assert result.requests == len(client.calls) == -(-rows // 1000)
    assert result.requests < 365


def test_daily_run_on_an_up_to_date_database_costs_one_request(db_engine):
    _ingest(db_engine, DemoCostExplorer(TODAY))
    client = DemoCostExplorer(TODAY + dt.timedelta(days=1))
    result = _ingest(db_engine, client, day=DAY + dt.timedelta(days=1), today=TODAY + dt.timedelta(days=1))
    assert result.requests == 1
    # the days still Estimated yesterday are fetched again, with the new day
    assert client.calls[0]["TimePeriod"] == {"Start": "2026-11-21", "End": "2026-11-24"}
    assert read_source_state(db_engine, "UnblendedCost").estimated_from == D(2026, 11, 22)


def test_rerunning_the_same_day_fetches_only_estimated_days_and_changes_nothing(db_engine):
    _ingest(db_engine, DemoCostExplorer(TODAY))
    before = load_history(db_engine, "UnblendedCost", D(2025, 1, 1), DAY)
    client = DemoCostExplorer(TODAY)
    result = _ingest(db_engine, client)
    assert client.calls[0]["TimePeriod"] == {"Start": "2026-11-21", "End": "2026-11-23"}
    assert result.requests == 1
    after = load_history(db_engine, "UnblendedCost", D(2025, 1, 1), DAY)
    key = ["usage_date", "service", "group_value"]
    assert before.sort_values(key).reset_index(drop=True).equals(after.sort_values(key).reset_index(drop=True))


def test_a_day_without_groups_is_stored_as_zero_cost_and_not_fetched_again(db_engine):
    class EmptyDays(DemoCostExplorer):
        def get_cost_and_usage(self, **kwargs):
            response = super().get_cost_and_usage(**kwargs)
            for period in response["ResultsByTime"]:
                if period["TimePeriod"]["Start"] == "2026-11-10":
                    period["Groups"] = []
            return response

    _ingest(db_engine, EmptyDays(TODAY))
    history = load_history(db_engine, "UnblendedCost", D(2026, 11, 10), D(2026, 11, 10))
    assert history.empty
    assert read_source_state(db_engine, "UnblendedCost").last_day == DAY


def test_record_type_filter_is_sent_and_credits_appear_only_without_it(db_engine):
    client = DemoCostExplorer(TODAY)
    _ingest(db_engine, client)
    assert client.calls[0]["Filter"] == {"Not": {"Dimensions": {"Key": "RECORD_TYPE", "Values": ["Credit", "Refund"]}}}
    without_credits = load_history(db_engine, "UnblendedCost", D(2025, 1, 1), DAY)["amount"].sum()
    result = _ingest(db_engine, DemoCostExplorer(TODAY), exclude_record_types=())
    assert result.plan.wipe  # a different filter means different numbers: fetch it all again
    with_credits = load_history(db_engine, "UnblendedCost", D(2025, 1, 1), DAY)["amount"].sum()
    assert with_credits == pytest.approx(without_credits - 12.5 * 365)


def test_real_boto3_client_reaches_the_endpoint_from_aws_endpoint_url_cost_explorer(clean_env, monkeypatch, db_engine):
    with CostExplorerStandIn(TODAY) as standin:
        monkeypatch.setenv("AWS_ENDPOINT_URL_COST_EXPLORER", standin.url)
        from _util.sources.cost_explorer import make_ce_client
        result = _ingest(db_engine, make_ce_client(), account="aws")
    assert standin.requests[0]["target"] == "AWSInsightsIndexService.GetCostAndUsage"
    assert result.requests == len(standin.requests)
    assert result.rows_upserted == count_rows(db_engine) > 10_000


def test_throttling_is_retried_with_backoff_and_the_run_completes(clean_env, monkeypatch, tmp_path):
    from _util.store.database import create_tables, make_engine
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    create_tables(engine)
    with CostExplorerStandIn(TODAY) as standin:
        standin.script = [(400, "LimitExceededException"), (400, "ThrottlingException")]
        client = boto3.client("ce", region_name="us-east-1", endpoint_url=standin.url, config=ce_retry_config())
        result = _ingest(engine, client, account="aws")
    assert len(standin.requests) == result.requests + 2
    assert count_rows(engine) == result.rows_upserted > 0


def test_cost_explorer_down_for_good_raises_source_unavailable_and_stores_nothing(clean_env, tmp_path):
    from botocore.config import Config

    from _util.store.database import create_tables, make_engine
    engine = make_engine(f"sqlite:///{tmp_path / 'c.db'}")
    create_tables(engine)
    with CostExplorerStandIn(TODAY) as standin:
        standin.fail_forever = (503, "ServiceUnavailableException")
        client = boto3.client("ce", region_name="us-east-1", endpoint_url=standin.url,
                              config=Config(retries={"mode": "standard", "max_attempts": 2}))
        with pytest.raises(SourceUnavailable):
            _ingest(engine, client, account="aws")
    assert count_rows(engine) == 0
    assert read_source_state(engine, "UnblendedCost") is None


def test_backfill_writes_each_day_while_later_pages_are_still_to_come(db_engine, monkeypatch):
    """A first backfill of 50,000 series is 18M rows: they are written as pages arrive,
    never all held until the last page."""
    import sqlalchemy as sa

    from _util.store import cost_store

    monkeypatch.setattr(cost_store, "INSERT_BATCH_ROWS", 500)
    inserts_sent: list[int] = []
    inserts_before_page: list[int] = []

    @sa.event.listens_for(db_engine, "before_cursor_execute")
    def count(conn, cursor, statement, parameters, context, executemany):  # noqa: ARG001
        if statement.lstrip().upper().startswith("INSERT INTO COST_DAILY"):
            inserts_sent.append(1)

    class Watched(DemoCostExplorer):
        def get_cost_and_usage(self, **kwargs):
            inserts_before_page.append(len(inserts_sent))
            return super().get_cost_and_usage(**kwargs)

    try:
        result = _ingest(db_engine, Watched(TODAY, page_groups=1000))
    finally:
        sa.event.remove(db_engine, "before_cursor_execute", count)
    assert result.requests == len(inserts_before_page) >= 10
    assert inserts_before_page[0] == 0
    # Before the last page is asked for, most of the rows are already written.
    assert inserts_before_page[-1] * 500 >= 0.8 * result.rows_upserted


def _seeded(engine, monkeypatch):
    """A database a month behind; inserts in batches of 50 rows, so a failing fetch has
    written some of its rows before it fails."""
    from _util.store import cost_store
    _ingest(engine, DemoCostExplorer(TODAY - dt.timedelta(days=30)),
            day=DAY - dt.timedelta(days=30), today=TODAY - dt.timedelta(days=30))
    monkeypatch.setattr(cost_store, "INSERT_BATCH_ROWS", 50)
    return engine


def test_an_outage_after_some_pages_rolls_the_whole_fetch_back(clean_env, db_engine, monkeypatch):
    from botocore.config import Config
    engine = _seeded(db_engine, monkeypatch)
    before = load_history(engine, "UnblendedCost", D(2025, 1, 1), DAY)
    state = read_source_state(engine, "UnblendedCost")
    with CostExplorerStandIn(TODAY) as standin:
        standin.demo.page_groups = 100  # the 30 missing days take several pages
        client = boto3.client("ce", region_name="us-east-1", endpoint_url=standin.url,
                              config=Config(retries={"mode": "standard", "max_attempts": 2}))
        answered: list[int] = []
        real = standin.demo.get_cost_and_usage

        def fail_after_three_pages(**kwargs):
            answered.append(1)
            if len(answered) > 3:
                standin.fail_forever = (503, "ServiceUnavailableException")
            return real(**kwargs)

        standin.demo.get_cost_and_usage = fail_after_three_pages
        with pytest.raises(SourceUnavailable):
            _ingest(engine, client, account="demo")
    assert len(answered) >= 3
    after = load_history(engine, "UnblendedCost", D(2025, 1, 1), DAY)
    assert after.equals(before)
    assert read_source_state(engine, "UnblendedCost") == state


def test_an_unusable_page_after_good_ones_stores_nothing_of_the_fetch(db_engine, monkeypatch):
    from _util.errors import UnusableResponse
    engine = _seeded(db_engine, monkeypatch)
    before = load_history(engine, "UnblendedCost", D(2025, 1, 1), DAY)

    class BadLastPage(DemoCostExplorer):
        def get_cost_and_usage(self, **kwargs):
            response = super().get_cost_and_usage(**kwargs)
            if "NextPageToken" not in response:
                response["ResultsByTime"][-1]["Groups"][0]["Metrics"]["UnblendedCost"]["Amount"] = "n/a"
            return response

    client = BadLastPage(TODAY, page_groups=100)
    with pytest.raises(UnusableResponse, match="non-numeric amount 'n/a'") as failure:
        _ingest(engine, client)
    assert failure.value.requests == len(client.calls) > 3  # what the failure cost
    assert load_history(engine, "UnblendedCost", D(2025, 1, 1), DAY).equals(before)


def test_a_database_failure_mid_fetch_says_how_many_requests_were_made(db_engine, monkeypatch):
    import sqlalchemy as sa

    from _util.errors import StoreError
    from _util.store import cost_store

    engine = _seeded(db_engine, monkeypatch)
    execute = cost_store._BulkInsert.execute
    batches: list[int] = []

    def fail_on_the_third_batch(self, batch):
        batches.append(len(batch))
        if len(batches) == 3:
            raise sa.exc.OperationalError("INSERT", {}, Exception("disk I/O error"))
        execute(self, batch)

    monkeypatch.setattr(cost_store._BulkInsert, "execute", fail_on_the_third_batch)
    client = DemoCostExplorer(TODAY, page_groups=100)
    with pytest.raises(StoreError, match="disk I/O error") as failure:
        _ingest(engine, client)
    assert failure.value.requests == len(client.calls) >= 1
