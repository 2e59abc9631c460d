"""The Commitments section: Reserved Instances and Savings Plans, paid whether used or not,
so unused commitment and on-demand spend left uncovered are money to act on.

`analyse` brings the stored history up to the report's day (`_util/sources/commitments.py`:
only the days not stored yet or still changing; nothing when the run does not fetch or the
cost source just failed; the demo account's stand-in with `--demo`; otherwise the cost
source's own Cost Explorer client, or one made like it once per run), then computes the
figures (`_util/commitments.py`) and the alerts with their episodes and mutes
(`_util/commitment_alerts.py`). Refused calls are one warning naming the missing IAM
actions, and the run goes on with what is stored.

It shows report.json's `commitments` (null when off or when the account has none), a
digest section "Commitments" (alerts first, then each kind's utilisation, coverage and
unused commitment on the day and month to date, each plan or reservation, the largest
uncovered on-demand spend, the week's recommendations), and a page per kind and per plan
or reservation: utilisation and coverage over 90 days with the utilisation line, and the
table behind it.
"""
from __future__ import annotations

import datetime as dt
import logging
import weakref
from typing import Any

import numpy as np
import pandas as pd

from _util.commitment_alerts import (
    COVERAGE_DROP,
    EXPIRING,
    LOW_UTILISATION,
    CommitmentAlert,
    Thresholds,
    day_alerts,
)
from _util.commitments import Commitments, DayPoint, Item, KindFigures, kind_figures
from _util.errors import SourceError
from _util.names import isolated, one_line
from _util.report import Report
from _util.sections.base import (
    DayContext,
    Section,
    SiteContext,
    SitePart,
    SlackPart,
    SlackUnit,
)
from _util.site import pages
from _util.site.plot_drawing import CommitmentPlot, label
from _util.site.slugs import slug
from _util.slack.blocks import (
    day_label,
    divider,
    escape_mrkdwn,
    money,
    mrkdwn_name,
    section,
    strong,
)
from _util.sources.commitments import (
    COMMITMENT_DAYS,
    CommitmentsDenied,
    refresh_commitments,
    refresh_recommendations,
)
from _util.sources.cost_explorer import make_ce_client
from _util.store.commitments import (
    KINDS,
    RESERVATIONS,
    SAVINGS_PLANS,
    load_coverage,
    load_recommendations,
    load_utilisation,
    read_check,
)

log = logging.getLogger(__name__)

NAME = "commitments"
TITLES = {SAVINGS_PLANS: "Savings Plans", RESERVATIONS: "Reserved Instances"}
ITEMS_SHOWN = 10  # plans and reservations the digest names at most per kind
RULE_WORDS = {LOW_UTILISATION: "Low utilisation", COVERAGE_DROP: "Coverage dropped",
              EXPIRING: "Expiring"}

# A Cost Explorer client made for the commitments when the cost source has none (the Cost
# and Usage Report source), once per run: keyed by the run's Clients.
_made_clients: "weakref.WeakKeyDictionary[Any, Any]" = weakref.WeakKeyDictionary()


# ---------------------------------------------------------------- getting the data


def commitments_client(ctx: DayContext) -> Any:
    """The client the commitment calls go to: the cost source's own when it is Cost
    Explorer's (the demo account's stand-in with --demo), else one made like it, once."""
    client = getattr(ctx.clients.source, "client", None)
    if callable(getattr(client, "get_reservation_coverage", None)):
        return client
    if ctx.clients not in _made_clients:
        _made_clients[ctx.clients] = make_ce_client()
    return _made_clients[ctx.clients]


def account_of(ctx: DayContext) -> str:
    """Whose commitments are stored: the demo account's or the AWS account's."""
    return "demo" if ctx.settings.demo else "aws"


def _is_cost_explorer_source(ctx: DayContext) -> bool:
    return callable(getattr(getattr(ctx.clients.source, "client", None),
                            "get_reservation_coverage", None))


