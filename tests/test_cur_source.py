"""The Cost and Usage Report source: the same stored rows as Cost Explorer for the same
account, DuckDB over a local folder and over S3 (a moto server), billing periods read
again only when their files change, nothing stored when an aggregation fails, and the
Athena SQL text itself run on DuckDB (and served through moto's Athena) giving the same.

The report files come from tests/cur_export.py, which exports the demo account that the
demo Cost Explorer serves; databases are real SQLite files.
"""
from __future__ import annotations

import datetime as dt
import os
import sqlite3
from pathlib import Path

import boto3
import duckdb
import pytest
from moto import mock_aws
from moto.athena.models import QueryResults, athena_backends
from moto.core import DEFAULT_ACCOUNT_ID
from moto.server import ThreadedMotoServer

import procAmzData
from _util.errors import EXIT_USAGE, SourceError, SourceUnavailable, UnusableResponse
from _util.sources.base import CostQuery
from _util.sources.cost_explorer import CostExplorerSource
from _util.sources.cur_engines import AthenaEngine, AthenaTable, DuckDbEngine
from _util.sources.cur_files import LocalReport, S3Report, open_report
from _util.sources.cur_report import CurSource
from _util.sources.cur_sql import DailyQuery, athena_sql, duckdb_sql
from _util.sources.demo_account import SERVICES, DemoAccount, DemoCostExplorer
from _util.store.database import create_tables, make_engine
from tests.cur_export import write_cur_export
from tests.ops_support import ROOT, run_bot

TODAY = dt.date(2026, 11, 12)  # before the 15th: October may still be restated
DAY = TODAY - dt.timedelta(days=1)
LOOKBACK = 45  # 2026-09-28..2026-11-11: three billing periods
FIRST = DAY - dt.timedelta(days=LOOKBACK - 1)
QUERY = CostQuery("UnblendedCost", "TAG:Name", ("Credit", "Refund"))


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> Path:
    """The demo account's report for the lookback window, in a local folder."""
    folder = tmp_path_factory.mktemp("cur")
    write_cur_export(folder, DemoAccount(), FIRST, DAY, accounts=3, items_per_series_day=3)
    return folder


def _engine(path: Path):
    engine = make_engine(f"sqlite:///{path}")
    create_tables(engine)
    return engine


def _ingest(db: Path, source, query: CostQuery = QUERY, today: dt.date = TODAY):
    engine = _engine(db)
    try:
        return procAmzData.ingest(engine, source, query, day=today - dt.timedelta(days=1),
                                  today=today, lookback_days=LOOKBACK)
    finally:
        engine.dispose()


def _rows(db: Path) -> list[tuple]:
    with sqlite3.connect(db) as conn:
        return [(d, s, g, round(a, 6), u) for d, s, g, a, u in conn.execute(
            "SELECT usage_date, service, group_value, amount, unit FROM cost_daily "
            "ORDER BY usage_date, service, group_value")]


def _local(folder: Path, today: dt.date = TODAY) -> CurSource:
    report = LocalReport(folder)
    return CurSource(report, DuckDbEngine(report), today)


# ---------------------------------------------------------------- the same costs


def test_the_report_gives_the_same_stored_rows_as_cost_explorer_day_by_day(export, tmp_path):
    _ingest(tmp_path / "ce.db", CostExplorerSource(DemoCostExplorer(TODAY), account="demo"))
    result = _ingest(tmp_path / "cur.db", _local(export))
    ce, cur = _rows(tmp_path / "ce.db"), _rows(tmp_path / "cur.db")
    assert len(cur) > 1000 and result.requests == 0
    days = sorted({r[0] for r in ce})
    assert days == sorted({r[0] for r in cur}) and len(days) == LOOKBACK
    for day in days:
        assert [r for r in cur if r[0] == day] == [r for r in ce if r[0] == day], day
    # EC2 split as Cost Explorer splits it; tax is its own service.
    services = {r[1] for r in cur}
    assert {"Amazon Elastic Compute Cloud - Compute", "EC2 - Other", "Tax"} <= services


