"""`make bench` keeps working: a small run of the benchmark script prints every table.

The figures themselves are not asserted (speed belongs to the benchmark, not to tests);
what is pinned is that each part runs to its end and reports what the README shows.
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def _table_rows(text: str, header_start: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_a_small_benchmark_runs_every_part_and_prints_its_tables(clean_env, tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_run.py"), "--sizes", "demo", "--db", "sqlite",
         "--analysis-series", "300", "--reference-series", "60", "--upsert-series", "300",
         "--plot-repeats", "2", "--pairs", "1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=True).stdout

    runs = _table_rows(out, "| size |")
    assert [(r[0], r[2], r[3]) for r in runs] == [("demo", "sqlite", "backfill"),
                                                  ("demo", "sqlite", "daily")]
    backfill, daily = runs
    # CE requests: the backfill's pages, then one request for the daily run.
    assert int(backfill[13]) > 1 and daily[13] == "1"
    assert int(backfill[14].replace(",", "")) > 10_000  # rows written
    for row in runs:
        assert float(row[-2]) > 50 and float(row[-1]) > 50  # peak RSS and PSS, MB
    assert "Per-series reference" in out and "faster; same alerts: True" in out
    upserts = _table_rows(out, "| db | rows |")
    assert [u[0] for u in upserts] == ["sqlite"] and int(upserts[0][1].replace(",", "")) > 0
    plots = _table_rows(out, "| plot |")
    assert [p[0] for p in plots] == ["spike", "spike_down", "trend", "mtd", "daily", "coverage",
                                     "commitment", "usage_timeline", "idle_metrics"]
    assert all(float(p[2]) > 0 and float(p[3]) > 1 for p in plots)  # median ms, PNG KB
    ratio = re.search(r"Daily run of \S+ \(`--demo --dry-run`; (\d+) alerts, (\d+) plots.*"
                      r"median \*\*([\d.]+) s\*\*.*median \*\*([\d.]+) s\*\*.*ratio "
                      r"\*\*([\d.]+)x\*\*", out)
    assert ratio, out
    alerts, plots_drawn, daily_s, import_s, times = ratio.groups()
    assert int(plots_drawn) >= int(alerts) + 2 and float(daily_s) > float(import_s) > 0
    assert float(times) == pytest.approx(float(daily_s) / float(import_s), abs=0.01)


def test_the_history_benchmark_times_every_path_and_they_read_the_same_frame(clean_env,
                                                                             tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench_history.py"), "--size", "2x2", "--db",
         "sqlite", "--repeat", "1"],
        capture_output=True, text=True, cwd=tmp_path, timeout=300, check=True).stdout
    rows = _table_rows(out, "| database |")
    assert [r[3] for r in rows] == ["cache, cold (no file)", "load_history (before)",
                                    "cache, daily (3 days changed)", "cache, nothing changed"]
    assert len({r[6] for r in rows[1:]}) == 1  # the same frame, row order included
    assert all(float(r[4].split()[0]) > 0 for r in rows)
