"""A straightforward per-series implementation of the detection rules of issues 3 and 13.

One pandas computation per series (groupby-apply), written to be read rather than to be
fast. Tests compare the vectorised `procAmzAlerts` against it on random data, and the
benchmark times both. It shares only the rounding tolerances with the code under test.
"""
from __future__ import annotations

import datetime as dt
import math

import pandas as pd

from _util.alert_kinds import DOWN, SPIKE, TREND, UP
from _util.detection.alert_rules import TIE_EPS, ZERO_STD_REL
from _util.report import WEEKDAY, Alert, Rules

STAT_COLUMNS = [
    "baseline_days", "spike_days", "cost", "mean", "std", "zscore", "recent_mean", "mean7",
    "mean28", "macd", "signal", "macd_prev", "signal_prev",
]

def _window(day: dt.date, rules: Rules) -> pd.DatetimeIndex:
    return pd.date_range(end=pd.Timestamp(day), periods=rules.lookback_days, freq="D")

def _daily(rows: pd.DataFrame, days: pd.DatetimeIndex) -> pd.Series:
    """The series from its first non-zero day to D, missing days as zero."""
    daily = rows.groupby("usage_date")["amount"].sum().reindex(days, fill_value=0.0)
    nonzero = daily[daily != 0.0]
    if nonzero.empty:
        return daily.iloc[0:0]
    return daily.loc[nonzero.index[0]:]

def _stats_of(rows: pd.DataFrame, days: pd.DatetimeIndex, rules: Rules) -> pd.Series:
    s = _daily(rows, days)
    if s.empty:
        return pd.Series(dtype=float)
    before = s.iloc[:-1]
    base = before
    if rules.seasonality == WEEKDAY:  # only the days with D's day of the week
        base = before[before.index.dayofweek == s.index[-1].dayofweek]
    cost = float(s.iloc[-1])
    mean = float(base.mean()) if len(base) else math.nan
    std = float(base.std(ddof=1)) if len(base) > 1 else math.nan
    usable = math.isfinite(std) and std > ZERO_STD_REL * max(1.0, abs(mean))
    z = (cost - mean) / std if usable else math.nan
    fast = s.ewm(span=rules.ema_fast, adjust=False).mean()
    slow = s.ewm(span=rules.ema_slow, adjust=False).mean()
    macd = fast - slow
    signal = macd.ewm(span=rules.signal_span, adjust=False).mean()

    def mean_of_last(n: int) -> float:
        return float(s.reindex(days[-min(n, len(days)):], fill_value=0.0).mean())

    prev = -2 if len(s) > 1 else -1
    return pd.Series({
        "baseline_days": float(len(before)), "spike_days": float(len(base)), "cost": cost,
        "mean": mean, "std": std, "zscore": z,
        "recent_mean": mean_of_last(rules.min_history_days), "mean7": mean_of_last(7),
        "mean28": mean_of_last(28), "macd": float(macd.iloc[-1]),
        "signal": float(signal.iloc[-1]), "macd_prev": float(macd.iloc[prev]),
        "signal_prev": float(signal.iloc[prev]),
    })

def reference_stats(history: pd.DataFrame, day: dt.date, rules: Rules) -> pd.DataFrame:
    """Per-series statistics, indexed by (service, group); group None = service level."""
    days = _window(day, rules)
    rows = history[(history["usage_date"] >= days[0]) & (history["usage_date"] <= days[-1])]
    rows = rows.astype({"service": object, "group_value": object})
    frames = []
    for keys, level_group in ((["service"], False), (["service", "group_value"], True)):
        if rows.empty:
            continue
        stats = rows.groupby(keys)[["usage_date", "amount"]].apply(
            lambda g: _stats_of(g, days, rules)
        )
        if isinstance(stats, pd.Series):  # every series empty: apply returns a Series
            stats = stats.unstack()
        stats = stats.dropna(how="all")
        if stats.empty:
            continue
        stats = stats.reset_index()
        if not level_group:
            stats["group_value"] = None
        frames.append(stats.rename(columns={"group_value": "group"}))
    if not frames:
        return pd.DataFrame(columns=["service", "group", *STAT_COLUMNS]).set_index(
            ["service", "group"])
    return pd.concat(frames, ignore_index=True).set_index(["service", "group"])

def _sign(x: float, scale: float) -> int:
    tol = TIE_EPS * max(1.0, abs(scale))
    return 1 if x > tol else (-1 if x < -tol else 0)

