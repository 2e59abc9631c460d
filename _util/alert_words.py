"""How an alert's (and the headline's) numbers read in words: one wording for Slack, the
pages and the plots.

Plain text (the edges escape it for mrkdwn or HTML); `money` is the edge's formatter, which
differs only in how it writes a minus and a missing number.
"""
from __future__ import annotations

import datetime as dt
from typing import Callable

from _util.money import money as plain_money
from _util.report import WEEKDAY, Alert, Headline, Rules

MoneyFormat = Callable[[float | None], str]
NameFormat = Callable[[str], str]
# Services a partial-data note names; the rest are counted.
NOT_IN_YET_NAMES = 3


def partial_text(headline: Headline, day: str, money: MoneyFormat = plain_money,
                 name: NameFormat = str) -> str | None:
    """'2 services with costs on each of the 7 days before have none for 2026-11-22 yet:
    Amazon EC2 (usually $1,200.00/day), AWS Lambda (usually $50.00/day); the total is likely
    about $1,250.00 short.' None when the day's data does not look partial. `name` makes a
    service name safe for the edge."""
    missing = headline.not_in_yet
    if not missing:
        return None
    noun = "service" if len(missing) == 1 else "services"
    listed = ", ".join(f"{name(s.service)} (usually {money(s.usd)}/day)"
                       for s in missing[:NOT_IN_YET_NAMES])
    more = len(missing) - NOT_IN_YET_NAMES
    if more > 0:
        listed += f" and {more} more"
    return (f"{len(missing)} {noun} with costs on each of the 7 days before "
            f"{'has' if len(missing) == 1 else 'have'} none for {day} yet: {listed}; the "
            f"total is likely about {money(headline.not_in_yet_usd)} short.")


def move_text(alert: Alert, money: MoneyFormat = plain_money) -> str | None:
    """'7-day average $412.00/day, 9% above the 28-day average ($378.00/day)': the move a
    trend alert's materiality gate measured; None for an alert without the averages."""
    if alert.mean7 is None or alert.mean28 is None:
        return None
    head = f"7-day average {money(alert.mean7)}/day"
    pct = alert.move_pct
    if pct is None:
        return f"{head}, against {money(alert.mean28)}/day over 28 days"
    where = "above" if pct >= 0 else "below"
    size = f"{abs(pct):.0f}%" if abs(pct) >= 10 else f"{abs(pct):.1f}%"
    return f"{head}, {size} {where} the 28-day average ({money(alert.mean28)}/day)"


def echo_text(alert: Alert) -> str | None:
    """Why an echo is left out of the digest; None for an alert that is not one."""
    if alert.echo_of is None:
        return None
    return (f"echo of the spike of {alert.echo_of.isoformat()} on the same series: a spike "
            "moves the MACD both ways, so this crossing is left out of Slack")


def baseline_text(rules: Rules, day: dt.date, days: int) -> str:
    """'364 days', or '52 Mondays' with weekday seasonality: what a spike's mean is over."""
    if rules.seasonality == WEEKDAY:
        return f"{days} {day:%A}{'' if days == 1 else 's'}"
    return f"{days} day{'' if days == 1 else 's'}"


def usual_text(rules: Rules, day: dt.date) -> str:
    """'usual', or 'usual Monday' with weekday seasonality (the Slack line's baseline)."""
    return f"usual {day:%A}" if rules.seasonality == WEEKDAY else "usual"
