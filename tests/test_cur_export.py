"""The CUR 2.0 export generator writes what AWS writes, and what the demo Cost Explorer serves.

Its files are read back with DuckDB as the bot will read a real export; the aggregation
here (Tax first, then EC2's split by product family, then the product code's service name)
is the rule the CUR source must follow to agree with Cost Explorer.
"""
from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import duckdb
import pytest

from _util.sources.cost_explorer import build_request
from _util.sources.cur_services import (
    EC2_COMPUTE_FAMILIES,
    EC2_OTHER_CODE,
    service_name,
)
from _util.sources.demo_account import DemoAccount, DemoCostExplorer
from tests.cur_export import write_cur_export

FIRST, LAST = dt.date(2024, 1, 20), dt.date(2024, 2, 28)  # 40 days over a month boundary

COLUMN_TYPES = {
    "bill_billing_period_start_date": "TIMESTAMP",
    "bill_billing_period_end_date": "TIMESTAMP",
    "bill_payer_account_id": "VARCHAR",
    "bill_payer_account_name": "VARCHAR",
    "identity_line_item_id": "VARCHAR",
    "identity_time_interval": "VARCHAR",
    "line_item_line_item_type": "VARCHAR",
    "line_item_usage_account_id": "VARCHAR",
    "line_item_usage_account_name": "VARCHAR",
    "line_item_usage_start_date": "TIMESTAMP",
    "line_item_usage_end_date": "TIMESTAMP",
    "line_item_product_code": "VARCHAR",
    "line_item_usage_type": "VARCHAR",
    "line_item_operation": "VARCHAR",
    "line_item_resource_id": "VARCHAR",
    "line_item_usage_amount": "DOUBLE",
    "line_item_currency_code": "VARCHAR",
    "line_item_unblended_rate": "VARCHAR",
    "line_item_unblended_cost": "DOUBLE",
    "line_item_blended_cost": "DOUBLE",
    "line_item_net_unblended_cost": "DOUBLE",
    "product_product_family": "VARCHAR",
    "product_region_code": "VARCHAR",
    "product_servicecode": "VARCHAR",
    "product": "MAP(VARCHAR, VARCHAR)",
    "resource_tags": "MAP(VARCHAR, VARCHAR)",
    "reservation_effective_cost": "DOUBLE",
    "reservation_unused_amortized_upfront_fee_for_billing_period": "DOUBLE",
    "reservation_unused_recurring_fee": "DOUBLE",
    "reservation_reservation_a_r_n": "VARCHAR",
    "savings_plan_savings_plan_effective_cost": "DOUBLE",
    "savings_plan_total_commitment_to_date": "DOUBLE",
    "savings_plan_used_commitment": "DOUBLE",
    "savings_plan_savings_plan_a_r_n": "VARCHAR",
}

# Daily unblended cost per (day, product code as the split gives it, Name tag).
AGGREGATE = """
SELECT CAST(line_item_usage_start_date AS DATE) AS day,
       CASE WHEN line_item_line_item_type = 'Tax' THEN 'Tax'
            WHEN line_item_product_code = 'AmazonEC2'
                 AND NOT list_contains($compute, product_product_family) THEN $other
            ELSE line_item_product_code END AS code,
       coalesce(resource_tags['user_Name'], '') AS tag,
       sum(line_item_unblended_cost) AS cost
FROM read_parquet($files, hive_partitioning = true)
WHERE NOT list_contains($excluded, line_item_line_item_type)
GROUP BY ALL
"""


def _files(folder: Path) -> str:
    return str(folder / "data" / "*" / "*.parquet")


def _query(sql: str, params: dict | None = None) -> list[tuple]:
    with duckdb.connect() as con:
        return con.execute(sql, params or {}).fetchall()


def cur_costs(folder: Path, excluded: tuple[str, ...]) -> dict[tuple, float]:
    rows = _query(AGGREGATE, {"compute": list(EC2_COMPUTE_FAMILIES), "other": EC2_OTHER_CODE,
                              "files": _files(folder), "excluded": list(excluded)})
    return {(day, service_name(code), tag): cost for day, code, tag, cost in rows}


