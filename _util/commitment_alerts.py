"""The commitment alerts: money paid for Reserved Instances and Savings Plans that is not
used, on-demand spend that slipped out from under them, and commitments about to end.

Three rules over the stored daily figures (`_util/store/commitments.py`), each about one
subject (a plan's ARN, a reservation's subscription ID, or for coverage the kind itself,
`savings_plans` or `reservations`):
- `low_utilisation`: a plan or a reservation used below COST_TRACKING_MIN_UTILISATION_PCT
  on the day (an unused commitment is paid all the same);
- `coverage_drop`: a kind's coverage on the day more than COST_TRACKING_COVERAGE_DROP_PCT
  points below its mean of the 7 days before (at least one of them stored);
- `expiring`: a plan or a reservation whose end date is within EXPIRY_DAYS days (from the
  end dates Cost Explorer sends with the figures), so its renewal is decided in time.

The lifecycle is the cost alerts' (`procLifecycle.py`): an alert is continuing when the
same (rule, subject) fired the day before, its episode starts on the first day of the
unbroken run of days it fired, found by applying the same rules to the stored days before
(at most EPISODE_CAP_DAYS), so a day re-run gives the same answer. Mutes are
`[[commitment_mute]]` entries of the TOML config (`id`, optional `rule`, optional `until`,
a `reason`), like `[[mute]]` for costs: a muted alert stays in report.json and on the site
and is left out of Slack. Everything here is pure: rows in, alerts out.
"""
from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping

from _util.config_tables import entry_date, table_entries
from _util.errors import ConfigError
from _util.store.commitments import TOTAL, CoverageRow, UtilisationRow

LOW_UTILISATION = "low_utilisation"
COVERAGE_DROP = "coverage_drop"
EXPIRING = "expiring"
RULES = (LOW_UTILISATION, COVERAGE_DROP, EXPIRING)
NEW, CONTINUING = "new", "continuing"
EXPIRY_DAYS = 30
DROP_BASELINE_DAYS = 7
EPISODE_CAP_DAYS = 90


@dataclass(frozen=True)
class Thresholds:
    min_utilisation_pct: float = 80.0
    coverage_drop_pts: float = 5.0


@dataclass(frozen=True)
class CommitmentMute:
    """One `[[commitment_mute]]` entry: alerts about a subject a user already knows of."""

    id: str
    reason: str
    rule: str | None = None
    until: dt.date | None = None


@dataclass(frozen=True)
class CommitmentAlert:
    """One alert: its rule, what it is about, its figures (by name, as report.json shows
    them) and its place in an episode."""

    rule: str
    kind: str  # savings_plans or reservations
    id: str  # a plan's ARN, a reservation's ID, or the kind (coverage)
    type: str  # "ComputeSavingsPlans", "r5.large eu-west-1", "Savings Plans coverage"
    figures: Mapping[str, Any] = field(default_factory=dict)
    status: str = NEW
    episode_start: dt.date | None = None
    episode_days: int = 1
    muted: bool = False
    mute_reason: str | None = None

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.rule, self.kind, self.id)


# ---------------------------------------------------------------- the rules


def alerts_on(day: dt.date, utilisation: Iterable[UtilisationRow],
              coverage: Iterable[CoverageRow], thresholds: Thresholds) -> list[CommitmentAlert]:
    """The alerts of `day` from the rows (coverage needs the 7 days before too)."""
    alerts = []
    for r in utilisation:
        if r.usage_date != day or r.subject == TOTAL:
            continue
        if r.utilisation_pct is not None and r.utilisation_pct < thresholds.min_utilisation_pct:
            alerts.append(CommitmentAlert(LOW_UTILISATION, r.kind, r.subject, r.subject_type, {
                "utilisation_pct": r.utilisation_pct, "unused_usd": r.unused_usd,
                "threshold_pct": thresholds.min_utilisation_pct}))
        if r.end_date is not None and 0 <= (r.end_date - day).days <= EXPIRY_DAYS:
            alerts.append(CommitmentAlert(EXPIRING, r.kind, r.subject, r.subject_type, {
                "end_date": r.end_date.isoformat(), "days_left": (r.end_date - day).days}))
    totals: dict[str, dict[dt.date, float]] = defaultdict(dict)
    for c in coverage:
        if c.key == TOTAL and c.coverage_pct is not None:
            totals[c.kind][c.usage_date] = c.coverage_pct
    for kind, by_day in sorted(totals.items()):
        if day not in by_day:
            continue
        before = [by_day[d] for d in (day - dt.timedelta(days=i)
                                      for i in range(1, DROP_BASELINE_DAYS + 1)) if d in by_day]
        if not before:
            continue
        mean = sum(before) / len(before)
        drop = mean - by_day[day]
        if drop > thresholds.coverage_drop_pts:
            alerts.append(CommitmentAlert(COVERAGE_DROP, kind, kind, f"{_kind_words(kind)} coverage", {
                "coverage_pct": by_day[day], "prev7_mean_pct": mean, "drop_pts": drop,
                "threshold_pts": thresholds.coverage_drop_pts}))
    return alerts


