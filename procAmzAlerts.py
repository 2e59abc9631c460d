"""Detect cost spikes (z-score) and trend reversals (MACD against its signal line).

Pure functions over the cost history frame (see the storage contract: one row per
usage_date, service, group_value with a float `amount`). Nothing here reads settings,
the clock, the network or the database.

Series. For the run's day D and the lookback window of L days ending on D there are two
families of daily series: one per service (all groups summed) and one per (service, group).
A series starts on its first day inside the window whose cost is non-zero (a day whose
summed amount is exactly 0.0, e.g. no rows at all, is "no cost"); from there to D every
missing day counts as zero cost. A series with no non-zero day in the window does not exist.
"""
from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from _util.report import Rules

COST_COLUMNS = ("usage_date", "service", "group_value", "amount", "estimated")


def ewm_alpha(span: int) -> float:
    """The smoothing factor pandas derives from a span, computed the way pandas does.

    pandas turns a span into a centre of mass and then into alpha; doing the same keeps
    the vectorised recursion bit-for-bit equal to `Series.ewm(span=..., adjust=False)`.
    """
    com = (float(span) - 1.0) / 2.0
    return 1.0 / (1.0 + com)


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


def macd_lines(series: pd.Series, rules: Rules) -> pd.DataFrame:
    """Fast and slow EMAs, MACD and its signal line for one daily series.

    Exponential weighting by span with no bias adjustment (pandas `adjust=False`), starting
    at the series' first day: this is exactly what the trend rule compares.
    """
    cost = series.astype(float)
    ema_fast = cost.ewm(span=rules.ema_fast, adjust=False).mean()
    ema_slow = cost.ewm(span=rules.ema_slow, adjust=False).mean()
    macd = ema_fast - ema_slow
    signal = macd.ewm(span=rules.signal_span, adjust=False).mean()
    return pd.DataFrame(
        {"cost": cost, "ema_fast": ema_fast, "ema_slow": ema_slow, "macd": macd, "signal": signal},
        index=series.index,
    )
