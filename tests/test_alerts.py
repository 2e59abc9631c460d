"""Detection rules of issue 3, pinned with hand-computed series, and the vectorised code
checked against the per-series reference on random data."""
from __future__ import annotations

import dataclasses
import datetime as dt
import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import procAmzAlerts
from _util.alert_kinds import DOWN, SPIKE, TREND, UP
from _util.detection.alert_rules import series_stats, trend_moved
from _util.detection.series_matrix import build_matrices
from _util.report import SEASONALITIES, WEEKDAY, Alert, Rules
from procAmzAlerts import detect_alerts, detect_alerts_by_day, macd_lines, series_of
from tests.reference_detection import STAT_COLUMNS, reference_alerts, reference_stats

D = dt.date(2024, 5, 31)
RULES = Rules()
# The crossing alone, without the materiality gate (both floors 0 is the rule of issue 3).
CROSSING_ONLY = dataclasses.replace(RULES, trend_min_move_pct=0.0, trend_min_move_usd=0.0)


def frame(series: dict[tuple[str, str], list[float]], day: dt.date = D) -> pd.DataFrame:
    """History whose listed daily costs end on `day`; zeros are written as no row."""
    rows = []
    for (service, group), values in series.items():
        days = pd.date_range(end=pd.Timestamp(day), periods=len(values), freq="D")
        rows += [(d, service, group, float(v), False) for d, v in zip(days, values) if v != 0]
    return pd.DataFrame(rows, columns=["usage_date", "service", "group_value", "amount",
                                       "estimated"])


def find(alerts, kind=None, direction=None, service="S", group=None) -> list[Alert]:
    return [a for a in alerts if (kind is None or a.kind == kind)
            and (direction is None or a.direction == direction)
            and a.service == service and a.group == group]


# A baseline of 51 days with mean exactly 10 and sample standard deviation exactly 1:
# 49 days of 10 plus one day of 15 and one of 5 (sum of squares 50, over n-1 = 50).
UNIT_STD = [10.0] * 25 + [15.0] + [10.0] * 24 + [5.0]


def test_baseline_of_unit_std_is_what_the_tests_assume():
    alerts = detect_alerts(frame({("S", ""): UNIT_STD + [13.0]}), D, RULES)
    spike = find(alerts, SPIKE, UP)[0]
    assert (spike.baseline_mean, spike.baseline_std, spike.zscore) == (10.0, 1.0, 3.0)


@pytest.mark.parametrize("cost, direction", [(13.0, UP), (7.0, DOWN)])
def test_spike_fires_when_z_is_exactly_the_threshold(cost, direction):
    alerts = detect_alerts(frame({("S", ""): UNIT_STD + [cost]}), D, RULES)
    spike = find(alerts, SPIKE, direction)
    assert len(spike) == 1
    assert spike[0].zscore == pytest.approx(3.0 if direction == UP else -3.0)
    assert spike[0].delta_usd == pytest.approx(cost - 10.0)
    assert spike[0].usd == cost
    assert spike[0].macd is None and spike[0].signal is None


@pytest.mark.parametrize("cost", [12.99, 7.01])
def test_spike_does_not_fire_just_below_the_threshold(cost):
    alerts = detect_alerts(frame({("S", ""): UNIT_STD + [cost]}), D, RULES)
    assert find(alerts, SPIKE) == []


def test_spike_threshold_follows_rules_z():
    history = frame({("S", ""): UNIT_STD + [12.5]})
    assert find(detect_alerts(history, D, RULES), SPIKE) == []
    assert len(find(detect_alerts(history, D, Rules(z=2.5)), SPIKE, UP)) == 1


# std 0.1: 49 days of 10, one of 10.5 and one of 9.5 (sum of squares 0.5, over 50).
TENTH_STD = [10.0] * 25 + [10.5] + [10.0] * 24 + [9.5]


