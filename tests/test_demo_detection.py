"""On the demo account, detection finds what the demo planted, with the default rules."""
from __future__ import annotations

import dataclasses
import datetime as dt
from functools import lru_cache

import pytest

from _util.alert_kinds import SPIKE, TREND
from _util.detection.labels import ANY_RULE, score
from _util.report import Alert, Rules
from _util.sources.demo_account import demo_history, planted_events, planted_incidents
from procAmzAlerts import detect_alerts
from procBacktest import replay
from procLifecycle import EPISODE_CAP_DAYS

RULES = Rules()
# Two run days half a year apart, so the rotation of spike targets and the phases of the
# trend waves are seen in different positions.
RUN_DAYS = (dt.date(2024, 6, 11), dt.date(2024, 12, 3))
# MACD and its signal are moving averages: a turn in the trend shows as a crossing a few
# days after the turning point, never before it.
TREND_LAG_DAYS = 7


@lru_cache(maxsize=None)
def _history(run_day: dt.date):
    # Amounts depend only on their day, so one frame reaching past the run day serves
    # every detection day from 90 days before it to TREND_LAG_DAYS after it.
    return demo_history(run_day + dt.timedelta(days=TREND_LAG_DAYS),
                        RULES.lookback_days + 100 + TREND_LAG_DAYS)


@lru_cache(maxsize=None)
def _alerts(run_day: dt.date, day: dt.date) -> tuple[Alert, ...]:
    return detect_alerts(_history(run_day), day, RULES)


def _events(kind: str):
    return [(run_day, e) for run_day in RUN_DAYS for e in planted_events(run_day)
            if e.kind == kind]


def _label(case) -> str:
    run_day, e = case
    return f"{run_day}:{e.day}:{e.direction}:{e.service}:{e.group}"


def test_the_demo_plants_spikes_and_trend_changes_to_find():
    for run_day in RUN_DAYS:
        kinds = {e.kind for e in planted_events(run_day)}
        assert kinds == {SPIKE, TREND}


@pytest.mark.parametrize("case", _events(SPIKE), ids=_label)
def test_every_planted_spike_is_reported_on_its_day(case):
    run_day, event = case
    found = [a for a in _alerts(run_day, event.day)
             if (a.kind, a.direction, a.service, a.group)
             == (SPIKE, event.direction, event.service, event.group)]
    assert found, f"no {event.direction} spike for {event.service}/{event.group} on {event.day}"


@pytest.mark.parametrize("case", _events(TREND), ids=_label)
def test_every_planted_trend_change_crosses_within_a_few_days(case):
    run_day, event = case
    seen = []
    for lag in range(TREND_LAG_DAYS + 1):
        day = event.day + dt.timedelta(days=lag)
        for a in _alerts(run_day, day):
            if (a.kind, a.service, a.group) == (TREND, event.service, event.group):
                seen.append((lag, a.direction))
    assert (event.direction in {d for _, d in seen}), (
        f"no {event.direction} crossing for {event.service}/{event.group} within "
        f"{TREND_LAG_DAYS} days of {event.day}; crossings seen (lag, direction): {seen}")


# ---- half a year of the demo, scored against its planted events (issue 13) -------------

HALF_YEAR_LAST = dt.date(2026, 11, 22)
HALF_YEAR_FIRST = HALF_YEAR_LAST - dt.timedelta(days=179)


@lru_cache(maxsize=None)
def _half_year_score(rules: Rules):
    history = demo_history(HALF_YEAR_LAST, 180 + EPISODE_CAP_DAYS + rules.lookback_days
                           + rules.echo_days)
    by_day = replay(history, HALF_YEAR_FIRST, HALF_YEAR_LAST, rules)
    return score(planted_incidents(HALF_YEAR_FIRST, HALF_YEAR_LAST), by_day, TREND_LAG_DAYS)


def test_half_a_year_of_the_demo_catches_every_planted_event_with_few_alerts_a_day():
    scored = _half_year_score(RULES)
    spikes = [r for r in scored.results if r.incident.kind == SPIKE]
    turns = [r for r in scored.results if r.incident.kind == TREND]
    assert len(spikes) == 60 and len(turns) >= 30
    late_spikes = [(r.incident, r.lag_days) for r in spikes if r.lag_days != 0]
    assert late_spikes == []
    assert all(r.first_alert is not None and r.lag_days <= TREND_LAG_DAYS for r in turns), [
        (r.incident, r.lag_days) for r in turns if r.first_alert is None]
    [every_rule] = [s for s in scored.rules if s.rule == ANY_RULE]
    assert every_rule.new_per_day <= 2.0


def test_without_the_gate_and_echoes_the_same_half_year_is_a_dozen_alerts_a_day():
    plain = dataclasses.replace(RULES, trend_min_move_pct=0.0, trend_min_move_usd=0.0,
                                echo_days=0)
    [every_rule] = [s for s in _half_year_score(plain).rules if s.rule == ANY_RULE]
    assert every_rule.recall == 1.0 and every_rule.new_per_day > 8
