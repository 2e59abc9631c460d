"""Summarise spend: month to date, daily totals, and the headline numbers.

A pure function over the cost history frame (one row per usage_date, service,
group_value); days without rows count as zero cost.
"""
from __future__ import annotations

import calendar
import datetime as dt
import logging

import pandas as pd

from _util.report import DayAmount, Headline, ServiceAmount, Summary

log = logging.getLogger(__name__)

DAILY_TOTAL_DAYS = 30
RUN_RATE_DAYS = 7


def _previous_month_same_days(day: dt.date) -> tuple[dt.date, dt.date]:
    """The 1st of the previous month to the same day of the month, clipped to its length
    (31 March compares with 1-29 February in a leap year)."""
    last_of_prev = day.replace(day=1) - dt.timedelta(days=1)
    first_of_prev = last_of_prev.replace(day=1)
    return first_of_prev, first_of_prev.replace(day=min(day.day, last_of_prev.day))


def summarise(history: pd.DataFrame, day: dt.date, lookback_days: int = 365) -> Summary:
    """Month-to-date spend per service and in total, daily totals of the last 30 days,
    per-service daily spend of the month, and the headline.

    Headline:
    - `day_usd`: total on `day`; `prev7_mean_usd`: mean daily total of the 7 days before.
    - `mtd_usd`: the 1st of the month to `day`; `prev_mtd_usd`: the same days of the
      previous month (clipped to its length).
    - `projection_usd`: month to date plus the run-rate (the mean daily total of the 7 days
      ending on `day`) times the days left in the month. A week smooths weekday patterns
      and follows a recent change faster than a month would; on the last day of the month
      the projection is the month to date.
    - `estimated`: whether any row of `day` is still marked Estimated by Cost Explorer.

    Only rows from `lookback_days` before `day` up to `day` are read; the summary needs
    about two months of them.
    """
    end = pd.Timestamp(day)
    month_start = end.replace(day=1)
    prev_first, prev_last = _previous_month_same_days(day)
    first_needed = min(pd.Timestamp(prev_first), end - pd.Timedelta(days=DAILY_TOTAL_DAYS - 1),
                       end - pd.Timedelta(days=RUN_RATE_DAYS))
    first_needed = max(first_needed, end - pd.Timedelta(days=lookback_days - 1))
    dates = history["usage_date"]
    rows = history.loc[(dates >= first_needed) & (dates <= end),
                       ["usage_date", "service", "amount", "estimated"]]

    totals = rows.groupby("usage_date")["amount"].sum().reindex(
        pd.date_range(first_needed, end, freq="D"), fill_value=0.0)

    def total_between(first: pd.Timestamp, last: pd.Timestamp) -> float:
        return float(totals.loc[first:last].sum())

    day_usd = float(totals.iloc[-1])
    prev7 = totals.loc[end - pd.Timedelta(days=7): end - pd.Timedelta(days=1)]
    prev7_mean = float(prev7.sum() / 7)
    mtd = total_between(month_start, end)
    prev_mtd = total_between(pd.Timestamp(prev_first), pd.Timestamp(prev_last))
    run_rate = total_between(end - pd.Timedelta(days=RUN_RATE_DAYS - 1), end) / RUN_RATE_DAYS
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    projection = mtd + run_rate * (days_in_month - day.day)
    on_day = rows["usage_date"] == end
    estimated = bool(rows.loc[on_day, "estimated"].astype(bool).any())

    month_rows = rows[rows["usage_date"] >= month_start]
    by_service = month_rows.groupby("service", observed=True)["amount"].sum()
    by_service = by_service[by_service != 0.0]
    mtd_by_service = tuple(
        ServiceAmount(service=str(s), usd=float(v))
        for s, v in sorted(by_service.items(), key=lambda kv: (-kv[1], str(kv[0])))
    )

    last30 = totals.iloc[-DAILY_TOTAL_DAYS:]
    daily_totals = tuple(DayAmount(day=d.date(), usd=float(v)) for d, v in last30.items())

    month_days = pd.date_range(month_start, end, freq="D")
    services = sorted(str(s) for s in by_service.index)
    grid = (
        month_rows.astype({"service": object})
        .groupby(["usage_date", "service"])["amount"].sum()
        .unstack("service")
        .reindex(index=month_days, columns=services)
        .fillna(0.0)
    )
    daily_by_service = tuple(
        (d.date(), service, float(v))
        for d, row in zip(month_days, grid.to_numpy())
        for service, v in zip(services, row)
    )

    headline = Headline(
        day_usd=day_usd, prev7_mean_usd=prev7_mean, mtd_usd=mtd, prev_mtd_usd=prev_mtd,
        projection_usd=float(projection), estimated=estimated,
    )
    log.info("summarised %s: day %.2f, month to date %.2f, projection %.2f", day,
             day_usd, mtd, projection)
    return Summary(headline=headline, mtd_by_service=mtd_by_service,
                   daily_totals=daily_totals, daily_by_service=daily_by_service)

