"""Alert lifecycle (issue 8): one anomaly, one alert. New or continuing, and mutes.

An alert is identified by its key (kind, direction, service, group). It is *continuing*
when the same key fired on the day before; its episode starts on the first day of the
unbroken run of days on which the key fired. The days before are evaluated again from
the stored history with the run's own rules (`detect_alerts_by_day`), so a day re-run
later gives the same statuses, and nothing is remembered between runs.

Looking back is capped at EPISODE_CAP_DAYS days: an alert that fired on every one of
them reports its episode as starting on the cap's first day (EPISODE_CAP_DAYS + 1 days
long) and the log says it may be older.

Mutes are `[[mute]]` entries of the TOML config (service, optional group and kind,
optional `until` date, a reason). A muted alert keeps its place in report.json and on
the site, with `muted` and `mute_reason`; the Slack digest leaves it out. An entry whose
`until` is before the report's day no longer mutes (the log says so); one that names no
service or group in the stored history is a warning in the log, not an error.

The pure parts (episodes from a day -> keys mapping; mute matching) are separate from
the IO (`apply`, which loads what it needs from the database).
"""
from __future__ import annotations

import datetime as dt
import logging
from dataclasses import replace
from typing import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from _util.cost_store import cost_daily, load_history
from _util.database import mask_url
from _util.errors import StoreError
from _util.report import Alert, Report
from _util.settings import Mute, Settings
from procAmzAlerts import detect_alerts_by_day

log = logging.getLogger(__name__)

EPISODE_CAP_DAYS = 90
NEW = "new"
CONTINUING = "continuing"

AlertKey = tuple[str, str, str, "str | None"]


# ---- pure: episodes ------------------------------------------------------------------

def keys_by_day(by_day: Mapping[dt.date, Iterable[Alert]]) -> dict[dt.date, set[AlertKey]]:
    """The alert keys that fired on each day."""
    return {day: {a.key for a in alerts} for day, alerts in by_day.items()}


def episode_start(key: AlertKey, day: dt.date, fired: Mapping[dt.date, set[AlertKey]],
                  first_day: dt.date) -> dt.date:
    """The first day of the unbroken run of days up to `day` on which `key` fired,
    looking no further back than `first_day`; `key` is taken to fire on `day` itself.
    Days missing from `fired` count as days it did not fire."""
    start = day
    previous = day - dt.timedelta(days=1)
    while previous >= first_day and key in fired.get(previous, ()):
        start = previous
        previous -= dt.timedelta(days=1)
    return start


def with_episodes(alerts: Iterable[Alert], day: dt.date,
                  fired: Mapping[dt.date, set[AlertKey]], first_day: dt.date) -> tuple[Alert, ...]:
    """`alerts` of `day` with status, episode_start and episode_days set from the keys
    that fired on the days before (`fired`, evaluated back to `first_day`)."""
    out = []
    for alert in alerts:
        start = episode_start(alert.key, day, fired, first_day)
        days = (day - start).days + 1
        out.append(replace(alert, status=NEW if days == 1 else CONTINUING,
                           episode_start=start, episode_days=days))
    return tuple(out)


def is_capped(alert: Alert, day: dt.date, cap_days: int = EPISODE_CAP_DAYS) -> bool:
    """Whether the alert's episode reaches back to the cap (it may have begun earlier)."""
    return alert.episode_start is not None and (day - alert.episode_start).days >= cap_days


# ---- pure: mutes ---------------------------------------------------------------------

def split_mutes(mutes: Iterable[Mute], day: dt.date) -> tuple[list[Mute], list[Mute]]:
    """(active, expired) on `day`; an entry mutes up to and including its `until`."""
    active, expired = [], []
    for mute in mutes:
        (expired if mute.until is not None and mute.until < day else active).append(mute)
    return active, expired


def mute_matches(mute: Mute, alert: Alert) -> bool:
    """An entry without a group mutes every alert of its service (both levels); with a
    group ("" is the untagged group) only that group's alerts; a kind narrows it to
    spikes or trends."""
    if mute.service != alert.service:
        return False
    if mute.group is not None and mute.group != alert.group:
        return False
    return mute.kind is None or mute.kind == alert.kind