@pytest.mark.parametrize("cost, direction", [(11.0, UP), (9.0, DOWN)])
def test_spike_fires_when_dollar_change_is_exactly_min_delta(cost, direction):
    alerts = detect_alerts(frame({("S", ""): TENTH_STD + [cost]}), D, RULES)
    spike = find(alerts, SPIKE, direction)
    assert len(spike) == 1 and abs(spike[0].delta_usd) == pytest.approx(1.0)
    assert abs(spike[0].zscore) == pytest.approx(10.0)


@pytest.mark.parametrize("cost", [10.99, 9.01])
def test_spike_needs_min_delta_even_with_a_large_z(cost):
    alerts = detect_alerts(frame({("S", ""): TENTH_STD + [cost]}), D, RULES)
    assert find(alerts, SPIKE) == []


def test_spike_percentage_floor_applies_when_set():
    history = frame({("S", ""): UNIT_STD + [13.0]})  # +$3 on a mean of $10: 30 %
    assert len(find(detect_alerts(history, D, Rules(min_delta_pct=30.0)), SPIKE, UP)) == 1
    assert find(detect_alerts(history, D, Rules(min_delta_pct=31.0)), SPIKE) == []


@pytest.mark.parametrize("level", [10.0, 0.1, 1234.56])
def test_spike_never_fires_on_a_zero_std_baseline(level):
    # 0.1 and 1234.56 are not exact in binary: their computed std is rounding, not zero.
    alerts = detect_alerts(frame({("S", ""): [level] * 60 + [level * 5]}), D, RULES)
    assert find(alerts, SPIKE) == []


@pytest.mark.parametrize("baseline_days, fires", [(27, False), (28, True)])
def test_series_shorter_than_min_history_gets_no_alert(baseline_days, fires):
    values = ([10.0, 12.0] * 20)[:baseline_days] + [100.0]
    alerts = detect_alerts(frame({("S", ""): values}), D, RULES)
    assert bool(find(alerts, SPIKE, UP)) is fires
    if not fires:
        assert find(alerts) == []


def test_leading_zero_rows_do_not_start_a_series():
    history = frame({("S", ""): [10.0, 12.0] * 10 + [100.0]})
    zeros = pd.DataFrame({
        "usage_date": pd.date_range(end=pd.Timestamp(D) - pd.Timedelta(days=21), periods=60),
        "service": "S", "group_value": "", "amount": 0.0, "estimated": False,
    })
    alerts = detect_alerts(pd.concat([zeros, history], ignore_index=True), D, RULES)
    assert alerts == ()
    assert len(series_of(pd.concat([zeros, history]), D, RULES, "S", "")) == 21


def test_a_new_service_gets_no_alert_of_its_own():
    history = frame({("Old", ""): [10.0] * 60, ("New", ""): [500.0]})
    assert detect_alerts(history, D, RULES) == ()
    assert len(series_of(history, D, RULES, "New", None)) == 1


def test_a_new_group_is_named_as_the_cause_of_its_service_spike():
    history = frame({
        ("S", "web"): [10.0, 11.0] * 30,
        ("S", "db"): [5.0, 5.5] * 30,
        ("S", "batch"): [300.0],
    })
    alerts = detect_alerts(history, D, RULES)
    service_spike = find(alerts, SPIKE, UP, group=None)[0]
    assert service_spike.top_group == "batch"
    assert service_spike.top_group_delta_usd == pytest.approx(300.0)
    assert find(alerts, group="batch") == []  # the group itself has no history


def test_a_vanished_service_is_a_spike_down_at_both_levels():
    history = frame({("S", "web"): [99.0, 101.0] * 30 + [0.0]})
    alerts = detect_alerts(history, D, RULES)
    for group in (None, "web"):
        spike = find(alerts, SPIKE, DOWN, group=group)
        assert len(spike) == 1
        assert spike[0].usd == 0.0
        assert spike[0].delta_usd == pytest.approx(-100.0)
    assert find(alerts, SPIKE, DOWN, group=None)[0].top_group == "web"


