"""The seams work: a cost source and a digest section defined here, each registered with
one line, reach report.json, the site and the Slack payload without a change to any
other module."""
from __future__ import annotations

import datetime as dt
import json
import logging
from dataclasses import dataclass, field

import pandas as pd

import runCostReporting
from _util import sections
from _util.report import Report
from _util.sections.base import Section, SiteContext, SitePart, SlackPart
from _util.site.pages import render_string
from _util.slack.blocks import section
from _util.sources import SOURCES
from _util.sources.base import CostQuery
from _util.store.cost_store import CostRow

TODAY = dt.date(2026, 11, 23)
DAY = dt.date(2026, 11, 22)


@dataclass
class FlatFetch:
    """Two services at a flat cost a day, the second tenfold on the last day."""

    start: dt.date
    end: dt.date
    requests: int = 1
    unsettled_days: set[dt.date] = field(default_factory=set)

    def __iter__(self):
        for i in range((self.end - self.start).days + 1):
            day = self.start + dt.timedelta(days=i)
            yield CostRow(day, "Flat Service", "", 100.0 + (i % 3), "USD", False)
            yield CostRow(day, "Jumpy Service", "team-x", 500.0 if day == DAY else 50.0 + (i % 2),
                          "USD", False)


@dataclass
class FlatSource:
    name: str = "flat"
    account: str = "flat-account"
    retention_days: int = 400

    def fetch(self, start: dt.date, end: dt.date, query: CostQuery) -> FlatFetch:
        return FlatFetch(start, end)


class ServiceCountSection(Section):
    """How many services had spend in the window: a line, a page and a JSON key."""

    name = "service-count"

    def analyse(self, ctx):
        return int(ctx.history["service"].nunique())

    def json_part(self, report: Report) -> dict:
        return {"service_count": report.sections[self.name]}

    def site_part(self, report: Report, history: pd.DataFrame, site: SiteContext) -> SitePart:
        count = report.sections[self.name]
        html = render_string('<h2>Services</h2>\n<p><a href="services.html">{{ n }} services '
                             '&amp; counting</a></p>', n=count)
        page = render_string("<!DOCTYPE html><p>{{ n }} services</p>", n=count)
        return SitePart(html=html, pages={"services.html": page},
                        urls={"services": site.url("services.html")})

    def slack_part(self, report: Report, account_label: str | None) -> SlackPart:
        count = report.sections[self.name]
        return SlackPart(blocks=[section(f"*Services with spend:* {count}",
                                         report.page_urls.get("services"),
                                         action_id="services")])


def _run(tmp_path, monkeypatch, *args: str) -> int:
    monkeypatch.setenv("COST_TRACKING_OUTPUT_DIR", str(tmp_path))
    monkeypatch.setenv("COST_TRACKING_SITE_URL", "https://costs.example.com/")
    code = runCostReporting.main(["--dry-run", "--date", DAY.isoformat(), *args], None, TODAY)
    logging.getLogger().handlers.clear()
    return code


def test_a_source_registered_with_one_line_feeds_the_report_the_site_and_slack(
        tmp_path, clean_env, monkeypatch):
    monkeypatch.setitem(SOURCES, "flat", lambda settings, today: FlatSource())
    monkeypatch.setenv("COST_TRACKING_SOURCE", "flat")
    assert _run(tmp_path, monkeypatch) == 0

    record = json.loads((tmp_path / "runs" / f"{DAY}.json").read_text())
    assert record["ce_requests"] == 1 and record["rows_upserted"] == 2 * 365
    data = json.loads((tmp_path / "site" / "reports" / str(DAY) / "report.json").read_text())
    assert {s["service"] for s in data["mtd_by_service"]} == {"Flat Service", "Jumpy Service"}
    spikes = [a for a in data["alerts"] if a["kind"] == "spike" and a["group"] is None]
    assert [a["service"] for a in spikes] == ["Jumpy Service"]
    assert spikes[0]["top_group"] == "team-x"
    page = (tmp_path / "site" / "reports" / str(DAY) / "index.html").read_text()
    assert "Jumpy Service" in page
    payload = json.loads((tmp_path / "slack" / f"{DAY}.json").read_text())
    assert "*Jumpy Service*" in json.dumps(payload)


def test_an_unregistered_source_is_refused_naming_the_registered_ones(tmp_path, clean_env,
                                                                      monkeypatch, capsys):
    monkeypatch.setenv("COST_TRACKING_SOURCE", "flat")
    assert _run(tmp_path, monkeypatch) == 2
    assert "COST_TRACKING_SOURCE is 'flat'; allowed: one of cost-explorer, cur, demo" in \
        capsys.readouterr().err


def test_a_section_registered_with_one_line_reaches_report_json_the_site_and_slack(
        tmp_path, clean_env, monkeypatch):
    monkeypatch.setattr(sections, "SECTIONS", list(sections.SECTIONS))
    sections.SECTIONS.append(ServiceCountSection())
    assert _run(tmp_path, monkeypatch, "--demo") == 0

    folder = tmp_path / "site" / "reports" / str(DAY)
    data = json.loads((folder / "report.json").read_text())
    assert data["service_count"] == 26
    assert (folder / "services.html").read_text() == "<!DOCTYPE html><p>26 services</p>"
    page = (folder / "index.html").read_text()
    # After the alert sections, before the end of the page; its markup kept, escaped.
    assert page.index("Spike up in AWS Services") < page.index("<h2>Services</h2>")
    assert '<a href="services.html">26 services &amp; counting</a></p>\n</main>' in page
    blocks = json.loads((tmp_path / "slack" / f"{DAY}.json").read_text())["blocks"]
    ours = [b for b in blocks if "Services with spend" in b.get("text", {}).get("text", "")]
    assert ours and ours[0]["accessory"]["url"] == (
        f"https://costs.example.com/reports/{DAY}/services.html")
    assert blocks[-1] == ours[0]  # the sections' order is the message's


class BrokenSection(Section):
    """A section whose analysis fails (its other hooks show nothing without data, as a
    section's should)."""

    name = "broken"

    def analyse(self, ctx):
        raise KeyError("an answer no one expected")


def test_a_section_that_fails_costs_the_day_only_that_section(tmp_path, clean_env, monkeypatch,
                                                              capsys):
    """One line, exit 3, and the digest, pages and report.json still go out without it."""
    monkeypatch.setattr(sections, "SECTIONS", list(sections.SECTIONS))
    sections.SECTIONS.append(BrokenSection())
    assert _run(tmp_path, monkeypatch, "--demo") == 3
    err = capsys.readouterr().err
    assert "the broken section failed ('an answer no one expected'); the digest goes out " \
           "without it" in err and "Traceback" not in err
    data = json.loads((tmp_path / "site" / "reports" / str(DAY) / "report.json").read_text())
    assert data["alerts"]
    assert (tmp_path / "slack" / f"{DAY}.json").exists()
    assert "KeyError" in (tmp_path / "logs" / "cost_tracking.log").read_text()
