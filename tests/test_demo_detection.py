"""On the demo account, detection finds what the demo planted, with the default rules."""
from __future__ import annotations

import datetime as dt
from functools import lru_cache

import pytest

from _util.alert_kinds import SPIKE, TREND
from _util.report import Alert, Rules
from _util.sources.demo_account import demo_history, planted_events
from procAmzAlerts import detect_alerts

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