def test_cents_scale_noise_with_a_large_z_is_not_an_alert():
    history = frame({("S", ""): [0.01, 0.02] * 30 + [0.10]})
    stats = series_stats(build_matrices(history, D - dt.timedelta(days=364), D).group.values,
                         RULES)
    assert stats.zscore[0] > 10
    assert detect_alerts(history, D, RULES) == ()


def _macd_diff(values: list[float]) -> tuple[float, float]:
    lines = macd_lines(pd.Series(values, dtype=float), RULES)
    diff = lines["macd"] - lines["signal"]
    return float(diff.iloc[-2]), float(diff.iloc[-1])


def test_step_up_on_d_is_an_upward_crossing_with_hand_computed_lines():
    values = [10.0] * 60 + [20.0]
    alerts = detect_alerts(frame({("S", ""): values}), D, RULES)
    trend = find(alerts, TREND, UP)
    assert len(trend) == 1
    macd = 10.0 * (2 / 13 - 2 / 27)  # EMA12 - EMA26 one step after a +10 step
    assert trend[0].macd == pytest.approx(macd)
    assert trend[0].signal == pytest.approx(macd * 2 / 19)
    assert trend[0].zscore is None
    assert trend[0].baseline_mean == 10.0 and trend[0].baseline_std == 0.0
    assert trend[0].delta_usd == 10.0
    assert find(alerts, SPIKE) == []  # a flat baseline has no z-score


def test_step_down_on_d_is_a_downward_crossing():
    alerts = detect_alerts(frame({("S", ""): [10.0] * 60 + [5.0]}), D, CROSSING_ONLY)
    assert len(find(alerts, TREND, DOWN)) == 1 and find(alerts, TREND, UP) == []


@pytest.mark.parametrize("after, direction", [(20.0, UP), (5.0, DOWN)])
def test_a_crossing_on_the_day_before_is_not_an_alert_on_d(after, direction):
    values = [10.0] * 60 + [after, after]
    before, now = _macd_diff(values)
    assert (before > 0) is (direction == UP) and (now > 0) is (direction == UP)
    yesterday = D - dt.timedelta(days=1)
    history = frame({("S", ""): values})
    assert len(find(detect_alerts(history, yesterday, CROSSING_ONLY), TREND, direction)) == 1
    assert find(detect_alerts(history, D, CROSSING_ONLY), TREND) == []


def test_a_crossing_back_after_a_rise_is_a_downward_reversal():
    # After a step up MACD peaks and falls back through its slower signal line.
    values = [10.0] * 60 + [20.0] * 30
    lines = macd_lines(pd.Series(values), RULES)
    diff = (lines["macd"] - lines["signal"]).to_numpy()
    cross = int(np.flatnonzero((diff[:-1] >= 0) & (diff[1:] < 0) & (np.arange(89) >= 60))[0]) + 1
    day = D - dt.timedelta(days=len(values) - 1 - cross)
    history = frame({("S", ""): values})
    assert len(find(detect_alerts(history, day, RULES), TREND, DOWN)) == 1
    assert find(detect_alerts(history, day - dt.timedelta(days=1), RULES), TREND, DOWN) == []


@pytest.mark.parametrize("level, on_d, fires", [
    (0.9, 1.5, False),    # mean of the last 28 days 0.921 < $1
    (0.98, 1.54, True),   # mean exactly $1.00
    (0.98, 1.53, False),  # a cent short
])
def test_trend_needs_min_daily_usd_over_the_last_28_days(level, on_d, fires):
    alerts = detect_alerts(frame({("S", ""): [level] * 60 + [on_d]}), D, CROSSING_ONLY)
    assert bool(find(alerts, TREND, UP)) is fires


