"""The plot budget: at most `max_alert_plots` alert plots a run, the report still lists all."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

import procPlotting
from _util.alert_kinds import SPIKE, TREND, UP
from _util.report import Alert
from _util.slack.message import build_message, linked_alert_keys
from tests.test_plotting import SITE_URL, parse, report_for, synthetic_history

DAY = dt.date(2024, 3, 31)
SERVICES = [f"Service {i}" for i in range(8)]


def spike(service: str, delta: float) -> Alert:
    return Alert(kind=SPIKE, direction=UP, service=service, group=None, usd=100.0 + delta,
                 baseline_mean=100.0, baseline_std=5.0, delta_usd=delta, zscore=delta / 5.0)


def trend_up(service: str, delta: float) -> Alert:
    return Alert(kind=TREND, direction=UP, service=service, group=None, usd=100.0 + delta,
                 baseline_mean=100.0, baseline_std=5.0, delta_usd=delta, macd=0.5, signal=0.4)


@pytest.fixture(scope="module")
def history():
    return synthetic_history(DAY, {(s, "web"): 100.0 for s in SERVICES}, days=60)


@pytest.fixture(scope="module")
def capped(history, tmp_path_factory):
    """Eight spikes whose dollar changes grow with their number; three may be plotted."""
    alerts = [spike(s, 10.0 * (i + 1)) for i, s in enumerate(SERVICES)]
    report = report_for(history, DAY, alerts)
    site = tmp_path_factory.mktemp("capped")
    rendered = procPlotting.render(report, history, site, SITE_URL, workers=1,
                                   max_alert_plots=3)
    return site, rendered


def test_only_the_largest_changes_get_plots_when_alerts_exceed_the_budget(capped):
    site, rendered = capped
    plotted = {a.service for a in rendered.report.alerts if a.plot_url}
    assert plotted == {"Service 7", "Service 6", "Service 5"}
    assert rendered.plots_rendered == 3 + 2  # and the two summaries
    assert rendered.alerts_not_plotted == 5
    pngs = sorted(p.name for p in (site / "reports" / DAY.isoformat()).glob("*.png"))
    assert len(pngs) == 5


def test_the_report_page_lists_every_alert_and_says_why_some_have_no_plot(capped):
    site, rendered = capped
    page = site / "reports" / DAY.isoformat() / "index.html"
    links = parse(page)
    text = " ".join(links.text)
    assert all(s in text for s in SERVICES)
    assert links.links.count(f"#{procPlotting.NOT_PLOTTED_ID}") == 5
    assert f'id="{procPlotting.NOT_PLOTTED_ID}"' in page.read_text(encoding="utf-8")
    assert "5 alerts have no plot" in text and "COST_TRACKING_MAX_ALERT_PLOTS" in text
    for href in links.links:
        if href.endswith(".html") and href != "slack.html" and not href.startswith(("http", "../")):
            assert (page.parent / href).is_file(), href


def test_report_json_and_slack_have_no_link_for_an_unplotted_alert(capped):
    site, rendered = capped
    data = json.loads((site / "reports" / DAY.isoformat() / "report.json").read_text())
    assert sum(a["plot_url"] is None for a in data["alerts"]) == 5
    blocks = build_message(rendered.report).blocks
    buttons = [b["accessory"]["url"] for b in blocks
               if b.get("accessory", {}).get("action_id", "").startswith("plot_")]
    assert sorted(buttons) == sorted(a.plot_url for a in rendered.report.alerts if a.plot_url)


def test_alerts_the_slack_message_links_are_plotted_before_larger_changes(history):
    # The message lists upward trends before spikes: with room for one plot, the trend's.
    report = report_for(history, DAY, [spike("Service 0", 500.0), trend_up("Service 1", 2.0)])
    assert procPlotting.alerts_to_plot(report, 1) == {report.alerts[1].key}
    assert procPlotting.alerts_to_plot(report, 2) == {a.key for a in report.alerts}


def test_without_a_budget_every_alert_is_plotted(history, tmp_path: Path):
    alerts = [spike(s, 10.0 * (i + 1)) for i, s in enumerate(SERVICES)]
    rendered = procPlotting.render(report_for(history, DAY, alerts), history, tmp_path, None,
                                   workers=1, max_alert_plots=None)
    assert rendered.plots_rendered == len(SERVICES) + 2
    assert rendered.alerts_not_plotted == 0
    page = (tmp_path / "reports" / DAY.isoformat() / "index.html").read_text(encoding="utf-8")
    assert procPlotting.NOT_PLOTTED_ID not in page


def test_continuing_alerts_cut_from_their_line_do_not_take_the_plots_of_new_spikes(history):
    # 80 continuing trends fill their line past Slack's 3,000 characters ("; and N more");
    # only those the line names are linked, so the five new spikes still get their plots.
    long_name = "Continuing service with a long name " + "x" * 40
    continuing = [dataclasses.replace(trend_up(f"{long_name} {i:02d}", 1.0 + i),
                                      status="continuing", episode_days=3)
                  for i in range(80)]
    spikes = [spike(f"Spiking {i}", 1000.0 + i) for i in range(5)]
    report = report_for(history, DAY, spikes + continuing)
    linked = linked_alert_keys(report)
    assert 0 < sum(k[0] == TREND for k in linked) < 80
    chosen = procPlotting.alerts_to_plot(report, 50)
    assert {a.key for a in spikes} <= chosen
