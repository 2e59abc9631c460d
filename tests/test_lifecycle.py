"""Alert episodes (issue 8): a step change is new once, then continuing with its day count;
a gap starts a new episode; statuses come from stored history alone."""
from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import numpy as np
import pandas as pd
import sqlalchemy as sa

import procAmzAlerts
import procLifecycle
import procSummaries
from _util.alert_kinds import DOWN, SPIKE, TREND, UP
from _util.report import Alert, Report, Rules
from _util.store import cost_store
from _util.store.cost_store import CostRow, SourceState, replace_days

START = dt.date(2024, 1, 1)
STEP = dt.date(2024, 8, 1)   # 213 quiet days before it
METRIC = "UnblendedCost"


def alert(service="S", group=None, kind=SPIKE, direction=UP, delta=20.0) -> Alert:
    return Alert(kind=kind, direction=direction, service=service, group=group, usd=30.0,
                 baseline_mean=10.0, baseline_std=1.0, delta_usd=delta)


def day(n: int) -> dt.date:
    return STEP + dt.timedelta(days=n)


# ---- pure: episodes from a day -> keys mapping ----------------------------------------

def test_first_day_of_a_run_is_new_with_one_day():
    a = alert()
    [out] = procLifecycle.with_episodes([a], day(0), {day(-1): set()}, day(-90))
    assert (out.status, out.episode_start, out.episode_days) == ("new", day(0), 1)


def test_unbroken_run_counts_days_back_to_its_first():
    a = alert()
    fired = {day(-i): {a.key} for i in range(1, 4)} | {day(-4): set()}
    [out] = procLifecycle.with_episodes([a], day(0), fired, day(-90))
    assert (out.status, out.episode_start, out.episode_days) == ("continuing", day(-3), 4)


def test_a_different_kind_direction_or_group_is_another_alert():
    fired = {day(-1): {alert(kind=TREND).key, alert(direction=DOWN).key, alert(group="x").key}}
    [out] = procLifecycle.with_episodes([alert()], day(0), fired, day(-90))
    assert out.status == "new"


def test_episode_reaching_the_cap_starts_at_the_cap_and_says_it_may_be_older():
    a = alert()
    first = day(-90)
    fired = {first + dt.timedelta(days=i): {a.key} for i in range(90)}
    [out] = procLifecycle.with_episodes([a], day(0), fired, first)
    assert (out.episode_start, out.episode_days) == (first, 91)
    assert procLifecycle.is_capped(out, day(0))
    [short] = procLifecycle.with_episodes([a], day(0), {day(-1): {a.key}}, first)
    assert not procLifecycle.is_capped(short, day(0))


# ---- from stored history: a step change ----------------------------------------------

def step_history(off_days: tuple[int, ...] = ()) -> pd.DataFrame:
    """S costs about $10 a day, then $30 from STEP on, except on `off_days` (back to
    $10): a step that the spike rule fires on every day for weeks."""
    rng = np.random.default_rng(1)
    days = pd.date_range(START, day(40), freq="D")
    cost = 10 + rng.standard_normal(len(days)) * 0.5
    after = np.asarray(days >= pd.Timestamp(STEP))
    off = np.asarray(days.isin([pd.Timestamp(day(n)) for n in off_days]))
    cost = np.where(after & ~off, cost + 20, cost)
    return pd.DataFrame({"usage_date": days, "service": "S", "group_value": "", "amount": cost,
                         "estimated": False})


def store(engine, history: pd.DataFrame) -> None:
    rows = [CostRow(r.usage_date.date(), r.service, r.group_value, float(r.amount), "USD", False)
            for r in history.itertuples()]
    first, last = rows[0].usage_date, rows[-1].usage_date
    replace_days(engine, METRIC, first, last, rows,
                 SourceState("demo", "TAG:Name", "", first, last, None))


def run_day(engine, d: dt.date, rules: Rules = Rules(), mutes=(),
            pass_history: bool = False) -> Report:
    """Detection, summaries and the lifecycle for day `d`, as the driver runs them."""
    from _util.store.cost_store import load_history
    history = load_history(engine, METRIC, procAmzAlerts.history_start(d, rules), d)
    report = Report(day=d, metric=METRIC, group_by="TAG:Name", rules=rules,
                    summary=procSummaries.summarise(history, d, rules.lookback_days),
                    alerts=procAmzAlerts.detect_alerts(history, d, rules))
    return procLifecycle.apply(report, engine, METRIC, tuple(mutes),
                               history if pass_history else None)


def spike(report: Report) -> Alert | None:
    found = [a for a in report.alerts if a.key == (SPIKE, UP, "S", None)]
    return found[0] if found else None


def test_step_change_is_new_on_its_first_day_then_continuing_with_its_day_count(db_engine):
    store(db_engine, step_history())
    assert spike(run_day(db_engine, day(-1))) is None
    first = spike(run_day(db_engine, day(0)))
    assert (first.status, first.episode_start, first.episode_days) == ("new", day(0), 1)
    for n in (1, 3, 9):
        later = spike(run_day(db_engine, day(n)))
        assert (later.status, later.episode_start, later.episode_days) == \
            ("continuing", day(0), n + 1), n