def test_service_level_alert_names_the_group_that_moved_most():
    history = frame({
        ("S", "a"): [10.0, 11.0] * 30 + [12.0],
        ("S", "b"): [20.0, 21.0] * 30 + [60.0],
        ("S", ""): [1.0, 2.0] * 30 + [1.0],
    })
    spike = find(detect_alerts(history, D, RULES), SPIKE, UP, group=None)[0]
    assert spike.top_group == "b"
    assert spike.top_group_delta_usd == pytest.approx(60.0 - 20.5)
    assert spike.delta_usd == pytest.approx((12 - 10.5) + (60 - 20.5) + (1 - 1.5))


def test_alerts_are_ranked_by_absolute_dollar_change():
    history = frame({
        ("Small", ""): [10.0, 11.0] * 30 + [20.0],
        ("Drop", ""): [99.0, 101.0] * 30 + [0.0],
        ("Big", ""): [50.0, 52.0] * 30 + [90.0],
    })
    alerts = detect_alerts(history, D, RULES)
    deltas = [abs(a.delta_usd) for a in alerts]
    assert deltas == sorted(deltas, reverse=True)
    spikes = [(a.service, a.group) for a in alerts if a.kind == SPIKE]
    assert spikes == [("Drop", None), ("Drop", ""), ("Big", None), ("Big", ""),
                      ("Small", None), ("Small", "")]


def test_rows_outside_the_lookback_window_are_ignored():
    old = frame({("S", ""): [1000.0] * 10}, day=D - dt.timedelta(days=400))
    recent = frame({("S", ""): UNIT_STD + [13.0]})
    history = pd.concat([old, recent], ignore_index=True)
    assert detect_alerts(history, D, RULES) == detect_alerts(recent, D, RULES)
    assert len(series_of(history, D, RULES, "S", None)) == len(UNIT_STD) + 1


def test_categorical_columns_give_the_same_alerts_as_strings():
    history = frame({("S", "a"): UNIT_STD + [13.0], ("T", ""): [1.0, 3.0] * 30 + [0.0]})
    categorical = history.astype({"service": "category", "group_value": "category"})
    assert detect_alerts(categorical, D, RULES) == detect_alerts(history, D, RULES)


def test_empty_history_has_no_alerts():
    assert detect_alerts(frame({}), D, RULES) == ()


def test_series_of_fills_missing_days_with_zero_from_the_first_cost():
    history = frame({("S", "a"): [3.0, 0.0, 0.0, 4.0, 0.0], ("S", "b"): [1.0, 1.0]})
    a = series_of(history, D, RULES, "S", "a")
    assert a.tolist() == [3.0, 0.0, 0.0, 4.0, 0.0]
    assert a.index[-1] == pd.Timestamp(D)
    assert series_of(history, D, RULES, "S", None).tolist() == [3.0, 0.0, 0.0, 5.0, 1.0]
    assert series_of(history, D, RULES, "Nope", None).empty


def test_macd_lines_match_the_values_detection_reports():
    values = [12.0, 10.0] * 30 + [40.0]
    history = frame({("S", ""): values})
    alert = find(detect_alerts(history, D, RULES), TREND, UP)[0]
    lines = macd_lines(series_of(history, D, RULES, "S", ""), RULES)
    assert list(lines.columns) == ["cost", "ema_fast", "ema_slow", "macd", "signal"]
    assert lines["macd"].iloc[-1] == alert.macd and lines["signal"].iloc[-1] == alert.signal


def _pandas_macd_lines(series: pd.Series, rules: Rules) -> pd.DataFrame:
    """What `macd_lines` computed with pandas' ewm before it walked the rule's recursion."""
    cost = series.astype(float)
    ema_fast = cost.ewm(span=rules.ema_fast, adjust=False).mean()
    ema_slow = cost.ewm(span=rules.ema_slow, adjust=False).mean()
    macd = ema_fast - ema_slow
    signal = macd.ewm(span=rules.signal_span, adjust=False).mean()
    return pd.DataFrame(
        {"cost": cost, "ema_fast": ema_fast, "ema_slow": ema_slow, "macd": macd, "signal": signal},
        index=series.index,
    )