def _fired(st: pd.Series, rules: Rules) -> list[tuple[str, str]]:
    if st["baseline_days"] < rules.min_history_days:
        return []
    out = []
    delta = st["cost"] - st["mean"]
    enough_weekdays = rules.seasonality != WEEKDAY or st["spike_days"] >= 8
    if math.isfinite(st["zscore"]) and enough_weekdays:
        pct_floor = rules.min_delta_pct / 100.0 * abs(st["mean"]) - TIE_EPS
        pct_ok_up = rules.min_delta_pct <= 0 or delta >= pct_floor
        pct_ok_down = rules.min_delta_pct <= 0 or -delta >= pct_floor
        if st["zscore"] >= rules.z - TIE_EPS and delta >= rules.min_delta_usd - TIE_EPS and pct_ok_up:
            out.append((SPIKE, UP))
        if st["zscore"] <= -rules.z + TIE_EPS and -delta >= rules.min_delta_usd - TIE_EPS and pct_ok_down:
            out.append((SPIKE, DOWN))
    need = max(rules.trend_min_move_pct / 100.0 * abs(st["mean28"]), rules.trend_min_move_usd)
    moved = abs(st["mean7"] - st["mean28"]) >= need - TIE_EPS
    if st["recent_mean"] >= rules.min_daily_usd - TIE_EPS and moved:
        now = _sign(st["macd"] - st["signal"], st["recent_mean"])
        before = _sign(st["macd_prev"] - st["signal_prev"], st["recent_mean"])
        if before <= 0 < now:
            out.append((TREND, UP))
        if before >= 0 > now:
            out.append((TREND, DOWN))
    return out

def _top_group(history: pd.DataFrame, day: dt.date, rules: Rules, service: str,
               direction: str) -> tuple[str, float]:
    days = _window(day, rules)
    rows = history[(history["service"] == service)
                   & (history["usage_date"] >= days[0]) & (history["usage_date"] <= days[-1])]
    service_days = _daily(rows, days).index
    changes = {}
    for group, g in rows.groupby("group_value", observed=True):
        daily = g.groupby("usage_date")["amount"].sum().reindex(service_days, fill_value=0.0)
        base = daily.iloc[:-1]
        if rules.seasonality == WEEKDAY:
            base = base[base.index.dayofweek == daily.index[-1].dayofweek]
        changes[str(group)] = float(daily.iloc[-1] - base.mean())
    pick = (max if direction == UP else min)(changes, key=changes.get)
    return pick, changes[pick]

def _echo_of(history: pd.DataFrame, day: dt.date, rules: Rules, service: str,
             group: str | None) -> dt.date | None:
    """The latest day of D-echo_days..D on which the series fired a spike."""
    for back in range(rules.echo_days + 1 if rules.echo_days > 0 else 0):
        earlier = day - dt.timedelta(days=back)
        stats = reference_stats(history, earlier, rules)
        for (s, g), st in stats.iterrows():
            g = g if isinstance(g, str) else None
            if (s, g) == (service, group) and any(
                    kind == SPIKE for kind, _ in _fired(st.astype(float), rules)):
                return earlier
    return None


def reference_alerts(history: pd.DataFrame, day: dt.date, rules: Rules) -> tuple[Alert, ...]:
    """The alerts of `day`, computed one series at a time."""
    stats = reference_stats(history, day, rules)
    alerts = []
    for (service, group), st in stats.iterrows():
        group = group if isinstance(group, str) else None  # the index stores None as NaN
        st = st.astype(float)
        for kind, direction in _fired(st, rules):
            top = (None, None)
            if group is None:
                top = _top_group(history, day, rules, service, direction)
            alerts.append(Alert(
                kind=kind, direction=direction, service=service, group=group,
                usd=float(st["cost"]), baseline_mean=float(st["mean"]),
                baseline_std=float(st["std"]), delta_usd=float(st["cost"] - st["mean"]),
                zscore=float(st["zscore"]) if kind == SPIKE else None,
                macd=float(st["macd"]) if kind == TREND else None,
                signal=float(st["signal"]) if kind == TREND else None,
                mean7=float(st["mean7"]) if kind == TREND else None,
                mean28=float(st["mean28"]) if kind == TREND else None,
                echo_of=_echo_of(history, day, rules, service, group) if kind == TREND else None,
                top_group=top[0], top_group_delta_usd=top[1],
            ))
    alerts.sort(key=lambda a: (-(0.0 if math.isnan(a.delta_usd) else abs(a.delta_usd)), a.kind, a.direction, a.service,
                               a.group is not None, a.group or ""))
    return tuple(alerts)

__all__ = ["reference_alerts", "reference_stats", "STAT_COLUMNS"]