def test_duckdb_reads_the_export_from_s3_with_boto3_the_same_as_from_a_folder(
        export, tmp_path, clean_env, monkeypatch):
    server = ThreadedMotoServer(port=0)
    server.start()
    try:
        host, port = server.get_host_and_port()
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", f"http://{host}:{port}")
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket="cur-bucket")
        for path in export.rglob("*.parquet"):
            s3.upload_file(str(path), "cur-bucket", f"exports/demo/{path.relative_to(export).as_posix()}")
        report = open_report("s3://cur-bucket/exports/demo/", lambda: boto3.client("s3"))
        assert isinstance(report, S3Report)
        # Batches of one file: every file is downloaded, aggregated and deleted in turn.
        source = CurSource(report, DuckDbEngine(report, batch_bytes=1), TODAY)
        _ingest(tmp_path / "s3.db", source)
    finally:
        server.stop()
    _ingest(tmp_path / "local.db", _local(export))
    assert _rows(tmp_path / "s3.db") == _rows(tmp_path / "local.db")


# ---------------------------------------------------------------- incremental


def _copy(export: Path, target: Path) -> Path:
    for path in export.rglob("*.parquet"):
        dest = target / path.relative_to(export)
        dest.parent.mkdir(parents=True, exist_ok=True)
        dest.write_bytes(path.read_bytes())
    return target


def test_only_billing_periods_whose_files_changed_are_read_again(export, tmp_path):
    folder = _copy(export, tmp_path / "export")
    db = tmp_path / "costs.db"
    first = _ingest(db, _local(folder))
    assert first.plan.start == FIRST
    before = _rows(db)

    unchanged = _ingest(db, _local(folder))
    assert unchanged.plan.start is None and "nothing changed" in unchanged.plan.reason

    # AWS rewrites November's files, restated without AWS Backup: only November is read
    # again and its days replaced as a whole (Backup's November rows are gone);
    # September and October stay as they were.
    november = folder / "data" / "BILLING_PERIOD=2026-11"
    for path in november.glob("*.parquet"):
        path.unlink()
    restated = DemoAccount([s for s in SERVICES if s.name != "AWS Backup"])
    write_cur_export(tmp_path / "revised", restated, dt.date(2026, 11, 1), DAY,
                     accounts=3, items_per_series_day=3)
    _copy(tmp_path / "revised", folder)
    revised = _ingest(db, _local(folder))
    assert revised.plan.start == dt.date(2026, 11, 1)
    after = _rows(db)
    assert [r for r in after if r[0] < "2026-11-01"] == [r for r in before if r[0] < "2026-11-01"]
    assert [r for r in after if r[0] >= "2026-11-01"] == [
        r for r in before if r[0] >= "2026-11-01" and r[1] != "AWS Backup"]
    assert any(r[1] == "AWS Backup" for r in after if r[0] < "2026-11-01")


def test_a_file_cut_short_leaves_the_store_as_it_was_and_counts_as_an_outage(export, tmp_path):
    """A file AWS is rewriting (or a copy cut short): nothing of the fetch is stored, and
    the run reports from stored data (SourceUnavailable: stale, exit 3) until it reads."""
    folder = _copy(export, tmp_path / "export")
    db = tmp_path / "costs.db"
    _ingest(db, _local(folder))
    before = _rows(db)
    target = sorted((folder / "data" / "BILLING_PERIOD=2026-11").glob("*.parquet"))[-1]
    target.write_bytes(target.read_bytes()[:200])
    with pytest.raises(SourceUnavailable, match="DuckDB could not read the report"):
        _ingest(db, _local(folder))
    assert _rows(db) == before


def _minimal_export(root: Path, currencies: tuple[str, ...] = ("USD",)) -> Path:
    """A hand-written export of one Lambda line on 2 November per currency, with only the
    columns UnblendedCost by a tag needs."""
    folder = root / "data" / "BILLING_PERIOD=2026-11"
    folder.mkdir(parents=True)
    values = ", ".join(f"('{c}')" for c in currencies)
    duckdb.sql(f"""COPY (SELECT TIMESTAMP '2026-11-02 01:00:00' AS line_item_usage_start_date,
        'Usage' AS line_item_line_item_type, 'AWSLambda' AS line_item_product_code,
        '' AS product_product_family, MAP {{'user_Name': 'web'}} AS resource_tags,
        c AS line_item_currency_code, 1.0::DOUBLE AS line_item_unblended_cost
        FROM (VALUES {values}) t(c)) TO '{folder}/x.parquet' (FORMAT parquet)""")
    return root


def test_a_report_without_a_column_the_metric_needs_is_one_line_and_exit_2(tmp_path):
    fetch = _local(_minimal_export(tmp_path / "export")).fetch(dt.date(2026, 11, 1), dt.date(2026, 11, 3),
                                              CostQuery("AmortizedCost", "TAG:Name", ()))
    with pytest.raises(SourceError, match="savings_plan_savings_plan_effective_cost") as info:
        list(fetch)
    assert info.value.exit_code == EXIT_USAGE and not isinstance(info.value, SourceUnavailable)