def _random_costs(seed: int, n: int) -> list[float]:
    rng = np.random.default_rng(seed)
    level = rng.lognormal(2, 1.5)
    values = np.round(level * (1 + 0.4 * rng.standard_normal(n)), rng.integers(0, 11))
    values[rng.random(n) < 0.1] = 0.0
    return values.tolist()


MACD_SERIES = {
    "empty": [],
    "one day": [7.25],
    "all zeros": [0.0] * 40,
    "constant cents": [0.1] * 300,
    "constant large": [123456.789] * 365,
    "leading zeros": [0.0] * 20 + [0.1] * 30 + [5.0] * 10,
    "credits": [-3.5, 0.0, 2.25, -0.01, 1e-12, 1e9, 0.0] * 9,
    **{f"random {seed}": ([0.0] * (seed * 7) + _random_costs(seed, 365 - seed * 7))
       for seed in range(8)},
}


@pytest.mark.parametrize("name", list(MACD_SERIES))
@pytest.mark.parametrize("rules", [RULES, Rules(ema_fast=3, ema_slow=8, signal_span=5)],
                         ids=["default spans", "short spans"])
def test_macd_lines_equal_pandas_ewm_bit_for_bit(name, rules):
    values = MACD_SERIES[name]
    days = pd.date_range(end=pd.Timestamp(D), periods=len(values), freq="D", name="usage_date")
    for series in (pd.Series(values, index=days, name="cost", dtype=float),
                   pd.Series(values, dtype=float)):
        got, want = macd_lines(series, rules), _pandas_macd_lines(series, rules)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert np.array_equal(got.to_numpy().view(np.int64), want.to_numpy().view(np.int64))


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 40), st.lists(st.floats(-1e7, 1e7, allow_nan=False), max_size=120))
def test_macd_lines_equal_pandas_ewm_on_any_series(zeros, body):
    series = pd.Series([0.0] * zeros + body, dtype=float)
    got, want = macd_lines(series, RULES), _pandas_macd_lines(series, RULES)
    pd.testing.assert_frame_equal(got, want, check_exact=True)
    assert np.array_equal(got.to_numpy().view(np.int64), want.to_numpy().view(np.int64))


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(st.floats(-1e7, 1e7, allow_nan=False), max_size=60), max_size=5))
def test_macd_lines_of_many_series_at_once_equal_each_ones_own_bit_for_bit(bodies):
    """Trend plots are planned from one walk over all their series (of any lengths), in
    blocks (2 here, so that most draws span several)."""
    many = [pd.Series(body, index=pd.date_range(end=pd.Timestamp(D), periods=len(body),
                                                freq="D", name="usage_date"), dtype=float)
            for body in bodies]
    together = procAmzAlerts.macd_lines_of(many, RULES, block=2)
    assert len(together) == len(many)
    for got, series in zip(together, many):
        want = _pandas_macd_lines(series, RULES)
        pd.testing.assert_frame_equal(got, want, check_exact=True)
        assert np.array_equal(got.to_numpy().view(np.int64), want.to_numpy().view(np.int64))


# ----------------------------------------------------------------------------------------
# The vectorised code against the per-series reference, on random data.
# ----------------------------------------------------------------------------------------

# Multiples of 1/64 add up exactly in any order, so the service sums of both
# implementations are identical and only the statistics can differ by rounding.
AMOUNTS = st.one_of(st.just(0.0), st.integers(-64, 64 * 200).map(lambda k: k / 64))


