"""The EC2 instance usage section: who ran which instances on the report's day, for how
long, in every enabled region (COST_TRACKING_EC2_USAGE, on by default;
COST_TRACKING_EC2_USAGE_REGIONS names the regions instead).

`analyse` reads each region's day from CloudTrail and EC2 (`_util/sources/ec2_usage.py`)
unless the store holds it already (`--force` reads it again), stores it
(`_util/store/instance_usage.py`), and computes the figures (`_util/ec2_usage.py`). A run
that does not fetch (--skip-fetch, a backtest) or reports stale data shows what is stored.
The clients: the demo's stand-ins with --demo (`_util/sources/demo_ec2.py`), else boto3's,
one pair per region. It shows them as report.json's `ec2_usage` (null when off), a digest
section (instances and instance-hours by region, the longest runs, those still running,
the short-lived ones counted apart) and a page per day with every instance and a timeline
of the day (`ec2-usage.html`), which each EC2 alert's page links to.
"""
from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import pandas as pd
from botocore.exceptions import BotoCoreError, ClientError

from _util.ec2_usage import DENIED, ERROR, OK, Ec2Usage, InstanceRow, usage_figures
from _util.report import Report
from _util.sections.base import DayContext, Section, SiteContext, SitePart, SlackPart
from _util.site import pages
from _util.site.plot_drawing import UsageTimelinePlot, label
from _util.slack.blocks import (
    day_label,
    divider,
    escape_mrkdwn,
    mrkdwn_name,
    section,
    strong,
)
from _util.sources.ec2_prices import (
    GET_PRODUCTS,
    PRICE_DAYS,
    PricesDenied,
    fetch_prices,
)
from _util.sources.ec2_usage import DESCRIBE_REGIONS, RegionAccessDenied, fetch_day
from _util.store.instance_usage import (
    day_before,
    fetched_regions,
    load_day,
    load_prices,
    save_prices,
    save_region_day,
)

log = logging.getLogger(__name__)

NAME = "ec2_usage"
PAGE = "ec2-usage"  # its page and timeline in the report's folder
EC2_COMPUTE = "Amazon Elastic Compute Cloud - Compute"  # whose alert pages link to it
TOP = 5  # instances named in the digest, longest and still running
TIMELINE_ROWS = 60  # bars on the timeline, the longest first; the page lists every one
NAME_CHARS = 40


def make_usage_clients(settings: Any, today: dt.date) -> Any:
    """The clients the section asks: the demo's stand-ins, or boto3's."""
    if settings.demo:
        from _util.sources.demo_ec2 import DemoEc2UsageClients

        return DemoEc2UsageClients(today)
    from _util.sources.ec2_usage import AwsEc2UsageClients

    return AwsEc2UsageClients()


# ---------------------------------------------------------------- getting the day


def _regions(clients: Any, settings: Any, stored: dict[str, int]) -> tuple[list[str], list[str]]:
    """The regions to report and notes on why fewer: the setting's, else the account's
    enabled regions; when they cannot be listed, the stored ones."""
    if settings.ec2_usage_regions:
        return list(settings.ec2_usage_regions), []
    try:
        return clients.regions(), []  # one DescribeRegions request
    except RegionAccessDenied as exc:
        log.warning("EC2 instance usage: %s is denied (%s); set COST_TRACKING_EC2_USAGE_REGIONS "
                    "or allow it; showing the stored regions", DESCRIBE_REGIONS, exc.code)
        return sorted(stored), [f"The enabled regions could not be listed ({DESCRIBE_REGIONS} "
                                "is denied); set COST_TRACKING_EC2_USAGE_REGIONS."]
    except (BotoCoreError, ClientError) as exc:
        log.warning("EC2 instance usage: the enabled regions could not be listed (%s); "
                    "showing the stored regions", exc)
        return sorted(stored), [f"The enabled regions could not be listed ({exc})."]