def apply_mutes(alerts: Iterable[Alert], active: Iterable[Mute]) -> tuple[Alert, ...]:
    """Mark each alert that an active entry matches (the first match gives the reason)."""
    active = list(active)
    out = []
    for alert in alerts:
        mute = next((m for m in active if mute_matches(m, alert)), None)
        out.append(alert if mute is None else replace(alert, muted=True, mute_reason=mute.reason))
    return tuple(out)


def unmatched_mutes(mutes: Iterable[Mute], names: set[tuple[str, str]]) -> list[Mute]:
    """Entries naming a service, or a (service, group), that is not among `names`."""
    services = {service for service, _ in names}
    return [m for m in mutes
            if m.service not in services or (m.group is not None and (m.service, m.group) not in names)]


def describe_mute(mute: Mute) -> str:
    parts = [f"service {mute.service!r}"]
    if mute.group is not None:
        parts.append(f"group {mute.group!r}")
    if mute.kind is not None:
        parts.append(f"kind {mute.kind}")
    return ", ".join(parts) + f" ({mute.reason})"


# ---- IO ------------------------------------------------------------------------------

def fired_before(engine: Engine, settings: Settings, report: Report,
                 cap_days: int = EPISODE_CAP_DAYS) -> tuple[dict[dt.date, set[AlertKey]], dt.date]:
    """The keys that fired on each of the `cap_days` days before the report's day, from
    the stored history and the report's rules; and the first day looked at.

    Only the services of the report's alerts are evaluated: a series' alerts depend on
    its own costs alone, so the others cannot change these keys.
    """
    day, rules = report.day, report.rules
    first_day = day - dt.timedelta(days=cap_days)
    last_day = day - dt.timedelta(days=1)
    start = first_day - dt.timedelta(days=rules.lookback_days - 1)
    history = load_history(engine, settings.metric, start, last_day)
    services = {a.service for a in report.alerts}
    history = history[history["service"].isin(services)]
    by_day = detect_alerts_by_day(history, first_day, last_day, rules)
    return keys_by_day(by_day), first_day


def stored_names(engine: Engine, metric: str, start: dt.date, end: dt.date) -> set[tuple[str, str]]:
    """The (service, group) pairs stored for days start..end."""
    stmt = (sa.select(cost_daily.c.service, cost_daily.c.group_value).distinct()
            .where(cost_daily.c.metric == metric)
            .where(cost_daily.c.usage_date.between(start, end)))
    try:
        with engine.connect() as conn:
            return {(row.service, row.group_value) for row in conn.execute(stmt)}
    except SQLAlchemyError as exc:
        raise StoreError(f"cannot read costs from {mask_url(str(engine.url))}: {exc}") from exc


def apply(report: Report, engine: Engine, settings: Settings) -> Report:
    """The report with each alert's episode (status, episode_start, episode_days) and
    mutes applied. Run after detection, before plots and Slack."""
    alerts = report.alerts
    if alerts:
        fired, first_day = fired_before(engine, settings, report)
        alerts = with_episodes(alerts, report.day, fired, first_day)
        for alert in alerts:
            if is_capped(alert, report.day):
                log.info("%s %s of %s%s has fired on each of the last %d days; its episode "
                         "may have begun before %s (episodes look back %d days)", alert.kind,
                         alert.direction, alert.service,
                         "" if alert.group is None else f" / {alert.group!r}",
                         EPISODE_CAP_DAYS + 1, alert.episode_start, EPISODE_CAP_DAYS)
        continuing = sum(a.status == CONTINUING for a in alerts)
        log.info("%d alerts: %d new, %d continuing", len(alerts), len(alerts) - continuing,
                 continuing)
    if settings.mutes:
        active, expired = split_mutes(settings.mutes, report.day)
        for mute in expired:
            log.info("mute entry for %s expired on %s and no longer mutes", describe_mute(mute),
                     mute.until)
        window_start = report.day - dt.timedelta(days=report.rules.lookback_days - 1)
        names = stored_names(engine, settings.metric, window_start, report.day)
        for mute in unmatched_mutes(settings.mutes, names):
            log.warning("mute entry for %s names nothing in the stored costs of %s..%s "
                        "(check the spelling: names are case-sensitive)", describe_mute(mute),
                        window_start, report.day)
        alerts = apply_mutes(alerts, active)
        muted = sum(a.muted for a in alerts)
        if muted:
            log.info("%d of %d alerts muted (left out of Slack)", muted, len(alerts))
    return replace(report, alerts=alerts)
