"""Each channel's digest of the day: the main channel's and one per route.

A route's digest has the same layout as the main one with its own slice: its headline
figures are the spend of the series it matches (its day total, month to date,
projection), its alerts are those it matches, and its page (reports/<date>/routes/
<name>.html) lists them with links to the day's plot pages. Pure, apart from the pages
written by `write_route_pages`.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

import procSummaries
from _util.alert_kinds import ALERT_KINDS
from _util.atomic_files import write_text
from _util.paths import report_dir, report_rel_dir
from _util.report import Alert, Report, RouteSlice
from _util.routes import MAIN_GETS_UNROUTED, Route, unrouted
from _util.sections import site_parts
from _util.sections.alerts import AlertSection, NoAlertsSection
from _util.sections.base import SiteContext, public_url
from _util.sections.tag_coverage import NAME as COVERAGE
from _util.site import pages
from _util.slack import message as slack_message
from _util.tag_coverage import coverage_for

MAIN = "main"
ROUTES_DIR = "routes"
# What a route's page shows under its headline: its alerts (the summaries' plots and pages
# are the account's, on the day's report page).
ROUTE_PAGE_SECTIONS = [NoAlertsSection(), *(AlertSection(kind) for kind in ALERT_KINDS)]


@dataclass(frozen=True)
class Digest:
    """One channel's digest: the report it shows and where it goes (`route` None: the
    main channel, which may be unset: the digest is then written, not posted)."""

    name: str
    channel: str | None
    report: Report
    route: Route | None = None

    @property
    def quiet(self) -> bool:
        """A route with nothing to say and no wish to say so gets no message."""
        return (self.route is not None and not self.report.visible_alerts
                and not self.route.post_when_quiet)

    @property
    def mentions(self) -> str:
        return self.route.mention_text if self.route else ""

    def label(self, account_label: str | None) -> str | None:
        """The header's label: the account's, and the route's name on a route's digest."""
        if self.route is None:
            return account_label
        return f"{account_label} · {self.name}" if account_label else self.name


def page_name(route: Route) -> str:
    return f"{ROUTES_DIR}/{route.name}.html"


def preview_name(route: Route) -> str:
    return f"{ROUTES_DIR}/{route.name}.slack.html"


def weekly_page_name(route: Route) -> str:
    return f"{ROUTES_DIR}/{route.name}.weekly.html"


def slice_history(history: pd.DataFrame, route: Route) -> pd.DataFrame:
    """The history rows of the series `route` matches (each name checked once)."""
    keep = np.ones(len(history), dtype=bool)
    if route.services:
        keep &= _matching(history["service"], route.service_matches)
    if route.groups:
        keep &= _matching(history["group_value"], route.group_matches)
    return history[keep]


def _matching(column: pd.Series, test) -> np.ndarray:
    values = column.astype("category")
    ok = np.array([test(str(v)) for v in values.cat.categories], dtype=bool)
    if not len(ok):
        return np.zeros(len(column), dtype=bool)
    return ok[values.cat.codes.to_numpy()]


def route_report(report: Report, history: pd.DataFrame, route: Route, lookback_days: int,
                 site_url: str | None) -> Report:
    """The report as `route` sees it: its alerts, its slice's figures, its page."""
    summary = procSummaries.summarise(slice_history(history, route), report.day, lookback_days,
                                      of=f"route {route.name}")
    rel = f"{report_rel_dir(report.day)}/{page_name(route)}"
    return dataclasses.replace(
        report, alerts=tuple(a for a in report.alerts if route.matches(a)), summary=summary,
        page_urls={}, report_url=public_url(site_url, rel) if report.report_url else None,
        sections=_sliced_sections(report.sections, route))


def _sliced_sections(data: dict, route: Route) -> dict:
    """The sections' data as the route sees it: tag coverage of its services (coverage is
    kept per service, so a route that matches by group alone does not show it)."""
    data = dict(data)
    coverage = data.pop(COVERAGE, None)
    if coverage is not None and route.services:
        data[COVERAGE] = coverage_for(coverage, route.service_matches)
    return data


def digests(report: Report, history: pd.DataFrame, routes: tuple[Route, ...],
            main_channel: str | None, main_gets: str, lookback_days: int,
            site_url: str | None) -> list[Digest]:
    """The main channel's digest, then each route's, in the config's order."""
    main = report
    if routes and main_gets == MAIN_GETS_UNROUTED:
        main = dataclasses.replace(report, alerts=unrouted(report.alerts, routes))
    found = [Digest(MAIN, main_channel, main)]
    for route in routes:
        found.append(Digest(route.name, route.channel,
                            route_report(report, history, route, lookback_days, site_url), route))
    return found


def taken_by(digest: Digest, alerts: tuple[Alert, ...], routes: tuple[Route, ...],
             main_gets: str) -> tuple[Alert, ...]:
    """The alerts `digest`'s channel gets, as `digests` chooses them for a day."""
    if digest.route is not None:
        return tuple(a for a in alerts if digest.route.matches(a))
    return unrouted(alerts, routes) if routes and main_gets == MAIN_GETS_UNROUTED else alerts


def slices(found: list[Digest]) -> tuple[RouteSlice, ...]:
    """What report.json lists under `routes`."""
    return tuple(RouteSlice(d.name, d.channel or "", d.report.alerts, d.report.summary.headline)
                 for d in found if d.route is not None)


def without_links(found: list[Digest]) -> list[Digest]:
    """The digests with every site URL removed (the site could not be published)."""
    return [dataclasses.replace(d, report=slack_message.without_links(d.report)) for d in found]


def write_route_pages(found: list[Digest], history: pd.DataFrame, site_dir: Path,
                      site_url: str | None, alert_pages: dict) -> list[Path]:
    """Each route's page in reports/<date>/routes/, its alerts linking one folder up."""
    written = []
    for d in found:
        if d.route is None:
            continue
        out = report_dir(site_dir, d.report.day)
        site = SiteContext(out / ROUTES_DIR, f"{report_rel_dir(d.report.day)}/{ROUTES_DIR}", site_url,
                           {key: f"../{page}" for key, page in alert_pages.items()})
        links = [(preview_name(d.route).split("/", 1)[1], "Slack message preview")]
        parts = [pages.report_header(d.report, links)]
        parts += [p.html for p in site_parts(d.report, history, site, ROUTE_PAGE_SECTIONS)]
        path = out / page_name(d.route)
        write_text(path, pages.route_page(d.route, d.report.day, parts))
        written.append(path)
    return written