def instance_prices(engine: Any, clients: Any, pairs: set[tuple[str, str]], section: str,
                    without: str) -> tuple[dict[tuple[str, str], float | None], int]:
    """On-demand prices of (region, type) pairs and the Price List requests that took:
    cached ones younger than PRICE_DAYS, the others asked (`clients.pricing()`). A run that
    does not fetch (`clients` None) uses the cached prices however old; a refusal is one
    warning naming `section` and saying what it does `without` them. Shared by the EC2
    usage and idle resources sections (one cache, `instance_price`)."""
    if clients is None:
        return load_prices(engine), 0
    now = dt.datetime.now(dt.timezone.utc)
    cached = load_prices(engine, now - dt.timedelta(days=PRICE_DAYS))
    missing = sorted(pairs - cached.keys())
    if not missing:
        return cached, 0
    try:
        fetched, requests = fetch_prices(clients.pricing(), missing)
    except PricesDenied as exc:
        log.warning("%s: %s is denied (%s); %s", section, GET_PRODUCTS, exc, without)
        return load_prices(engine), 1
    except (BotoCoreError, ClientError) as exc:
        log.warning("%s: no client for the Price List (%s)", section, exc)
        return load_prices(engine), 0
    save_prices(engine, fetched)
    return {**load_prices(engine), **fetched}, requests


def _prices(ctx: DayContext, clients: Any, instances: dict[str, list]
            ) -> tuple[dict[tuple[str, str], float | None], int]:
    """Prices of the day's (region, type) pairs (see `instance_prices`)."""
    wanted = {(region, i.facts.instance_type) for region, found in instances.items()
              for i in found if i.facts.instance_type}
    return instance_prices(ctx.engine, clients, wanted, "EC2 instance usage",
                           "no on-demand cost estimates")


def analyse_usage(ctx: DayContext, make_clients=make_usage_clients) -> Ec2Usage | None:
    """The day's usage, each region read once (stored), or None when nothing can be shown."""
    s, day = ctx.settings, ctx.job.report_day
    stored = fetched_regions(ctx.engine, day)
    fetching = ctx.clients.fetches and not ctx.job.stale
    began = time.perf_counter()
    clients = None
    if fetching:
        try:
            clients = make_clients(s, ctx.job.run_day + dt.timedelta(days=1))
        except (BotoCoreError, ClientError) as exc:
            log.warning("EC2 instance usage: no AWS clients (%s); showing what is stored", exc)
    if clients is None:
        if not stored:
            log.info("EC2 instance usage: nothing stored for %s and nothing fetched in this "
                     "run", day)
            return None
        statuses = {region: (OK, None) for region in sorted(stored)}
        instances = load_day(ctx.engine, day)
        return usage_figures(day, statuses, instances, _prices(ctx, None, instances)[0])

    regions, notes = _regions(clients, s, stored)
    ask = [r for r in regions if s.force or r not in stored]
    statuses: dict[str, tuple[str, str | None]] = {r: (OK, None) for r in regions}
    requests = 0 if s.ec2_usage_regions else 1
    if ask:
        known, running = day_before(ctx.engine, day)
        fetched = fetch_day(clients, ask, day, known, running)
        requests += fetched.requests
        for answer in fetched.regions:
            if answer.status == OK:
                save_region_day(ctx.engine, day, answer)
            else:
                statuses[answer.region] = (answer.status, answer.action)
        log.info("EC2 instance usage for %s: asked %d region(s) in %.1f s (%d request(s)), "
                 "%d stored already", day, len(ask), fetched.seconds, fetched.requests,
                 len(regions) - len(ask))
    answered = [r for r, (status, _) in statuses.items() if status == OK]
    instances = load_day(ctx.engine, day, answered)
    prices, priced = _prices(ctx, clients, instances)
    if priced:
        log.info("EC2 instance usage: %d on-demand price(s) asked of the Price List", priced)
    usage = usage_figures(day, statuses, instances, prices,
                          source="cloudtrail" if ask else "stored", requests=requests + priced,
                          seconds=time.perf_counter() - began, notes=notes)
    log.info("EC2 instance usage on %s: %d instance(s), %.1f instance-hours in %d region(s)%s "
             "(the section: %d request(s) in %.2f s)", day, len(usage.instances),
             usage.total_hours, len(answered),
             "".join(f"; {r.region} {r.status}" for r in usage.regions if r.status != OK),
             usage.requests, usage.seconds)
    return usage


# ---------------------------------------------------------------- words and numbers


def hours_text(hours: float) -> str:
    return f"{hours:,.1f} h"


def usd_text(usd: float | None) -> str:
    """A Price List estimate: always US dollars, whatever currency the bill is in."""
    return "—" if usd is None else f"US${usd:,.2f}"


