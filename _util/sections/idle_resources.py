"""The idle resources section: EC2 instances, ECS services and EKS node groups that ran
for the last COST_TRACKING_IDLE_DAYS days while nobody used them, and what they cost a
day (COST_TRACKING_IDLE, on by default; read only: the scheduler is `--schedule`).

`analyse` reads each region (`_util/sources/idle_resources.py`; the regions are
COST_TRACKING_IDLE_REGIONS, else the account's enabled ones), finds the idle resources
(`_util/idle.py`), estimates their daily cost from on-demand prices (the Price List,
cached with the EC2 usage section's) or, without a price, as their share of the service's
cost that day, and stores the day (`_util/store/idle_resources.py`); a run that does not
fetch shows what is stored. It shows them as report.json's `idle`, a digest section (the
total a day and the ten largest) and a page with every one and its 30 days of CPU and
network.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from _util.idle import (
    EKS_NODEGROUP,
    KIND_NAMES,
    SERVICE_OF_KIND,
    SHARE,
    CostBasis,
    IdleReport,
    IdleResource,
    IdleThresholds,
    find_idle,
    with_costs,
)
from _util.report import Report
from _util.sections.base import DayContext, Section, SiteContext, SitePart, SlackPart
from _util.sections.ec2_usage import instance_prices
from _util.site import pages
from _util.site.plot_drawing import IdleMetricsPlot, label
from _util.site.slugs import slug
from _util.slack.blocks import (
    clip,
    divider,
    escape_mrkdwn,
    mrkdwn_name,
    section,
    strong,
)
from _util.sources.ec2_usage import RegionAccessDenied
from _util.sources.idle_resources import IdleAccessDenied, watch_region
from _util.store.idle_resources import load_idle_day, save_idle_day

log = logging.getLogger(__name__)

NAME = "idle"
PAGE = "idle-resources"
TOP = 10  # in the digest; the page lists every one
PLOTTED = 40  # resources with a plot on the page, the largest cost first
NAME_CHARS = 40


def make_idle_clients(settings: Any, today: dt.date) -> Any:
    """The clients the section (and the scheduler) ask: the demo's stand-ins, or boto3's."""
    if settings.demo:
        from _util.sources.demo_idle import demo_idle_clients

        return demo_idle_clients(today)
    from _util.sources.idle_resources import AwsIdleClients

    return AwsIdleClients()


def thresholds(settings: Any) -> IdleThresholds:
    return IdleThresholds(settings.idle_days, settings.idle_cpu_pct, settings.idle_network_mb)


# ---------------------------------------------------------------- getting the day


def _service_day_usd(ctx: DayContext) -> dict[str, float]:
    """Each service's cost on the report's day, when the bill is in US dollars."""
    if ctx.report.currency != "USD" or ctx.history.empty:
        return {}
    day = ctx.history[ctx.history["usage_date"] == pd.Timestamp(ctx.job.report_day)]
    wanted = set(SERVICE_OF_KIND.values())
    day = day[day["service"].isin(wanted)]
    return {str(k): float(v) for k, v in
            day.groupby("service", observed=True)["amount"].sum().items()}


def analyse_idle(ctx: DayContext, make_clients=make_idle_clients) -> IdleReport | None:
    """The day's idle resources, read from AWS and stored, or as stored."""
    s, day = ctx.settings, ctx.job.report_day
    if not ctx.clients.fetches or ctx.job.stale:
        stored = load_idle_day(ctx.engine, day)
        if stored is None:
            log.info("Idle resources: nothing stored for %s and nothing fetched in this run", day)
        return stored
    began = time.perf_counter()
    try:
        # The run's calendar day (run_day is the report's day): the demo answers up to it.
        clients = make_clients(s, ctx.job.run_day + dt.timedelta(days=1))
        regions = list(s.idle_regions) or clients.regions()
    except (BotoCoreError, ClientError, IdleAccessDenied, RegionAccessDenied) as exc:
        log.warning("Idle resources: the regions could not be listed (%s); set "
                    "COST_TRACKING_IDLE_REGIONS or allow ec2:DescribeRegions", exc)
        return None
    watched, notes, metrics, requests = [], [], 0, 0
    denied: dict[str, list[str]] = {}  # action -> regions
    for region in regions:
        rc = clients.region(region)
        try:
            found, asked = watch_region(rc, day)
        except IdleAccessDenied as exc:
            denied.setdefault(exc.action, []).append(region)
            notes.append(f"{region}: {exc.action} is denied")
            continue
        except (BotoCoreError, ClientError) as exc:
            log.warning("Idle resources: %s could not be read (%s)", region, exc)
            notes.append(f"{region} could not be read")
            continue
        finally:
            requests += rc.requests
        watched += found
        metrics += asked
    for action, where in denied.items():
        # One line per missing permission, not one per region (an account has ~17).
        log.warning("Idle resources: %s is denied in %d region(s) (%s); they are left out "
                    "(allow it, or set COST_TRACKING_IDLE=off)", action, len(where),
                    ", ".join(where))
    limits = thresholds(s)
    idle = find_idle(watched, day, limits, s.idle_owner_tag, s.schedule_tag)
    idle_ids = {(i.region, i.id) for i in idle}
    pairs = {(r.region, t) for r in watched for t in r.instance_types
             if (r.region, r.id) in idle_ids}
    prices, priced = (instance_prices(ctx.engine, clients, pairs, "Idle resources",
                                      "daily costs are shares of the service's cost")
                      if pairs else ({}, 0))
    resources = with_costs(idle, watched, CostBasis(prices, _service_day_usd(ctx)))
    report = IdleReport(day, limits, tuple(resources), len(watched), tuple(regions),
                        tuple(notes), metrics, requests + priced)
    save_idle_day(ctx.engine, report)
    log.info("Idle resources on %s: %d of %d running resource(s) idle for %d+ days, about "
             "US$%.2f a day, in %d region(s) (%d request(s), %d metric(s) asked of "
             "CloudWatch, %.1f s)", day, len(resources), len(watched), limits.days,
             report.daily_usd, len(regions), report.requests, metrics,
             time.perf_counter() - began)
    return report


