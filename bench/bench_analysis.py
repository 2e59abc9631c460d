"""Benchmark the analysis stage: detection and summaries on N synthetic series x 365 days.

Usage:
    .venv/bin/python bench/bench_analysis.py                     # 1k, 10k, 100k series
    .venv/bin/python bench/bench_analysis.py --sizes 10000 --reference-size 2000

Each size runs in a fresh process so its peak memory is its own. For each size it prints
the milliseconds of `detect_alerts` and `summarise` (best of --repeat runs), the peak of
memory allocated while analysing (tracemalloc, a separate run: tracing slows the code),
the process's maximum resident set (the input frame included) and the number of alerts.
Then, on --reference-size series, it times the per-series reference implementation
(tests/reference_detection.py, a pandas groupby-apply) against the vectorised code on the
same data in the same process and prints the ratio.

The synthetic account: services of 100 tag values each, every series with a cost every day
(a dense year, the worst case), log-normal levels, 10 % noise, a weekly pattern and a few
steps and spikes. Service and group columns are categorical, as a loader can hand them
cheaply; --strings uses plain Python strings instead (what a naive loader returns).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _util.report import Rules  # noqa: E402
from procAmzAlerts import detect_alerts  # noqa: E402
from procSummaries import summarise  # noqa: E402

DAY = dt.date(2024, 12, 31)
GROUPS_PER_SERVICE = 100


def synthetic_history(n_series: int, days: int = 365, strings: bool = False,
                      seed: int = 7) -> pd.DataFrame:
    """A dense history of `n_series` (service, group) series over `days` days ending DAY."""
    rng = np.random.default_rng(seed)
    n_groups = min(GROUPS_PER_SERVICE, n_series)
    n_services = -(-n_series // n_groups)
    dates = pd.date_range(end=pd.Timestamp(DAY), periods=days, freq="D")
    svc_code = (np.arange(n_series) // n_groups).astype(np.int32)
    grp_code = (np.arange(n_series) % n_groups).astype(np.int32)
    level = rng.lognormal(mean=1.0, sigma=1.5, size=n_series)
    weekly = np.where(dates.dayofweek >= 5, 0.8, 1.0)
    amounts = np.empty((days, n_series))
    for t in range(days):  # row by row keeps the temporaries small
        amounts[t] = level * weekly[t] * (1.0 + 0.1 * rng.standard_normal(n_series))
    steps = rng.random(n_series) < 0.02
    amounts[days // 2:, steps] *= 2.0
    spikes = rng.random(n_series) < 0.01
    amounts[-1, spikes] *= 4.0
    np.maximum(amounts, 0.0, out=amounts)
    services = np.array([f"Amazon Synthetic Service {i:05d}" for i in range(n_services)],
                        dtype=object)
    groups = np.array([f"team-{j:03d}" for j in range(n_groups)], dtype=object)
    service_col = pd.Categorical.from_codes(np.tile(svc_code, days), services)
    group_col = pd.Categorical.from_codes(np.tile(grp_code, days), groups)
    frame = pd.DataFrame({
        "usage_date": np.repeat(dates.values, n_series),
        "service": service_col,
        "group_value": group_col,
        "amount": amounts.ravel(),
        "estimated": False,
    })
    if strings:
        frame["service"] = frame["service"].astype(object)
        frame["group_value"] = frame["group_value"].astype(object)
    return frame


def _best_ms(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best * 1000.0


def run_one(n: int, repeat: int, strings: bool) -> dict:
    history = synthetic_history(n, strings=strings)
    rules = Rules()
    frame_mb = history.memory_usage(deep=False).sum() / 1e6
    alerts = detect_alerts(history, DAY, rules)
    detect_ms = _best_ms(lambda: detect_alerts(history, DAY, rules), repeat)
    summary_ms = _best_ms(lambda: summarise(history, DAY), repeat)
    tracemalloc.start()
    detect_alerts(history, DAY, rules)
    summarise(history, DAY)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return {
        "series": n, "rows": len(history), "frame_mb": round(frame_mb, 1),
        "detect_ms": round(detect_ms, 1), "summarise_ms": round(summary_ms, 1),
        "analysis_peak_mb": round(peak / 1e6, 1),
        "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "alerts": len(alerts),
    }


def run_reference(n: int, repeat: int, strings: bool) -> dict:
    from tests.reference_detection import reference_alerts

    history = synthetic_history(n, strings=strings)
    rules = Rules()
    fast = detect_alerts(history, DAY, rules)
    t0 = time.perf_counter()
    slow = reference_alerts(history, DAY, rules)
    reference_ms = (time.perf_counter() - t0) * 1000.0
    fast_ms = _best_ms(lambda: detect_alerts(history, DAY, rules), repeat)
    same = [a.key for a in fast] == [a.key for a in slow]
    return {"series": n, "vectorised_ms": round(fast_ms, 1),
            "reference_ms": round(reference_ms, 1),
            "ratio": round(reference_ms / fast_ms, 1), "same_alerts": same}


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 100000])
    parser.add_argument("--reference-size", type=int, default=1000,
                        help="series for the reference comparison (it is slow); 0 skips it")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--strings", action="store_true",
                        help="object (str) service/group columns instead of categorical")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reference-one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    flags = ["--repeat", str(args.repeat)] + (["--strings"] if args.strings else [])

    if args.one:
        print(json.dumps(run_one(args.one, args.repeat, args.strings)))
        return
    if args.reference_one:
        print(json.dumps(run_reference(args.reference_one, args.repeat, args.strings)))
        return

    columns = "categorical" if not args.strings else "str"
    print(f"analysis benchmark: 365 days, {columns} service/group columns, best of "
          f"{args.repeat}")
    print(f"{'series':>8} {'rows':>11} {'frame MB':>9} {'detect ms':>10} {'summary ms':>11} "
          f"{'peak MB':>8} {'max RSS MB':>11} {'alerts':>7}")
    for n in args.sizes:
        r = _child(["--one", str(n), *flags])
        print(f"{r['series']:>8} {r['rows']:>11} {r['frame_mb']:>9} {r['detect_ms']:>10} "
              f"{r['summarise_ms']:>11} {r['analysis_peak_mb']:>8} {r['max_rss_mb']:>11} "
              f"{r['alerts']:>7}")
    if args.reference_size:
        r = _child(["--reference-one", str(args.reference_size), *flags])
        print(f"reference (per-series groupby-apply) on {r['series']} series: "
              f"{r['reference_ms']} ms vs vectorised {r['vectorised_ms']} ms: "
              f"{r['ratio']}x faster; same alerts: {r['same_alerts']}")


if __name__ == "__main__":
    main()
