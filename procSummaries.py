"""Summarise spend: month to date, daily totals, and the headline numbers.

A pure function over the cost history frame (one row per usage_date, service,
group_value); days without rows count as zero cost.
"""
from __future__ import annotations

import calendar
import datetime as dt
import logging

import numpy as np
import pandas as pd

from _util.report import DayAmount, Headline, ServiceAmount, Summary

log = logging.getLogger(__name__)

DAILY_TOTAL_DAYS = 30
RUN_RATE_DAYS = 7
# A day's data is called partial when services with costs on each of the 7 days before it
# have none stored for it, and together they usually cost at least this share of a day's
# total: a few cents of a service that skips days now and then is not worth a note.
PARTIAL_MIN_SHARE = 0.01
DAY_NS = 86_400 * 1_000_000_000


def _previous_month_same_days(day: dt.date) -> tuple[dt.date, dt.date]:
    """The 1st of the previous month to the same day of the month, clipped to its length
    (31 March compares with 1-29 February in a leap year)."""
    last_of_prev = day.replace(day=1) - dt.timedelta(days=1)
    first_of_prev = last_of_prev.replace(day=1)
    return first_of_prev, first_of_prev.replace(day=min(day.day, last_of_prev.day))


def summarise(history: pd.DataFrame, day: dt.date, lookback_days: int = 365,
              of: str = "") -> Summary:
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
    - `not_in_yet`: services with costs on each of the 7 days before `day` and none on it,
      with their mean daily cost over those days, largest first, when together they
      usually make at least PARTIAL_MIN_SHARE of a day's total: the day's data looks
      partial (the source has not reported them yet), so its total is understated.

    Only rows of the `lookback_days` days ending on `day` are read (the summary needs about
    two months); days without rows, or older than that, count as zero. `of` names the
    slice in the log ("route platform").
    """
    end = pd.Timestamp(day)
    month_start = end.replace(day=1)
    prev_first, prev_last = _previous_month_same_days(day)
    first = min(pd.Timestamp(prev_first), end - pd.Timedelta(days=DAILY_TOTAL_DAYS - 1),
                end - pd.Timedelta(days=RUN_RATE_DAYS))
    oldest = max(first, end - pd.Timedelta(days=lookback_days - 1))
    days = pd.date_range(first, end, freq="D")
    n_days = len(days)

    # One pass of numpy over the rows of the period: a day index and a service code each.
    dates = history["usage_date"].to_numpy().astype("datetime64[ns]", copy=False).view(np.int64)
    keep = (dates >= oldest.value) & (dates <= end.value)
    day_idx = (dates[keep] - first.value) // DAY_NS
    amount = history["amount"].to_numpy(dtype=np.float64)[keep]
    service = history["service"]
    if isinstance(service.dtype, pd.CategoricalDtype):
        codes, names = pd.factorize(service.array[keep], sort=True)
    else:
        codes, names = pd.factorize(service.to_numpy()[keep], sort=True)
    names = np.asarray(names, dtype=object)

    totals = np.bincount(day_idx, weights=amount, minlength=n_days)

    def total_between(lo: pd.Timestamp, hi: pd.Timestamp) -> float:
        return float(totals[max((lo - first).days, 0):(hi - first).days + 1].sum())

    day_usd = float(totals[-1])
    prev7_mean = total_between(end - pd.Timedelta(days=7), end - pd.Timedelta(days=1)) / 7
    mtd = total_between(month_start, end)
    prev_mtd = total_between(pd.Timestamp(prev_first), pd.Timestamp(prev_last))
    run_rate = total_between(end - pd.Timedelta(days=RUN_RATE_DAYS - 1), end) / RUN_RATE_DAYS
    days_in_month = calendar.monthrange(day.year, day.month)[1]
    projection = mtd + run_rate * (days_in_month - day.day)
    estimated = bool(history["estimated"].to_numpy(dtype=bool)[keep][day_idx == n_days - 1].any())

    month_offset = (month_start - first).days
    in_month = day_idx >= month_offset
    n_month_days = n_days - month_offset
    grid = np.bincount(
        (day_idx[in_month] - month_offset) * len(names) + codes[in_month],
        weights=amount[in_month], minlength=n_month_days * len(names),
    ).reshape(n_month_days, len(names))
    by_service = grid.sum(axis=0)
    listed = sorted((str(names[i]), i) for i in np.flatnonzero(by_service != 0.0))
    mtd_by_service = tuple(
        ServiceAmount(service=name, usd=float(by_service[i]))
        for name, i in sorted(listed, key=lambda item: (-by_service[item[1]], item[0]))
    )
    daily_totals = tuple(
        DayAmount(day=d.date(), usd=float(v))
        for d, v in zip(days[-DAILY_TOTAL_DAYS:], totals[-DAILY_TOTAL_DAYS:])
    )
    daily_by_service = tuple(
        (d.date(), name, float(grid[t, i]))
        for t, d in enumerate(days[month_offset:]) for name, i in listed
    )

    headline = Headline(
        day_usd=day_usd, prev7_mean_usd=prev7_mean, mtd_usd=mtd, prev_mtd_usd=prev_mtd,
        projection_usd=float(projection), estimated=estimated,
        not_in_yet=_not_in_yet(day_idx, codes, amount, names, n_days - 1, prev7_mean),
    )
    log.info("summarised %s%s: day %.2f, month to date %.2f, projection %.2f", day,
             f" ({of})" if of else "", day_usd, mtd, projection)
    if headline.not_in_yet:
        log.warning("%s looks partial: %d service(s) with costs every day of the week before "
                    "have none stored for it yet (%s)", day, len(headline.not_in_yet),
                    ", ".join(s.service for s in headline.not_in_yet[:5]))
    return Summary(headline=headline, mtd_by_service=mtd_by_service,
                   daily_totals=daily_totals, daily_by_service=daily_by_service)



def _not_in_yet(day_idx: np.ndarray, codes: np.ndarray, amount: np.ndarray, names: np.ndarray,
                last: int, prev7_mean: float) -> tuple[ServiceAmount, ...]:
    """Services with rows on each of the RUN_RATE_DAYS days before day `last` (an index
    into the summary's days) and none on it, with their mean daily cost over those days;
    empty unless together they make at least PARTIAL_MIN_SHARE of `prev7_mean`."""
    if last < RUN_RATE_DAYS or not len(names):
        return ()
    week = last - RUN_RATE_DAYS
    recent = day_idx >= week
    present = np.zeros((RUN_RATE_DAYS + 1, len(names)), dtype=bool)
    present[day_idx[recent] - week, codes[recent]] = True
    missing = present[:-1].all(axis=0) & ~present[-1]
    if not missing.any():
        return ()
    usual = np.bincount(codes[recent], weights=amount[recent], minlength=len(names)) / RUN_RATE_DAYS
    if usual[missing].sum() < PARTIAL_MIN_SHARE * max(prev7_mean, 0.0) or usual[missing].sum() <= 0:
        return ()
    order = sorted(np.flatnonzero(missing), key=lambda i: (-usual[i], str(names[i])))
    return tuple(ServiceAmount(str(names[i]), float(usual[i])) for i in order)
