"""The backtest (issue 8): every day of a range at once lists exactly the alerts of a
normal run for each day; its CSV, monthly counts and page; the driver end to end."""
from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import json
import logging
import shutil
from collections import Counter

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import procBacktest
import runCostReporting
from _util.alert_kinds import DOWN, SPIKE, TREND, UP
from _util.detection.alert_screen import alerts_by_day
from _util.detection.series_matrix import build_matrices
from _util.report import SEASONALITIES, WEEKDAY, Alert, Rules
from _util.store.cost_store import load_history
from procAmzAlerts import detect_alerts, detect_alerts_by_day, history_start
from tests.test_alerts import frame
from tests.test_lifecycle import METRIC, day, run_day, step_history, store
from tests.test_muting import demo_db  # noqa: F401 (fixture)

D = dt.date(2024, 5, 31)


def per_day(history: pd.DataFrame, first: dt.date, last: dt.date, rules: Rules) -> dict:
    """What one normal run per day reports, from a history cut to that run's window, as
    the driver loads it."""
    out = {}
    day = first
    while day <= last:
        lo = pd.Timestamp(history_start(day, rules))
        window = history[(history["usage_date"] >= lo) & (history["usage_date"] <= pd.Timestamp(day))]
        out[day] = detect_alerts(window, day, rules)
        day += dt.timedelta(days=1)
    return out


# ----------------------------------------------------------------------------------------
# Detection for every day of a range equals one normal run per day, bit for bit.
# ----------------------------------------------------------------------------------------

