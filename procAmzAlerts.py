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

Speed. Each level is one dense days x series matrix; statistics are column reductions and
the EWMs one recursion over the days, vectorised across series. Every sum is added row by
row in a fixed order (and service totals in whole nano-dollars), so a series' numbers
depend only on its own values: a backtest (`alerts_by_day`) evaluates every day of a
range from one matrix build and reports, bit for bit, what a normal run reports. It
screens all (day, series) pairs at once with cheap prefix sums and one EWM walk per
series, each with a rounding bound, and evaluates exactly only the few pairs that might
fire.
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
# Service sums are exact in whole nano-dollars up to this daily cost (int64 holds 9.2e18).
NANOS_PER_USD = 1e9
EXACT_SUM_LIMIT_USD = 9e9


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
        service_values = _service_sums(group_values, col_starts)
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


def _service_sums(group_values: np.ndarray, col_starts: np.ndarray) -> np.ndarray:
    """Each service's daily cost: the sum of its group columns, in whole nano-dollars.

    Summing integers makes the result independent of the order and the number of the
    columns added. That matters for a backtest: its matrices span more days, so a service
    can have columns for groups that have no cost in a given day's window (zeros), and
    a float sum with them (numpy adds long runs pairwise) could differ in the last bit
    from a normal run's, and a threshold decision with it. A service spending over
    $9 billion a day (which would overflow) falls back to float sums.
    """
    n_days = group_values.shape[0]
    out = np.empty((n_days, len(col_starts)))
    rows = max(1, ROW_CHUNK // max(group_values.shape[1], 1))
    for lo in range(0, n_days, rows):
        block = group_values[lo:lo + rows]
        if np.abs(block).sum(axis=1).max(initial=0.0) < EXACT_SUM_LIMIT_USD:
            nanos = np.rint(block * NANOS_PER_USD).astype(np.int64)
            out[lo:lo + rows] = np.add.reduceat(nanos, col_starts, axis=1) / NANOS_PER_USD
        else:
            log.warning("a day costs over $%.0f in all: summing service costs as floats",
                        EXACT_SUM_LIMIT_USD)
            out[lo:lo + rows] = np.add.reduceat(block, col_starts, axis=1)
    return out


def _ewm_consts(span: int) -> tuple[float, float, float]:
    """(old, new, den) of one step of pandas' `ewm(span=..., adjust=False)`."""
    alpha = ewm_alpha(span)
    return 1.0 - alpha, alpha, (1.0 - alpha) + alpha


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


def _macd_walk(values: np.ndarray, start: np.ndarray, rules: Rules):
    """Walk the days of `values` (days x series, or days x days' windows x series): yield
    (row, fast EMA, slow EMA, MACD, signal) for every row from the earliest start.

    Each series' EMAs start on its row `start` with that day's cost (pandas `adjust=False`);
    values before a series' start are meaningless. The yielded arrays are reused.
    """
    shape = values.shape[1:]
    consts = [_ewm_consts(s) for s in (rules.ema_fast, rules.ema_slow, rules.signal_span)]
    fast, slow, sig, macd, tmp = (np.zeros(shape) for _ in range(5))
    t0 = int(start.min()) if start.size else values.shape[0]
    for t in range(t0, values.shape[0]):
        x = values[t]
        first = start == t
        _ewm_step(fast, x, *consts[0], first, tmp)
        _ewm_step(slow, x, *consts[1], first, tmp)
        np.subtract(fast, slow, out=macd)
        _ewm_step(sig, macd, *consts[2], first, tmp)
        yield t, fast, slow, macd, sig


def macd_signal(values: np.ndarray, start: np.ndarray, rules: Rules) -> tuple[np.ndarray, np.ndarray]:
    """MACD and signal for every day and series of `values` (days x series); rows before a
    series' start are meaningless and left at 0."""
    macd_all = np.zeros(values.shape)
    sig_all = np.zeros(values.shape)
    for t, _, _, macd, sig in _macd_walk(values, start, rules):
        macd_all[t] = macd
        sig_all[t] = sig
    return macd_all, sig_all


def _row_sum(values: np.ndarray, lo: int, hi: int, start: np.ndarray | None = None) -> np.ndarray:
    """Sum of rows lo..hi-1 added one row at a time, in row order; with `start`, each
    column's rows before its start count as zero.

    Every sum here is made this way so that a series' result depends only on its own
    values, not on which other series share the matrix or how numpy would split a
    reduction: a backtest then reproduces a normal run's numbers bit for bit.
    """
    acc = np.zeros(values.shape[1:])
    last_start = lo
    if start is not None and start.size:
        lo, last_start = max(lo, int(start.min())), int(start.max())
    for r in range(lo, hi):
        acc += values[r] if r >= last_start else np.where(start <= r, values[r], 0.0)
    return acc


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
    with np.errstate(invalid="ignore", divide="ignore"):
        # Days before the start are zeros, so they add nothing to the baseline sum.
        mean = np.where(base_days > 0, _row_sum(values, 0, n_days - 1, start) / base_days,
                        np.nan)
        squares = np.zeros(n)
        dev = np.empty(n)
        for r in range(int(start.min()) if n else 0, n_days - 1):
            np.subtract(values[r], mean, out=dev)
            dev[start > r] = 0.0
            dev *= dev
            squares += dev
        var = np.where(base_days > 1, squares / (base_days - 1), np.nan)
        std = np.sqrt(var)
        usable = np.isfinite(std) & (std > ZERO_STD_REL * np.maximum(1.0, np.abs(mean)))
        z = np.where(usable, (cost - mean) / np.where(usable, std, 1.0), np.nan)
    recent = min(rules.min_history_days, n_days)
    recent_mean = _row_sum(values, n_days - recent, n_days) / max(recent, 1)
    macd, signal, macd_prev, signal_prev = (np.zeros(n) for _ in range(4))
    for t, _, _, m, s in _macd_walk(values, start, rules):
        if t == n_days - 2:
            macd_prev[:], signal_prev[:] = m, s
        if t == n_days - 1:
            macd[:], signal[:] = m, s
            if n_days == 1:
                macd_prev[:], signal_prev[:] = m, s
    return dict(
        exists=exists, start=start, baseline_days=base_days, cost=cost, mean=mean, std=std,
        zscore=z, recent_mean=recent_mean, macd=macd, signal=signal,
        macd_prev=macd_prev, signal_prev=signal_prev,
    )


def series_stats(values: np.ndarray, rules: Rules) -> SeriesStats:
    """Evaluate every series of a window (days x series; the last row is D) at once.

    Each series' numbers depend only on its own column, computed the same way whatever
    the matrix holds besides: a window cut out of a longer matrix gives the numbers a
    normal run for its last day gives.
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


def _alerts_of(matrix: SeriesMatrix, cols: np.ndarray, stats: SeriesStats,
               firing: Firing) -> list[tuple[int, Alert]]:
    """(position in `stats`, alert) for every firing series; `cols[k]` is the matrix
    column of position k."""
    out: list[tuple[int, Alert]] = []
    for kind, direction, mask in (
        (SPIKE, UP, firing.spike_up), (SPIKE, DOWN, firing.spike_down),
        (TREND, UP, firing.trend_up), (TREND, DOWN, firing.trend_down),
    ):
        ks = np.flatnonzero(mask)
        if not len(ks):
            continue
        spike = kind == SPIKE
        # Plain Python numbers in bulk: a backtest makes tens of thousands of alerts.
        services = matrix.services[cols[ks]].tolist()
        groups = matrix.groups[cols[ks]].tolist()
        cost, mean = stats.cost[ks], stats.mean[ks]
        rows = zip(ks.tolist(), services, groups, cost.tolist(), mean.tolist(),
                   stats.std[ks].tolist(), (cost - mean).tolist(), stats.zscore[ks].tolist(),
                   stats.macd[ks].tolist(), stats.signal[ks].tolist())
        for k, service, group, usd, base_mean, base_std, delta, z, macd, signal in rows:
            out.append((k, Alert(
                kind=kind, direction=direction, service=str(service),
                group=None if group is None else str(group),
                usd=usd, baseline_mean=base_mean, baseline_std=base_std, delta_usd=delta,
                zscore=z if spike else None,
                macd=None if spike else macd,
                signal=None if spike else signal,
            )))
    return out


def _name_top_groups(alerts: list[Alert], matrices: SeriesMatrices, group_values: np.ndarray,
                     window_lo: np.ndarray, service_cols: np.ndarray, starts: np.ndarray,
                     baseline_days: np.ndarray, lookback: int) -> list[Alert]:
    """Service-level alerts with the group whose change (cost on D minus its mean over
    the service's baseline days) went furthest in the alert's direction; measured over
    the same days the groups' changes add up to the service's.

    Alert k is service column `service_cols[k]` on the window
    group_values[window_lo[k]:window_lo[k] + lookback] whose service starts on its row
    `starts[k]`. Only groups with a cost in the window are candidates (a group with none
    did not move the service, and a backtest's longer matrices hold such empty columns).
    All alerts' groups are evaluated together, in blocks.
    """
    if not alerts:
        return []
    col_lo = np.searchsorted(matrices.parent, service_cols, side="left")
    col_hi = np.searchsorted(matrices.parent, service_cols, side="right")
    counts = col_hi - col_lo
    owner = np.repeat(np.arange(len(alerts)), counts)
    cols = np.concatenate([np.arange(lo, hi) for lo, hi in zip(col_lo, col_hi)])
    changes = np.empty(len(cols))
    present = np.empty(len(cols), dtype=bool)
    offsets = np.arange(lookback)[:, None]
    width = max(1, RECHECK_ELEMENTS // lookback)
    for lo in range(0, len(cols), width):
        mine = owner[lo:lo + width]
        values = group_values[window_lo[mine][None, :] + offsets, cols[None, lo:lo + width]]
        present[lo:lo + width] = (values != 0.0).any(axis=0)
        total = _row_sum(values, 0, lookback - 1, starts[mine])
        with np.errstate(invalid="ignore", divide="ignore"):
            changes[lo:lo + width] = values[-1] - total / baseline_days[mine]
    bounds = np.concatenate([[0], np.cumsum(counts)])
    named = []
    for k, alert in enumerate(alerts):
        seg = slice(int(bounds[k]), int(bounds[k + 1]))
        ok = present[seg]
        if not ok.any():
            named.append(alert)
            continue
        candidates, seg_cols = changes[seg][ok], cols[seg][ok]
        pick = int(np.argmax(candidates) if alert.direction == UP else np.argmin(candidates))
        named.append(dataclass_replace(alert, top_group=str(matrices.group.groups[seg_cols[pick]]),
                                       top_group_delta_usd=float(candidates[pick])))
    return named


def _rank_key(alert: Alert) -> tuple:
    return (-abs(alert.delta_usd), alert.kind, alert.direction, alert.service,
            alert.group is not None, alert.group or "")


def alerts_at(matrices: SeriesMatrices, row: int, rules: Rules) -> tuple[Alert, ...]:
    """The alerts of the day on `row` of the matrices, over the window of
    `rules.lookback_days` rows ending there (fewer if the matrices start later): the
    core of a normal run.
    """
    lo = max(0, row - rules.lookback_days + 1)
    alerts: list[Alert] = []
    for matrix in (matrices.service, matrices.group):
        stats = series_stats(matrix.values[lo:row + 1], rules)
        cols = np.arange(matrix.values.shape[1])
        found = _alerts_of(matrix, cols, stats, rules_fire(stats, rules))
        alerts += [a for _, a in _with_top_groups(found, matrices, np.full(len(cols), lo),
                                                  cols, stats, row + 1 - lo)]
    alerts.sort(key=_rank_key)
    return tuple(alerts)


def _with_top_groups(found: list[tuple[int, Alert]], matrices: SeriesMatrices,
                     window_lo: np.ndarray, cols: np.ndarray, stats: SeriesStats,
                     lookback: int) -> list[tuple[int, Alert]]:
    """The (position, alert) pairs of `_alerts_of`, service-level ones with their top
    group named."""
    service = [(k, a) for k, a in found if a.group is None]
    ks = np.array([k for k, _ in service], dtype=np.int64)
    named = _name_top_groups([a for _, a in service], matrices, matrices.group.values,
                             window_lo[ks], cols[ks], stats.start[ks],
                             stats.baseline_days[ks], lookback)
    return list(zip(ks.tolist(), named)) + [(k, a) for k, a in found if a.group is not None]


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


# --------------------------------------------------------------------------------------
# Every day of a range at once (backtests, episodes): screen cheaply, re-check exactly.
# --------------------------------------------------------------------------------------

# Error bounds below are multiplied by this: the screen may keep too many pairs (they are
# re-checked), never too few.
SCREEN_SAFETY = 16.0
EPS = float(np.finfo(np.float64).eps)
# Elements of one screening block (days x series) and of one block of re-checked windows.
SCREEN_ELEMENTS = 1 << 19
RECHECK_ELEMENTS = 1 << 21


def _take(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """a[rows[i, s], s] for a (rows x series) matrix and (days x series) row numbers."""
    return np.take_along_axis(a, rows, axis=0)


def _screen_spikes(values: np.ndarray, start: np.ndarray, base_days: np.ndarray,
                   rules: Rules) -> np.ndarray:
    """Which (day, series) pairs could fire a spike: a superset of those that do.

    Window means and variances come from prefix sums (O(days) per series instead of
    O(days x lookback)); their rounding differs from the exact sums', so each comes with
    a bound on the difference, and a pair is dropped only if it cannot fire anywhere
    inside the bounds. `start`, `base_days` are per evaluated day t = L-1+i and series.
    """
    n_rows, n = values.shape
    lb = rules.lookback_days
    t = np.arange(lb - 1, n_rows)[:, None]
    nonzero = values != 0.0
    shift = values.sum(axis=0) / np.maximum(nonzero.sum(axis=0), 1)
    y = values - shift
    p1 = np.vstack([np.zeros((1, n)), np.cumsum(y, axis=0)])
    p2 = np.vstack([np.zeros((1, n)), np.cumsum(y * y, axis=0)])
    y1_total = np.abs(y).sum(axis=0)
    y2_total = p2[-1]
    x1_total = np.abs(values).sum(axis=0)
    rows = np.minimum(start, n_rows)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        nb = base_days.astype(float)
        s1 = p1[lb - 1:n_rows] - _take(p1, rows)
        s2 = p2[lb - 1:n_rows] - _take(p2, rows)
        d_s1 = 4 * n_rows * EPS * y1_total + 4 * EPS * np.abs(s1)
        d_s2 = 4 * n_rows * EPS * y2_total + 4 * EPS * np.abs(s2)
        mean = shift + s1 / nb
        # The exact code's mean against the true one, and ours against the true one.
        err_code_mean = lb * EPS * x1_total / nb + 4 * EPS * np.abs(mean)
        err_mean = SCREEN_SAFETY * (err_code_mean + d_s1 / nb
                                    + 4 * EPS * (np.abs(shift) + np.abs(s1) / nb))
        var = (s2 - s1 * s1 / nb) / (nb - 1)
        err_var = (d_s2 + (2 * np.abs(s1) + d_s1) * d_s1 / nb) / (nb - 1) \
            + 8 * EPS * (np.abs(s2) + s1 * s1 / nb) / (nb - 1)
        shifted_mean = nb * err_code_mean ** 2 / (nb - 1)
        err_var += (lb + 4) * EPS * (np.maximum(var, 0) + err_var + shifted_mean) + shifted_mean
        err_var *= SCREEN_SAFETY
        cost = values[lb - 1:]
        delta = cost - mean
        err_delta = err_mean + 4 * EPS * (np.abs(cost) + np.abs(mean))
        hi, lo = delta + err_delta, delta - err_delta
        std_lo = np.sqrt(np.maximum(var - err_var, 0.0))
        z_min = (rules.z - TIE_EPS) * (1 - 1e-9)
        usd_floor = rules.min_delta_usd - TIE_EPS
        up = (hi > 0) & (hi >= usd_floor) & ((std_lo == 0) | (hi >= z_min * std_lo))
        down = (lo < 0) & (-lo >= usd_floor) & ((std_lo == 0) | (-lo >= z_min * std_lo))
        if rules.min_delta_pct > 0:
            pct_floor = rules.min_delta_pct / 100.0 * np.maximum(np.abs(mean) - err_mean, 0) \
                - TIE_EPS
            up &= hi >= pct_floor
            down &= -lo >= pct_floor
        # NaN or infinite bounds (overflow on absurd amounts) keep the pair.
        unsure = ~(np.isfinite(hi) & np.isfinite(lo) & np.isfinite(std_lo))
    return up | down | unsure


def _screen_trends(values: np.ndarray, start: np.ndarray, recent_mean: np.ndarray,
                   rules: Rules) -> np.ndarray:
    """Which (day, series) pairs could cross: a superset of those that do.

    A normal run starts a series' EWMs on the first day with cost inside its window, so
    for a series older than the window every day's EWMs start on a different day. Here
    each series gets one EWM walk over the whole range, from its first cost. Where a
    day's window starts there too the numbers are bit-identical; elsewhere the two
    differ by an amount that decays geometrically from the window's start, which is
    bounded from the walk's values there; a pair is dropped only if its crossing is
    decided either way inside the bounds.
    """
    n_rows, n = values.shape
    lb = rules.lookback_days
    t = np.arange(lb - 1, n_rows)[:, None]
    first = start[0]
    fast_all, slow_all, sig_all, gap_all = (np.zeros((n_rows, n)) for _ in range(4))
    for r, fast, slow, macd, sig in _macd_walk(values, np.minimum(first, n_rows), rules):
        fast_all[r], slow_all[r], sig_all[r] = fast, slow, sig
        np.subtract(macd, sig, out=gap_all[r])
    consts = [_ewm_consts(s) for s in (rules.ema_fast, rules.ema_slow, rules.signal_span)]
    decay = max(old / den for old, _, den in consts) * (1 + 1e-12)
    a_sig = consts[2][1] / consts[2][2]
    scale = np.abs(values).max(axis=0, initial=0.0)
    rounding = SCREEN_SAFETY * 64 * EPS * scale * (1 + sum(den / new for _, new, den in consts))
    rows = np.minimum(start, n_rows - 1)
    x0 = _take(values, rows)
    # At a window's start its EWMs equal that day's cost and its MACD and signal are 0.
    jump = np.abs(x0 - _take(fast_all, rows)) + np.abs(x0 - _take(slow_all, rows))
    jump_sig = np.abs(_take(sig_all, rows))
    same = start == first[None, :]
    tol = TIE_EPS * np.maximum(1.0, np.abs(recent_mean))

    def crossing_unknown(gap: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, ...]:
        with np.errstate(over="ignore", invalid="ignore"):
            err = decay ** steps * (jump * (1 + a_sig * steps) + jump_sig)
            err = np.where(same, 0.0, SCREEN_SAFETY * err + rounding)
        pos = gap + err > tol
        neg = gap - err < -tol
        zero = (gap - err <= tol) & (gap + err >= -tol)
        return pos, neg, zero

    steps = (t - start).astype(float)
    pos_now, neg_now, _ = crossing_unknown(gap_all[lb - 1:], steps)
    pos_before, neg_before, zero_before = crossing_unknown(gap_all[lb - 2:n_rows - 1], steps - 1)
    up = (neg_before | zero_before) & pos_now
    down = (pos_before | zero_before) & neg_now
    return up | down


def _candidates(values: np.ndarray, rules: Rules) -> tuple[np.ndarray, np.ndarray]:
    """(day index, series) of every pair that might fire, for days L-1.. of `values`."""
    n_rows, n = values.shape
    lb = rules.lookback_days
    width = max(1, SCREEN_ELEMENTS // max(n_rows, 1))
    days_out, cols_out = [], []
    for lo in range(0, n, width):
        block = values[:, lo:lo + width]
        rows = np.arange(n_rows)
        following = np.where(block != 0.0, rows[:, None], n_rows)
        following = np.minimum.accumulate(following[::-1], axis=0)[::-1]
        start = following[:n_rows - lb + 1]     # window i spans rows i .. i+L-1
        t = np.arange(lb - 1, n_rows)[:, None]
        base_days = t - start
        history_ok = (start <= t) & (base_days >= rules.min_history_days)
        if not history_ok.any():
            continue
        recent = min(rules.min_history_days, lb)
        recent_mean = np.zeros(start.shape)
        for r in range(lb - recent, lb):  # the order of _row_sum in a normal run
            recent_mean += block[r:r + start.shape[0]]
        recent_mean /= max(recent, 1)
        maybe = _screen_spikes(block, start, base_days, rules)
        trend_ok = recent_mean >= rules.min_daily_usd - TIE_EPS
        if trend_ok.any():
            maybe |= trend_ok & _screen_trends(block, start, recent_mean, rules)
        days, cols = np.nonzero(maybe & history_ok)
        days_out.append(days)
        cols_out.append(cols + lo)
    if not days_out:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(days_out), np.concatenate(cols_out)


def _recheck(values: np.ndarray, days: np.ndarray, cols: np.ndarray,
             rules: Rules) -> tuple[SeriesStats, Firing]:
    """The exact statistics of the candidate windows values[i:i+L, s], by series_stats:
    the same arithmetic a normal run does, so the same numbers and decisions."""
    lb = rules.lookback_days
    width = max(1, RECHECK_ELEMENTS // lb)
    offsets = np.arange(lb)[:, None]
    parts = []
    for lo in range(0, len(days), width):
        windows = values[days[None, lo:lo + width] + offsets, cols[None, lo:lo + width]]
        parts.append(series_stats(windows, rules))
    if not parts:
        parts.append(series_stats(np.zeros((lb, 0)), rules))
    stats = SeriesStats(**{f: np.concatenate([getattr(p, f) for p in parts])
                           for f in SeriesStats.__dataclass_fields__})
    return stats, rules_fire(stats, rules)


@dataclass(frozen=True)
class DayAlerts:
    """The alerts of every day of a range, with how much work the screen saved."""

    by_day: dict[dt.date, tuple[Alert, ...]]
    pairs: int
    rechecked: int


def alerts_by_day(matrices: SeriesMatrices, rules: Rules) -> DayAlerts:
    """`alerts_at` for every row from `lookback_days - 1` to the last, vectorised across
    days and series.

    A screen over all (day, series) pairs keeps those that might fire (prefix sums for
    spikes, one EWM walk per series for trends, each with a rounding bound); the kept
    windows are then evaluated by the same code as a normal run. Every day therefore
    lists exactly the alerts, with exactly the numbers, that a normal run reports.
    """
    lb = rules.lookback_days
    n_rows = len(matrices.service.days)
    days = matrices.service.days[lb - 1:]
    found: dict[int, list[Alert]] = {i: [] for i in range(len(days))}
    pairs = rechecked = 0
    for matrix in (matrices.service, matrices.group):
        pairs += len(days) * matrix.values.shape[1]
        cand_days, cand_cols = _candidates(matrix.values, rules)
        rechecked += len(cand_days)
        stats, firing = _recheck(matrix.values, cand_days, cand_cols, rules)
        fired = _alerts_of(matrix, cand_cols, stats, firing)
        for k, alert in _with_top_groups(fired, matrices, cand_days, cand_cols, stats, lb):
            found[int(cand_days[k])].append(alert)
    by_day = {days[i].date(): tuple(sorted(alerts, key=_rank_key))
              for i, alerts in found.items()}
    assert n_rows - lb + 1 == len(by_day)
    return DayAlerts(by_day=by_day, pairs=pairs, rechecked=rechecked)


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
    start = first_day - dt.timedelta(days=rules.lookback_days - 1)
    result = alerts_by_day(build_matrices(history, start, last_day), rules)
    log.info("detected alerts for %d days (%s..%s): %d alerts; %d of %d (day, series) "
             "pairs re-checked", len(result.by_day), first_day, last_day,
             sum(len(a) for a in result.by_day.values()), result.rechecked, result.pairs)
    return result.by_day
