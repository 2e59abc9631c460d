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
from _util.report import Alert, Rules

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
        mean = np.where(base_days > 0, row_sum(values, 0, n_days - 1, start) / base_days,
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
    recent_mean = row_sum(values, n_days - recent, n_days) / max(recent, 1)
    macd, signal, macd_prev, signal_prev = (np.zeros(n) for _ in range(4))
    for t, _, _, m, s in macd_walk(values, start, rules):
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


def alerts_of(matrix: SeriesMatrix, cols: np.ndarray, stats: SeriesStats,
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
        total = row_sum(values, 0, lookback - 1, starts[mine])
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
        found = alerts_of(matrix, cols, stats, rules_fire(stats, rules))
        alerts += [a for _, a in with_top_groups(found, matrices, np.full(len(cols), lo),
                                                  cols, stats, row + 1 - lo)]
    alerts.sort(key=rank_key)
    return tuple(alerts)


def with_top_groups(found: list[tuple[int, Alert]], matrices: SeriesMatrices,
                     window_lo: np.ndarray, cols: np.ndarray, stats: SeriesStats,
                     lookback: int) -> list[tuple[int, Alert]]:
    """The (position, alert) pairs of `alerts_of`, service-level ones with their top
    group named."""
    service = [(k, a) for k, a in found if a.group is None]
    ks = np.array([k for k, _ in service], dtype=np.int64)
    named = _name_top_groups([a for _, a in service], matrices, matrices.group.values,
                             window_lo[ks], cols[ks], stats.start[ks],
                             stats.baseline_days[ks], lookback)
    return list(zip(ks.tolist(), named)) + [(k, a) for k, a in found if a.group is not None]
