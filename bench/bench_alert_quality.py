"""How many alerts a day, and how many planted incidents caught: the rules' settings
compared on half a year of two accounts (the README's "Alerts worth reading" tables).

Usage:
    .venv/bin/python bench/bench_alert_quality.py            # both accounts, 180 days
    .venv/bin/python bench/bench_alert_quality.py --days 90

1. The demo account, scored against its planted spikes and turns (as
   `--write-demo-labels` writes them): the defaults; without the trend gate; without
   the gate and echoes (the rules before issue 13); and weekday seasonality.
2. A synthetic account with a strong weekly pattern (weekends cost 30% of a weekday) and
   a spike of +80% of the day's usual cost planted every 4 days, on every day of the
   week in turn: no seasonality against weekday seasonality.

Each row is a backtest (`procBacktest.replay`: exactly what daily runs report), scored
by `_util/detection/labels.score` with a 7-day window. "New a day" counts the alerts a
reader is told about: new, not echoes, service and group level.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from _util.alert_kinds import SPIKE, UP  # noqa: E402
from _util.detection.labels import ANY_RULE, Incident, LabelScore, score  # noqa: E402
from _util.report import WEEKDAY, Rules  # noqa: E402
from _util.sources.demo_account import demo_history, planted_incidents  # noqa: E402
from procBacktest import replay  # noqa: E402
from procLifecycle import EPISODE_CAP_DAYS  # noqa: E402

LAST = dt.date(2026, 11, 22)
WINDOW_DAYS = 7
DEFAULTS = Rules()
NO_GATE = dataclasses.replace(DEFAULTS, trend_min_move_pct=0.0, trend_min_move_usd=0.0)
SETTINGS = {
    "defaults (gate 5% and $1, echoes 7 days)": DEFAULTS,
    "no trend gate": NO_GATE,
    "no gate, no echoes (before issue 13)": dataclasses.replace(NO_GATE, echo_days=0),
    "weekday seasonality": dataclasses.replace(DEFAULTS, seasonality=WEEKDAY),
}

# The weekly account.
WEEKLY_SERVICES = 30
WEEKEND_SHARE = 0.3
NOISE = 0.05
SPIKE_EVERY = 4
SPIKE_SIZE = 0.8


def weekly_account(first: dt.date, last: dt.date) -> tuple[pd.DataFrame, list[Incident]]:
    """The weekly account's history for first..last and its planted spikes."""
    rng = np.random.default_rng(13)
    days = pd.date_range(first, last, freq="D")
    level = 20.0 + 180.0 * rng.random(WEEKLY_SERVICES)
    weekend = np.asarray(days.dayofweek >= 5)
    usual = np.where(weekend[:, None], WEEKEND_SHARE, 1.0) * level[None, :]
    cost = usual * (1.0 + NOISE * rng.standard_normal(usual.shape))
    incidents = []
    for t in range(0, len(days), SPIKE_EVERY):
        s = (t // SPIKE_EVERY) % WEEKLY_SERVICES
        cost[t, s] += max(SPIKE_SIZE * usual[t, s], 5.0)
        incidents.append(Incident(day=days[t].date(), service=f"Weekly {s:02d}", kind=SPIKE,
                                  direction=UP))
    frame = pd.DataFrame({
        "usage_date": np.repeat(days.values, WEEKLY_SERVICES),
        "service": np.tile([f"Weekly {s:02d}" for s in range(WEEKLY_SERVICES)], len(days)),
        "group_value": "", "amount": cost.ravel(), "estimated": False})
    return frame, incidents


def scored(history: pd.DataFrame, incidents: list[Incident], first: dt.date,
           rules: Rules) -> LabelScore:
    return score(incidents, replay(history, first, LAST, rules), WINDOW_DAYS)


def rule_row(name: str, result: LabelScore, weekend_days: set[dt.date] | None = None) -> str:
    by_rule = {s.rule: s for s in result.rules}
    spikes = [r for r in result.results if r.incident.kind == SPIKE]
    turns = [r for r in result.results if r.incident.kind != SPIKE]
    on_day = sum(r.lag_days == 0 for r in spikes)
    cells = [name, f"{on_day}/{len(spikes)}"]
    if weekend_days is not None:
        weekend = [r for r in spikes if r.incident.day in weekend_days]
        cells.append(f"{sum(r.lag_days == 0 for r in weekend)}/{len(weekend)}")
    else:
        caught = [r.lag_days for r in turns if r.lag_days is not None]
        cells.append(f"{len(caught)}/{len(turns)}"
                     + (f" (median {float(np.median(caught)):g} d)" if caught else ""))
    cells += [f"{by_rule[SPIKE].new_per_day:.2f}", f"{by_rule['trend'].new_per_day:.2f}",
              f"{by_rule[ANY_RULE].new_per_day:.2f}", str(by_rule[ANY_RULE].unlabelled)]
    return "| " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=180)
    args = parser.parse_args()
    first = LAST - dt.timedelta(days=args.days - 1)
    lead = args.days + EPISODE_CAP_DAYS + DEFAULTS.lookback_days + DEFAULTS.echo_days

    demo = demo_history(LAST, lead)
    planted = planted_incidents(first, LAST)
    print(f"Demo account, {first}..{LAST}: {len(planted)} planted events "
          f"(spikes on their day; turns within {WINDOW_DAYS} days)\n")
    print("| rules | spikes caught on the day | turns caught | spike alerts a day "
          "| trend alerts a day | new alerts a day | new alerts on no planted event |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, rules in SETTINGS.items():
        print(rule_row(name, scored(demo, planted, first, rules)))

    weekly, incidents = weekly_account(LAST - dt.timedelta(days=lead - 1), LAST)
    incidents = [i for i in incidents if i.day >= first]
    weekend_days = {i.day for i in incidents if i.day.weekday() >= 5}
    print(f"\nWeekly account ({WEEKLY_SERVICES} services, weekends at "
          f"{WEEKEND_SHARE:.0%} of a weekday, {NOISE:.0%} noise), {first}..{LAST}: "
          f"{len(incidents)} planted spikes of +{SPIKE_SIZE:.0%}\n")
    print("| seasonality | spikes caught on the day | of them at weekends | spike alerts a day "
          "| trend alerts a day | new alerts a day | new alerts on no planted spike |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for name, rules in (("none", DEFAULTS), (WEEKDAY, SETTINGS["weekday seasonality"])):
        print(rule_row(name, scored(weekly, incidents, first, rules), weekend_days))


if __name__ == "__main__":
    main()