@st.composite
def histories(draw):
    seasonality = draw(st.sampled_from(SEASONALITIES))
    # A weekday baseline needs 8 weeks before D to spike at all.
    lookback = draw(st.integers(12, 45) if seasonality != WEEKDAY else st.integers(50, 70))
    rules = Rules(
        z=draw(st.sampled_from([1.0, 2.0, 3.0])),
        min_delta_usd=draw(st.sampled_from([0.0, 1.0, 5.0])),
        min_delta_pct=draw(st.sampled_from([0.0, 20.0])),
        min_history_days=draw(st.integers(2, lookback - 2)),
        min_daily_usd=draw(st.sampled_from([0.0, 1.0])),
        ema_fast=draw(st.sampled_from([3, 12])), ema_slow=draw(st.sampled_from([8, 26])),
        signal_span=draw(st.sampled_from([5, 18])), lookback_days=lookback,
        trend_min_move_pct=draw(st.sampled_from([0.0, 5.0, 20.0])),
        trend_min_move_usd=draw(st.sampled_from([0.0, 1.0])),
        echo_days=draw(st.sampled_from([0, 2, 7])), seasonality=seasonality,
    )
    # Some rows fall before the window, some in the days the echoes look back on.
    n_days = lookback + draw(st.integers(0, 10))
    series = {}
    for service in draw(st.sets(st.sampled_from(["A", "B", "C"]), min_size=1)):
        for group in draw(st.sets(st.sampled_from(["", "x", "y"]), min_size=1)):
            lead = draw(st.integers(0, n_days))
            body = draw(st.lists(AMOUNTS, min_size=n_days - lead, max_size=n_days - lead))
            # A steady level with occasional jumps makes spikes and crossings likely.
            level = draw(st.integers(0, 50))
            values = [0.0] * lead + [level + v if i % 3 else v for i, v in enumerate(body)]
            if values:  # D itself: as drawn, vanished, or a jump
                values[-1] = draw(st.sampled_from([values[-1], 0.0, 3.0 * values[-1] + 64]))
            series[(service, group)] = values
    return frame(series), rules


def assert_same_alerts(got: tuple[Alert, ...], want: tuple[Alert, ...]) -> None:
    assert [a.key for a in got] == [a.key for a in want]
    for a, b in zip(got, want):
        for f in dataclasses.fields(Alert):
            x, y = getattr(a, f.name), getattr(b, f.name)
            if isinstance(x, float) and isinstance(y, float):
                assert math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-9) or (
                    math.isnan(x) and math.isnan(y)), (f.name, a, b)
            else:
                assert x == y, (f.name, a, b)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_vectorised_alerts_equal_the_per_series_reference(case):
    history, rules = case
    assert_same_alerts(detect_alerts(history, D, rules), reference_alerts(history, D, rules))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(histories())
def test_vectorised_statistics_equal_the_per_series_reference(case):
    history, rules = case
    want = {(service, group if isinstance(group, str) else None): row
            for (service, group), row in reference_stats(history, D, rules).iterrows()}
    first = D - dt.timedelta(days=rules.lookback_days - 1)
    matrices = build_matrices(history, first, D)
    seen = set()
    for matrix in (matrices.service, matrices.group):
        stats = series_stats(matrix.values, rules)
        for s in np.flatnonzero(stats.exists):
            key = (matrix.services[s], matrix.groups[s])
            seen.add(key)
            for name in STAT_COLUMNS:
                got, exp = float(getattr(stats, name)[s]), float(want[key][name])
                if math.isnan(exp):
                    assert math.isnan(got), (key, name)
                else:
                    assert math.isclose(got, exp, rel_tol=1e-9, abs_tol=1e-9), (key, name)
    assert seen == set(want)


def test_alerts_by_day_equal_one_run_per_day():
    rng = np.random.default_rng(3)
    series = {(svc, grp): list(np.round(rng.lognormal(2, 0.5) * (1 + 0.3 * rng.standard_normal(90)), 2)
                               * (np.arange(90) >= rng.integers(0, 40)))
              for svc in ("A", "B") for grp in ("", "x")}
    series[("A", "x")][70] += 200.0
    history = frame(series)
    rules = Rules(lookback_days=60)
    first = D - dt.timedelta(days=29)
    by_day = detect_alerts_by_day(history, first, D, rules)
    assert list(by_day) == [first + dt.timedelta(days=i) for i in range(30)]
    assert sum(len(a) for a in by_day.values()) > 5
    for day, alerts in by_day.items():
        assert alerts == detect_alerts(history, day, rules), day