def _kind_words(kind: str) -> str:
    return "Savings Plans" if kind == "savings_plans" else "Reserved Instance"


# ---------------------------------------------------------------- episodes


def fired_by_day(first: dt.date, last: dt.date, utilisation: list[UtilisationRow],
                 coverage: list[CoverageRow],
                 thresholds: Thresholds) -> dict[dt.date, set[tuple[str, str, str]]]:
    """The alert keys that fired on each day first..last (the same rules, day by day)."""
    u_by_day: dict[dt.date, list[UtilisationRow]] = defaultdict(list)
    for r in utilisation:
        u_by_day[r.usage_date].append(r)
    c_by_day: dict[dt.date, list[CoverageRow]] = defaultdict(list)
    for c in coverage:
        if c.key == TOTAL:  # the only coverage rows the rules read
            c_by_day[c.usage_date].append(c)
    fired = {}
    day = first
    while day <= last:
        window = [c for i in range(DROP_BASELINE_DAYS + 1)
                  for c in c_by_day.get(day - dt.timedelta(days=i), ())]
        fired[day] = {a.key for a in alerts_on(day, u_by_day.get(day, []), window, thresholds)}
        day += dt.timedelta(days=1)
    return fired


def with_episodes(alerts: Iterable[CommitmentAlert], day: dt.date,
                  fired: Mapping[dt.date, set], first_day: dt.date) -> list[CommitmentAlert]:
    """`alerts` of `day` with status and episode from the keys that fired before."""
    out = []
    for alert in alerts:
        start = day
        previous = day - dt.timedelta(days=1)
        while previous >= first_day and alert.key in fired.get(previous, ()):
            start, previous = previous, previous - dt.timedelta(days=1)
        days = (day - start).days + 1
        out.append(replace(alert, status=NEW if days == 1 else CONTINUING,
                           episode_start=start, episode_days=days))
    return out


def day_alerts(day: dt.date, utilisation: list[UtilisationRow], coverage: list[CoverageRow],
               thresholds: Thresholds, mutes: Iterable[CommitmentMute] = (),
               cap_days: int = EPISODE_CAP_DAYS) -> list[CommitmentAlert]:
    """The alerts of `day` with their episodes (from the rows of the days before, back to
    `cap_days`) and the active mutes applied."""
    alerts = alerts_on(day, utilisation, coverage, thresholds)
    if not alerts:
        return []
    first = day - dt.timedelta(days=cap_days)
    fired = fired_by_day(first, day - dt.timedelta(days=1), utilisation, coverage, thresholds)
    return apply_mutes(with_episodes(alerts, day, fired, first), mutes, day)


# ---------------------------------------------------------------- mutes


def mute_matches(mute: CommitmentMute, alert: CommitmentAlert) -> bool:
    return mute.id == alert.id and (mute.rule is None or mute.rule == alert.rule)


def apply_mutes(alerts: Iterable[CommitmentAlert], mutes: Iterable[CommitmentMute],
                day: dt.date) -> list[CommitmentAlert]:
    """Mark each alert an active entry matches (an entry mutes up to and including its
    `until`; the first match gives the reason)."""
    active = [m for m in mutes if m.until is None or m.until >= day]
    out = []
    for alert in alerts:
        mute = next((m for m in active if mute_matches(m, alert)), None)
        out.append(alert if mute is None else replace(alert, muted=True, mute_reason=mute.reason))
    return out


def parse_commitment_mutes(raw: Any, where: str) -> tuple[CommitmentMute, ...]:
    """The `[[commitment_mute]]` entries of the TOML config, checked: an `id` and a
    `reason`, a known `rule`, an `until` date."""
    mutes = []
    for label, entry in table_entries(raw, "commitment_mute", where,
                                      {"id", "rule", "until", "reason"}):
        subject, reason, rule = entry.get("id"), entry.get("reason"), entry.get("rule")
        if not isinstance(subject, str) or not subject:
            raise ConfigError(f"{label} needs an id (a Savings Plan ARN, a reservation's "
                              "subscription ID, or savings_plans / reservations for coverage)")
        if not isinstance(reason, str) or not reason.strip():
            raise ConfigError(f"{label} ({subject}) needs a reason")
        if rule is not None and rule not in RULES:
            raise ConfigError(f"{label} rule is {rule!r}; allowed: {', '.join(RULES)}")
        until = entry_date(entry, "until", label)
        mutes.append(CommitmentMute(subject, reason.strip(), rule, until))
    return tuple(mutes)
