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
  days, the groups' changes add up to the service's change.
- Ties within floating-point rounding (TIE_EPS) reach a threshold; a standard deviation
  within rounding of zero is zero; MACD and signal within rounding are equal.

Speed. Each level is one dense days x series matrix; statistics are column reductions and
the EWMs one recursion over the days, vectorised across series. `series_stats` evaluates a
window whose last row is D, so a backtest can evaluate every day by slicing one matrix.
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from dataclasses import replace as dataclass_replace

import numpy as np
import pandas as pd

from _util.report import DOWN, SPIKE, TREND, UP, Alert, Rules

log = logging.getLogger(__name__)

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


# --------------------------------------------------------------------------------------
# The vectorised core: one dense matrix of days x series per level, evaluated at once.
# --------------------------------------------------------------------------------------

DAY_NS = 86_400 * 1_000_000_000
# Ties within floating-point rounding count as reaching a threshold, so a z of exactly Z
# or a change of exactly MIN_DELTA fires whatever order the sums were added in.
TIE_EPS = 1e-9
# A standard deviation this small relative to the mean is a constant series seen through
# rounding (the mean of 300 x $0.10 is not exactly $0.10 in binary).
ZERO_STD_REL = 1e-9
# Rows of the history handled at a time while building matrices, and series evaluated at a
# time: both bound the temporaries (about block x days x 8 bytes) for 100,000 series.
ROW_CHUNK = 1 << 21
SERIES_BLOCK = 1 << 14


@dataclass(frozen=True)
class SeriesMatrix:
    """Daily costs of many series on consecutive days: `values[t, s]` is series s on
    `days[t]`, 0.0 where there was no row.

    Days run down the rows so one day across all series is contiguous, which is what
    the EWM recursion walks. `groups` holds None for every series of the service level.
    """

    days: pd.DatetimeIndex
    services: np.ndarray
    groups: np.ndarray
    values: np.ndarray


@dataclass(frozen=True)
class SeriesMatrices:
    """The service level and the (service, group) level of the same days.

    `parent[j]` is the column of group-series j's service in `service.values`.
    """

    service: SeriesMatrix
    group: SeriesMatrix
    parent: np.ndarray


