"""The commitment alert rules against a straightforward per-day computation on random
data, their episodes (new, continuing, since when) and mutes, and the
`[[commitment_mute]]` entries of the config."""
from __future__ import annotations

import datetime as dt
import random

import pytest

from _util.commitment_alerts import (
    CONTINUING,
    COVERAGE_DROP,
    EXPIRING,
    LOW_UTILISATION,
    NEW,
    CommitmentMute,
    Thresholds,
    alerts_on,
    day_alerts,
    parse_commitment_mutes,
)
from _util.errors import ConfigError
from _util.store.commitments import RESERVATIONS, SAVINGS_PLANS, TOTAL, CoverageRow, UtilisationRow

START = dt.date(2026, 8, 1)
DAYS = 120
THRESHOLDS = Thresholds(min_utilisation_pct=80.0, coverage_drop_pts=5.0)


def _random_rows(seed: int) -> tuple[list[UtilisationRow], list[CoverageRow]]:
    """Three subjects with utilisation in runs around the threshold, end dates near and
    far, coverage that wanders and drops now and then, and days missing."""
    rng = random.Random(seed)
    utilisation, coverage = [], []
    subjects = [(SAVINGS_PLANS, "arn:sp-1", START + dt.timedelta(days=rng.randint(60, 200))),
                (RESERVATIONS, "ri-1", START + dt.timedelta(days=rng.randint(20, 140))),
                (RESERVATIONS, "ri-2", None)]
    level = {s: rng.uniform(60, 100) for _, s, _ in subjects}
    cover = {SAVINGS_PLANS: 75.0, RESERVATIONS: 60.0}
    for i in range(DAYS):
        day = START + dt.timedelta(days=i)
        for kind, subject, end in subjects:
            if rng.random() < 0.05:
                continue  # a day without figures
            if rng.random() < 0.15:
                level[subject] = rng.uniform(55, 100)
            pct = None if rng.random() < 0.02 else level[subject] + rng.uniform(-2, 2)
            utilisation.append(UtilisationRow(day, kind, subject, "t", end, pct, 24.0,
                                              24.0 * (pct or 0) / 100, rng.uniform(0, 50)))
        for kind in cover:
            if rng.random() < 0.08:
                continue
            cover[kind] = max(0.0, min(100.0, cover[kind] + rng.gauss(0, 3)
                                       - (12 if rng.random() < 0.06 else 0)))
            coverage.append(CoverageRow(day, kind, TOTAL, None, None, 1.0, 1.0, cover[kind]))
            coverage.append(CoverageRow(day, kind, "m5.large", None, None, 1.0, 1.0, 0.0))
    return utilisation, coverage


def _expected_keys(day, utilisation, coverage, t: Thresholds) -> set[tuple[str, str, str]]:
    """The rules written out plainly, one subject and one day at a time."""
    keys = set()
    for r in utilisation:
        if r.usage_date == day and r.subject != TOTAL:
            if r.utilisation_pct is not None and r.utilisation_pct < t.min_utilisation_pct:
                keys.add((LOW_UTILISATION, r.kind, r.subject))
            if r.end_date is not None and 0 <= (r.end_date - day).days <= 30:
                keys.add((EXPIRING, r.kind, r.subject))
    for kind in (SAVINGS_PLANS, RESERVATIONS):
        today = [c.coverage_pct for c in coverage
                 if c.kind == kind and c.key == TOTAL and c.usage_date == day]
        before = [c.coverage_pct for c in coverage
                  if c.kind == kind and c.key == TOTAL
                  and 1 <= (day - c.usage_date).days <= 7]
        if today and before and sum(before) / len(before) - today[0] > t.coverage_drop_pts:
            keys.add((COVERAGE_DROP, kind, kind))
    return keys


def _expected_start(key, day, utilisation, coverage, t: Thresholds) -> dt.date:
    start = day
    while (day - start).days < 90 and key in _expected_keys(
            start - dt.timedelta(days=1), utilisation, coverage, t):
        start -= dt.timedelta(days=1)
    return start