# ---------------------------------------------------------------- words and numbers


def usd_text(usd: float | None) -> str:
    return "—" if usd is None else f"US${usd:,.2f}"


def _who(r: IdleResource) -> str:
    return r.name or r.id


def idle_json(report: IdleReport | None) -> dict[str, Any] | None:
    """report.json's `idle` (null when off or nothing read)."""
    if report is None:
        return None
    return {
        "daily_usd": report.daily_usd,
        "thresholds": {"days": report.thresholds.days, "cpu_pct": report.thresholds.cpu_pct,
                       "network_mb": report.thresholds.network_mb},
        "watched": report.watched,
        "regions": list(report.regions),
        "resources": [{"kind": r.kind, "id": r.id, "region": r.region, "name": r.name,
                       "owner": r.owner, "idle_days": r.idle_days,
                       "max_cpu_pct": r.max_cpu_pct,
                       "network_mb_per_day": r.network_mb_per_day,
                       "daily_usd": r.daily_usd, "cost_basis": r.cost_basis,
                       "schedule": r.schedule} for r in report.resources],
    }


def _days_text(r: IdleResource) -> str:
    return f"{r.idle_days}+ days" if r.idle_days >= len(r.days) else f"{r.idle_days} days"


def _facts(r: IdleResource) -> str:
    network = ("" if r.network_mb_per_day is None
               else f", network {r.network_mb_per_day:,.1f} MB a day")
    return f"max CPU {r.max_cpu_pct:.1f}%{network}"


def _cost_words(r: IdleResource) -> str:
    if r.daily_usd is None:
        return "cost unknown"
    share = " (its share of the service's cost)" if r.cost_basis == SHARE else ""
    return f"~{usd_text(r.daily_usd)} a day{share}"


def _line(r: IdleResource) -> str:
    what = ", ".join(x for x in (KIND_NAMES[r.kind], clip(r.id, NAME_CHARS) if r.name else "",
                                 r.region) if x)
    owner = f", owner {mrkdwn_name(r.owner, NAME_CHARS)}" if r.owner else ", no owner tag"
    schedule = f", schedule {mrkdwn_name(r.schedule, NAME_CHARS)}" if r.schedule else ""
    cost = _cost_words(r)
    return (f"• {mrkdwn_name(_who(r), NAME_CHARS)} ({escape_mrkdwn(what)}){owner}{schedule}: "
            f"idle {_days_text(r)} ({_facts(r)}), {cost}")


def _summary(report: IdleReport) -> str:
    t = report.thresholds
    unpriced = f" ({report.unpriced} without an estimate)" if report.unpriced else ""
    return (f"{len(report.resources)} of {report.watched} running resource(s) in "
            f"{len(report.regions)} region(s) were idle for the last {t.days} days "
            f"(max CPU under {t.cpu_pct:g}%, network under {t.network_mb:g} MB a day): "
            f"about {usd_text(report.daily_usd)} a day{unpriced}.")


