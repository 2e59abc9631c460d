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
the IO (`apply`, which reads what it needs through `_util/store/cost_store.py`).
"""
from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from dataclasses import replace
from typing import Iterable, Iterator, Mapping

import pandas as pd
from sqlalchemy.engine import Engine

from _util.alert_kinds import CONTINUING, NEW
from _util.report import Alert, AlertKey, Report
from _util.settings import Mute
from _util.store.cost_store import (
    load_services_history,
    stored_names,
    stored_rows_by_service,
)
from procAmzAlerts import detect_alerts_by_day, history_start

log = logging.getLogger(__name__)

EPISODE_CAP_DAYS = 90



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

# Rows of history evaluated at a time while looking back (bounds memory).
LOOKBACK_ROWS = 4_000_000
# Days evaluated by the first step back; each further step looks four times as far.
FIRST_STEP_DAYS = 7


def fired_before(engine: Engine, metric: str, report: Report,
                 history: pd.DataFrame | None = None,
                 cap_days: int = EPISODE_CAP_DAYS) -> tuple[dict[dt.date, set[AlertKey]], dt.date]:
    """Which of the report's alert keys fired on each of the `cap_days` days before the
    report's day, from the stored history and the report's rules; and the first day
    looked at.

    It steps back from the day before (7 days, then 28, ...) and only for keys still
    firing on every day seen so far: most episodes end within days, and a key that
    stopped needs no older days. Only the series of those keys are evaluated (a series'
    alerts depend on its own costs alone), a batch of services at a time. `history`, the
    run's own frame, saves reading again what it holds; older days come from the database.
    """
    day, rules = report.day, report.rules
    first_day = day - dt.timedelta(days=cap_days)
    fired: dict[dt.date, set[AlertKey]] = {
        first_day + dt.timedelta(days=i): set() for i in range(cap_days)}
    open_keys = {a.key for a in report.alerts}
    newest, step = day - dt.timedelta(days=1), FIRST_STEP_DAYS
    while open_keys and newest >= first_day:
        oldest = max(first_day, newest - dt.timedelta(days=step - 1))
        start = history_start(oldest, rules)
        for frame in _frames_of(open_keys, start, newest, engine, metric, history):
            for d, alerts in detect_alerts_by_day(frame, oldest, newest, rules).items():
                fired[d] |= {a.key for a in alerts} & open_keys
        span = [oldest + dt.timedelta(days=i) for i in range((newest - oldest).days + 1)]
        open_keys = {k for k in open_keys if all(k in fired[d] for d in span)}
        newest, step = oldest - dt.timedelta(days=1), step * 4
    return fired, first_day


def _frames_of(keys: set[AlertKey], start: dt.date, end: dt.date, engine: Engine, metric: str,
               history: pd.DataFrame | None) -> Iterator[pd.DataFrame]:
    """The history of the series of `keys` for days start..end, in batches of services:
    all of a service's rows when a service-level key needs its total, else only the rows
    of the keys' groups."""
    whole = {k[2] for k in keys if k[3] is None}
    pairs = {(k[2], k[3]) for k in keys if k[3] is not None}
    held_from = None if history is None or history.empty else history["usage_date"].min().date()
    if held_from is None or held_from > end:
        held_from = end + dt.timedelta(days=1)
    services = sorted(whole | {s for s, _ in pairs})
    rows: Counter = Counter()
    if start < held_from:
        rows.update(stored_rows_by_service(engine, metric, start, held_from - dt.timedelta(days=1)))
    if held_from <= end:
        rows.update({str(k): int(v) for k, v in history["service"].value_counts().items()})
    for batch in service_batches(services, rows, LOOKBACK_ROWS):
        parts = []
        if start < held_from:
            parts.append(load_services_history(engine, metric, start,
                                               held_from - dt.timedelta(days=1), batch))
        if held_from <= end:
            held = history[history["service"].isin(batch)]
            parts.append(held[(held["usage_date"] >= pd.Timestamp(max(start, held_from)))
                              & (held["usage_date"] <= pd.Timestamp(end))])
        parts = [f for f in parts if len(f)] or parts[:1]
        frame = pd.concat(parts, ignore_index=True) if len(parts) > 1 else parts[0]
        needed = frame["service"].isin(whole).to_numpy()
        if pairs:
            index = pd.MultiIndex.from_arrays([frame["service"], frame["group_value"]])
            needed |= index.isin(list(pairs))
        yield frame[needed]


def service_batches(services: list[str], rows: Mapping[str, int], max_rows: int) -> list[list[str]]:
    """Consecutive batches of `services` of at most `max_rows` stored rows each (a
    service with more rows than that is a batch of its own)."""
    batches: list[list[str]] = []
    size = 0
    for service in services:
        n = rows.get(service, 0)
        if not batches or size + n > max_rows:
            batches.append([])
            size = 0
        batches[-1].append(service)
        size += n
    return batches


def apply(report: Report, engine: Engine, metric: str, mutes: tuple[Mute, ...],
          history: pd.DataFrame | None = None) -> Report:
    """The report with each alert's episode (status, episode_start, episode_days) and
    `mutes` applied. Run after detection, before plots and Slack. `metric` names the stored
    costs to look back in; `history` (optional) is the frame the report was made from:
    days it holds are not read again."""
    alerts = report.alerts
    if alerts:
        fired, first_day = fired_before(engine, metric, report, history)
        alerts = with_episodes(alerts, report.day, fired, first_day)
        for alert in alerts:
            if is_capped(alert, report.day):
                log.info("%s %s of %s%s has fired on each of the last %d days; its episode "
                         "may have begun before %s (episodes look back %d days)", alert.kind,
                         alert.direction, alert.service,
                         "" if alert.group is None else f" / {alert.group!r}",
                         EPISODE_CAP_DAYS + 1, alert.episode_start, EPISODE_CAP_DAYS)
        continuing = sum(a.status == CONTINUING for a in alerts)
        echoes = sum(a.is_echo for a in alerts)
        log.info("%d alerts: %d new, %d continuing, %d echoes of spikes", len(alerts),
                 sum(a.counts_as_new for a in alerts), continuing, echoes)
    if mutes:
        active, expired = split_mutes(mutes, report.day)
        for mute in expired:
            log.info("mute entry for %s expired on %s and no longer mutes", describe_mute(mute),
                     mute.until)
        window_start = report.day - dt.timedelta(days=report.rules.lookback_days - 1)
        if history is None:
            names = stored_names(engine, metric, window_start, report.day)
        else:
            pairs = history[["service", "group_value"]].drop_duplicates()
            names = set(zip(pairs["service"].astype(str), pairs["group_value"].astype(str)))
        for mute in unmatched_mutes(mutes, names):
            log.warning("mute entry for %s names nothing in the stored costs of %s..%s "
                        "(check the spelling: names are case-sensitive)", describe_mute(mute),
                        window_start, report.day)
        alerts = apply_mutes(alerts, active)
        muted = sum(a.muted for a in alerts)
        if muted:
            log.info("%d of %d alerts muted (left out of Slack)", muted, len(alerts))
    return replace(report, alerts=alerts)