def test_a_gap_day_ends_the_episode_and_the_next_firing_starts_a_new_one(db_engine):
    store(db_engine, step_history(off_days=(4, 5)))
    assert spike(run_day(db_engine, day(3))).episode_days == 4
    assert spike(run_day(db_engine, day(4))) is None
    again = spike(run_day(db_engine, day(6)))
    assert (again.status, again.episode_start, again.episode_days) == ("new", day(6), 1)
    after = spike(run_day(db_engine, day(8)))
    assert (after.status, after.episode_start, after.episode_days) == ("continuing", day(6), 3)


def test_re_running_any_day_in_any_order_gives_the_same_statuses(db_engine):
    store(db_engine, step_history(off_days=(4,)))
    days = [day(n) for n in (7, 0, 3, 5, 2)]
    first_pass = {d: run_day(db_engine, d).alerts for d in days}
    second_pass = {d: run_day(db_engine, d).alerts for d in reversed(days)}
    assert first_pass == second_pass
    assert {d: spike(run_day(db_engine, d)).status for d in days} == {
        day(7): "continuing", day(0): "new", day(3): "continuing", day(5): "new",
        day(2): "continuing"}


def test_statuses_follow_the_runs_rules(db_engine):
    # With Z = 12 the step fires only while the baseline is quiet: the first days.
    store(db_engine, step_history())
    strict = Rules(z=12.0)
    statuses = []
    for n in range(0, 12):
        found = spike(run_day(db_engine, day(n), strict))
        statuses.append(None if found is None else (found.status, found.episode_days))
    fired = [s for s in statuses if s is not None]
    assert fired[0] == ("new", 1) and len(fired) < len(statuses)
    assert fired == [("new", 1)] + [("continuing", k) for k in range(2, len(fired) + 1)]


def test_episodes_match_the_backtest_of_the_same_days(db_engine):
    store(db_engine, step_history(off_days=(4, 5)))
    rules = Rules()
    from _util.store.cost_store import load_history
    history = load_history(db_engine, METRIC, START, day(12))
    by_day = procAmzAlerts.detect_alerts_by_day(history, day(-2), day(12), rules)
    fired = procLifecycle.keys_by_day(by_day)
    for n in (0, 3, 6, 12):
        got = run_day(db_engine, day(n), rules).alerts
        want = procLifecycle.with_episodes(by_day[day(n)], day(n), fired, day(-2))
        assert [(a.key, a.status, a.episode_days) for a in got] == \
            [(a.key, a.status, a.episode_days) for a in want]


def test_a_report_without_alerts_or_mutes_reads_nothing(db_engine):
    store(db_engine, step_history())
    report = dataclasses.replace(run_day(db_engine, day(2)), alerts=())
    unreachable = sa.create_engine("mysql+pymysql://bot@127.0.0.1:1/costs")
    assert procLifecycle.apply(report, unreachable, METRIC, ()) == report


def test_lifecycle_logs_new_and_continuing_counts(db_engine, caplog):
    store(db_engine, step_history())
    with caplog.at_level(logging.INFO, logger="procLifecycle"):
        report = run_day(db_engine, day(2))
    continuing = sum(a.status == "continuing" for a in report.alerts)
    assert continuing >= 1
    assert f"{len(report.alerts) - continuing} new, {continuing} continuing" in caplog.text


def test_services_are_looked_back_in_batches_of_bounded_rows():
    rows = {"a": 5, "b": 5, "c": 20, "d": 1}
    assert procLifecycle.service_batches(["a", "b", "c", "d", "e"], rows, 10) == [
        ["a", "b"], ["c"], ["d", "e"]]
    assert procLifecycle.service_batches([], rows, 10) == []


def test_batched_look_back_gives_the_same_statuses(db_engine, monkeypatch):
    step = step_history(off_days=(4,))
    store(db_engine, pd.concat([step, step.assign(service="T", group_value="x"),
                                step.assign(service="U", amount=step["amount"] * 2)],
                               ignore_index=True))
    whole = run_day(db_engine, day(7))
    monkeypatch.setattr(procLifecycle, "LOOKBACK_ROWS", 1)
    monkeypatch.setattr(cost_store, "SERVICES_PER_QUERY", 1)
    batched = run_day(db_engine, day(7))
    assert batched == whole
    assert {a.service for a in whole.alerts if a.status == "continuing"} == {"S", "T", "U"}


def test_the_runs_own_history_gives_the_same_statuses_as_reading_it_again(db_engine):
    store(db_engine, step_history(off_days=(12,)))
    for n in (0, 3, 9, 11, 13):   # 10 days: beyond the first step back (7)
        read = run_day(db_engine, day(n))
        held = run_day(db_engine, day(n), pass_history=True)
        assert held == read, n
    assert spike(held).status == "new" and spike(run_day(db_engine, day(11))).episode_days == 12
