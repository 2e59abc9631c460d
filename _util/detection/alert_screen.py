"""Every day of a range at once (backtests, alert episodes): screen cheaply, re-check exactly.

A screen over all (day, series) pairs keeps those that might fire: prefix sums for
spikes and one EWM walk per series for trends, each with a bound on its rounding. The kept
windows are evaluated by the same code as a normal run, so every day lists exactly the
alerts, with exactly the numbers, that a normal run for that day reports.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

from _util.detection.alert_rules import (
    LONG_MEAN_DAYS,
    SHORT_MEAN_DAYS,
    TIE_EPS,
    WEEKDAY_MIN_BASELINE,
    ewm_consts,
    fired_alerts,
    macd_walk,
    rank_key,
    trend_moved,
    window_stats,
    with_top_groups,
)
from _util.detection.series_matrix import SeriesMatrices
from _util.report import WEEKDAY, Alert, Rules

# Error bounds below are multiplied by this: the screen may keep too many pairs (they are
# re-checked), never too few.
SCREEN_SAFETY = 16.0
EPS = float(np.finfo(np.float64).eps)
# Elements of one screening block (days x series).
SCREEN_ELEMENTS = 1 << 19



def _take(a: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """a[rows[i, s], s] for a (rows x series) matrix and (days x series) row numbers."""
    return np.take_along_axis(a, rows, axis=0)


def _prefix(y: np.ndarray, step: int) -> np.ndarray:
    """P[x] = the sum of y[r] over rows r < x with r = x (mod step), for x = 0..rows."""
    n_rows, n = y.shape
    padded = np.vstack([y, np.zeros((-n_rows % step, n))])
    same_class = np.cumsum(padded.reshape(-1, step, n), axis=0).reshape(-1, n)[:n_rows]
    return np.vstack([np.zeros((step, n)), same_class])[:n_rows + 1]


def _screen_spikes(values: np.ndarray, start: np.ndarray, base_days: np.ndarray,
                   rules: Rules) -> np.ndarray:
    """Which (day, series) pairs could fire a spike: a superset of those that do.

    Window means and variances come from prefix sums (O(days) per series instead of
    O(days x lookback)); their rounding differs from the exact sums', so each comes with
    a bound on the difference, and a pair is dropped only if it cannot fire anywhere
    inside the bounds. `start`, `base_days` are per evaluated day t = L-1+i and series.
    With weekday seasonality the prefix sums run over every 7th row.
    """
    n_rows, n = values.shape
    lb = rules.lookback_days
    nonzero = values != 0.0
    shift = values.sum(axis=0) / np.maximum(nonzero.sum(axis=0), 1)
    y = values - shift
    weekday = rules.seasonality == WEEKDAY
    step = 7 if weekday else 1
    p1, p2 = _prefix(y, step), _prefix(y * y, step)
    y1_total = np.abs(y).sum(axis=0)
    y2_total = (y * y).sum(axis=0)
    x1_total = np.abs(values).sum(axis=0)
    t = np.arange(lb - 1, n_rows)[:, None]
    # The baseline's first row: the series' start, or its first day with D's weekday.
    rows = np.minimum(start + (t - start) % step, n_rows)
    baseline = np.maximum((t - rows) // step, 0) if weekday else base_days
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        nb = baseline.astype(float)
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
    maybe = up | down | unsure
    if weekday:
        maybe &= baseline >= WEEKDAY_MIN_BASELINE
    return maybe


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
    for r, fast, slow, macd, sig in macd_walk(values, np.minimum(first, n_rows), rules):
        fast_all[r], slow_all[r], sig_all[r] = fast, slow, sig
        np.subtract(macd, sig, out=gap_all[r])
    consts = [ewm_consts(s) for s in (rules.ema_fast, rules.ema_slow, rules.signal_span)]
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

        def window_means(days: int) -> np.ndarray:
            """`recent_mean` of every window, in its order of additions (same bits)."""
            days = min(days, lb)
            acc = np.zeros(start.shape)
            for r in range(lb - days, lb):
                acc += block[r:r + start.shape[0]]
            return acc / max(days, 1)

        recent_mean = window_means(rules.min_history_days)
        maybe = _screen_spikes(block, start, base_days, rules)
        trend_ok = recent_mean >= rules.min_daily_usd - TIE_EPS
        if trend_ok.any():
            trend_ok &= trend_moved(window_means(SHORT_MEAN_DAYS), window_means(LONG_MEAN_DAYS),
                                    rules)
        if trend_ok.any():
            maybe |= trend_ok & _screen_trends(block, start, recent_mean, rules)
        days, cols = np.nonzero(maybe & history_ok)
        days_out.append(days)
        cols_out.append(cols + lo)
    if not days_out:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    return np.concatenate(days_out), np.concatenate(cols_out)


@dataclass(frozen=True)
class DayAlerts:
    """The alerts of every day of a range, with how much work the screen saved."""

    by_day: dict[dt.date, tuple[Alert, ...]]
    pairs: int
    rechecked: int


def alerts_by_day(matrices: SeriesMatrices, rules: Rules, first_row: int) -> DayAlerts:
    """`alerts_at` for every row from `first_row` (at least `lookback_days - 1`, and
    `echo_days` more for the echoes of the first days) to the last, vectorised across
    days and series.

    A screen over all (day, series) pairs keeps those that might fire (prefix sums for
    spikes, one EWM walk per series for trends, each with a rounding bound); the kept
    windows are then evaluated by the same code as a normal run. Every day therefore
    lists exactly the alerts, with exactly the numbers, that a normal run reports.
    """
    lb = rules.lookback_days
    n_rows = len(matrices.service.days)
    skip = first_row - (lb - 1)  # window i ends on row i + lb - 1
    assert skip >= 0, "first_row must leave a whole window before it"
    days = matrices.service.days[first_row:]
    found: dict[int, list[Alert]] = {i: [] for i in range(len(days))}
    pairs = rechecked = 0
    for matrix in (matrices.service, matrices.group):
        pairs += len(days) * matrix.values.shape[1]
        cand_days, cand_cols = _candidates(matrix.values, rules)
        keep = cand_days >= skip
        cand_days, cand_cols = cand_days[keep], cand_cols[keep]
        rechecked += len(cand_days)
        stats, firing = window_stats(matrix.values, cand_days, cand_cols, rules)
        fired = fired_alerts(matrix, cand_days, cand_cols, stats, firing, rules)
        for k, alert in with_top_groups(fired, matrices, cand_days, cand_cols, stats, lb, rules):
            found[int(cand_days[k]) - skip].append(alert)
    by_day = {days[i].date(): tuple(sorted(alerts, key=rank_key))
              for i, alerts in found.items()}
    assert n_rows - first_row == len(by_day)
    return DayAlerts(by_day=by_day, pairs=pairs, rechecked=rechecked)
