"""Detect cost spikes (z-score) and trend reversals (MACD against its signal line).

Pure functions over the cost history frame (one row per usage_date, service, group_value
with a float `amount`). Nothing here reads settings, the clock, the network or the database.

Series. For the run's day D and the lookback window of L days ending on D there are two
families of daily series: one per service (all groups summed) and one per (service, group).
A series starts on its first day inside the window whose summed cost is non-zero (rows of
exactly 0.0 do not start a series); from there to D every missing day counts as zero cost.
A series with no non-zero day in the window does not exist.

Choices the issue leaves open, made here:
- "History" for both rules is the series' days before D (its baseline); both rules need at
  least `min_history_days` of them. The trend rule's mean daily cost is over the last
  `min_history_days` days ending on D, D included.
- A service-level alert's top group is the group whose cost on D minus its mean over the
  service's baseline days went furthest in the alert's direction; measured over the same
  days, the groups' changes add up to the service's change. Only groups with a non-zero
  cost in the window are candidates (rows of $0 do not make a group a cause).
- A service's daily cost is the sum of its groups' in whole nano-dollars (exact, so it does
  not depend on the order or number of the groups added).
- Ties within floating-point rounding (TIE_EPS) reach a threshold; a standard deviation
  within rounding of zero is zero; MACD and signal within rounding are equal.

Speed. Each level is one dense days x series matrix (`_util/detection/series_matrix.py`);
statistics are column reductions and the EWMs one recursion over the days, vectorised
across series (`_util/detection/alert_rules.py`). Every sum is added row by row in a fixed order
(and service totals in whole nano-dollars), so a series' numbers depend only on its own
values: a backtest or an episode lookup (`detect_alerts_by_day`) evaluates every day of
a range from one matrix build and reports, bit for bit, what a normal run reports
(`_util/detection/alert_screen.py` screens all (day, series) pairs cheaply and re-checks exactly
the few that might fire).

This module is the stage's interface: the two detections and the single series that
plots draw.
"""
from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence

import numpy as np
import pandas as pd

from _util.detection.alert_rules import (
    LONG_MEAN_DAYS,
    SHORT_MEAN_DAYS,
    alerts_at,
    macd_walk,
)
from _util.detection.alert_screen import alerts_by_day
from _util.detection.series_matrix import build_matrices
from _util.report import WEEKDAY, Alert, Rules

log = logging.getLogger(__name__)

MACD_BLOCK = 500  # series walked together by macd_lines_of


def history_start(day: dt.date, rules: Rules) -> dt.date:
    """The oldest day detection reads for `day`: its lookback window, and the `echo_days`
    before it that the windows of the spikes a trend alert may echo reach back to."""
    return day - dt.timedelta(days=rules.lookback_days - 1 + rules.echo_days)


def _window_days(day: dt.date, lookback_days: int) -> pd.DatetimeIndex:
    end = pd.Timestamp(day)
    return pd.date_range(end=end, periods=lookback_days, freq="D")


def series_of(
    history: pd.DataFrame, day: dt.date, rules: Rules, service: str, group: str | None
) -> pd.Series:
    """The daily cost series of one service (group=None: all groups summed) or one
    (service, group), from its first non-zero day inside the lookback window to `day`,
    missing days as 0.0. Empty when the series has no cost in the window.

    This is the series detection evaluates; plots draw it so what a reader sees is what
    the rules saw.
    """
    days = _window_days(day, rules.lookback_days)
    rows = history[history["service"] == service]
    if group is not None:
        rows = rows[rows["group_value"] == group]
    rows = rows[(rows["usage_date"] >= days[0]) & (rows["usage_date"] <= days[-1])]
    daily = (
        rows.groupby("usage_date")["amount"].sum().reindex(days, fill_value=0.0).astype(float)
    )
    nonzero = np.flatnonzero(daily.to_numpy() != 0.0)
    if len(nonzero) == 0:
        out = daily.iloc[0:0]
    else:
        out = daily.iloc[nonzero[0]:]
    out.index.name = "usage_date"
    out.name = "cost"
    return out


def baseline_days(series: pd.Series, rules: Rules) -> int:
    """How many days a spike's baseline of `series` (as `series_of` returns it) holds:
    every day before its last, or with weekday seasonality those of the last's weekday."""
    before = pd.DatetimeIndex(series.index[:-1])
    if rules.seasonality == WEEKDAY and len(series):
        return int((before.dayofweek == series.index[-1].dayofweek).sum())
    return len(before)