# ----------------------------------------------------------------------------------------
# The trend rule's materiality gate and the echoes of spikes (issue 13).
# ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("mean7, mean28, fires", [
    (105.0, 100.0, True),      # exactly 5% of the 28-day mean
    (104.99, 100.0, False),
    (95.0, 100.0, True),       # a fall counts the same
    (11.0, 10.0, True),        # $1.00: the dollar floor is the larger one below $20/day
    (10.99, 10.0, False),
    (0.5, 0.0, False),         # new spend of 50 cents a day is not $1 of move
])
def test_trend_gate_needs_the_larger_of_the_percentage_and_the_dollar_move(mean7, mean28, fires):
    moved = trend_moved(np.array([mean7]), np.array([mean28]), RULES)
    assert bool(moved[0]) is fires


def test_trend_gate_with_both_floors_zero_passes_every_series():
    assert trend_moved(np.array([3.0, 3.0]), np.array([3.0, 0.0]), CROSSING_ONLY).all()


def test_a_crossing_on_a_flat_series_is_not_an_alert_a_material_step_is():
    # $20/day for two months; on D it costs $20.50 (a +2.5% move of the 7-day average
    # would need a bigger day) or $40 (the 7-day average moves +14%).
    wobble = frame({("S", ""): [20.0] * 60 + [20.5]})
    assert find(detect_alerts(wobble, D, CROSSING_ONLY), TREND, UP)
    assert not find(detect_alerts(wobble, D, RULES), TREND)
    step = detect_alerts(frame({("S", ""): [20.0] * 60 + [40.0]}), D, RULES)
    [trend] = find(step, TREND, UP)
    assert trend.mean7 == pytest.approx(20.0 + 20.0 / 7)
    assert trend.mean28 == pytest.approx(20.0 + 20.0 / 28)
    assert trend.move_pct == pytest.approx(100 * (20 / 7 - 20 / 28) / (20 + 20 / 28))


def test_the_gate_changes_which_crossings_fire_not_their_numbers():
    history = frame({("S", ""): [20.0] * 60 + [40.0]})
    [gated] = find(detect_alerts(history, D, RULES), TREND)
    [plain] = find(detect_alerts(history, D, CROSSING_ONLY), TREND)
    assert gated == plain


def test_spike_alerts_carry_no_trend_averages():
    [spike] = find(detect_alerts(frame({("S", ""): UNIT_STD + [20.0]}), D, RULES), SPIKE)
    assert spike.mean7 is None and spike.mean28 is None and spike.echo_of is None


def _spike_then_crossings() -> pd.DataFrame:
    """$100/day with noise and a +$400 spike 11 days before D: the MACD crosses up on the
    spike's day and back down five days later (found by running the rules)."""
    rng = np.random.default_rng(1)
    values = list(100 + rng.standard_normal(120))
    values[-12] += 400
    return frame({("S", ""): values})


SPIKE_DAY = D - dt.timedelta(days=11)


def test_crossings_within_a_week_of_a_spike_are_its_echoes_at_each_level():
    by_day = detect_alerts_by_day(_spike_then_crossings(), SPIKE_DAY, D, Rules(lookback_days=100))
    trends = {(day, a.direction, a.group): a.echo_of
              for day, alerts in by_day.items() for a in alerts if a.kind == TREND}
    down_day = SPIKE_DAY + dt.timedelta(days=5)
    assert trends == {(SPIKE_DAY, UP, None): SPIKE_DAY, (SPIKE_DAY, UP, ""): SPIKE_DAY,
                      (down_day, DOWN, None): SPIKE_DAY, (down_day, DOWN, ""): SPIKE_DAY}
    assert [a.kind for a in by_day[SPIKE_DAY] if a.echo_of is None] == [SPIKE, SPIKE]