def _refresh(ctx: DayContext, account: str, mode: str) -> tuple[str | None, int]:
    """Fetch what is due; (a note when it could not be, the requests made)."""
    day = ctx.job.report_day
    today = ctx.job.run_day + dt.timedelta(days=1)
    denied: list[str] = []
    requests = 0
    note = None
    try:
        if mode == "auto" and not _is_cost_explorer_source(ctx):
            log.info("commitments: the %s cost source is not Cost Explorer; set "
                     "COST_TRACKING_COMMITMENTS=on to ask Cost Explorer for them",
                     ctx.clients.source.name)
            return None, 0
        client = commitments_client(ctx)
        refresh = refresh_commitments(ctx.engine, client, account, day=day, today=today,
                                      mode=mode)
        requests += refresh.requests
        log.info("commitments: %s%s (%d Cost Explorer request(s), %d rows stored)",
                 refresh.reason, f" for {refresh.start}..{refresh.end}" if refresh.start else "",
                 refresh.requests, refresh.rows)
        if refresh.found is not False:
            requests += refresh_recommendations(ctx.engine, client, account, day=day)
    except CommitmentsDenied as exc:
        denied += exc.actions
        requests += exc.requests
    except SourceError as exc:
        log.error("commitments could not be fetched (%s); showing what is stored", exc)
        note = f"Commitments could not be fetched for this run ({exc}); figures are stored ones."
    if denied:
        log.warning("Cost Explorer denied the commitment figures: the bot's role needs the "
                    "IAM action(s) %s (or set COST_TRACKING_COMMITMENTS=off); the run goes "
                    "on with what is stored", ", ".join(sorted(set(denied))))
        note = ("Commitments could not be fetched: the bot's role lacks "
                f"{', '.join(sorted(set(denied)))}; figures are stored ones.")
    return note, requests


def analyse_commitments(ctx: DayContext) -> Commitments | None:
    """The day's commitments (fetched and stored first when due), or None: off, none in
    the account, or nothing stored."""
    s = ctx.settings
    mode = s.commitments
    if mode == "off":
        return None
    account = account_of(ctx)
    note, requests = None, 0
    if ctx.clients.fetches and not ctx.job.stale:
        note, requests = _refresh(ctx, account, mode)
        ctx.requests.add(NAME, requests)  # billed like the cost fetch's: the run record's
    check = read_check(ctx.engine, account)
    if mode == "auto" and check is not None and not check.found:
        log.info("commitments: none in the account on %s; no section (checked again a week "
                 "later)", check.checked_on)
        return None
    day = ctx.job.report_day
    first = day - dt.timedelta(days=2 * COMMITMENT_DAYS)  # episodes look back 90 days more
    utilisation = load_utilisation(ctx.engine, account, first, day)
    coverage = load_coverage(ctx.engine, account, first, day)
    if not utilisation and not coverage:
        return None
    thresholds = Thresholds(s.min_utilisation_pct, s.coverage_drop_pct)
    alerts = day_alerts(day, utilisation, coverage, thresholds, s.commitment_mutes)
    recommendations = load_recommendations(ctx.engine, account)
    shown = day - dt.timedelta(days=COMMITMENT_DAYS - 1)
    u = [r for r in utilisation if r.usage_date >= shown]
    c = [r for r in coverage if r.usage_date >= shown]
    figures = {k: kind_figures(k, day, u, c, recommendations, alerts) for k in KINDS}
    result = Commitments(day, figures[SAVINGS_PLANS], figures[RESERVATIONS], note, requests,
                         s.min_utilisation_pct)
    log.info("commitments on %s: %d alert(s) (%d new, %d muted)", day, len(alerts),
             sum(a.status == "new" for a in alerts), sum(a.muted for a in alerts))
    return result


# ---------------------------------------------------------------- words and numbers


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{value:.1f}%"


def _short_id(subject: str) -> str:
    """A plan's ARN ends in its ID; a reservation's ID is shown as it is."""
    return subject.rsplit("/", 1)[-1]


def alert_text(alert: CommitmentAlert, day: str) -> str:
    """An alert in words (plain text: the edges escape it)."""
    f = alert.figures
    who = f"{alert.type} {_short_id(alert.id)}" if alert.rule != COVERAGE_DROP else alert.type
    if alert.rule == LOW_UTILISATION:
        text = (f"{who} used {_pct(f['utilisation_pct'])} on {day} (below "
                f"{f['threshold_pct']:g}%): {pages.money(f['unused_usd'])} of commitment unused")
    elif alert.rule == COVERAGE_DROP:
        text = (f"{who} {_pct(f['coverage_pct'])} on {day}, {f['drop_pts']:.1f} points below "
                f"the mean of the 7 days before ({_pct(f['prev7_mean_pct'])}; an alert beyond "
                f"{f['threshold_pts']:g} points)")
    else:
        text = f"{who} ends on {f['end_date']}, in {f['days_left']} day(s): renew or let it go"
    episode = (f" (day {alert.episode_days}, since {alert.episode_start})"
               if alert.status == "continuing" else "")
    return f"{RULE_WORDS[alert.rule]}: {text}{episode}"


def kind_text(k: KindFigures) -> str:
    return (f"utilisation {_pct(k.day_utilisation_pct)} on the day (month to date "
            f"{_pct(k.mtd_utilisation_pct)}), coverage {_pct(k.day_coverage_pct)} (month to "
            f"date {_pct(k.mtd_coverage_pct)}), unused commitment "
            f"{pages.money(k.day_unused_usd)} (month to date {pages.money(k.mtd_unused_usd)})")