def test_a_day_not_in_the_export_yet_is_not_stored_and_stays_due(export, tmp_path):
    """The export lags a day: the run's day has no costs. It is not stored as $0, the
    state ends at the newest day the export has, and the next run asks again."""
    db = tmp_path / "costs.db"
    _ingest(db, _local(export), today=TODAY + dt.timedelta(days=1))
    assert max(r[0] for r in _rows(db)) == DAY.isoformat()
    engine = _engine(db)
    from _util.store.cost_store import read_source_state
    state = read_source_state(engine, QUERY.metric)
    engine.dispose()
    assert state.last_day == DAY and state.estimated_from <= DAY


def test_a_run_on_a_day_the_export_lacks_reports_the_newest_day_it_has(export, tmp_path, clean_env, capsys):
    code = run_bot(["--dry-run"], tmp_path, TODAY + dt.timedelta(days=1),
                   COST_TRACKING_SOURCE="cur", COST_TRACKING_CUR_URI=str(export),
                   COST_TRACKING_LOOKBACK_DAYS=str(LOOKBACK))
    assert code == 0
    assert (tmp_path / "site" / "reports" / DAY.isoformat() / "report.json").exists()
    assert f"the cost source has no costs for {TODAY} yet: the report is about {DAY}" in capsys.readouterr().err


@pytest.mark.parametrize(("env", "message"), [
    ({}, "COST_TRACKING_SOURCE=cur needs COST_TRACKING_CUR_URI"),
    ({"COST_TRACKING_CUR_URI": "/nonexistent/cur"}, "COST_TRACKING_CUR_URI /nonexistent/cur is not a folder"),
    ({"COST_TRACKING_CUR_URI": "s3://b/p/", "COST_TRACKING_CUR_ENGINE": "athena"},
     "COST_TRACKING_CUR_ENGINE=athena needs COST_TRACKING_ATHENA_DATABASE and COST_TRACKING_ATHENA_TABLE"),
    ({"COST_TRACKING_CUR_URI": "/tmp", "COST_TRACKING_CUR_ENGINE": "athena",
      "COST_TRACKING_ATHENA_DATABASE": "cur", "COST_TRACKING_ATHENA_TABLE": "data"},
     "COST_TRACKING_CUR_ENGINE=athena reads the export in S3"),
])
def test_report_settings_that_cannot_work_are_one_line_and_exit_2(env, message, tmp_path, clean_env, capsys):
    assert run_bot(["--dry-run"], tmp_path, TODAY, COST_TRACKING_SOURCE="cur", **env) == EXIT_USAGE
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ---------------------------------------------------------------- Athena's SQL


def _daily_query(group_by: str = "TAG:Name", metric: str = "UnblendedCost") -> DailyQuery:
    return DailyQuery(metric, group_by, ("Credit", "Refund"), ("2026-10", "2026-11"),
                      dt.date(2026, 10, 3), DAY)


def _athena_text_on_duckdb(export: Path, query: DailyQuery) -> list[tuple]:
    """The text Athena would run, transpiled and run by DuckDB over a view named like the
    Athena table."""
    con = duckdb.connect()
    con.execute("CREATE SCHEMA cur")
    con.execute(f"CREATE VIEW cur.data AS SELECT * FROM read_parquet('{export}/**/*.parquet', "
                "hive_partitioning = true, hive_types_autocast = false)")
    return con.execute(duckdb_sql(athena_sql(query, '"cur"."data"', ordered=True))).fetchall()


@pytest.mark.parametrize("group_by", ["TAG:Name", "LINKED_ACCOUNT", "REGION", "USAGE_TYPE", "NONE"])
@pytest.mark.parametrize("metric", ["UnblendedCost", "AmortizedCost"])
def test_the_athena_text_run_on_duckdb_equals_the_duckdb_engine(export, group_by, metric):
    query = _daily_query(group_by, metric)
    files = LocalReport(export).list_files()
    engine_rows = [(c.usage_date, c.product_code, c.group_value, c.group_name, c.unit,
                    round(c.amount, 6)) for c in DuckDbEngine(LocalReport(export)).aggregate(
                        query, [f for f in files if f.period in query.periods])]
    athena_rows = [(d, p, g, n, u, round(a, 6)) for d, p, g, n, u, a in _athena_text_on_duckdb(export, query)]
    assert sorted(engine_rows) == sorted(athena_rows)
    assert len(engine_rows) > 100
    if group_by == "LINKED_ACCOUNT":
        assert all(n for _, _, _, n, _, _ in engine_rows)  # the export names its accounts