def test_a_crossing_exactly_echo_days_after_the_spike_is_an_echo():
    rules = Rules(lookback_days=100, echo_days=5)
    day = SPIKE_DAY + dt.timedelta(days=5)
    trends = find(detect_alerts(_spike_then_crossings(), day, rules), TREND)
    assert [a.echo_of for a in trends] == [SPIKE_DAY]


def test_a_crossing_further_from_the_spike_than_echo_days_is_not_an_echo():
    rules = Rules(lookback_days=100, echo_days=4)
    day = SPIKE_DAY + dt.timedelta(days=5)
    [service, group] = find(detect_alerts(_spike_then_crossings(), day, rules), TREND) + find(
        detect_alerts(_spike_then_crossings(), day, rules), TREND, group="")
    assert service.echo_of is None and group.echo_of is None
    off = detect_alerts(_spike_then_crossings(), SPIKE_DAY, dataclasses.replace(rules, echo_days=0))
    assert [a.echo_of for a in off if a.kind == TREND] == [None, None]


def test_only_a_spike_of_the_same_series_makes_an_echo():
    # The group spikes on its own; the service total (the group plus a large steady
    # other group) does not, so the service's crossing is news, the group's an echo.
    rng = np.random.default_rng(1)
    spiky = list(100 + rng.standard_normal(120))
    spiky[-12] += 400
    steady = list(2000 + 250 * rng.standard_normal(120))
    history = frame({("S", "a"): spiky, ("S", "b"): steady})
    rules = Rules(lookback_days=100, trend_min_move_pct=0.0, trend_min_move_usd=0.0)
    alerts = [a for day, day_alerts in detect_alerts_by_day(history, SPIKE_DAY, D, rules).items()
              for a in day_alerts]
    assert any(a.kind == SPIKE and a.group == "a" for a in alerts)
    assert not any(a.kind == SPIKE and a.group is None for a in alerts)
    service_trends = [a for a in alerts if a.kind == TREND and a.group is None]
    assert service_trends and all(a.echo_of is None for a in service_trends)
    assert any(a.echo_of == SPIKE_DAY for a in alerts if a.kind == TREND and a.group == "a")


# ---- weekday seasonality: a spike's baseline is the days with D's day of the week ------

def _weekly(weeks: int, saturday: float) -> list[float]:
    """$100 on weekdays and $30 at weekends (a cent of wiggle), ending on D, a Friday;
    the last Saturday before D costs `saturday`."""
    days = pd.date_range(end=pd.Timestamp(D), periods=7 * weeks, freq="D")
    values = [(100.0 if d.dayofweek < 5 else 30.0) + 0.01 * (i % 3) for i, d in enumerate(days)]
    values[-7] = saturday  # D is a Friday: 6 days before it is a Saturday
    return values


def test_a_weekend_spike_hidden_by_the_weekly_pattern_is_found_against_other_saturdays():
    assert D.weekday() == 4
    saturday = D - dt.timedelta(days=6)
    history = frame({("S", ""): _weekly(20, saturday=60.0)})  # double a usual Saturday
    assert not find(detect_alerts(history, saturday, RULES), SPIKE)
    weekday = dataclasses.replace(RULES, seasonality=WEEKDAY)
    [spike] = find(detect_alerts(history, saturday, weekday), SPIKE, UP)
    assert spike.baseline_mean == pytest.approx(30.01, abs=0.01)
    assert spike.delta_usd == pytest.approx(30.0, abs=0.02)


def test_a_weekday_baseline_needs_eight_earlier_days_of_the_same_weekday():
    saturday = D - dt.timedelta(days=6)
    weekday = dataclasses.replace(RULES, seasonality=WEEKDAY, min_history_days=7)
    eight = frame({("S", ""): _weekly(9, saturday=60.0)})  # Saturdays before it: 8
    seven = frame({("S", ""): _weekly(8, saturday=60.0)})  # 7
    assert find(detect_alerts(eight, saturday, weekday), SPIKE, UP)
    assert not find(detect_alerts(seven, saturday, weekday), SPIKE)
