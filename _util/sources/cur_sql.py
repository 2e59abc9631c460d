"""The one aggregation query over a Cost and Usage Report, for Athena and for DuckDB.

The query text lives in cur_daily.sql, written in Athena's dialect (Trino). This module
fills in what varies with the request: the metric's cost expression, the grouping, the
billing periods and days, the excluded record types; values are quoted by sqlglot, never
pasted raw (a tag key or record type from the settings may hold a quote). DuckDB runs the
same text transpiled by sqlglot, so a test can run the Athena text itself on DuckDB.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import sqlglot
from sqlglot import exp

from _util.errors import ConfigError
from _util.sources.cur_services import EC2_COMPUTE_FAMILIES, EC2_OTHER_CODE

QUERY_TEMPLATE = (Path(__file__).with_name("cur_daily.sql")).read_text(encoding="utf-8")
ATHENA = "trino"
DUCKDB = "duckdb"

# The metric's cost per line item. Amortized costs follow AWS's documented rule for CUR:
# Savings Plans and reservations count at their effective cost where used, their unused
# part on the fee line, and neither the negation nor the upfront fee counts again.
AMOUNTS: dict[str, str] = {
    "UnblendedCost": "line_item_unblended_cost",
    "BlendedCost": "line_item_blended_cost",
    "NetUnblendedCost": "line_item_net_unblended_cost",
    "AmortizedCost": """CASE line_item_line_item_type
        WHEN 'SavingsPlanCoveredUsage' THEN savings_plan_savings_plan_effective_cost
        WHEN 'SavingsPlanRecurringFee'
          THEN savings_plan_total_commitment_to_date - savings_plan_used_commitment
        WHEN 'SavingsPlanNegation' THEN 0
        WHEN 'SavingsPlanUpfrontFee' THEN 0
        WHEN 'DiscountedUsage' THEN reservation_effective_cost
        WHEN 'RIFee' THEN reservation_unused_amortized_upfront_fee_for_billing_period
                          + reservation_unused_recurring_fee
        WHEN 'Fee' THEN CASE WHEN COALESCE(reservation_reservation_a_r_n, '') <> ''
                             THEN 0 ELSE line_item_unblended_cost END
        ELSE line_item_unblended_cost
      END""",
    "NetAmortizedCost": """CASE line_item_line_item_type
        WHEN 'SavingsPlanCoveredUsage' THEN savings_plan_net_savings_plan_effective_cost
        WHEN 'SavingsPlanRecurringFee'
          THEN savings_plan_total_commitment_to_date - savings_plan_used_commitment
        WHEN 'SavingsPlanNegation' THEN 0
        WHEN 'SavingsPlanUpfrontFee' THEN 0
        WHEN 'DiscountedUsage' THEN reservation_net_effective_cost
        WHEN 'RIFee' THEN reservation_net_unused_amortized_upfront_fee_for_billing_period
                          + reservation_net_unused_recurring_fee
        WHEN 'Fee' THEN CASE WHEN COALESCE(reservation_reservation_a_r_n, '') <> ''
                             THEN 0 ELSE line_item_net_unblended_cost END
        ELSE line_item_net_unblended_cost
      END""",
}

# The second grouping's column, as Cost Explorer's dimension of the same name gives it.
GROUP_COLUMNS: dict[str, str] = {
    "LINKED_ACCOUNT": "line_item_usage_account_id",
    "REGION": "product_region_code",
    "USAGE_TYPE": "line_item_usage_type",
}
ACCOUNT_NAME_COLUMN = "line_item_usage_account_name"


@dataclass(frozen=True)
class DailyQuery:
    """What one aggregation asks for: days start..end of the billing periods named."""

    metric: str
    group_by: str
    exclude_record_types: tuple[str, ...]
    periods: tuple[str, ...]  # "YYYY-MM"
    start: dt.date
    end: dt.date


def _quoted(value: str) -> str:
    return exp.Literal.string(value).sql(dialect=ATHENA)


def _listed(values: tuple[str, ...] | list[str]) -> str:
    return ", ".join(_quoted(v) for v in values)


def _group_value(group_by: str) -> str:
    if group_by == "NONE":
        return "''"
    if group_by.startswith("TAG:"):
        # CUR 2.0 keeps user tags in the resource_tags map as 'user_<key>'; element_at
        # gives NULL for a missing key, which is the untagged group ('').
        return f"COALESCE(element_at(resource_tags, {_quoted('user_' + group_by[4:])}), '')"
    return f"COALESCE({GROUP_COLUMNS[group_by]}, '')"


def athena_sql(query: DailyQuery, table: str, columns: set[str] | None = None,
               ordered: bool = False) -> str:
    """The aggregation in Athena's SQL over `table` (already quoted, e.g. "db"."cur").

    `columns`: the report's column names where known; the account name is read only when
    the export has that column. `ordered`: rows in day order (the source stores a day at a
    time; Athena's result is read as it comes, DuckDB sorts once after its batches).
    """
    if query.metric not in AMOUNTS:
        raise ConfigError(f"the Cost and Usage Report source cannot compute {query.metric}; "
                          f"use one of {', '.join(AMOUNTS)}")
    if not query.periods:
        raise ValueError("a query needs at least one billing period")
    has_names = columns is None or ACCOUNT_NAME_COLUMN in columns
    group_name = (f"COALESCE({ACCOUNT_NAME_COLUMN}, '')"
                  if query.group_by == "LINKED_ACCOUNT" and has_names else "''")
    record_types = (f"line_item_line_item_type NOT IN ({_listed(query.exclude_record_types)})"
                    if query.exclude_record_types else "TRUE")
    text = QUERY_TEMPLATE.format(
        table=table,
        amount=AMOUNTS[query.metric],
        group_value=_group_value(query.group_by),
        group_name=group_name,
        ec2_compute_families=_listed(EC2_COMPUTE_FAMILIES),
        ec2_other_code=_quoted(EC2_OTHER_CODE),
        periods=_listed(query.periods),
        start=_quoted(f"{query.start.isoformat()} 00:00:00"),
        end=_quoted(f"{(query.end + dt.timedelta(days=1)).isoformat()} 00:00:00"),
        record_types=record_types,
    )
    return text + "ORDER BY 1\n" if ordered else text


def duckdb_sql(athena_text: str) -> str:
    """The Athena text as DuckDB runs it."""
    return sqlglot.transpile(athena_text, read=ATHENA, write=DUCKDB)[0]
