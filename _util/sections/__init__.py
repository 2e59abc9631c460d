"""The digest's sections, in the order the Slack message, the report page and report.json
show them.

A new section is one module with a `Section` subclass (`_util/sections/base.py`) and one
line here, `SECTIONS.append(MySection())` or a place in the list below; the message, the
site and report.json pick it up from the list.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import pandas as pd

from _util.alert_kinds import ALERT_KINDS
from _util.report import Report, report_to_dict
from _util.sections.alerts import AlertSection, NoAlertsSection
from _util.sections.base import DayContext, Section, SiteContext, SitePart
from _util.sections.commitments import CommitmentsSection
from _util.sections.ec2_usage import Ec2UsageSection
from _util.sections.headline import HeadlineSection
from _util.sections.idle_resources import IdleResourcesSection
from _util.sections.summaries import SummariesSection
from _util.sections.tag_coverage import TagCoverageSection
from _util.site import pages

SECTIONS: list[Section] = [
    HeadlineSection(),
    SummariesSection(),
    TagCoverageSection(),
    CommitmentsSection(),
    NoAlertsSection(),
    *(AlertSection(kind) for kind in ALERT_KINDS),
]
# Who ran what: after the alerts it helps explain (an EC2 spike's instances).
SECTIONS.append(Ec2UsageSection())
# What could be stopped: after what ran.
SECTIONS.append(IdleResourcesSection())


def current(sections: Sequence[Section] | None = None) -> Sequence[Section]:
    """`sections`, or the registered ones as they are now (read at call time, so a
    section registered after import takes part)."""
    return SECTIONS if sections is None else sections


def analysing(sections: Sequence[Section] | None = None) -> list[Section]:
    """The sections that have an `analyse` of their own."""
    return [s for s in current(sections) if type(s).analyse is not Section.analyse]


def analyse(ctx: DayContext, sections: Sequence[Section] | None = None,
            on_error: Callable[[Section, Exception], None] | None = None) -> dict[str, Any]:
    """Each section's data of its own for the day (those that have any), by name.

    With `on_error`, a section whose analysis fails is left out and reported to it, so one
    section (a denied or unexpected AWS answer) never costs the day its digest."""
    found = {}
    for section in analysing(sections):
        try:
            data = section.analyse(ctx)
        except Exception as exc:  # noqa: BLE001 - reported; the other sections go on
            if on_error is None:
                raise
            on_error(section, exc)
            continue
        if data is not None:
            found[section.name] = data
    return found


def site_parts(report: Report, history: pd.DataFrame, site: SiteContext,
               sections: Sequence[Section] | None = None) -> list[SitePart]:
    """Each section's share of the site, in order (the caller draws the plots and writes
    the pages; `report_page` puts the parts together)."""
    return [section.site_part(report, history, site) for section in current(sections)]


def report_page(report: Report, parts: Sequence[SitePart], footer: Sequence[str] = ()) -> str:
    """The report page: the sections' parts in order, then any `footer` markup."""
    return pages.report_layout(report.day, [*(p.html for p in parts), *footer])


def report_json(report: Report, sections: Sequence[Section] | None = None) -> dict[str, Any]:
    """The report.json document: the report's own keys with each section's in between."""
    parts: dict[str, Any] = {}
    for section in current(sections):
        parts.update(section.json_part(report))
    return report_to_dict(report, parts)