@st.composite
def shaped_series(draw, n_days: int) -> list[float]:
    """Series shapes that stress the screen: dense and older than the window (each day's
    window starts elsewhere), gaps (starts jump), steps, constants, tiny noise on a large
    level (cancellation), credits, exact zeros, and quarter-dollar amounts (exact ties)."""
    shape = draw(st.sampled_from(["dense", "gappy", "step", "constant", "offset", "late",
                                  "credit", "ties"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    level = float(draw(st.sampled_from([0.5, 3.0, 40.0, 900.0])))
    x = level * (1 + 0.2 * rng.standard_normal(n_days))
    if shape == "gappy":
        x *= rng.random(n_days) < 0.6
        x[rng.integers(0, n_days): rng.integers(0, n_days)] = 0.0
    elif shape == "step":
        x[rng.integers(0, n_days):] *= draw(st.sampled_from([0.0, 0.3, 3.0]))
    elif shape == "constant":
        x = np.full(n_days, level)
    elif shape == "offset":
        x = 1e6 + 1e-3 * rng.standard_normal(n_days)
    elif shape == "late":
        x[: rng.integers(0, n_days)] = 0.0
    elif shape == "credit":
        x -= 1.2 * level
    elif shape == "ties":
        x = np.round(x * 4) / 4
    if draw(st.booleans()):
        x[rng.integers(0, n_days)] *= draw(st.sampled_from([0.0, 5.0, 40.0]))
    return [float(v) for v in x]


@st.composite
def backtest_cases(draw):
    seasonality = draw(st.sampled_from(SEASONALITIES))
    # A weekday baseline needs 8 weeks before D to spike at all.
    lookback = draw(st.integers(12, 60) if seasonality != WEEKDAY else st.integers(57, 80))
    span_fast = draw(st.sampled_from([3, 12]))
    rules = Rules(
        z=draw(st.sampled_from([1.0, 2.0, 3.0])),
        min_delta_usd=draw(st.sampled_from([0.0, 1.0])),
        min_delta_pct=draw(st.sampled_from([0.0, 20.0])),
        min_history_days=draw(st.integers(3, lookback - 2)),
        min_daily_usd=draw(st.sampled_from([0.0, 1.0])),
        ema_fast=span_fast, ema_slow=draw(st.sampled_from([span_fast + 5, 26])),
        signal_span=draw(st.sampled_from([5, 18])), lookback_days=lookback,
        trend_min_move_pct=draw(st.sampled_from([0.0, 5.0])),
        trend_min_move_usd=draw(st.sampled_from([0.0, 1.0])),
        echo_days=draw(st.sampled_from([0, 3, 7])), seasonality=seasonality,
    )
    n_eval = draw(st.integers(1, 25))
    n_days = lookback + n_eval + draw(st.integers(0, 30))
    series = {}
    for service in draw(st.sets(st.sampled_from(["A", "B"]), min_size=1)):
        # Up to 11 groups: long enough that numpy would add a service's groups pairwise.
        n_groups = draw(st.integers(1, 11))
        for g in range(n_groups):
            series[(service, f"g{g:02d}" if g else "")] = draw(shaped_series(n_days))
    first = D - dt.timedelta(days=n_eval - 1)
    return frame(series), first, rules


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(backtest_cases())
def test_every_day_of_a_range_lists_exactly_a_normal_runs_alerts(case):
    history, first, rules = case
    assert comparable(detect_alerts_by_day(history, first, D, rules)) == comparable(
        per_day(history, first, D, rules))


def comparable(by_day: dict) -> dict:
    """Alerts as tuples whose NaNs (a weekday baseline with one day has no std) compare
    equal, as the bits they are."""
    def plain(v):
        return "nan" if isinstance(v, float) and v != v else v
    return {day: [tuple(plain(v) for v in dataclasses.astuple(a)) for a in alerts]
            for day, alerts in by_day.items()}


def test_service_sums_do_not_depend_on_groups_without_cost_in_the_window():
    # 12 groups whose amounts do not add up exactly in floating point, plus groups that
    # only have costs long before the window: the service's series must be the same bits.
    rng = np.random.default_rng(5)
    series = {("S", f"g{g:02d}"): list(rng.random(80) * 10 + 0.1) for g in range(12)}
    for g in (3, 7, 20):
        series[("S", f"old{g}")] = [1.0] * 10 + [0.0] * 70
    history = frame(series)
    first = D - dt.timedelta(days=29)
    wide = build_matrices(history, first - dt.timedelta(days=49), D).service.values[-30:]
    narrow = build_matrices(history, first, D).service.values
    assert np.array_equal(wide, narrow)


def test_top_group_is_never_a_group_without_cost_in_the_window():
    # S falls from $100 to $20 a day: later crossings happen while its cost is still far
    # below the baseline mean, so both real groups' changes are negative. "idle" has rows
    # of exactly $0 (as Cost Explorer returns for free usage) and "old" had costs only
    # before the last days' windows: a change of 0 would be the "largest" rise, but
    # neither moved S, so neither is named, by a normal run or a backtest.
    rng = np.random.default_rng(4)
    shape = np.r_[np.full(80, 50.0), np.full(120, 10.0)]
    history = frame({("S", "a"): list(shape + rng.standard_normal(200)),
                     ("S", "b"): list(shape + rng.standard_normal(200)),
                     ("S", "old"): [0.0] * 5 + [7.0] * 5 + [0.0] * 190})
    idle = pd.DataFrame({"usage_date": pd.date_range(end=pd.Timestamp(D), periods=200),
                         "service": "S", "group_value": "idle", "amount": 0.0, "estimated": False})
    history = pd.concat([history, idle], ignore_index=True)
    # The crossings of a series that settled at its new level: no materiality gate.
    rules = Rules(lookback_days=150, min_history_days=28, trend_min_move_pct=0.0,
                  trend_min_move_usd=0.0)
    first = D - dt.timedelta(days=50)
    by_day = detect_alerts_by_day(history, first, D, rules)
    rising = [a for alerts in by_day.values() for a in alerts
              if a.group is None and a.kind == "trend" and a.direction == "up"]
    assert len(rising) >= 3 and all(a.delta_usd < 0 for a in rising)
    assert {a.top_group for a in rising} == {"a", "b"}
    assert all(a.top_group_delta_usd < 0 for a in rising)
    assert by_day == per_day(history, first, D, rules)


def test_screen_rechecks_few_windows_of_a_dense_year():
    # 40 dense series over two years: the screen should leave only a few windows per
    # alert for the exact re-check (the point of it; the benchmark times it).
    rng = np.random.default_rng(11)
    n_days = 365 + 59
    series = {("S", f"g{g:02d}"): list(rng.lognormal(1, 1) * (1 + 0.1 * rng.standard_normal(n_days)))
              for g in range(40)}
    history = frame(series)
    rules = Rules()
    first = D - dt.timedelta(days=59)
    start = history_start(first, rules)
    result = alerts_by_day(build_matrices(history, start, D), rules, (first - start).days)
    alerts = sum(len(a) for a in result.by_day.values())
    assert result.pairs == 60 * 41
    assert alerts <= result.rechecked <= 2 * alerts + 10
    sample = [first, first + dt.timedelta(days=33), D]
    for day in sample:
        assert result.by_day[day] == per_day(history, day, day, rules)[day]


def test_empty_range_and_empty_history_have_no_alerts():
    rules = Rules(lookback_days=30)
    assert detect_alerts_by_day(frame({}), D - dt.timedelta(days=2), D, rules) == {
        D - dt.timedelta(days=i): () for i in (2, 1, 0)}
    assert detect_alerts_by_day(frame({("S", ""): [1.0] * 40}), D, D - dt.timedelta(days=1),
                                rules) == {}


def test_bounds_keep_every_pair_when_the_window_is_short_for_the_ewm_spans():
    # Spans of 100+ days in a 40-day window: the start-day effect never decays, so the
    # screen must keep the crossings and still agree with normal runs.
    rng = np.random.default_rng(8)
    history = frame({("S", ""): list(20 + 3 * np.sin(np.arange(120) / 5) + rng.standard_normal(120))})
    rules = Rules(lookback_days=40, min_history_days=20, ema_fast=50, ema_slow=120, signal_span=90)
    first = D - dt.timedelta(days=59)
    assert detect_alerts_by_day(history, first, D, rules) == per_day(history, first, D, rules)


# ----------------------------------------------------------------------------------------
# With statuses: the backtest against normal runs (detection + lifecycle) of each day.
# ----------------------------------------------------------------------------------------

def test_backtest_equals_normal_runs_day_by_day_including_status(db_engine):
    # A step with a two-day gap (episodes, a new one after the gap) beside a noisy
    # service with groups (trend crossings at both levels).
    rng = np.random.default_rng(9)
    step = step_history(off_days=(4, 5))
    noisy = step.assign(service="N", group_value="web",
                        amount=20 + 4 * np.sin(np.arange(len(step)) / 6) + rng.standard_normal(len(step)))
    other = noisy.assign(group_value="", amount=noisy["amount"][::-1].to_numpy())
    store(db_engine, pd.concat([step, noisy, other], ignore_index=True))
    rules = Rules()
    first, last = day(-3), day(12)
    history = load_history(db_engine, METRIC, first - dt.timedelta(days=90 + 364), last)
    replayed = procBacktest.replay(history, first, last, rules)
    statuses = set()
    for d in procBacktest.days_between(first, last):
        normal = run_day(db_engine, d, rules).alerts
        assert replayed[d] == normal, d
        statuses |= {(a.key[0], a.status) for a in normal}
    assert {("spike", "new"), ("spike", "continuing"), ("trend", "new")} <= statuses


def test_monthly_counts_split_kind_direction_and_status_and_count_echoes_apart():
    a = Alert(kind=SPIKE, direction=UP, service="S", group=None, usd=1.0, baseline_mean=0.0,
              baseline_std=1.0, delta_usd=1.0)
    echo = dataclasses.replace(a, kind=TREND, direction=UP, echo_of=dt.date(2024, 1, 31))
    by_day = {dt.date(2024, 1, 31): (a, dataclasses.replace(a, kind=TREND, direction=DOWN)),
              dt.date(2024, 2, 1): (dataclasses.replace(a, status="continuing"), echo),
              dt.date(2024, 2, 2): ()}
    rows = procBacktest.monthly_table(procBacktest.monthly_counts(by_day))
    assert rows == [
        ["month", "spike up", "spike down", "trend up", "trend down", "new", "continuing",
         "echoes", "total"],
        ["2024-01", "1/0", "0/0", "0/0", "1/0", "2", "0", "0", "2"],
        ["2024-02", "0/1", "0/0", "0/0", "0/0", "0", "1", "1", "2"],
        ["all", "1/1", "0/0", "0/0", "1/0", "2", "1", "1", "4"],
    ]
    assert "2 new, 1 continuing and 1 echoes of spikes; 0.7 new alerts a day" in \
        procBacktest.summary_line(by_day, METRIC, Rules())


def test_csv_rows_name_level_and_echo_and_leave_zscore_empty_for_trends(tmp_path):
    a = Alert(kind=TREND, direction=UP, service="S, Inc.", group="", usd=1.0, baseline_mean=0.5,
              baseline_std=1.0, delta_usd=0.5, macd=1.0, signal=0.5,
              echo_of=dt.date(2024, 2, 27))
    b = Alert(kind=SPIKE, direction=DOWN, service="S", group=None, usd=1.0, baseline_mean=9.0,
              baseline_std=1.0, delta_usd=-8.0, zscore=-8.0, status="continuing")
    path = tmp_path / "out.csv"
    assert procBacktest.write_csv(path, {dt.date(2024, 3, 2): (a, b)}) == 2
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.reader(fh))
    assert rows == [list(procBacktest.CSV_COLUMNS),
                    ["2024-03-02", "group", "trend", "up", "S, Inc.", "", "new", "0.50", "",
                     "2024-02-27"],
                    ["2024-03-02", "service", "spike", "down", "S", "", "continuing", "-8.00",
                     "-8.00", ""]]


# ----------------------------------------------------------------------------------------
# End to end: the driver's --backtest-from on the demo account.
# ----------------------------------------------------------------------------------------

TODAY = dt.date(2026, 11, 23)


def backtest_run(out, *args) -> int:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("COST_TRACKING_OUTPUT_DIR", str(out))
        code = runCostReporting.main(["--demo", *args], None, TODAY)
    logging.getLogger().handlers.clear()
    return code


def test_demo_backtest_writes_csv_page_and_counts_and_nothing_else(tmp_path, demo_db, clean_env, capsys):
    shutil.copy(demo_db, tmp_path / "cost_tracking.db")
    code = backtest_run(tmp_path, "--backtest-from", "2026-10-01", "--date", "2026-11-22")
    assert code == 0
    out = capsys.readouterr().out
    csv_path = tmp_path / "backtest" / "2026-10-01_2026-11-22.csv"
    with csv_path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and {r["date"] for r in rows} <= {d.isoformat() for d in procBacktest.days_between(
        dt.date(2026, 10, 1), dt.date(2026, 11, 22))}
    assert {r["kind"] for r in rows} == {"spike", "trend"}
    # The demo's planted spike on the last day is listed as a normal run reports it.
    last_day = [r for r in rows if r["date"] == "2026-11-22"]
    assert ("spike", "Amazon Elastic Container Service", "service", "new") in {
        (r["kind"], r["service"], r["level"], r["status"]) for r in last_day}
    assert "2026-10  " in out and "2026-11  " in out and "spike up" in out
    assert f"{len(rows)} alerts" in out
    page = tmp_path / "site" / "backtest" / "2026-10-01_2026-11-22.html"
    assert "<img" in page.read_text() and (page.parent / "2026-10-01_2026-11-22.png").stat().st_size > 5000
    records = [json.loads(p.read_text()) for p in (tmp_path / "runs").glob("*.json")]
    [stage] = [s for r in records for s in r["stages"] if s["name"] == "backtest"]
    assert stage["counts"]["alerts"] == len(rows) and stage["counts"]["days"] == 53
    assert not (tmp_path / "slack").exists()
    assert not (tmp_path / "site" / "reports").exists()


def test_z_and_both_floors_apply_to_the_backtest(tmp_path, demo_db, clean_env, capsys):
    shutil.copy(demo_db, tmp_path / "cost_tracking.db")

    def kinds(*args, **env) -> Counter:
        with pytest.MonkeyPatch.context() as mp:
            for name, value in env.items():
                mp.setenv(name, value)
            assert backtest_run(tmp_path, *args, "--backtest-from", "2026-10-01",
                                "--date", "2026-11-22") == 0
        with (tmp_path / "backtest" / "2026-10-01_2026-11-22.csv").open(newline="") as fh:
            return Counter(r["kind"] for r in csv.DictReader(fh))

    low, high = kinds("--z", "2"), kinds("--z", "5")
    assert 0 < high["spike"] < low["spike"]
    assert high["trend"] == low["trend"]   # Z is the spike rule's threshold only
    pct = kinds("--z", "2", COST_TRACKING_MIN_DELTA_PCT="60")
    assert pct["spike"] < low["spike"] and pct["trend"] == low["trend"]
    usd = kinds("--z", "2", COST_TRACKING_MIN_DELTA_USD="100")
    assert usd["spike"] < low["spike"] and usd["trend"] == low["trend"]
    capsys.readouterr()


# ----------------------------------------------------------------------------------------
# The percentage floor (COST_TRACKING_MIN_DELTA_PCT) at the rule level.
# ----------------------------------------------------------------------------------------

UNIT_STD = [10.0] * 25 + [15.0] + [10.0] * 24 + [5.0]   # mean 10, std 1 (51 days)


def spikes(history: pd.DataFrame, rules: Rules) -> list[tuple[str, str]]:
    return [(a.kind, a.direction) for a in detect_alerts(history, D, rules)
            if a.kind == SPIKE and a.group is None]


def test_percentage_floor_applies_to_spikes_down_too():
    history = frame({("S", ""): UNIT_STD + [7.0]})   # -$3 on a mean of $10: 30 %
    assert spikes(history, Rules(min_delta_pct=30.0)) == [(SPIKE, DOWN)]
    assert spikes(history, Rules(min_delta_pct=30.5)) == []


def test_percentage_floor_leaves_trend_reversals_alone():
    flat_then_up = frame({("S", ""): [10.0] * 50 + [40.0]})   # a crossing on D, no spike
    trends = [a.key for a in detect_alerts(flat_then_up, D, Rules()) if a.kind == TREND]
    assert trends
    assert [a.key for a in detect_alerts(flat_then_up, D, Rules(min_delta_pct=500.0))] == trends
    assert spikes(frame({("S", ""): UNIT_STD + [13.0]}), Rules(min_delta_pct=500.0)) == []


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_written_as_text(tmp_path):
    a = Alert(kind=SPIKE, direction=DOWN, service="=cmd|' /C calc'!A0", group="@evil",
              usd=1.0, baseline_mean=9.0, baseline_std=1.0, delta_usd=-8.0, zscore=-8.0)
    path = tmp_path / "out.csv"
    procBacktest.write_csv(path, {dt.date(2024, 3, 2): (a,)})
    with path.open(newline="", encoding="utf-8") as fh:
        [_, row] = list(csv.reader(fh))
    assert row[4:6] == ["'=cmd|' /C calc'!A0", "'@evil"]
    assert row[7:9] == ["-8.00", "-8.00"]  # numbers stay numbers