def _cost_text(usage: Ec2Usage) -> str:
    """The section's total estimate in words, or "" without any price."""
    if usage.total_usd is None:
        return ""
    missing = f"; {usage.unpriced} without a price" if usage.unpriced else ""
    return f", about {usd_text(usage.total_usd)} at on-demand prices{missing}"


def _iso(t: dt.datetime) -> str:
    return t.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _market(row: InstanceRow) -> str:
    return "spot" if row.spot else "on-demand"


def usage_json(usage: Ec2Usage | None) -> dict[str, Any] | None:
    """report.json's `ec2_usage` (null when off or nothing to show)."""
    if usage is None:
        return None
    return {
        "day": usage.day.isoformat(),
        "regions": [{"region": r.region, "instances": r.instances, "hours": r.hours,
                     "status": r.status} for r in usage.regions],
        "total_hours": usage.total_hours,
        "instances": [{"region": i.region, "instance_id": i.instance_id,
                       "instance_type": i.instance_type, "spot": i.spot, "name": i.name,
                       "user": i.user,
                       "intervals": [{"start": _iso(a), "end": _iso(b)} for a, b in i.intervals],
                       "hours": i.hours, "still_running": i.still_running,
                       "estimated_usd": i.estimated_usd} for i in usage.instances],
    }


def _who(row: InstanceRow) -> str:
    return row.name or row.instance_id


def _region_refusal(status: str, action: str | None) -> str:
    if status == DENIED:
        return f"access denied ({action})" if action else "access denied"
    return "could not be read" if status == ERROR else status


# ---------------------------------------------------------------- Slack


def _instance_line(row: InstanceRow) -> str:
    name = mrkdwn_name(row.name, NAME_CHARS) if row.name else "(no Name)"
    facts = ", ".join(x for x in (row.instance_id, row.instance_type or "type unknown",
                                  _market(row), row.region) if x)
    user = f" by {mrkdwn_name(row.user, NAME_CHARS)}" if row.user else ""
    cost = f" (~{usd_text(row.estimated_usd)})" if row.estimated_usd is not None else ""
    return f"• {name} ({escape_mrkdwn(facts)}){user}: {hours_text(row.hours)}{cost}"


def usage_blocks(usage: Ec2Usage, page_url: str | None) -> list[dict[str, Any]]:
    day = day_label(usage.day)
    lines = [strong("EC2 instance usage")]
    ok = [r for r in usage.regions if r.status == OK]
    lines.append(f"{len(usage.instances)} instance(s) ran on {day}: "
                 f"{hours_text(usage.total_hours)} of instance time"
                 f"{escape_mrkdwn(_cost_text(usage))} in {len(ok)} region(s)"
                 + (": " + " · ".join(f"{r.region} {r.instances} ({hours_text(r.hours)})"
                                      for r in ok) if ok else ""))
    for r in usage.regions:
        if r.status != OK:
            lines.append(f":warning: {escape_mrkdwn(r.region)}: "
                         f"{escape_mrkdwn(_region_refusal(r.status, r.action))}")
    longest = [i for i in usage.instances
               if not (i.started_and_terminated or i.still_running)][:TOP]
    if longest:
        lines.append("Ran longest:")
        lines += [_instance_line(i) for i in longest]
    running = usage.still_running
    if running:
        lines.append(f"Still running at 24:00 ({len(running)}):")
        lines += [_instance_line(i) for i in running[:TOP]]
    short = usage.started_and_terminated
    if short:
        lines.append(f"Started and terminated the same day: {len(short)} instance(s), "
                     f"{hours_text(sum(i.hours for i in short))}")
    for note in usage.notes:
        lines.append(f"_{escape_mrkdwn(note)}_")
    return [section("\n".join(lines), page_url, button_text="Usage", action_id=NAME),
            divider()]


# ---------------------------------------------------------------- the site


def _hours_of_day(t: dt.datetime, day: dt.date) -> float:
    start = dt.datetime.combine(day, dt.time(0), tzinfo=dt.timezone.utc)
    return (t - start).total_seconds() / 3600.0


