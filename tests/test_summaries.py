"""Month to date, previous month, projection, daily totals and the Estimated flag, on
hand-computed histories."""
from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from _util.report import DayAmount, ServiceAmount
from procSummaries import summarise


def rows(*items: tuple[str, str, str, float] | tuple[str, str, str, float, bool]) -> pd.DataFrame:
    """History from (date, service, group, amount[, estimated]) tuples."""
    records = [(pd.Timestamp(i[0]), i[1], i[2], float(i[3]), bool(i[4]) if len(i) > 4 else False)
               for i in items]
    return pd.DataFrame(records, columns=["usage_date", "service", "group_value", "amount",
                                          "estimated"])


def daily(service: str, first: str, last: str, usd: float, group: str = "") -> pd.DataFrame:
    days = pd.date_range(first, last, freq="D")
    return pd.DataFrame({"usage_date": days, "service": service, "group_value": group,
                         "amount": usd, "estimated": False})


D = dt.date(2024, 3, 10)


@pytest.fixture()
def history() -> pd.DataFrame:
    """EC2 $10/day from 1 Feb (two groups of $6 and $4), S3 $1/day from 5 March, a $-2
    credit on 3 March, and a one-off $50 of Support on 20 February."""
    return pd.concat([
        daily("EC2", "2024-02-01", "2024-03-10", 6.0, group="web"),
        daily("EC2", "2024-02-01", "2024-03-10", 4.0, group="db"),
        daily("S3", "2024-03-05", "2024-03-10", 1.0),
        rows(("2024-03-03", "Credits", "", -2.0), ("2024-02-20", "Support", "", 50.0)),
    ], ignore_index=True)


def test_month_to_date_per_service_and_in_total(history):
    summary = summarise(history, D)
    assert summary.mtd_by_service == (
        ServiceAmount("EC2", 100.0), ServiceAmount("S3", 6.0), ServiceAmount("Credits", -2.0),
    )
    assert summary.headline.mtd_usd == 104.0


def test_previous_month_compares_the_same_days(history):
    # 1-10 February: EC2 only (Support fell on the 20th).
    assert summarise(history, D).headline.prev_mtd_usd == 100.0


@pytest.mark.parametrize("day, days_compared", [
    (dt.date(2024, 3, 31), 29),  # leap February
    (dt.date(2023, 3, 30), 28),
    (dt.date(2024, 1, 15), 15),  # December of the year before
])
def test_previous_month_is_clipped_to_its_length(day, days_compared):
    history = daily("EC2", day - dt.timedelta(days=120), day, 1.0)
    assert summarise(history, day).headline.prev_mtd_usd == days_compared


def test_projection_is_month_to_date_plus_the_last_seven_days_run_rate(history):
    # Last 7 days (4-10 March): EC2 70 + S3 6 = 76, a run-rate of 76/7 a day;
    # 21 days remain in March.
    assert summarise(history, D).headline.projection_usd == pytest.approx(104.0 + 76 / 7 * 21)


def test_projection_on_the_last_day_of_the_month_is_the_month_to_date():
    history = daily("EC2", "2024-04-01", "2024-04-30", 3.0)
    headline = summarise(history, dt.date(2024, 4, 30)).headline
    assert headline.projection_usd == headline.mtd_usd == 90.0


def test_day_total_and_mean_of_the_seven_days_before(history):
    headline = summarise(history, D).headline
    assert headline.day_usd == 11.0
    # 3-9 March: EC2 70, S3 5 (from the 5th), credit -2.
    assert headline.prev7_mean_usd == pytest.approx((70 + 5 - 2) / 7)


def test_daily_totals_cover_the_last_30_days_with_missing_days_as_zero():
    history = rows(("2024-03-10", "EC2", "", 5.0), ("2024-02-15", "EC2", "", 7.0),
                   ("2024-02-09", "EC2", "", 99.0))  # 2/9 is 31 days before: outside
    totals = summarise(history, D).daily_totals
    assert len(totals) == 30
    assert totals[0] == DayAmount(dt.date(2024, 2, 10), 0.0)
    assert totals[-1] == DayAmount(D, 5.0)
    assert [t.day for t in totals] == [dt.date(2024, 2, 10) + dt.timedelta(days=i)
                                       for i in range(30)]
    assert sum(t.usd for t in totals) == 12.0


def test_daily_by_service_lists_every_day_of_the_month_for_each_service(history):
    grid = summarise(history, D).daily_by_service
    assert len(grid) == 10 * 3  # 1-10 March x (Credits, EC2, S3)
    assert grid[0] == (dt.date(2024, 3, 1), "Credits", 0.0)
    assert (dt.date(2024, 3, 3), "Credits", -2.0) in grid
    assert (dt.date(2024, 3, 4), "S3", 0.0) in grid
    assert (D, "EC2", 10.0) in grid
    assert all(service != "Support" for _, service, _ in grid)


@pytest.mark.parametrize("estimated_on, expected", [("2024-03-10", True), ("2024-03-09", False)])
def test_estimated_when_any_row_of_the_day_is_estimated(estimated_on, expected):
    history = rows(("2024-03-10", "EC2", "", 5.0), ("2024-03-10", "S3", "", 1.0),
                   ("2024-03-09", "EC2", "", 5.0), (estimated_on, "KMS", "", 0.5, True))
    assert summarise(history, D).headline.estimated is expected


def test_empty_history_summarises_to_zeros():
    summary = summarise(rows(), D)
    assert summary.headline.mtd_usd == summary.headline.projection_usd == 0.0
    assert summary.mtd_by_service == () and summary.daily_by_service == ()
    assert len(summary.daily_totals) == 30


def test_categorical_service_column_gives_the_same_summary(history):
    categorical = history.astype({"service": "category", "group_value": "category"})
    assert summarise(categorical, D) == summarise(history, D)


def test_rows_older_than_the_lookback_count_as_zero(history):
    short = summarise(history, D, lookback_days=10)  # 1-10 March only
    assert short.headline.mtd_usd == 104.0
    assert short.headline.prev_mtd_usd == 0.0
    assert len(short.daily_totals) == 30 and short.daily_totals[0].usd == 0.0


# ---------------------------------------------------------------- partial data


def test_a_service_with_costs_all_week_and_none_on_the_day_makes_the_day_partial(history):
    """EC2 ($10/day) has no rows for D: its data is not in yet, and the total is about
    $10 short. S3 started on 5 March (not every day of the week before): not named."""
    late = history[~((history["service"] == "EC2") & (history["usage_date"] == pd.Timestamp(D)))]
    headline = summarise(late, D).headline
    assert headline.partial
    assert headline.not_in_yet == (ServiceAmount("EC2", 10.0),)
    assert headline.not_in_yet_usd == pytest.approx(10.0)
    assert not summarise(history, D).headline.partial


def test_a_service_too_small_to_matter_does_not_make_the_day_partial(history):
    """A few cents a day missing from an $11 day (under 1% of it) is not worth a note."""
    cents = daily("AWS Key Management Service", "2024-03-01", "2024-03-09", 0.05)
    assert not summarise(pd.concat([history, cents], ignore_index=True), D).headline.partial
    dollars = daily("AWS Key Management Service", "2024-03-01", "2024-03-09", 0.5)
    headline = summarise(pd.concat([history, dollars], ignore_index=True), D).headline
    assert [s.service for s in headline.not_in_yet] == ["AWS Key Management Service"]