def item_text(item: Item) -> str:
    ends = f", ends {item.end_date}" if item.end_date else ""
    return (f"{item.type} {_short_id(item.id)}: {_pct(item.utilisation_pct)} used, "
            f"{pages.money(item.unused_usd)} unused{ends}")


def _kind_page(kind: str) -> str:
    return f"commitments-{kind.replace('_', '-')}"


def _item_page(item: Item) -> str:
    return f"commitment-{slug(item.id)}"


# ---------------------------------------------------------------- report.json


def _day_mtd(day: float | None, mtd: float | None) -> dict[str, float | None]:
    return {"day": day, "mtd": mtd}


def _alert_json(alert: CommitmentAlert) -> dict[str, Any]:
    return {"rule": alert.rule, "id": alert.id, "type": alert.type, **alert.figures,
            "status": alert.status,
            "episode_start": alert.episode_start.isoformat() if alert.episode_start else None,
            "episode_days": alert.episode_days, "muted": alert.muted,
            "mute_reason": alert.mute_reason}


def kind_json(k: KindFigures | None) -> dict[str, Any] | None:
    if k is None:
        return None
    return {
        "utilisation_pct": _day_mtd(k.day_utilisation_pct, k.mtd_utilisation_pct),
        "coverage_pct": _day_mtd(k.day_coverage_pct, k.mtd_coverage_pct),
        "unused_usd": _day_mtd(k.day_unused_usd, k.mtd_unused_usd),
        "items": [{"id": i.id, "type": i.type, "utilisation_pct": i.utilisation_pct,
                   "unused_usd": i.unused_usd,
                   "end_date": i.end_date.isoformat() if i.end_date else None}
                  for i in k.items],
        "uncovered": [{"service": u.service, "key": u.key, "usd": u.usd} for u in k.uncovered],
        "recommendations": [{"service": r.service, "detail": r.detail,
                             "monthly_savings_usd": r.monthly_savings_usd,
                             "upfront_usd": r.upfront_usd} for r in k.recommendations],
        "alerts": [_alert_json(a) for a in k.alerts],
    }


def commitments_json(c: Commitments | None) -> dict[str, Any] | None:
    """report.json's `commitments` (null when off or when the account has none)."""
    if c is None:
        return None
    return {SAVINGS_PLANS: kind_json(c.savings_plans), RESERVATIONS: kind_json(c.reservations)}


# ---------------------------------------------------------------- Slack


def commitments_slack(c: Commitments, urls: dict[str, str]) -> SlackPart:
    """The section's blocks (alerts and each kind's figures, always shown) and a unit per
    plan or reservation (left out first when the digest is over Slack's 50 blocks)."""
    day = day_label(c.day)
    lines = [strong("Commitments")]
    lines += [f":warning: *{escape_mrkdwn(one_line(alert_text(a, day)))}*"
              for a in c.alerts if not a.muted]
    if c.note:
        lines.append(f"_{escape_mrkdwn(one_line(c.note))}_")
    blocks = [section("\n".join(lines))]
    units = []
    for kind in KINDS:
        k = c.of(kind)
        if k is None:
            continue
        text = [f"{strong(TITLES[kind])}: {escape_mrkdwn(kind_text(k))}"]
        if k.uncovered:
            text.append("Largest uncovered on-demand spend: " + "; ".join(
                f"{mrkdwn_name(u.key or u.service, 60)} {money(u.usd)}/day" for u in k.uncovered[:3]))
        for r in k.recommendations[:2]:
            text.append(f"Recommended by Cost Explorer: {mrkdwn_name(r.detail, 60)} "
                        f"({mrkdwn_name(r.service, 60)}): saves about "
                        f"{money(r.monthly_savings_usd)}/month, {money(r.upfront_usd)} upfront")
        blocks.append(section("\n".join(text), urls.get(_kind_page(kind)),
                              action_id=f"commitments_{kind}"))
        for i, item in enumerate(k.items[:ITEMS_SHOWN]):
            units.append(SlackUnit(section(f"• {escape_mrkdwn(one_line(item_text(item)))}",
                                           urls.get(_item_page(item)),
                                           action_id=f"commitment_{kind}_{i}"),
                                   weight=item.unused_usd, alerts=[]))
    blocks.append(divider())
    return SlackPart(blocks=blocks, units=units)


# ---------------------------------------------------------------- the site