def test_the_athena_engine_stores_what_the_duckdb_engine_stores(export, tmp_path, clean_env, monkeypatch):
    """Athena's answer canned by moto is the Athena text's result on DuckDB; the source
    around the engine (periods, names, marks, the store) is the real one."""
    duck_db = tmp_path / "duck.db"
    _ingest(duck_db, _local(export))
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "cur"})
        glue.create_table(DatabaseName="cur", TableInput={
            "Name": "data", "StorageDescriptor": {"Columns": [
                {"Name": "line_item_usage_account_name", "Type": "string"}]},
            "PartitionKeys": [{"Name": "billing_period", "Type": "string"}]})
        query = DailyQuery("UnblendedCost", "TAG:Name", ("Credit", "Refund"),
                           ("2026-09", "2026-10", "2026-11"), FIRST, DAY)
        rows = _athena_text_on_duckdb(export, query)
        backend = athena_backends[DEFAULT_ACCOUNT_ID]["us-east-1"]
        header = ["usage_date", "product_code", "group_value", "group_name", "unit", "amount"]
        backend.query_results_queue.append(QueryResults(
            rows=[{"Data": [{"VarCharValue": str(v)} for v in r]} for r in [header] + rows],
            column_info=[{"Name": h, "Type": "varchar"} for h in header]))
        engine = AthenaEngine(AthenaTable("cur", "data"), boto3.client("athena", region_name="us-east-1"),
                              glue, boto3.client("s3", region_name="us-east-1"), sleep=lambda s: None)
        athena_db = tmp_path / "athena.db"
        result = _ingest(athena_db, CurSource(LocalReport(export), engine, TODAY))
        (execution,) = backend.executions.values()
    assert result.requests == 2  # the query and its one result page
    assert "billing_period IN ('2026-09', '2026-10', '2026-11')" in execution.query
    assert _rows(athena_db) == _rows(duck_db)


def test_a_tag_key_with_a_quote_is_a_literal_not_sql():
    text = athena_sql(_daily_query("TAG:it's"), '"cur"."data"')
    assert "element_at(resource_tags, 'user_it''s')" in text
    assert "resource_tags['user_it''s']" in duckdb_sql(text)


def test_two_currencies_for_one_series_on_one_day_are_refused(tmp_path):
    fetch = _local(_minimal_export(tmp_path / "export", ("USD", "EUR"))).fetch(dt.date(2026, 11, 1), dt.date(2026, 11, 3), QUERY)
    with pytest.raises(UnusableResponse):
        list(fetch)


def test_a_run_killed_mid_aggregation_leaves_the_store_as_it_was(export, tmp_path):
    """A real process, killed while DuckDB aggregates (its scratch folder exists from the
    start of the aggregation until every row has been handed to the store, before the
    commit): the database keeps the previous state, and the next run completes."""
    import signal
    import subprocess
    import sys
    import time

    folder = _copy(export, tmp_path / "export")
    out = tmp_path / "out"
    out.mkdir()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("COST_TRACKING_")},
           "COST_TRACKING_SOURCE": "cur", "COST_TRACKING_CUR_URI": str(folder),
           "COST_TRACKING_OUTPUT_DIR": str(out), "COST_TRACKING_LOOKBACK_DAYS": str(LOOKBACK),
           "TMPDIR": str(scratch), "MPLBACKEND": "Agg"}
    command = [sys.executable, str(ROOT / "runCostReporting.py"), "--dry-run", "--date", DAY.isoformat()]
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    before = _rows(out / "cost_tracking.db")
    for path in (folder / "data" / "BILLING_PERIOD=2026-11").glob("*.parquet"):
        os.utime(path)  # November rewritten: the next run aggregates it again
    child = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while not any(scratch.glob("cost-tracking-cur-*")):
        assert child.poll() is None and time.monotonic() < deadline, "the run ended before aggregating"
        time.sleep(0.005)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert _rows(out / "cost_tracking.db") == before
    assert subprocess.run(command, env=env, capture_output=True).returncode == 0
    assert _rows(out / "cost_tracking.db") == before  # the same files give the same rows