def _sentence(usage: Ec2Usage) -> str:
    day = usage.day.isoformat()
    ok = [r for r in usage.regions if r.status == OK]
    text = (f"On {day}, {len(usage.instances)} instance(s) ran for "
            f"{hours_text(usage.total_hours)}{_cost_text(usage)} in {len(ok)} region(s), "
            f"from CloudTrail's "
            f"RunInstances, StartInstances, StopInstances and TerminateInstances events; "
            f"{len(usage.still_running)} were still running at 24:00 and "
            f"{len(usage.started_and_terminated)} were started and terminated that day.")
    refused = [f"{r.region}: {_region_refusal(r.status, r.action)}" for r in usage.regions
               if r.status != OK]
    if refused:
        text += " Not shown: " + "; ".join(refused) + "."
    return text


def _rows(usage: Ec2Usage, limit: int | None = None) -> list[list[str]]:
    shown = usage.instances if limit is None else usage.instances[:limit]
    return [[i.name or "", i.instance_id, i.region, i.instance_type or "", _market(i),
             i.user or "", ", ".join(f"{a:%H:%M}–{'24:00' if b.date() > usage.day else f'{b:%H:%M}'}"
                                    for a, b in i.intervals),
             f"{i.hours:.2f}", usd_text(i.estimated_usd), "yes" if i.still_running else ""]
            for i in shown]


HEADERS = ["Name", "Instance", "Region", "Type", "Market", "User", "Ran (UTC)", "Hours",
           "On-demand estimate", "Still running"]


def usage_site(usage: Ec2Usage, site: SiteContext) -> SitePart:
    """The timeline, the page of every instance and the section of the report page."""
    day = usage.day.isoformat()
    image, page = f"{PAGE}.png", f"{PAGE}.html"
    shown = usage.instances[:TIMELINE_ROWS]
    title = label(f"EC2 instances on {day}: {len(usage.instances)} ran "
                  f"{hours_text(usage.total_hours)}"
                  + (f" (the {len(shown)} longest shown)"
                     if len(shown) < len(usage.instances) else ""), 200)
    plot = UsageTimelinePlot(
        site.out / image, title,
        tuple(label(f"{i.name or i.instance_id} · {i.region}", 48) for i in shown),
        tuple(tuple((_hours_of_day(a, usage.day), _hours_of_day(b, usage.day))
                    for a, b in i.intervals) for i in shown),
        tuple(i.spot for i in shown), tuple(i.still_running for i in shown))
    sentence = _sentence(usage)
    alt = title.replace("\\$", "$")
    numbers = [("Instances", str(len(usage.instances))),
               ("Instance-hours", hours_text(usage.total_hours)),
               ("Estimated on-demand cost", usd_text(usage.total_usd))]
    numbers += [(f"{r.region}", f"{r.instances} instance(s), {hours_text(r.hours)}"
                 if r.status == OK else _region_refusal(r.status, r.action))
                for r in usage.regions]
    numbers += [("Still running at 24:00", str(len(usage.still_running))),
                ("Started and terminated the same day", str(len(usage.started_and_terminated)))]
    page_html = pages.render_template(
        "ec2_usage.html", title=f"EC2 instance usage, {day}", day=usage.day, image=image,
        alt=alt, sentence=sentence, numbers=numbers, headers=HEADERS, rows=_rows(usage))
    html = pages.render_partial(
        "report/ec2_usage.html", sentence=sentence, page=page, image=image, alt=alt,
        headers=HEADERS, rows=_rows(usage, TOP))
    url = site.url(page)
    return SitePart(html=html, jobs=[plot], pages={page: page_html},
                    urls={NAME: url} if url else {})


# ---------------------------------------------------------------- the section


class Ec2UsageSection(Section):
    """EC2 instance usage: on unless COST_TRACKING_EC2_USAGE=off. `make_clients` says how
    its clients are made (`make_usage_clients`)."""

    name = NAME
    make_clients = staticmethod(make_usage_clients)

    def analyse(self, ctx: DayContext) -> Ec2Usage | None:
        if ctx.settings.ec2_usage == "off":
            return None
        return analyse_usage(ctx, self.make_clients)

    def json_part(self, report: Report) -> dict[str, Any]:
        return {"ec2_usage": usage_json(report.sections.get(self.name))}

    def site_part(self, report: Report, history: pd.DataFrame, site: SiteContext) -> SitePart:
        usage = report.sections.get(self.name)
        return SitePart() if usage is None else usage_site(usage, site)

    def slack_part(self, report: Report, account_label: str | None) -> SlackPart:
        usage = report.sections.get(self.name)
        if usage is None:
            return SlackPart()
        return SlackPart(blocks=usage_blocks(usage, report.page_urls.get(NAME)))