def _series(points: tuple[DayPoint, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    dates = np.array([p.day for p in points], dtype="datetime64[D]")
    util = np.array([np.nan if p.utilisation_pct is None else p.utilisation_pct
                     for p in points], dtype=float)
    cover = np.array([np.nan if p.coverage_pct is None else p.coverage_pct
                      for p in points], dtype=float)
    return dates, util, cover


def _page(site: SiteContext, c: Commitments, name: str, title: str, sentence: str,
          points: tuple[DayPoint, ...], threshold: float, numbers: list[tuple[str, str]],
          jobs: list, page_html: dict[str, str]) -> None:
    image = f"{name}.png"
    plot_title = label(f"{title}: utilisation and coverage, last {COMMITMENT_DAYS} days", 200)
    jobs.append(CommitmentPlot(site.out / image, plot_title, *_series(points), threshold))
    rows = [[p.day.isoformat(), _pct(p.utilisation_pct), _pct(p.coverage_pct)]
            for p in reversed(points)]
    page_html[f"{name}.html"] = pages.plot_page(
        title=f"{title}, {c.day.isoformat()}", day=c.day, image=image,
        alt=plot_title.replace("\\$", "$"), sentence=sentence, numbers=numbers,
        recent_headers=["Day", "Utilisation", "Coverage"], recent_rows=rows,
        recent_title="Every day behind the plot, newest first")


def commitments_site(c: Commitments, site: SiteContext, threshold: float) -> SitePart:
    """A page per kind and per plan or reservation, and the section of the report page."""
    jobs: list = []
    page_html: dict[str, str] = {}
    kinds = []
    day = c.day.isoformat()
    for kind in KINDS:
        k = c.of(kind)
        if k is None:
            continue
        name = _kind_page(kind)
        sentence = f"{TITLES[kind]} on {day}: {kind_text(k)}."
        _page(site, c, name, TITLES[kind], sentence, k.daily, threshold,
              [("Utilisation on the day", _pct(k.day_utilisation_pct)),
               ("Utilisation month to date", _pct(k.mtd_utilisation_pct)),
               ("Coverage on the day", _pct(k.day_coverage_pct)),
               ("Coverage month to date", _pct(k.mtd_coverage_pct)),
               ("Unused commitment on the day", pages.money(k.day_unused_usd)),
               ("Unused commitment month to date", pages.money(k.mtd_unused_usd)),
               ("Utilisation alert below", f"{threshold:g}%")], jobs, page_html)
        items = []
        for item in k.items:
            item_name = _item_page(item)
            _page(site, c, item_name, f"{item.type} {_short_id(item.id)}",
                  f"{isolated(item_text(item))}. Coverage is {TITLES[kind]}' as a whole.",
                  item.daily, threshold,
                  [("ID", item.id), ("Type", item.type),
                   ("Utilisation on the day", _pct(item.utilisation_pct)),
                   ("Unused on the day", pages.money(item.unused_usd)),
                   ("Ends", item.end_date.isoformat() if item.end_date else "—")],
                  jobs, page_html)
            items.append([item.type, _short_id(item.id), _pct(item.utilisation_pct),
                          pages.money(item.unused_usd),
                          item.end_date.isoformat() if item.end_date else "—",
                          f"{item_name}.html"])
        kinds.append({
            "title": TITLES[kind], "sentence": sentence, "page": f"{name}.html",
            "image": f"{name}.png", "alt": f"{TITLES[kind]}: utilisation and coverage",
            "item_headers": ["Type", "ID", "Utilisation", "Unused", "Ends"], "rows": items,
            "uncovered": [[u.service, u.key or "—", pages.money(u.usd)] for u in k.uncovered],
            "recommendations": [[r.service, r.detail, pages.money(r.monthly_savings_usd),
                                 pages.money(r.upfront_usd)] for r in k.recommendations]})
    alerts = [alert_text(a, day) + (f" (muted: {a.mute_reason})" if a.muted else "")
              for a in c.alerts]
    html = pages.render_partial("report/commitments.html", kinds=kinds, alerts=alerts,
                                note=c.note)
    urls = {}
    for name in page_html:
        url = site.url(name)
        if url:
            urls[name.removesuffix(".html")] = url
    return SitePart(html=html, jobs=jobs, pages=page_html, urls=urls)


# ---------------------------------------------------------------- the section


class CommitmentsSection(Section):
    """Commitments: Reserved Instances and Savings Plans (COST_TRACKING_COMMITMENTS)."""

    name = NAME

    def analyse(self, ctx: DayContext) -> Commitments | None:
        return analyse_commitments(ctx)

    def json_part(self, report: Report) -> dict[str, Any]:
        return {"commitments": commitments_json(report.sections.get(self.name))}

    def site_part(self, report: Report, history: pd.DataFrame, site: SiteContext) -> SitePart:
        c = report.sections.get(self.name)
        if c is None:
            return SitePart()
        return commitments_site(c, site, c.threshold_pct)

    def slack_part(self, report: Report, account_label: str | None) -> SlackPart:
        c = report.sections.get(self.name)
        if c is None:
            return SlackPart()
        return commitments_slack(c, report.page_urls)