@pytest.mark.parametrize("seed", range(4))
def test_each_days_alerts_and_episodes_match_a_per_day_computation(seed):
    utilisation, coverage = _random_rows(seed)
    seen = set()
    for i in range(8, DAYS):
        day = START + dt.timedelta(days=i)
        alerts = day_alerts(day, utilisation, coverage, THRESHOLDS)
        assert {a.key for a in alerts} == _expected_keys(day, utilisation, coverage, THRESHOLDS)
        for a in alerts:
            start = _expected_start(a.key, day, utilisation, coverage, THRESHOLDS)
            assert a.episode_start == start, (day, a.key)
            assert a.episode_days == (day - start).days + 1
            assert a.status == (NEW if start == day else CONTINUING)
            seen.add((a.rule, a.status))
    # The data reaches every rule, new and continuing.
    assert {r for r, _ in seen} == {LOW_UTILISATION, EXPIRING, COVERAGE_DROP}
    assert {s for _, s in seen} == {NEW, CONTINUING}


def _row(day, pct, end=None, subject="ri-1"):
    return UtilisationRow(day, RESERVATIONS, subject, "r5.large eu-west-1", end, pct, 48.0,
                          48.0 * pct / 100, 1.5)


@pytest.mark.parametrize("pct,fires", [(79.99, True), (80.0, False), (100.0, False)])
def test_low_utilisation_fires_strictly_below_the_threshold(pct, fires):
    day = dt.date(2026, 11, 22)
    alerts = alerts_on(day, [_row(day, pct)], [], THRESHOLDS)
    assert [a.rule for a in alerts] == ([LOW_UTILISATION] if fires else [])


@pytest.mark.parametrize("days_left,fires", [(-1, False), (0, True), (30, True), (31, False)])
def test_expiring_fires_within_thirty_days_of_the_end_date(days_left, fires):
    day = dt.date(2026, 11, 22)
    alerts = alerts_on(day, [_row(day, 95.0, day + dt.timedelta(days=days_left))], [], THRESHOLDS)
    assert [a.rule for a in alerts] == ([EXPIRING] if fires else [])
    if fires:
        assert alerts[0].figures == {"end_date": (day + dt.timedelta(days=days_left)).isoformat(),
                                     "days_left": days_left}


def test_a_muted_alert_keeps_its_episode_and_an_expired_entry_no_longer_mutes():
    day = dt.date(2026, 11, 22)
    rows = [_row(day - dt.timedelta(days=i), 50.0) for i in range(3)]
    mutes = [CommitmentMute("ri-1", "resizing the cache", rule=LOW_UTILISATION),
             CommitmentMute("ri-1", "expired", until=day - dt.timedelta(days=1))]
    (alert,) = day_alerts(day, rows, [], THRESHOLDS, mutes)
    assert (alert.muted, alert.mute_reason, alert.status, alert.episode_days) == (
        True, "resizing the cache", CONTINUING, 3)
    (alert,) = day_alerts(day, rows, [], THRESHOLDS, mutes[1:])
    assert not alert.muted
    other_rule = [CommitmentMute("ri-1", "renewal decided", rule=EXPIRING)]
    assert not day_alerts(day, rows, [], THRESHOLDS, other_rule)[0].muted


def test_mute_entries_are_read_from_the_config():
    raw = [{"id": "arn:sp-1", "reason": " fleet change ", "rule": "low_utilisation",
            "until": dt.date(2026, 12, 31)}, {"id": "reservations", "reason": "known"}]
    assert parse_commitment_mutes(raw, "--config file c.toml") == (
        CommitmentMute("arn:sp-1", "fleet change", LOW_UTILISATION, dt.date(2026, 12, 31)),
        CommitmentMute("reservations", "known"))


@pytest.mark.parametrize("entry,message", [
    ({"reason": "x"}, "commitment_mute entry 1 needs an id"),
    ({"id": "ri-1"}, "needs a reason"),
    ({"id": "ri-1", "reason": "x", "rule": "spike"}, "rule is 'spike'; allowed: low_utilisation"),
    ({"id": "ri-1", "reason": "x", "until": "soon"}, "until is 'soon'"),
    ({"id": "ri-1", "reason": "x", "service": "EC2"}, "unknown key(s) service"),
])
def test_a_bad_mute_entry_is_one_line_naming_it(entry, message):
    with pytest.raises(ConfigError, match=None) as error:
        parse_commitment_mutes([entry], "--config file c.toml")
    assert message in str(error.value)
