"""The rules over series matrices: statistics, firing, and the alerts they make.

Every sum is added row by row in a fixed order, so a series' numbers depend only on its
own values and a window evaluated anywhere (a normal run, a backtest's re-check) gives
the same bits. The EWMs are pandas' `ewm(span=..., adjust=False)` recursion, vectorised
across series.
"""
from __future__ import annotations

from dataclasses import dataclass
from dataclasses import replace as dataclass_replace

import numpy as np

from _util.alert_kinds import DOWN, SPIKE, TREND, UP
from _util.detection.series_matrix import SeriesMatrices, SeriesMatrix
from _util.report import WEEKDAY, Alert, Rules

# Ties within floating-point rounding count as reaching a threshold, so a z of exactly Z
# or a change of exactly MIN_DELTA fires whatever order the sums were added in.
TIE_EPS = 1e-9
# A standard deviation this small relative to the mean is a constant series seen through
# rounding (the mean of 300 x $0.10 is not exactly $0.10 in binary).
ZERO_STD_REL = 1e-9
# Series evaluated at a time: bounds the temporaries (about block x days x 8 bytes).
SERIES_BLOCK = 1 << 14
# Elements of one block of re-checked windows (and of top-group windows).
RECHECK_ELEMENTS = 1 << 21
# The trend gate compares the mean daily cost of the last week with the last four weeks'.
SHORT_MEAN_DAYS = 7
LONG_MEAN_DAYS = 28
# With weekday seasonality a spike needs this many same-weekday days in its baseline.
WEEKDAY_MIN_BASELINE = 8


def ewm_alpha(span: int) -> float:
    """The smoothing factor pandas derives from a span, computed the way pandas does.

    pandas turns a span into a centre of mass and then into alpha; doing the same keeps
    the vectorised recursion bit-for-bit equal to `Series.ewm(span=..., adjust=False)`.
    """
    com = (float(span) - 1.0) / 2.0
    return 1.0 / (1.0 + com)


def ewm_consts(span: int) -> tuple[float, float, float]:
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


def macd_walk(values: np.ndarray, start: np.ndarray, rules: Rules):
    """Walk the days of `values` (days x series, or days x days' windows x series): yield
    (row, fast EMA, slow EMA, MACD, signal) for every row from the earliest start.

    Each series' EMAs start on its row `start` with that day's cost (pandas `adjust=False`);
    values before a series' start are meaningless. The yielded arrays are reused.
    """
    shape = values.shape[1:]
    consts = [ewm_consts(s) for s in (rules.ema_fast, rules.ema_slow, rules.signal_span)]
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


def row_sum(values: np.ndarray, lo: int, hi: int, start: np.ndarray | None = None) -> np.ndarray:
    """Sum of rows lo..hi-1 added one row at a time, in row order; with `start`, each
    column's rows before its start count as zero.

    Every sum here is made this way so that a series' result depends only on its own
    values, not on which other series share the matrix or how numpy would split a
    reduction: a backtest then reproduces a normal run's numbers bit for bit.
    """
    return rows_sum(values, range(lo, hi), start)


def rows_sum(values: np.ndarray, rows: range, start: np.ndarray | None = None) -> np.ndarray:
    """`row_sum` over any ascending range of rows (a step of 7 takes one weekday)."""
    acc = np.zeros(values.shape[1:])
    first_start = last_start = rows.start
    if start is not None and start.size:
        first_start, last_start = int(start.min()), int(start.max())
    for r in rows:
        if r >= last_start:
            acc += values[r]
        elif r >= first_start:
            acc += np.where(start <= r, values[r], 0.0)
    return acc


def baseline_rows(n_days: int, rules: Rules) -> range:
    """The rows of a spike's baseline in a window of `n_days` rows whose last is D: every
    day before D, or with weekday seasonality the days with D's day of the week. Rows
    before a series' start are not its days."""
    if rules.seasonality == WEEKDAY:
        return range((n_days - 1) % 7, n_days - 1, 7)
    return range(0, n_days - 1)


def baseline_count(rows: range, start: np.ndarray) -> np.ndarray:
    """How many of `rows` each series has (those on or after its start)."""
    if not len(rows):
        return np.zeros(start.shape, dtype=np.int64)
    first = np.maximum(start - rows.start + rows.step - 1, 0) // rows.step
    return np.maximum(len(rows) - first, 0).astype(np.int64)