def _codes(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes and the names they stand for; free for categorical columns."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        categorical = column.array
    else:
        # Via a Categorical the codes are as narrow as the number of names allows, not
        # 8 bytes a row: that matters with tens of millions of rows.
        categorical = pd.Categorical(column.to_numpy())
    codes = np.asarray(categorical.codes)
    names = np.asarray(categorical.categories, dtype=object)
    if len(codes) and codes.min() < 0:
        raise ValueError(f"history column {column.name!r} has missing values")
    return codes, names


def build_matrices(
    history: pd.DataFrame, first_day: dt.date, last_day: dt.date
) -> SeriesMatrices:
    """Dense day x series matrices of `history` for the days first_day..last_day.

    Rows outside the range are ignored; duplicate rows of one (day, service, group) add up.
    Only (service, group) pairs with at least one row in the range get a column. The work
    is a few passes of numpy over the rows in chunks, so memory stays near the size of the
    output matrix whatever the number of rows.
    """
    days = pd.date_range(pd.Timestamp(first_day), pd.Timestamp(last_day), freq="D")
    n_days = len(days)
    first_ns, last_ns = days[0].value, days[-1].value
    dates = history["usage_date"].to_numpy().astype("datetime64[ns]", copy=False).view(np.int64)
    amounts = history["amount"].to_numpy(dtype=np.float64)
    svc_codes, svc_names = _codes(history["service"])
    grp_codes, grp_names = _codes(history["group_value"])
    n_grp = max(len(grp_names), 1)
    n_pair_space = len(svc_names) * n_grp

    def chunks():
        for lo in range(0, len(dates), ROW_CHUNK):
            hi = lo + ROW_CHUNK
            d = dates[lo:hi]
            inside = (d >= first_ns) & (d <= last_ns)
            pair = svc_codes[lo:hi][inside].astype(np.int64) * n_grp
            pair += grp_codes[lo:hi][inside]
            yield d[inside], pair, amounts[lo:hi][inside]

    # Pass 1: which (service, group) pairs occur, in (service, group) order.
    dense = n_pair_space <= (1 << 24)
    if dense:
        present = np.zeros(n_pair_space, dtype=bool)
        for _, pair, _ in chunks():
            present[pair] = True
        pairs = np.flatnonzero(present)
        column_of = np.cumsum(present, dtype=np.int64) - 1
        del present
    else:
        pairs = np.unique(np.concatenate([np.unique(p) for _, p, _ in chunks()] or [[]]))
        pairs = pairs.astype(np.int64)
    n_pairs = len(pairs)

    # Pass 2: add every row into its cell.
    flat = np.zeros(n_days * n_pairs, dtype=np.float64)
    for d, pair, amount in chunks():
        col = column_of[pair] if dense else np.searchsorted(pairs, pair)
        col += ((d - first_ns) // DAY_NS) * n_pairs
        np.add.at(flat, col, amount)
    group_values = flat.reshape(n_days, n_pairs)

    pair_svc = pairs // n_grp
    pair_grp = pairs % n_grp
    services_present, parent = np.unique(pair_svc, return_inverse=True)
    col_starts = np.flatnonzero(np.r_[True, pair_svc[1:] != pair_svc[:-1]]) if n_pairs else []
    if n_pairs:
        service_values = np.add.reduceat(group_values, col_starts, axis=1)
    else:
        service_values = np.zeros((n_days, 0))
    service = SeriesMatrix(
        days=days,
        services=svc_names[services_present] if n_pairs else np.empty(0, dtype=object),
        groups=np.full(len(services_present), None, dtype=object),
        values=service_values,
    )
    group = SeriesMatrix(
        days=days,
        services=svc_names[pair_svc] if n_pairs else np.empty(0, dtype=object),
        groups=grp_names[pair_grp] if n_pairs else np.empty(0, dtype=object),
        values=group_values,
    )
    return SeriesMatrices(service=service, group=group, parent=parent.astype(np.int64))


def _ewm_step(ema: np.ndarray, x: np.ndarray, old: float, new: float, den: float,
              first: np.ndarray, tmp: np.ndarray) -> None:
    """One day of pandas' `ewm(adjust=False).mean()` for many series, in place.

    Same arithmetic as pandas (including its guard that keeps a constant series exactly
    constant) so the vectorised result is bit-for-bit the per-series one.
    """
    np.multiply(ema, old, out=tmp)
    tmp += new * x
    tmp /= den
    np.copyto(ema, tmp, where=ema != x)
    np.copyto(ema, x, where=first)


def macd_signal(values: np.ndarray, start: np.ndarray, rules: Rules) -> tuple[np.ndarray, np.ndarray]:
    """MACD and signal for every day and series of `values` (days x series).

    Each series' EMAs start on its row `start[s]` with that day's cost (pandas
    `adjust=False`); rows before the start are meaningless and left at 0. The recursion
    walks the days once, each step a handful of numpy operations over all series.
    """
    n_days, n = values.shape
    a_fast, a_slow, a_sig = (ewm_alpha(rules.ema_fast), ewm_alpha(rules.ema_slow),
                             ewm_alpha(rules.signal_span))
    consts = [(1.0 - a, a, (1.0 - a) + a) for a in (a_fast, a_slow, a_sig)]
    fast = np.zeros(n)
    slow = np.zeros(n)
    sig = np.zeros(n)
    tmp = np.empty(n)
    macd_all = np.zeros((n_days, n))
    sig_all = np.zeros((n_days, n))
    t0 = int(start.min()) if n else n_days
    for t in range(t0, n_days):
        x = values[t]
        first = start == t
        _ewm_step(fast, x, *consts[0], first, tmp)
        _ewm_step(slow, x, *consts[1], first, tmp)
        m = macd_all[t]
        np.subtract(fast, slow, out=m)
        _ewm_step(sig, m, *consts[2], first, tmp)
        sig_all[t] = sig
    return macd_all, sig_all


@dataclass(frozen=True)
class SeriesStats:
    """What the rules look at, per series, on the last day D of a window.

    `exists` is False for a series with no non-zero day in the window. `baseline_days`
    counts the series' days before D. Statistics that are undefined are NaN.
    """

    exists: np.ndarray
    start: np.ndarray
    baseline_days: np.ndarray
    cost: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    zscore: np.ndarray
    recent_mean: np.ndarray
    macd: np.ndarray
    signal: np.ndarray
    macd_prev: np.ndarray
    signal_prev: np.ndarray


def _stats_block(values: np.ndarray, rules: Rules) -> dict[str, np.ndarray]:
    n_days, n = values.shape
    nonzero = values != 0.0
    exists = nonzero.any(axis=0)
    start = np.where(exists, nonzero.argmax(axis=0), n_days)
    del nonzero
    base_days = np.maximum(n_days - 1 - start, 0)
    cost = values[-1].copy()
    base = values[:-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        # Days before the start are zeros, so the plain column sum is the baseline sum.
        mean = np.where(base_days > 0, base.sum(axis=0) / base_days, np.nan)
        dev = base - mean
        dev[np.arange(n_days - 1)[:, None] < start[None, :]] = 0.0
        np.multiply(dev, dev, out=dev)
        var = np.where(base_days > 1, dev.sum(axis=0) / (base_days - 1), np.nan)
        del dev
        std = np.sqrt(var)
        usable = np.isfinite(std) & (std > ZERO_STD_REL * np.maximum(1.0, np.abs(mean)))
        z = np.where(usable, (cost - mean) / np.where(usable, std, 1.0), np.nan)
    recent = min(rules.min_history_days, n_days)
    recent_mean = values[n_days - recent:].sum(axis=0) / max(recent, 1)
    macd, signal = macd_signal(values, start, rules)
    prev = max(n_days - 2, 0)
    return dict(
        exists=exists, start=start, baseline_days=base_days, cost=cost, mean=mean, std=std,
        zscore=z, recent_mean=recent_mean, macd=macd[-1].copy(), signal=signal[-1].copy(),
        macd_prev=macd[prev].copy(), signal_prev=signal[prev].copy(),
    )


def series_stats(values: np.ndarray, rules: Rules) -> SeriesStats:
    """Evaluate every series of a window (days x series; the last row is D) at once.

    A backtest can call this with `values[t - L + 1 : t + 1]` for each day t: a slice is
    exactly the window a normal run for that day sees.
    """
    n_days, n = values.shape
    parts = [
        _stats_block(values[:, lo:lo + SERIES_BLOCK], rules)
        for lo in range(0, max(n, 1), SERIES_BLOCK)
    ] if n else [_stats_block(values, rules)]
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    return SeriesStats(**merged)


@dataclass(frozen=True)
class Firing:
    """Which series fire which rule (boolean arrays aligned with the series)."""

    spike_up: np.ndarray
    spike_down: np.ndarray
    trend_up: np.ndarray
    trend_down: np.ndarray


def _sign_with_dead_zone(x: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """-1, 0 or +1, where differences within rounding of the series' scale count as 0.

    Without it a flat series crosses its signal on floating-point noise (1e-16 apart).
    """
    tol = TIE_EPS * np.maximum(1.0, np.abs(scale))
    return np.where(x > tol, 1, np.where(x < -tol, -1, 0))


def rules_fire(stats: SeriesStats, rules: Rules) -> Firing:
    """Apply the spike and trend rules of issue 3 (and the percentage floor of issue 8).

    Spike: at least `min_history_days` baseline days, a non-zero std, |z| >= Z and a dollar
    change of at least `min_delta_usd` (and `min_delta_pct` % of |baseline mean|) in the
    same direction. Trend: the same history, a mean over the last `min_history_days` days
    (D included) of at least `min_daily_usd`, and MACD crossing its signal between D-1 and
    D. Ties within rounding reach the threshold.
    """
    history_ok = stats.exists & (stats.baseline_days >= rules.min_history_days)
    with np.errstate(invalid="ignore"):
        delta = stats.cost - stats.mean
        z = stats.zscore
        usd_floor = rules.min_delta_usd - TIE_EPS
        pct_floor = rules.min_delta_pct / 100.0 * np.abs(stats.mean) - TIE_EPS
        spike_ok = history_ok & np.isfinite(z)
        spike_up = spike_ok & (z >= rules.z - TIE_EPS) & (delta >= usd_floor)
        spike_down = spike_ok & (z <= -rules.z + TIE_EPS) & (-delta >= usd_floor)
        if rules.min_delta_pct > 0:
            spike_up &= delta >= pct_floor
            spike_down &= -delta >= pct_floor
        trend_ok = history_ok & (stats.recent_mean >= rules.min_daily_usd - TIE_EPS)
    now = _sign_with_dead_zone(stats.macd - stats.signal, stats.recent_mean)
    before = _sign_with_dead_zone(stats.macd_prev - stats.signal_prev, stats.recent_mean)
    trend_up = trend_ok & (before <= 0) & (now > 0)
    trend_down = trend_ok & (before >= 0) & (now < 0)
    return Firing(spike_up=spike_up, spike_down=spike_down, trend_up=trend_up,
                  trend_down=trend_down)


def _group_contributions(
    group_window: np.ndarray, all_parents: np.ndarray, service_stats: SeriesStats,
    services: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """For the group series of the given service columns: each group's cost on D minus its
    mean over its service's baseline days (so the groups' changes add up to the service's).

    Returns the group columns and their changes.
    """
    cols = np.flatnonzero(np.isin(all_parents, services))
    change = np.empty(len(cols))
    rows = np.arange(group_window.shape[0] - 1)[:, None]
    for lo in range(0, len(cols), SERIES_BLOCK):  # blocks bound the copies' size
        block = cols[lo:lo + SERIES_BLOCK]
        values = group_window[:, block]
        parent = all_parents[block]
        base = values[:-1]
        base[rows < service_stats.start[parent][None, :]] = 0.0
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = base.sum(axis=0) / service_stats.baseline_days[parent]
        change[lo:lo + SERIES_BLOCK] = values[-1] - mean
    return cols, change


def _alerts_of(matrix: SeriesMatrix, stats: SeriesStats, firing: Firing) -> list[Alert]:
    out: list[Alert] = []
    for kind, direction, mask in (
        (SPIKE, UP, firing.spike_up), (SPIKE, DOWN, firing.spike_down),
        (TREND, UP, firing.trend_up), (TREND, DOWN, firing.trend_down),
    ):
        for s in np.flatnonzero(mask):
            spike = kind == SPIKE
            out.append(Alert(
                kind=kind, direction=direction,
                service=str(matrix.services[s]),
                group=None if matrix.groups[s] is None else str(matrix.groups[s]),
                usd=float(stats.cost[s]),
                baseline_mean=float(stats.mean[s]),
                baseline_std=float(stats.std[s]),
                delta_usd=float(stats.cost[s] - stats.mean[s]),
                zscore=float(stats.zscore[s]) if spike else None,
                macd=None if spike else float(stats.macd[s]),
                signal=None if spike else float(stats.signal[s]),
            ))
    return out


def _rank_key(alert: Alert) -> tuple:
    return (-abs(alert.delta_usd), alert.kind, alert.direction, alert.service,
            alert.group is not None, alert.group or "")


def alerts_at(matrices: SeriesMatrices, row: int, rules: Rules) -> tuple[Alert, ...]:
    """The alerts of the day on `row` of the matrices, over the window of
    `rules.lookback_days` rows ending there (fewer if the matrices start later).

    A backtest builds the matrices once and calls this for every row: each day sees
    exactly the values a normal run for that day sees, so it reports the same alerts.
    """
    lo = max(0, row - rules.lookback_days + 1)
    service_window = matrices.service.values[lo:row + 1]
    group_window = matrices.group.values[lo:row + 1]
    svc_stats = series_stats(service_window, rules)
    grp_stats = series_stats(group_window, rules)
    svc_fire = rules_fire(svc_stats, rules)
    grp_fire = rules_fire(grp_stats, rules)

    service_alerts = _alerts_of(matrices.service, svc_stats, svc_fire)
    if service_alerts:
        alerted = np.flatnonzero(svc_fire.spike_up | svc_fire.spike_down
                                 | svc_fire.trend_up | svc_fire.trend_down)
        cols, change = _group_contributions(group_window, matrices.parent, svc_stats, alerted)
        col_parent = matrices.parent[cols]
        svc_index = {str(matrices.service.services[s]): s for s in alerted}
        named = []
        for alert in service_alerts:
            mine = col_parent == svc_index[alert.service]
            changes = change[mine]
            pick = int(np.argmax(changes) if alert.direction == UP else np.argmin(changes))
            col = cols[mine][pick]
            named.append(dataclass_replace(alert, top_group=str(matrices.group.groups[col]),
                                           top_group_delta_usd=float(changes[pick])))
        service_alerts = named
    alerts = service_alerts + _alerts_of(matrices.group, grp_stats, grp_fire)
    alerts.sort(key=_rank_key)
    return tuple(alerts)


def detect_alerts(history: pd.DataFrame, day: dt.date, rules: Rules) -> tuple[Alert, ...]:
    """Every spike and trend reversal on `day`, service level and (service, group) level,
    ranked by the absolute dollar change against the baseline mean.

    A service-level alert names the group whose change (cost on D minus its mean over the
    service's baseline days) went furthest in the alert's direction.
    """
    if rules.lookback_days < 2:
        raise ValueError("lookback_days must be at least 2")
    first_day = day - dt.timedelta(days=rules.lookback_days - 1)
    matrices = build_matrices(history, first_day, day)
    alerts = alerts_at(matrices, len(matrices.service.days) - 1, rules)
    log.info("detected %d alerts over %d services and %d groups on %s", len(alerts),
             matrices.service.values.shape[1], matrices.group.values.shape[1], day)
    return alerts


def detect_alerts_by_day(
    history: pd.DataFrame, first_day: dt.date, last_day: dt.date, rules: Rules
) -> dict[dt.date, tuple[Alert, ...]]:
    """`detect_alerts` for every day from first_day to last_day, building the matrices once
    (the core of a backtest; each day's alerts equal a normal run's for that day)."""
    if rules.lookback_days < 2:
        raise ValueError("lookback_days must be at least 2")
    start = first_day - dt.timedelta(days=rules.lookback_days - 1)
    matrices = build_matrices(history, start, last_day)
    offset = rules.lookback_days - 1
    return {
        (first_day + dt.timedelta(days=i)): alerts_at(matrices, offset + i, rules)
        for i in range((last_day - first_day).days + 1)
    }
