"""The site's templates: every page kind escapes what it prints, and the report page is
assembled from parts that a section kept elsewhere can bring with its own templates."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import pytest
from jinja2 import UndefinedError
from markupsafe import Markup

import procBacktest
from _util import sections
from _util.alert_kinds import ALERT_KINDS, SPIKE, TREND, UP
from _util.report import Rules, ServiceAmount
from _util.sections import summaries
from _util.sections.base import SiteContext
from _util.site import pages as site_pages
from _util.slack.preview import preview_page
from tests.test_slack_message import DAY, alert, report

HOSTILE = '<script>alert("x")</script>'
ESCAPED = "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;"


def _hostile_report():
    alerts = [alert(SPIKE, UP, service=HOSTILE, group=HOSTILE, top_group=HOSTILE,
                    top_group_delta_usd=5.0, muted=True, mute_reason=HOSTILE),
              alert(TREND, UP, service=HOSTILE, macd=1.0, signal=0.5)]
    base = report(alerts, metric=HOSTILE, group_by=HOSTILE)
    headline = dataclasses.replace(base.summary.headline,
                                   not_in_yet=(ServiceAmount(HOSTILE, 5.0),))
    return dataclasses.replace(base, summary=dataclasses.replace(base.summary, headline=headline))


def _backtest_page(tmp_path: Path) -> str:
    by_day = {DAY: (alert(service=HOSTILE),)}
    path = procBacktest.write_page(tmp_path, "bt", by_day, HOSTILE, Rules(),
                                   procBacktest.monthly_counts(by_day), Path(HOSTILE))
    return path.read_text(encoding="utf-8")


def _report_page(rep, folder: Path) -> str:
    parts = sections.site_parts(rep, pd.DataFrame(), SiteContext(folder, "reports/x", None))
    return sections.report_page(rep, parts)


PAGE_KINDS = {
    "plot": lambda tmp: site_pages.plot_page(
        HOSTILE, DAY, HOSTILE, HOSTILE, HOSTILE, [(HOSTILE, HOSTILE)], [HOSTILE, HOSTILE],
        [[HOSTILE, HOSTILE]], HOSTILE),
    "month to date": lambda tmp: summaries.mtd_page(
        _hostile_report(), HOSTILE, HOSTILE, [ServiceAmount(HOSTILE, 10.0)]),
    "daily": lambda tmp: summaries.daily_page(
        _hostile_report(), HOSTILE, 1, [(DAY, HOSTILE, 10.0)]),
    "report": lambda tmp: _report_page(_hostile_report(), tmp),
    "site index": lambda tmp: site_pages.site_index(
        [site_pages.IndexEntry(HOSTILE, HOSTILE, 1.0, 2.0, 3)]),
    "slack preview": lambda tmp: preview_page(
        {"channel": HOSTILE, "text": HOSTILE,
         "blocks": [{"type": "header", "text": {"type": "plain_text", "text": HOSTILE}},
                    {"type": "section", "text": {"type": "mrkdwn", "text": HOSTILE},
                     "accessory": {"type": "button", "text": {"type": "plain_text", "text": HOSTILE},
                                   "url": "https://example.com/" + HOSTILE}},
                    {"type": HOSTILE}]},
        DAY, posted=False),
    "backtest": _backtest_page,
}


def test_the_report_page_says_when_the_day_looks_partial(tmp_path):
    html = _report_page(_hostile_report(), tmp_path)
    assert (f"Partial data: 1 service with costs on each of the 7 days before has none for "
            f"{DAY.isoformat()} yet: {ESCAPED} (usually $5.00/day); the total is likely about "
            "$5.00 short.") in html
    assert "Partial data" not in _report_page(report([]), tmp_path)


@pytest.mark.parametrize("kind", PAGE_KINDS)
def test_every_page_kind_prints_a_script_value_escaped(kind, tmp_path):
    html = PAGE_KINDS[kind](tmp_path)
    assert "<script" not in html
    assert ESCAPED in html
    assert html.startswith("<!DOCTYPE html>\n") and html.endswith("</main></body></html>\n")
    assert "<style>:root{" in html  # the stylesheet inlined: the page stands alone


def test_render_string_escapes_text_and_keeps_markup():
    out = site_pages.render_string("<p>{{ text }}</p>{{ markup }}", text=HOSTILE,
                                   markup=Markup("<b>bold</b>"))
    assert out == f"<p>{ESCAPED}</p><b>bold</b>"
    assert isinstance(out, Markup)


def test_render_string_templates_can_use_the_shared_macros():
    out = site_pages.render_string(
        '{% import "_macros.html" as m %}{{ m.link(href, text) }}', href=HOSTILE, text=HOSTILE)
    assert out == f'<a href="{ESCAPED}">{ESCAPED}</a>'


def test_report_layout_joins_parts_by_newlines_skips_empty_ones_and_escapes_plain_text():
    page = site_pages.report_layout(DAY, [Markup("<p>one</p>"), Markup(""), HOSTILE,
                                          site_pages.render_string("<p>{{ n }}</p>", n=2)])
    body = page.split("<h1>AWS cost report for 2024-05-14</h1>\n", 1)[1]
    assert body == f"<p>one</p>\n{ESCAPED}\n<p>2</p>\n</main></body></html>\n"


def test_report_page_is_the_sections_parts_in_order_through_the_layout(tmp_path):
    rep = _hostile_report()
    entries = [site_pages.AlertEntry(a, "#not-plotted", plotted=False) for a in rep.alerts]
    cards = [site_pages.SummaryEntry(k, summaries.TITLES[k], f"{s}.html", f"{s}.png")
             for k, s in summaries.SLUGS.items()]
    parts = [site_pages.report_header(rep), site_pages.report_summaries("AWS Services Summary", cards),
             site_pages.report_no_alerts(rep, entries),
             *(site_pages.report_alert_section(kind, entries) for kind in ALERT_KINDS)]
    assert site_pages.report_no_alerts(rep, entries) == ""
    assert site_pages.report_alert_section(ALERT_KINDS[-1], entries) == ""  # no spike down
    page = _report_page(rep, tmp_path)
    assert page == site_pages.report_layout(DAY, parts)


def test_a_section_brings_its_own_template_folder_found_from_any_directory(tmp_path,
                                                                           monkeypatch):
    monkeypatch.setattr(site_pages._loader, "searchpath", list(site_pages._loader.searchpath))
    folder = tmp_path / "section_templates"
    (folder / "tag_coverage").mkdir(parents=True)
    (folder / "tag_coverage" / "part.html").write_text(
        '{% import "_macros.html" as m %}\n<h2>Tag coverage</h2>\n<p>{{ name }}</p>\n')
    site_pages.add_template_folder(folder)
    site_pages.add_template_folder(folder)  # again: no second entry
    assert site_pages._loader.searchpath.count(str(folder.resolve())) == 1
    monkeypatch.chdir(tmp_path)

    part = site_pages.render_partial("tag_coverage/part.html", name=HOSTILE)
    assert part == f"<h2>Tag coverage</h2>\n<p>{ESCAPED}</p>"  # the file's last newline dropped
    rep = dataclasses.replace(_hostile_report(), alerts=())
    page = site_pages.report_layout(DAY, [site_pages.report_header(rep), part])
    assert f"</div>\n<h2>Tag coverage</h2>\n<p>{ESCAPED}</p>\n</main>" in page


def test_adding_a_template_folder_that_does_not_exist_is_refused(tmp_path):
    with pytest.raises(NotADirectoryError, match="does not exist"):
        site_pages.add_template_folder(tmp_path / "missing")


def test_a_misspelt_template_variable_fails_instead_of_printing_nothing():
    with pytest.raises(UndefinedError, match="'nmae' is undefined"):
        site_pages.render_string("<p>{{ nmae }}</p>", name="x")