@dataclass(frozen=True)
class SeriesStats:
    """What the rules look at, per series, on the last day D of a window.

    `exists` is False for a series with no non-zero day in the window. `baseline_days`
    counts the series' days before D; `spike_days` those of the spike baseline (fewer with
    weekday seasonality), over which `mean` and `std` are taken. `mean7` and `mean28` are
    the mean daily costs of the 7 and 28 days ending on D. Undefined statistics are NaN.
    """

    exists: np.ndarray
    start: np.ndarray
    baseline_days: np.ndarray
    spike_days: np.ndarray
    cost: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    zscore: np.ndarray
    recent_mean: np.ndarray
    mean7: np.ndarray
    mean28: np.ndarray
    macd: np.ndarray
    signal: np.ndarray
    macd_prev: np.ndarray
    signal_prev: np.ndarray


def recent_mean(values: np.ndarray, days: int) -> np.ndarray:
    """Mean daily cost of the last `days` rows (all rows if fewer); days before a
    series' start are zeros, as everywhere in its window."""
    n_days = values.shape[0]
    days = min(days, n_days)
    return row_sum(values, n_days - days, n_days) / max(days, 1)


def _stats_block(values: np.ndarray, rules: Rules) -> dict[str, np.ndarray]:
    n_days, n = values.shape
    nonzero = values != 0.0
    exists = nonzero.any(axis=0)
    start = np.where(exists, nonzero.argmax(axis=0), n_days)
    del nonzero
    base_days = np.maximum(n_days - 1 - start, 0)
    rows = baseline_rows(n_days, rules)
    spike_days = baseline_count(rows, start)
    cost = values[-1].copy()
    with np.errstate(invalid="ignore", divide="ignore"):
        # Days before the start are zeros, so they add nothing to the baseline sum.
        mean = np.where(spike_days > 0, rows_sum(values, rows, start) / spike_days, np.nan)
        squares = np.zeros(n)
        dev = np.empty(n)
        first = int(start.min()) if n else 0
        for r in rows:
            if r < first:
                continue
            np.subtract(values[r], mean, out=dev)
            dev[start > r] = 0.0
            dev *= dev
            squares += dev
        var = np.where(spike_days > 1, squares / (spike_days - 1), np.nan)
        std = np.sqrt(var)
        usable = np.isfinite(std) & (std > ZERO_STD_REL * np.maximum(1.0, np.abs(mean)))
        z = np.where(usable, (cost - mean) / np.where(usable, std, 1.0), np.nan)
    macd, signal, macd_prev, signal_prev = (np.zeros(n) for _ in range(4))
    for t, _, _, m, s in macd_walk(values, start, rules):
        if t == n_days - 2:
            macd_prev[:], signal_prev[:] = m, s
        if t == n_days - 1:
            macd[:], signal[:] = m, s
            if n_days == 1:
                macd_prev[:], signal_prev[:] = m, s
    return dict(
        exists=exists, start=start, baseline_days=base_days, spike_days=spike_days, cost=cost,
        mean=mean, std=std, zscore=z,
        recent_mean=recent_mean(values, rules.min_history_days),
        mean7=recent_mean(values, SHORT_MEAN_DAYS), mean28=recent_mean(values, LONG_MEAN_DAYS),
        macd=macd, signal=signal, macd_prev=macd_prev, signal_prev=signal_prev,
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


def trend_moved(mean7: np.ndarray, mean28: np.ndarray, rules: Rules) -> np.ndarray:
    """The trend rule's materiality gate: |mean7 - mean28| >= max(P% of mean28, U dollars).

    A crossing on a flat series is noise (a steady series crosses its signal line every
    few days); the gate lets through only series that moved over the last month. P and U
    both 0 pass every series. Ties within rounding pass.
    """
    with np.errstate(invalid="ignore"):
        need = np.maximum(rules.trend_min_move_pct / 100.0 * np.abs(mean28),
                          rules.trend_min_move_usd)
        return np.abs(mean7 - mean28) >= need - TIE_EPS


def rules_fire(stats: SeriesStats, rules: Rules) -> Firing:
    """Apply the spike and trend rules of issue 3 (with the percentage floor of issue 8
    and the trend gate and weekday baseline of issue 13).

    Spike: at least `min_history_days` baseline days (and 8 same-weekday ones with weekday
    seasonality), a non-zero std, |z| >= Z and a dollar change of at least `min_delta_usd`
    (and `min_delta_pct` % of |baseline mean|) in the same direction. Trend: the same
    history, a mean over the last `min_history_days` days (D included) of at least
    `min_daily_usd`, a material move (`trend_moved`), and MACD crossing its signal between
    D-1 and D. Ties within rounding reach the threshold.
    """
    history_ok = stats.exists & (stats.baseline_days >= rules.min_history_days)
    with np.errstate(invalid="ignore"):
        delta = stats.cost - stats.mean
        z = stats.zscore
        usd_floor = rules.min_delta_usd - TIE_EPS
        pct_floor = rules.min_delta_pct / 100.0 * np.abs(stats.mean) - TIE_EPS
        spike_ok = history_ok & np.isfinite(z)
        if rules.seasonality == WEEKDAY:
            spike_ok &= stats.spike_days >= WEEKDAY_MIN_BASELINE
        spike_up = spike_ok & (z >= rules.z - TIE_EPS) & (delta >= usd_floor)
        spike_down = spike_ok & (z <= -rules.z + TIE_EPS) & (-delta >= usd_floor)
        if rules.min_delta_pct > 0:
            spike_up &= delta >= pct_floor
            spike_down &= -delta >= pct_floor
        trend_ok = (history_ok & (stats.recent_mean >= rules.min_daily_usd - TIE_EPS)
                    & trend_moved(stats.mean7, stats.mean28, rules))
    now = _sign_with_dead_zone(stats.macd - stats.signal, stats.recent_mean)
    before = _sign_with_dead_zone(stats.macd_prev - stats.signal_prev, stats.recent_mean)
    trend_up = trend_ok & (before <= 0) & (now > 0)
    trend_down = trend_ok & (before >= 0) & (now < 0)
    return Firing(spike_up=spike_up, spike_down=spike_down, trend_up=trend_up,
                  trend_down=trend_down)


def window_stats(values: np.ndarray, window_lo: np.ndarray, cols: np.ndarray,
                 rules: Rules) -> tuple[SeriesStats, Firing]:
    """The statistics and firing of the windows values[lo:lo+L, col] (L = lookback) for
    each (window_lo[k], cols[k]), by `series_stats`: the same arithmetic as a normal run
    for the window's last day, so the same numbers and decisions."""
    lb = rules.lookback_days
    width = max(1, RECHECK_ELEMENTS // lb)
    offsets = np.arange(lb)[:, None]
    parts = []
    for lo in range(0, len(window_lo), width):
        windows = values[window_lo[None, lo:lo + width] + offsets, cols[None, lo:lo + width]]
        parts.append(series_stats(windows, rules))
    if not parts:
        parts.append(series_stats(np.zeros((lb, 0)), rules))
    stats = SeriesStats(**{f: np.concatenate([getattr(p, f) for p in parts])
                           for f in SeriesStats.__dataclass_fields__})
    return stats, rules_fire(stats, rules)


def echo_lags(values: np.ndarray, window_lo: np.ndarray, cols: np.ndarray, firing: Firing,
              rules: Rules) -> np.ndarray:
    """For each trend-firing position k (window values[lo:lo+L, col], day D its last row):
    how many days before D its series last fired a spike, within D-echo_days..D; -1 for
    none (and for positions that fire no trend).

    A spike makes the MACD cross on its way up and again on its way down; such a crossing
    says nothing the spike alert did not. Each earlier day is evaluated as a normal run
    for it would be (`window_stats` on the window ending there), only for the few series
    that cross, so a backtest and a normal run find the same echoes.
    """
    trend = firing.trend_up | firing.trend_down
    if rules.echo_days <= 0:
        return np.full(len(cols), -1)
    lag = np.where(trend & (firing.spike_up | firing.spike_down), 0, -1)
    todo = np.flatnonzero(trend & (lag < 0))
    # Every earlier day of every such position in one evaluation: one walk over the
    # window's days instead of one per day back (each window's numbers are its own).
    days_back = np.repeat(np.arange(1, rules.echo_days + 1), len(todo))
    position = np.tile(todo, rules.echo_days)
    lo = window_lo[position] - days_back
    keep = lo >= 0
    position, days_back, lo = position[keep], days_back[keep], lo[keep]
    if not len(position):
        return lag
    _, earlier = window_stats(values, lo, cols[position], rules)
    spiked = earlier.spike_up | earlier.spike_down
    # The nearest earlier spike: days back ascend, so the last write per position wins
    # when written from the farthest to the nearest.
    hit = np.flatnonzero(spiked)[::-1]
    lag[position[hit]] = days_back[hit]
    return lag


def alerts_of(matrix: SeriesMatrix, cols: np.ndarray, stats: SeriesStats, firing: Firing,
              echo_rows: np.ndarray) -> list[tuple[int, Alert]]:
    """(position in `stats`, alert) for every firing series; `cols[k]` is the matrix
    column of position k, `echo_rows[k]` the matrix row of the spike a trend alert echoes
    (-1: none)."""
    out: list[tuple[int, Alert]] = []
    days = matrix.days.date
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
        echoes = [None if r < 0 else days[r] for r in echo_rows[ks].tolist()]
        rows = zip(ks.tolist(), services, groups, cost.tolist(), mean.tolist(),
                   stats.std[ks].tolist(), (cost - mean).tolist(), stats.zscore[ks].tolist(),
                   stats.macd[ks].tolist(), stats.signal[ks].tolist(),
                   stats.mean7[ks].tolist(), stats.mean28[ks].tolist(), echoes)
        for (k, service, group, usd, base_mean, base_std, delta, z, macd, signal, mean7,
             mean28, echo_of) in rows:
            out.append((k, Alert(
                kind=kind, direction=direction, service=str(service),
                group=None if group is None else str(group),
                usd=usd, baseline_mean=base_mean, baseline_std=base_std, delta_usd=delta,
                zscore=z if spike else None,
                macd=None if spike else macd,
                signal=None if spike else signal,
                mean7=None if spike else mean7,
                mean28=None if spike else mean28,
                echo_of=None if spike else echo_of,
            )))
    return out


def fired_alerts(matrix: SeriesMatrix, window_lo: np.ndarray, cols: np.ndarray,
                 stats: SeriesStats, firing: Firing, rules: Rules) -> list[tuple[int, Alert]]:
    """`alerts_of` the windows values[lo:lo+L, col] whose last rows are the alerts' days,
    trend alerts with the spike they echo."""
    lags = echo_lags(matrix.values, window_lo, cols, firing, rules)
    day_rows = window_lo + rules.lookback_days - 1
    return alerts_of(matrix, cols, stats, firing, np.where(lags >= 0, day_rows - lags, -1))


def _name_top_groups(alerts: list[Alert], matrices: SeriesMatrices, group_values: np.ndarray,
                     window_lo: np.ndarray, service_cols: np.ndarray, starts: np.ndarray,
                     baseline_days: np.ndarray, lookback: int, rules: Rules) -> list[Alert]:
    """Service-level alerts with the group whose change (cost on D minus its mean over
    the service's baseline days, `baseline_rows`) went furthest in the alert's direction;
    measured over the same days the groups' changes add up to the service's.

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
        total = rows_sum(values, baseline_rows(lookback, rules), starts[mine])
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


def rank_key(alert: Alert) -> tuple:
    """Largest dollar change first; an undefined change (a weekday baseline without
    days) ranks as none."""
    change = abs(alert.delta_usd) if alert.delta_usd == alert.delta_usd else 0.0
    return (-change, alert.kind, alert.direction, alert.service,
            alert.group is not None, alert.group or "")


def alerts_at(matrices: SeriesMatrices, row: int, rules: Rules) -> tuple[Alert, ...]:
    """The alerts of the day on `row` of the matrices, over the window of
    `rules.lookback_days` rows ending there (fewer if the matrices start later): the
    core of a normal run. Echoes are found on the `echo_days` rows before `row`, so the
    matrices should start that many rows before the window.
    """
    lo = max(0, row - rules.lookback_days + 1)
    alerts: list[Alert] = []
    for matrix in (matrices.service, matrices.group):
        stats = series_stats(matrix.values[lo:row + 1], rules)
        cols = np.arange(matrix.values.shape[1])
        window_lo = np.full(len(cols), row - rules.lookback_days + 1)
        found = fired_alerts(matrix, window_lo, cols, stats, rules_fire(stats, rules), rules)
        alerts += [a for _, a in with_top_groups(found, matrices, np.full(len(cols), lo),
                                                 cols, stats, row + 1 - lo, rules)]
    alerts.sort(key=rank_key)
    return tuple(alerts)


def with_top_groups(found: list[tuple[int, Alert]], matrices: SeriesMatrices,
                    window_lo: np.ndarray, cols: np.ndarray, stats: SeriesStats,
                    lookback: int, rules: Rules) -> list[tuple[int, Alert]]:
    """The (position, alert) pairs of `alerts_of`, service-level ones with their top
    group named."""
    service = [(k, a) for k, a in found if a.group is None]
    ks = np.array([k for k, _ in service], dtype=np.int64)
    named = _name_top_groups([a for _, a in service], matrices, matrices.group.values,
                             window_lo[ks], cols[ks], stats.start[ks],
                             stats.spike_days[ks], lookback, rules)
    return list(zip(ks.tolist(), named)) + [(k, a) for k, a in found if a.group is not None]