def idle_blocks(report: IdleReport, page_url: str | None) -> list[dict[str, Any]]:
    lines = [strong("Idle resources"), escape_mrkdwn(_summary(report))]
    lines += [f":warning: {escape_mrkdwn(n)}" for n in report.notes]
    lines += [_line(r) for r in report.resources[:TOP]]
    more = len(report.resources) - TOP
    if more > 0:
        lines.append(f"…and {more} more on the page")
    return [section("\n".join(lines), page_url, button_text="Idle", action_id=NAME),
            divider()]


# ---------------------------------------------------------------- the site

HEADERS = ["Resource", "Kind", "ID", "Region", "Owner", "Idle for", "Max CPU", "Network MB a day",
           "Daily cost (estimate)", "Schedule", "Tags"]
TAG_CHARS = 300  # of a resource's tags on the page


def _rows(report: IdleReport, limit: int | None = None) -> list[list[str]]:
    shown = report.resources if limit is None else report.resources[:limit]
    return [[_who(r), KIND_NAMES[r.kind], r.id, r.region, r.owner or "", _days_text(r),
             f"{r.max_cpu_pct:.1f}%",
             "" if r.network_mb_per_day is None else f"{r.network_mb_per_day:,.1f}",
             usd_text(r.daily_usd) + (" (share)" if r.cost_basis == SHARE else ""),
             r.schedule or "", _tags_text(r)] for r in shown]


def _tags_text(r: IdleResource) -> str:
    """Its tags but Name, as key=value, cut to TAG_CHARS."""
    text = ", ".join(f"{k}={v}" for k, v in r.tags if k != "Name")
    return clip(text, TAG_CHARS)


def _image(r: IdleResource) -> str:
    return f"{PAGE}/{slug(r.kind, r.region, r.id)}.png"


def idle_site(report: IdleReport, site: SiteContext) -> SitePart:
    t = report.thresholds
    plotted = report.resources[:PLOTTED]
    jobs = [IdleMetricsPlot(site.out / _image(r),
                            label(f"{_who(r)} · {KIND_NAMES[r.kind]} · {r.region}: idle "
                                  f"{_days_text(r)}", 120),
                            pd.to_datetime(list(r.days)).to_numpy(),
                            pd.array(r.cpu_max_pct, dtype="Float64").to_numpy(
                                dtype=float, na_value=float("nan")),
                            pd.array(r.network_mb or (None,) * len(r.days), dtype="Float64"
                                     ).to_numpy(dtype=float, na_value=float("nan")),
                            t.cpu_pct, t.network_mb,
                            "network MB, busiest node" if r.kind == EKS_NODEGROUP
                            else "network MB")
            for r in plotted]
    for job in jobs:
        job.path.parent.mkdir(parents=True, exist_ok=True)
    sentence = _summary(report) + (" Costs marked (share) are the resource's share of its "
                                   "service's cost that day; the others are on-demand prices.")
    figures = [(f"{_who(r)} ({KIND_NAMES[r.kind]} {r.id}, {r.region})", _image(r))
               for r in plotted]
    page = f"{PAGE}.html"
    page_html = pages.render_template(
        "idle_resources.html", title=f"Idle resources, {report.day.isoformat()}",
        day=report.day, sentence=sentence, headers=HEADERS, rows=_rows(report),
        figures=figures, notes=report.notes,
        unplotted=len(report.resources) - len(plotted))
    html = pages.render_partial("report/idle_resources.html", sentence=sentence, page=page,
                                headers=HEADERS, rows=_rows(report, TOP))
    url = site.url(page)
    return SitePart(html=html, jobs=jobs, pages={page: page_html},
                    urls={NAME: url} if url else {})


class IdleResourcesSection(Section):
    """Idle resources: on unless COST_TRACKING_IDLE=off. `make_clients` says how its
    clients are made (`make_idle_clients`)."""

    name = NAME
    make_clients = staticmethod(make_idle_clients)

    def analyse(self, ctx: DayContext) -> IdleReport | None:
        if ctx.settings.idle == "off":
            return None
        return analyse_idle(ctx, self.make_clients)

    def json_part(self, report: Report) -> dict[str, Any]:
        return {"idle": idle_json(report.sections.get(self.name))}

    def site_part(self, report: Report, history: pd.DataFrame, site: SiteContext) -> SitePart:
        idle = report.sections.get(self.name)
        return SitePart() if idle is None else idle_site(idle, site)

    def slack_part(self, report: Report, account_label: str | None) -> SlackPart:
        idle = report.sections.get(self.name)
        if idle is None or not idle.resources:
            return SlackPart()  # nothing idle: nothing to say in the channel
        return SlackPart(blocks=idle_blocks(idle, report.page_urls.get(NAME)))