def demo_ce_costs(account: DemoAccount, excluded: tuple[str, ...]) -> dict[tuple, float]:
    """What the demo Cost Explorer serves for the bot's request, page by page."""
    client = DemoCostExplorer(LAST + dt.timedelta(days=1), account)
    request = build_request(FIRST, LAST + dt.timedelta(days=1), "UnblendedCost", "TAG:Name",
                            excluded)
    costs: dict[tuple, float] = {}
    token = None
    while True:
        page = client.get_cost_and_usage(**request, **({"NextPageToken": token} if token else {}))
        for period in page["ResultsByTime"]:
            day = dt.date.fromisoformat(period["TimePeriod"]["Start"])
            for group in period["Groups"]:
                service, tag = group["Keys"]
                costs[(day, service, tag.split("$", 1)[1])] = float(
                    group["Metrics"]["UnblendedCost"]["Amount"])
        token = page.get("NextPageToken")
        if not token:
            return costs


@pytest.fixture(scope="module")
def export(tmp_path_factory) -> tuple[Path, list[Path]]:
    folder = tmp_path_factory.mktemp("cur")
    return folder, write_cur_export(folder, DemoAccount(), FIRST, LAST)


def test_files_land_in_their_billing_period_folders_with_aws_names(export):
    folder, paths = export
    assert {p.parent.name for p in paths} == {"BILLING_PERIOD=2024-01", "BILLING_PERIOD=2024-02"}
    assert all(p.parent.parent == folder / "data" for p in paths)
    assert all(re.fullmatch(r"cost-export-\d{5}\.snappy\.parquet", p.name) for p in paths)
    periods = _query("SELECT DISTINCT BILLING_PERIOD, strftime(line_item_usage_start_date, "
                     "'%Y-%m') FROM read_parquet($files, hive_partitioning = true)",
                     {"files": _files(folder)})
    assert sorted(periods) == [("2024-01", "2024-01"), ("2024-02", "2024-02")]


@pytest.mark.parametrize("excluded", [("Credit", "Refund"), ("Refund",)],
                         ids=["default filter", "credits included"])
def test_daily_unblended_cost_per_service_and_tag_equals_the_demo_cost_explorers(export,
                                                                                  excluded):
    cur = cur_costs(export[0], excluded)
    demo = demo_ce_costs(DemoAccount(), excluded)
    assert cur.keys() == demo.keys()
    assert max(abs(cur[k] - demo[k]) for k in demo) < 1e-6
    assert {service for _, service, _ in cur} >= {"Tax", "EC2 - Other",
                                                   "Amazon Elastic Compute Cloud - Compute"}


def test_columns_have_the_cur2_names_and_types_and_the_period_is_only_in_the_path(export):
    folder, paths = export
    read = dict(_query("SELECT column_name, column_type FROM (DESCRIBE SELECT * FROM "
                       "read_parquet($files, hive_partitioning = true))",
                       {"files": _files(folder)}))
    assert {name: read.get(name) for name in COLUMN_TYPES} == COLUMN_TYPES
    in_file = {name for (name,) in _query("SELECT name FROM parquet_schema($file)",
                                          {"file": str(paths[0])})}
    assert set(COLUMN_TYPES) <= in_file and "BILLING_PERIOD" not in in_file
    assert read["BILLING_PERIOD"] == "VARCHAR"


def test_credits_refunds_and_savings_plan_pairs_are_written_and_cancel_as_aws_does(export):
    folder, _ = export
    rows = _query("""
        SELECT line_item_line_item_type, count(*), sum(line_item_unblended_cost),
               max(line_item_unblended_cost), sum(savings_plan_savings_plan_effective_cost),
               count(DISTINCT savings_plan_savings_plan_a_r_n)
        FROM read_parquet($files) GROUP BY 1""", {"files": _files(folder)})
    kinds = {kind: rest for kind, *rest in rows}
    assert set(kinds) == {"Usage", "Tax", "Credit", "Refund", "SavingsPlanCoveredUsage",
                          "SavingsPlanNegation"}
    assert kinds["Credit"][:2] == [40, -12.5 * 40]  # the demo's daily credit
    assert kinds["Refund"][0] == 3 and kinds["Refund"][2] < 0  # Jan 21, Feb 7, Feb 21
    covered, negation = kinds["SavingsPlanCoveredUsage"], kinds["SavingsPlanNegation"]
    assert covered[0] == negation[0] > 0
    assert covered[1] == pytest.approx(-negation[1])
    assert 0 < covered[3] < covered[1]  # effective cost below on-demand
    assert covered[4] == negation[4] == 1  # one Savings Plan ARN