def moving_means(series: pd.Series) -> pd.DataFrame:
    """The 7- and 28-day mean daily costs the trend gate compares, on every day of
    `series` (days before its start count as no cost, as in the rule)."""
    cost = series.astype(float)
    return pd.DataFrame({f"mean{n}": cost.rolling(n, min_periods=1).sum() / n
                         for n in (SHORT_MEAN_DAYS, LONG_MEAN_DAYS)}, index=series.index)


def macd_lines(series: pd.Series, rules: Rules) -> pd.DataFrame:
    """Fast and slow EMAs, MACD and its signal line for one daily series.

    Exponential weighting by span with no bias adjustment (pandas `adjust=False`), starting
    at the series' first day: the lines come from the trend rule's own walk (`macd_walk`),
    so a plot draws exactly what the rule compared.
    """
    return macd_lines_of([series], rules)[0]


def macd_lines_of(many: Sequence[pd.Series], rules: Rules,
                  block: int = MACD_BLOCK) -> list[pd.DataFrame]:
    """`macd_lines` of each series, from one walk over their days: each series is a
    column of its own (ending on the last row, starting on its first day), and a column's
    numbers are its own whatever the others hold; one walk instead of one per series
    (most of a trend plot's planning time), per `block` series (a run may plot tens of
    thousands of alerts: a block's arrays stay under 20 MB)."""
    return [lines for lo in range(0, len(many), block)
            for lines in _macd_lines_block(many[lo:lo + block], rules)]


def _macd_lines_block(many: Sequence[pd.Series], rules: Rules) -> list[pd.DataFrame]:
    costs = [series.astype(float) for series in many]
    n_days = max((len(cost) for cost in costs), default=0)
    values = np.zeros((n_days, len(costs)))
    start = np.array([n_days - len(cost) for cost in costs], dtype=np.int64)
    for k, cost in enumerate(costs):
        values[start[k]:, k] = cost.to_numpy()
    names = ("ema_fast", "ema_slow", "macd", "signal")
    lines = {name: np.empty((n_days, len(costs))) for name in names}
    for t, fast, slow, macd, signal in macd_walk(values, start, rules):
        for name, row in zip(names, (fast, slow, macd, signal)):
            lines[name][t] = row
    return [pd.DataFrame({"cost": cost, **{name: lines[name][start[k]:, k] for name in names}},
                         index=cost.index)
            for k, cost in enumerate(costs)]


def detect_alerts(history: pd.DataFrame, day: dt.date, rules: Rules) -> tuple[Alert, ...]:
    """Every spike and trend reversal on `day`, service level and (service, group) level,
    ranked by the absolute dollar change against the baseline mean.

    A service-level alert names the group whose change (cost on D minus its mean over the
    service's baseline days) went furthest in the alert's direction.
    """
    if rules.lookback_days < 2:
        raise ValueError("lookback_days must be at least 2")
    matrices = build_matrices(history, history_start(day, rules), day)
    alerts = alerts_at(matrices, len(matrices.service.days) - 1, rules)
    log.info("detected %d alerts over %d services and %d groups on %s", len(alerts),
             matrices.service.values.shape[1], matrices.group.values.shape[1], day)
    return alerts


def detect_alerts_by_day(
    history: pd.DataFrame, first_day: dt.date, last_day: dt.date, rules: Rules
) -> dict[dt.date, tuple[Alert, ...]]:
    """`detect_alerts` for every day from first_day to last_day, building the matrices once
    (the core of a backtest and of alert episodes; each day's alerts equal a normal run's
    for that day)."""
    if rules.lookback_days < 2:
        raise ValueError("lookback_days must be at least 2")
    if last_day < first_day:
        return {}
    start = history_start(first_day, rules)
    result = alerts_by_day(build_matrices(history, start, last_day), rules,
                           first_row=(first_day - start).days)
    log.info("detected alerts for %d days (%s..%s): %d alerts; %d of %d (day, series) "
             "pairs re-checked", len(result.by_day), first_day, last_day,
             sum(len(a) for a in result.by_day.values()), result.rechecked, result.pairs)
    return result.by_day
