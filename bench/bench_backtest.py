"""Benchmark the backtest core: every day of a year for N synthetic series.

Usage:
    .venv/bin/python bench/bench_backtest.py                    # 1,000 series x 365 days
    .venv/bin/python bench/bench_backtest.py --series 10000 --days 90 --no-loop

It builds the synthetic account of bench_analysis.py (services of 100 tag values, every
series with a cost every day: the worst case, since each day's window then starts on a
different day) over `days + 364` days, so every evaluated day has a full year of baseline.
It times `detect_alerts_by_day` over the last `days` days (best of --repeat), and, unless
--no-loop, the straightforward way: build the matrices once and call `alerts_at` (a normal
run's core) for each day. It checks that both list the same alerts for every day, and
prints the number of alerts and how many (day, series) pairs needed the exact re-check.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_analysis import DAY, synthetic_history  # noqa: E402

from _util.detection.alert_rules import alerts_at  # noqa: E402
from _util.detection.alert_screen import alerts_by_day  # noqa: E402
from _util.detection.series_matrix import build_matrices  # noqa: E402
from _util.report import Rules  # noqa: E402
from procAmzAlerts import history_start  # noqa: E402


def _best_seconds(fn, repeat: int):
    best, result = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--z", type=float, default=3.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--no-loop", action="store_true",
                        help="skip timing the per-day loop (slow for many series)")
    args = parser.parse_args()

    rules = Rules(z=args.z)
    history = synthetic_history(args.series,
                                days=args.days + rules.lookback_days - 1 + rules.echo_days)
    first = DAY - dt.timedelta(days=args.days - 1)
    print(f"backtest benchmark: {args.series} series, {args.days} days evaluated, "
          f"lookback {rules.lookback_days} days, {len(history):,} rows, best of {args.repeat}")

    start = history_start(first, rules)
    first_row = (first - start).days

    def screened():
        matrices = build_matrices(history, start, DAY)
        return alerts_by_day(matrices, rules, first_row)

    seconds, result = _best_seconds(screened, args.repeat)
    by_day = result.by_day
    alerts = sum(len(a) for a in by_day.values())
    print(f"detect_alerts_by_day: {seconds:.2f} s, {alerts} alerts; {result.rechecked:,} of "
          f"{result.pairs:,} (day, series) pairs re-checked exactly")

    if not args.no_loop:
        def loop():
            matrices = build_matrices(history, start, DAY)
            return {first + dt.timedelta(days=i): alerts_at(matrices, first_row + i, rules)
                    for i in range(args.days)}
        loop_seconds, by_day_loop = _best_seconds(loop, 1)
        same = by_day_loop == by_day
        print(f"alerts_at per day (one normal run per day, matrices built once): "
              f"{loop_seconds:.2f} s; same alerts every day: {same}; "
              f"{loop_seconds / seconds:.1f}x")


if __name__ == "__main__":
    main()