def test_tax_is_billed_on_the_first_of_the_month_under_real_product_codes(export):
    rows = _query("""
        SELECT DISTINCT line_item_usage_start_date, line_item_usage_end_date,
               line_item_product_code
        FROM read_parquet($files) WHERE line_item_line_item_type = 'Tax'""",
                  {"files": _files(export[0])})
    assert {(start, end) for start, end, _ in rows} == {
        (dt.datetime(2024, 2, 1), dt.datetime(2024, 3, 1))}
    assert "AmazonEC2" in {code for _, _, code in rows}


def test_usage_lines_are_hours_inside_their_day_and_untagged_ones_lack_only_the_name(export):
    rows = _query("""
        SELECT count(*) FILTER (WHERE line_item_usage_end_date - line_item_usage_start_date
                                      <> INTERVAL 1 HOUR),
               count(DISTINCT hour(line_item_usage_start_date)),
               count(*) FILTER (WHERE resource_tags['user_Name'] IS NULL),
               count(*) FILTER (WHERE resource_tags['user_Name'] IS NULL
                                  AND resource_tags['user_Environment'] IS NOT NULL),
               count(DISTINCT line_item_usage_account_id)
        FROM read_parquet($files) WHERE line_item_line_item_type = 'Usage'""",
                  {"files": _files(export[0])})
    not_hours, hours, untagged, untagged_with_other_tags, accounts = rows[0]
    assert not_hours == 0 and hours > 12
    assert untagged == untagged_with_other_tags > 0
    assert accounts == 3


def test_a_seed_writes_the_same_lines_however_they_are_split_into_files(tmp_path):
    account, first, last = DemoAccount(), dt.date(2024, 3, 30), dt.date(2024, 4, 2)
    whole = write_cur_export(tmp_path / "a", account, first, last, seed=7)
    again = write_cur_export(tmp_path / "b", account, first, last, seed=7)
    split = write_cur_export(tmp_path / "c", account, first, last, seed=7, file_rows=100)
    assert [p.read_bytes() for p in whole] == [p.read_bytes() for p in again]
    assert len(split) > 2 * len(whole)
    assert [p.name for p in split if "2024-03" in str(p)][:2] == [
        "cost-export-00001.snappy.parquet", "cost-export-00002.snappy.parquet"]
    read = "SELECT * FROM read_parquet($files) ORDER BY identity_line_item_id"
    assert _query(read, {"files": [str(p) for p in whole]}) == _query(
        read, {"files": [str(p) for p in split]})


def test_the_savings_plan_fee_adds_only_a_compute_savings_plans_line_a_month(tmp_path):
    account, first, last = DemoAccount(), dt.date(2024, 3, 30), dt.date(2024, 4, 2)
    write_cur_export(tmp_path / "a", account, first, last)
    write_cur_export(tmp_path / "b", account, first, last, savings_plan_fee=True)
    plain = cur_costs(tmp_path / "a", ("Credit", "Refund"))
    with_fee = cur_costs(tmp_path / "b", ("Credit", "Refund"))
    fees = {k: v for k, v in with_fee.items() if k not in plain}
    assert {(day, service) for day, service, _ in fees} == {
        (dt.date(2024, 3, 1), "Savings Plans for AWS Compute usage"),
        (dt.date(2024, 4, 1), "Savings Plans for AWS Compute usage")}
    assert all(with_fee[k] == plain[k] for k in plain)
    (used, total), = set(_query(
        "SELECT round(savings_plan_used_commitment / savings_plan_total_commitment_to_date, 6),"
        " count(*) OVER () FROM read_parquet($files)"
        " WHERE line_item_line_item_type = 'SavingsPlanRecurringFee'",
        {"files": _files(tmp_path / "b")}))
    assert used == 0.95 and total == 2
