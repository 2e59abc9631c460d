"""What a digest section is: one object that turns the day's report into its part of
report.json, of the site (plots, pages, and a part of the report page) and of the Slack
digest.

The message, the report page and report.json are assembled from the registered
sections in their order (`_util/sections/__init__.py`); every hook has a default that
adds nothing, so a section implements only what it shows. Hooks are pure: they read the
report (and, for plots, the history frame) and return data; the render stage draws the
plots and writes the pages, the Slack stage chooses what fits in one message.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping
from urllib.parse import quote

import pandas as pd

from _util.report import Alert, AlertKey, Report

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from _util.run.job import Clients, RunJob
    from _util.settings import Settings
    from _util.site.plot_drawing import PlotJob



@dataclass
class RequestTally:
    """Requests sections made to billed APIs (Cost Explorer bills $0.01 each), by section:
    the run record counts them with the cost fetch's."""

    by_section: dict[str, int] = field(default_factory=dict)

    def add(self, section: str, requests: int) -> None:
        self.by_section[section] = self.by_section.get(section, 0) + requests

    @property
    def total(self) -> int:
        return sum(self.by_section.values())


@dataclass(frozen=True)
class DayContext:
    """What a section may read to analyse a day: the report as detection, summaries and
    the lifecycle left it, the history frame it came from, the job (the report's day is
    `job.report_day`, which is not the run's day when catching up or reporting stale
    data), the settings, the database and the run's clients (a section that fetches data
    of its own uses `clients`, made once for the run; none when `clients.fetches` is
    false: --skip-fetch or a backtest). A section that calls a billed API counts its
    requests in `requests`."""

    report: Report
    history: pd.DataFrame
    job: "RunJob"
    settings: "Settings"
    engine: "Engine"
    clients: "Clients"
    requests: RequestTally = field(default_factory=RequestTally)


def public_url(site_url: str | None, rel_path: str) -> str | None:
    """The absolute URL of a site path, or None when there is no site URL (no broken links)."""
    if not site_url:
        return None
    return f"{site_url.rstrip('/')}/{quote(rel_path, safe='/')}"


@dataclass(frozen=True)
class SiteContext:
    """Where a report's site files go and how they are addressed."""

    out: Path  # the report's folder, site/reports/<date>/
    rel_dir: str  # the same folder relative to the site's root
    site_url: str | None
    # The page of each alert that has a plot, by alert key (relative to `out`).
    alert_pages: Mapping[AlertKey, str] = field(default_factory=dict)

    def url(self, name: str) -> str | None:
        """The public URL of a file in the report's folder; None without a site URL."""
        return public_url(self.site_url, f"{self.rel_dir}/{name}")


@dataclass
class SitePart:
    """A section's share of the site: its part of the report page (markup from its
    template), the plots to draw and the pages to write in the report's folder, and the
    public URLs of its pages by key (they reach the report as `page_urls`)."""

    html: str = ""
    jobs: list["PlotJob"] = field(default_factory=list)
    pages: dict[str, str] = field(default_factory=dict)  # file name -> html
    urls: dict[str, str] = field(default_factory=dict)


@dataclass(eq=False)
class SlackUnit:
    """One block the digest may leave out when it is over Slack's 50 blocks (an alert,
    or a line of alerts that continue): the largest `weight` are kept first."""

    block: dict[str, Any]
    weight: float
    alerts: list[Alert]  # what it tells of (counted in "N smaller alerts did not fit")
    linked: list[Alert] = field(default_factory=list)  # those it links to their plot page
    numbered: bool = False  # its button gets the message's next plot_N action id


@dataclass
class SlackPart:
    """A section's share of the digest: blocks always shown, then its title and the
    units chosen to fit (the title only when one of them is)."""

    blocks: list[dict[str, Any]] = field(default_factory=list)
    title: dict[str, Any] | None = None
    units: list[SlackUnit] = field(default_factory=list)


class Section:
    """A part of the daily digest. Subclasses set `name` and override what they show."""

    name: str = ""

    def analyse(self, ctx: DayContext) -> Any:
        """Data of the section's own for the day (kept in `report.sections[name]`), or
        None. A section that needs data of its own from AWS fetches it here."""
        return None

    def json_part(self, report: Report) -> dict[str, Any]:
        """Its keys in report.json."""
        return {}

    def site_part(self, report: Report, history: pd.DataFrame, site: SiteContext) -> SitePart:
        return SitePart()

    def slack_part(self, report: Report, account_label: str | None) -> SlackPart:
        return SlackPart()
