"""Tag coverage: the share of spend carrying a tag, on the demo end to end and against
Cost Explorer through botocore's Stubber (the extra request only when needed, only the
days not stored yet), the drop alert, report.json's keys, route slices and hostile names."""
from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sqlite3
from dataclasses import dataclass, field

import pandas as pd
import pytest
from botocore.stub import Stubber

import procSummaries
from _util.errors import ConfigError
from _util.report import Report, Rules
from _util.run.job import Clients, RunJob
from _util.sections import SECTIONS, report_json
from _util.sections.base import DayContext, SiteContext
from _util.sections.tag_coverage import (
    TagCoverageSection,
    coverage_blocks,
    coverage_for,
    coverage_json,
    coverage_site,
)
from _util.settings import Settings, load_settings
from _util.site.plot_drawing import draw_and_save
from _util.sources.base import CostQuery
from _util.sources.cost_explorer import CostExplorerSource, build_request
from _util.sources.demo_account import demo_history
from _util.sources.tag_coverage import refresh_coverage
from _util.store.tag_coverage import CoverageRow, load_coverage, read_coverage_state
from _util.tag_coverage import coverage_figures
from tests.ops_support import DAY, QUIET, TODAY, copy_template, run_bot

TAG = "Spend_Category"
METRIC = "UnblendedCost"
QUERY = CostQuery(METRIC, "TAG:Name", ("Credit", "Refund"))
JSON_KEYS = {"tag", "day_pct", "mtd_pct", "change_30d_pts", "by_service", "prev7_mean_pct",
             "drop_pts", "drop_threshold_pts", "drop_alert", "day_usd", "day_untagged_usd",
             "mtd_usd", "mtd_untagged_usd", "source", "note", "page_url"}


def _pct(tagged: float, total: float) -> float | None:
    return 100.0 * tagged / total if total > 0 else None


def pandas_figures(frame: pd.DataFrame, day: dt.date) -> dict:
    """The figures computed the plain way from rows (usage_date, service, tagged, untagged)."""
    frame = frame.assign(usage_date=pd.to_datetime(frame["usage_date"]))
    frame["total"] = frame["tagged"] + frame["untagged"]
    d = pd.Timestamp(day)
    by_day = frame.groupby("usage_date")[["tagged", "total"]].sum()
    share = 100.0 * by_day["tagged"] / by_day["total"]
    month = frame[(frame["usage_date"] >= d.replace(day=1)) & (frame["usage_date"] <= d)]
    services = month.groupby("service")[["tagged", "untagged", "total"]].sum()
    prev7 = share[(share.index >= d - pd.Timedelta(days=7)) & (share.index < d)]
    return {
        "day_pct": share[d],
        "mtd_pct": 100.0 * month["tagged"].sum() / month["total"].sum(),
        "change_30d_pts": share[d] - share[d - pd.Timedelta(days=30)],
        "prev7_mean_pct": prev7.mean(),
        "by_service": {s: (r.untagged, _pct(r.tagged, r.total)) for s, r in services.iterrows()},
    }


def _report_json(out, day=DAY) -> dict:
    return json.loads((out / "site" / "reports" / day.isoformat() / "report.json").read_text())


# ---------------------------------------------------------------- the demo, end to end


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    """One --demo run with coverage on (the demo is grouped by Name: the extra request)."""
    out = tmp_path_factory.mktemp("coverage-demo")
    copy_template(tmp_path_factory, "demo", out)
    with pytest.MonkeyPatch.context() as mp:
        # As the clean_env fixture does (a module's fixture cannot use it).
        for name in list(os.environ):
            if name.startswith(("COST_TRACKING_", "SLACK_")):
                mp.delenv(name)
        code = run_bot(["--demo", "--dry-run", "--date", DAY.isoformat()], out, TODAY, **QUIET,
                       COST_TRACKING_COVERAGE_TAG=TAG,
                       COST_TRACKING_SITE_URL="https://costs.example.com/")
    logging.getLogger().handlers.clear()
    assert code == 0
    return out


def test_demo_coverage_equals_a_pandas_computation_from_the_stored_rows(demo_run):
    with sqlite3.connect(demo_run / "cost_tracking.db") as conn:
        stored = pd.read_sql_query(
            "SELECT usage_date, service, tagged_amount AS tagged, untagged_amount AS untagged "
            "FROM tag_coverage_daily WHERE metric = ? AND tag = ?", conn, params=(METRIC, TAG))
        costs = pd.read_sql_query(
            "SELECT usage_date, service, SUM(amount) AS amount FROM cost_daily "
            "WHERE usage_date >= ? GROUP BY usage_date, service", conn,
            params=((DAY - dt.timedelta(days=89)).isoformat(),))
    # The first run stored the 90 days the plot shows, and every (day, service) sums to
    # what the costs hold: the grouped answer splits the same spend, it adds none.
    assert stored["usage_date"].nunique() == 90
    both = stored.merge(costs, on=["usage_date", "service"], how="outer")
    assert (both["tagged"] + both["untagged"]).to_numpy() == \
        pytest.approx(both["amount"].to_numpy())
    # Some spend lacks the tag, most has it.
    assert 0 < stored["untagged"].sum() < stored["tagged"].sum()

    data = _report_json(demo_run)["tag_coverage"]
    expected = pandas_figures(stored, DAY)
    assert set(data) == JSON_KEYS
    assert data["tag"] == TAG and data["source"] == "cost-explorer"
    for key in ("day_pct", "mtd_pct", "change_30d_pts", "prev7_mean_pct"):
        assert data[key] == pytest.approx(expected[key]), key
    assert data["drop_alert"] is False
    got = {s["service"]: (s["untagged_usd"], s["tagged_pct"]) for s in data["by_service"]}
    assert got.keys() == expected["by_service"].keys()
    for service, (untagged, pct) in expected["by_service"].items():
        assert got[service] == pytest.approx((untagged, pct)), service
    untagged = [s["untagged_usd"] for s in data["by_service"]]
    assert untagged == sorted(untagged, reverse=True)


def test_the_coverage_requests_are_counted_with_the_cost_fetch_s(demo_run):
    """Cost Explorer bills them alike: the run record counts both (the cost fetch, then
    the coverage's first fetch of 90 days: two pages of the demo's)."""
    record = json.loads((demo_run / "runs" / f"{DAY}.json").read_text())
    (sections,) = [s for s in record["stages"] if s["name"] == "sections"]
    by_section = sections["counts"]["requests"]
    assert by_section["tag_coverage"] == 2
    (ingest,) = [s for s in record["stages"] if s["name"] == "ingest"]
    assert record["ce_requests"] == ingest["counts"]["ce_requests"] + sum(by_section.values())


def test_demo_digest_page_and_plot_show_the_section(demo_run):
    url = f"https://costs.example.com/reports/{DAY}/tag-coverage.html"
    assert _report_json(demo_run)["tag_coverage"]["page_url"] == url
    blocks = json.loads((demo_run / "slack" / f"{DAY}.json").read_text())["blocks"]
    texts = [b.get("text", {}).get("text", "") for b in blocks]
    [at] = [i for i, t in enumerate(texts) if t.startswith("*Tag coverage: Spend_Category*")]
    # After the summaries, before the alerts; its button opens the page.
    assert any("Month to Date Spend x Service" in t for t in texts[:at])
    assert blocks[at]["accessory"]["url"] == url
    top = [line for line in texts[at].splitlines() if line.startswith("• ")]
    assert len(top) == 5
    assert "over the last 30 days" in texts[at]
    folder = demo_run / "site" / "reports" / DAY.isoformat()
    assert (folder / "tag-coverage.png").stat().st_size > 10_000
    page = (folder / "tag-coverage.html").read_text()
    assert "Every service" in page and "Amazon Virtual Private Cloud" in page
    assert "<h2>Tag coverage: Spend_Category</h2>" in (folder / "index.html").read_text()


def test_grouping_by_the_tag_uses_the_costs_and_gives_the_same_figures(demo_run, tmp_path,
                                                                       clean_env):
    code = run_bot(["--demo", "--dry-run", "--date", DAY.isoformat()], tmp_path, TODAY,
                   **QUIET, COST_TRACKING_COVERAGE_TAG=TAG,
                   COST_TRACKING_GROUP_BY=f"TAG:{TAG}")
    logging.getLogger().handlers.clear()
    assert code == 0
    from_costs = _report_json(tmp_path)["tag_coverage"]
    from_request = _report_json(demo_run)["tag_coverage"]
    assert from_costs["source"] == "costs"
    for key in ("day_pct", "mtd_pct", "change_30d_pts", "prev7_mean_pct", "mtd_untagged_usd"):
        assert from_costs[key] == pytest.approx(from_request[key]), key
    assert [s["service"] for s in from_costs["by_service"]] == \
        [s["service"] for s in from_request["by_service"]]
    with sqlite3.connect(tmp_path / "cost_tracking.db") as conn:
        assert conn.execute("SELECT COUNT(*) FROM tag_coverage_daily").fetchone() == (0,)
        assert conn.execute("SELECT COUNT(*) FROM tag_coverage_source").fetchone() == (0,)


def test_skip_fetch_shows_what_is_stored_and_off_is_null(demo_run, tmp_path, clean_env):
    copy_db = tmp_path / "cost_tracking.db"
    copy_db.write_bytes((demo_run / "cost_tracking.db").read_bytes())
    code = run_bot(["--demo", "--dry-run", "--skip-fetch", "--date", DAY.isoformat()], tmp_path,
                   TODAY, **QUIET, COST_TRACKING_COVERAGE_TAG=TAG)
    assert code == 0
    stored = _report_json(tmp_path)["tag_coverage"]
    assert stored["source"] == "stored"
    assert stored["day_pct"] == pytest.approx(_report_json(demo_run)["tag_coverage"]["day_pct"])
    code = run_bot(["--demo", "--dry-run", "--skip-fetch", "--date", DAY.isoformat()], tmp_path,
                   TODAY, **QUIET)
    logging.getLogger().handlers.clear()
    assert code == 0
    assert _report_json(tmp_path)["tag_coverage"] is None
    blocks = json.loads((tmp_path / "slack" / f"{DAY}.json").read_text())["blocks"]
    assert "Tag coverage" not in json.dumps(blocks)


# ---------------------------------------------------------------- Cost Explorer (Stubber)


def _period(day: dt.date, ec2_tagged: float, ec2_untagged: float, estimated: bool = False) -> dict:
    metric = lambda amount: {METRIC: {"Amount": f"{amount:.2f}", "Unit": "USD"}}  # noqa: E731
    return {
        "TimePeriod": {"Start": day.isoformat(), "End": (day + dt.timedelta(days=1)).isoformat()},
        "Total": {},
        "Groups": [
            {"Keys": ["Amazon EC2", f"{TAG}$product"], "Metrics": metric(ec2_tagged * 0.75)},
            {"Keys": ["Amazon EC2", f"{TAG}$data"], "Metrics": metric(ec2_tagged * 0.25)},
            {"Keys": ["Amazon EC2", f"{TAG}$"], "Metrics": metric(ec2_untagged)},
            {"Keys": ["AWS Backup", f"{TAG}$"], "Metrics": metric(10.0)},
        ],
        "Estimated": estimated,
    }


def _days(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def _request(start: dt.date, end: dt.date, token: str | None = None) -> dict:
    request = build_request(start, end + dt.timedelta(days=1), METRIC, f"TAG:{TAG}",
                            ("Credit", "Refund"))
    return dict(request, NextPageToken=token) if token else request


def _backfill(stubber: Stubber, day: dt.date, drop_on_day: bool = False) -> list[dt.date]:
    """Queue the 90-day first fetch as two pages; EC2 90 tagged and 10 untagged a day,
    AWS Backup 10 untagged (90/110 tagged), or 50 tagged on `day` with `drop_on_day`."""
    days = _days(day - dt.timedelta(days=89), day)
    periods = [_period(d, 50.0 if drop_on_day and d == day else 90.0, 10.0,
                       estimated=d >= day - dt.timedelta(days=1)) for d in days]
    stubber.add_response("get_cost_and_usage", {"ResultsByTime": periods[:45],
                                                "NextPageToken": "page-2"},
                         _request(days[0], day))
    stubber.add_response("get_cost_and_usage", {"ResultsByTime": periods[45:]},
                         _request(days[0], day, "page-2"))
    return days


def test_first_fetch_asks_once_for_90_days_and_follows_pages(stubbed, db_engine):
    client, stubber = stubbed
    days = _backfill(stubber, DAY)
    result = refresh_coverage(db_engine, CostExplorerSource(client), QUERY, TAG, day=DAY,
                              today=TODAY)
    assert (result.start, result.end, result.requests) == (days[0], DAY, 2)
    rows = load_coverage(db_engine, METRIC, TAG, days[0], DAY)
    assert len(rows) == 2 * 90
    ec2 = [r for r in rows if r.service == "Amazon EC2" and r.usage_date == DAY][0]
    assert (ec2.tagged, ec2.untagged, ec2.estimated) == (pytest.approx(90.0), 10.0, True)
    state = read_coverage_state(db_engine, METRIC, TAG)
    assert (state.first_day, state.last_day, state.estimated_from) == (days[0], DAY,
                                                                      DAY - dt.timedelta(days=1))


def test_next_run_asks_only_for_the_days_not_stored_or_still_estimated(stubbed, db_engine):
    client, stubber = stubbed
    source = CostExplorerSource(client)
    _backfill(stubber, DAY)
    refresh_coverage(db_engine, source, QUERY, TAG, day=DAY, today=TODAY)
    # The next day: from the first Estimated day (DAY - 1) to the new day, one request.
    nxt = DAY + dt.timedelta(days=1)
    stubber.add_response("get_cost_and_usage", {"ResultsByTime": [
        _period(d, 80.0, 20.0) for d in _days(DAY - dt.timedelta(days=1), nxt)]},
        _request(DAY - dt.timedelta(days=1), nxt))
    result = refresh_coverage(db_engine, source, QUERY, TAG, day=nxt,
                              today=nxt + dt.timedelta(days=1))
    assert (result.start, result.requests) == (DAY - dt.timedelta(days=1), 1)
    rows = {(r.usage_date, r.service): r for r in load_coverage(db_engine, METRIC, TAG,
                                                                 DAY - dt.timedelta(days=3), nxt)}
    assert rows[(DAY, "Amazon EC2")].untagged == 20.0  # the revised day replaced
    assert rows[(DAY - dt.timedelta(days=2), "Amazon EC2")].untagged == 10.0  # kept
    # Nothing Estimated and nothing new: no request at all (the Stubber has none queued).
    again = refresh_coverage(db_engine, source, QUERY, TAG, day=nxt,
                             today=nxt + dt.timedelta(days=1))
    assert (again.start, again.requests) == (None, 0)


@dataclass
class _NotCostExplorer:
    """A source that cannot be asked for a tag apart from the costs (as the CUR's)."""

    name: str = "cur"
    account: str = "cur"
    retention_days: int = 400
    fetched: list = field(default_factory=list)

    def fetch(self, start, end, query):
        self.fetched.append(query)
        raise AssertionError("the coverage must not ask this source")


def _context(engine, tmp_path, clients: Clients, group_by: str = "TAG:Name",
             day: dt.date = DAY, history: pd.DataFrame | None = None) -> DayContext:
    history = demo_history(day) if history is None else history
    settings = Settings(day=day, output_dir=tmp_path, db_url=str(engine.url), group_by=group_by,
                        coverage_tag=TAG)
    report = Report(day=day, metric=METRIC, group_by=group_by, rules=Rules(),
                    summary=procSummaries.summarise(history, day), alerts=())
    return DayContext(report, history, RunJob(day, day), settings, engine, clients)


def test_grouped_by_the_tag_the_section_makes_no_request(stubbed, db_engine, tmp_path):
    client, _ = stubbed  # nothing queued: any request fails the test
    history = demo_history(DAY)
    history["group_value"] = history["group_value"].astype(object).map(
        lambda name: "" if name in ("", "ml-experiments") else "tagged")
    ctx = _context(db_engine, tmp_path, Clients(source=lambda: CostExplorerSource(client)),
                   group_by=f"TAG:{TAG}", history=history)
    coverage = TagCoverageSection().analyse(ctx)
    assert coverage.source == "costs"
    frame = history[history["usage_date"] > pd.Timestamp(DAY - dt.timedelta(days=90))]
    frame = frame.assign(tagged=frame["amount"].where(frame["group_value"] != "", 0.0),
                         untagged=frame["amount"].where(frame["group_value"] == "", 0.0))
    expected = pandas_figures(frame.astype({"service": object}), DAY)
    assert coverage.day_pct == pytest.approx(expected["day_pct"])
    assert coverage.mtd_pct == pytest.approx(expected["mtd_pct"])


def test_a_source_that_cannot_group_by_the_tag_shows_nothing_in_one_line(db_engine, tmp_path,
                                                                         caplog):
    source = _NotCostExplorer()
    ctx = _context(db_engine, tmp_path, Clients(source=lambda: source))
    with caplog.at_level(logging.INFO):
        assert TagCoverageSection().analyse(ctx) is None
    lines = [r.getMessage() for r in caplog.records if "tag coverage" in r.getMessage()]
    assert len(lines) == 1 and "COST_TRACKING_GROUP_BY=TAG:Spend_Category" in lines[0]
    assert source.fetched == []
    report = ctx.report
    assert report_json(report)["tag_coverage"] is None


def test_a_planted_drop_is_an_alert_in_the_section_and_in_report_json(stubbed, db_engine,
                                                                      tmp_path):
    client, stubber = stubbed
    _backfill(stubber, DAY, drop_on_day=True)
    ctx = _context(db_engine, tmp_path, Clients(source=lambda: CostExplorerSource(client)))
    coverage = TagCoverageSection().analyse(ctx)
    # 90 of 110 tagged for 89 days (81.8%), then 50 of 70 (71.4%): 10.4 points down.
    assert coverage.prev7_mean_pct == pytest.approx(100 * 90 / 110)
    assert coverage.day_pct == pytest.approx(100 * 50 / 70)
    assert coverage.drop_alert
    report = Report(day=DAY, metric=METRIC, group_by="TAG:Name", rules=Rules(),
                    summary=ctx.report.summary, alerts=(),
                    sections={"tag_coverage": coverage},
                    page_urls={"tag_coverage": "https://costs.example.com/tc.html"})
    data = report_json(report)["tag_coverage"]
    assert set(data) == JSON_KEYS
    assert data["drop_alert"] is True
    assert data["drop_pts"] == pytest.approx(100 * 90 / 110 - 100 * 50 / 70)
    assert data["by_service"][0] == {"service": "AWS Backup", "untagged_usd": 220.0,
                                     "tagged_pct": 0.0, "day_untagged_usd": 10.0,
                                     "day_tagged_pct": 0.0}
    [block, _divider] = TagCoverageSection().slack_part(report, None).blocks
    assert ":warning: *Coverage dropped: 71.4% of the spend" in block["text"]["text"]
    assert "10.4 points below the mean of the 7 days before (81.8%" in block["text"]["text"]
    site = coverage_site(coverage, SiteContext(tmp_path, "reports/x", None))
    assert '<p class="note">Coverage dropped: 71.4%' in site.html
    assert site.jobs[0].dropped


def test_a_failed_coverage_request_shows_the_stored_figures_with_a_note(stubbed, db_engine,
                                                                        tmp_path, caplog):
    client, stubber = stubbed
    _backfill(stubber, DAY)
    source = CostExplorerSource(client)
    refresh_coverage(db_engine, source, QUERY, TAG, day=DAY, today=TODAY)
    nxt = DAY + dt.timedelta(days=1)
    stubber.add_client_error("get_cost_and_usage", "ValidationException", "bad tag key",
                             expected_params=_request(DAY - dt.timedelta(days=1), nxt))
    ctx = _context(db_engine, tmp_path, Clients(source=lambda: source), day=nxt)
    with caplog.at_level(logging.ERROR):
        coverage = TagCoverageSection().analyse(ctx)
    assert coverage.source == "stored" and "bad tag key" in coverage.note
    assert coverage.mtd_pct == pytest.approx(100 * 90 / 110)  # the stored days of November
    assert coverage.day_pct is None  # the new day is not stored
    assert any("could not be fetched" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("drop, alert", [(4.9, False), (5.0, False), (5.1, True)])
def test_the_drop_must_be_more_than_the_threshold(drop, alert):
    days = _days(DAY - dt.timedelta(days=7), DAY)
    rows = [CoverageRow(d, "S", 90.0 - (drop if d == DAY else 0.0),
                        10.0 + (drop if d == DAY else 0.0)) for d in days]
    assert coverage_figures(rows, TAG, DAY, 5.0).drop_alert is alert


# ---------------------------------------------------------------- slices, names, settings


def test_a_route_slice_recomputes_every_figure_for_its_services():
    days = _days(DAY - dt.timedelta(days=40), DAY)
    rows = [CoverageRow(d, s, tagged, untagged) for d in days
            for s, tagged, untagged in (("Amazon EC2", 90.0, 10.0), ("AWS Glue", 0.0, 30.0),
                                        ("Amazon S3", 40.0 if d < DAY else 10.0, 0.0))]
    whole = coverage_figures(rows, TAG, DAY)
    ec2_s3 = coverage_for(whole, lambda service: service.startswith("Amazon"))
    assert ec2_s3 == coverage_figures([r for r in rows if r.service != "AWS Glue"], TAG, DAY)
    assert ec2_s3.day_pct == pytest.approx(100 * 100 / 110)
    assert [s.service for s in ec2_s3.by_service] == ["Amazon EC2", "Amazon S3"]
    glue = coverage_for(whole, lambda service: service == "AWS Glue")
    assert (glue.day_pct, glue.mtd_pct, glue.drop_alert) == (0.0, 0.0, False)
    assert coverage_for(whole, lambda service: False).day_pct is None


HOSTILE = '<!channel> <@U1> *bold* <script>alert("x")</script> & $x$'


def test_hostile_service_and_tag_names_stay_inert_in_slack_the_page_and_the_plot(tmp_path):
    rows = [CoverageRow(d, HOSTILE, 1.0, 5.0) for d in _days(DAY - dt.timedelta(days=10), DAY)]
    coverage = coverage_figures(rows, HOSTILE, DAY)
    text = json.dumps(coverage_blocks(coverage, "https://costs.example.com/x.html"))
    assert "<!channel>" not in text and "<@U1>" not in text and "<script>" not in text
    assert "&lt;!channel&gt; &lt;@U1&gt;" in text
    site = coverage_site(coverage, SiteContext(tmp_path, "reports/x", None))
    for html in (site.html, *site.pages.values()):
        assert "<script>" not in html and "<!channel>" not in html
        assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    [plot] = site.jobs
    draw_and_save(plot)
    assert plot.path.stat().st_size > 1000
    assert coverage_json(coverage)["by_service"][0]["service"] == HOSTILE  # data kept exact


@pytest.mark.parametrize("env, message", [
    ({"COST_TRACKING_COVERAGE_TAG": "TAG:Spend_Category"},
     "COST_TRACKING_COVERAGE_TAG is 'TAG:Spend_Category'; allowed: a tag key"),
    ({"COST_TRACKING_COVERAGE_DROP_PCT": "-1"}, "COST_TRACKING_COVERAGE_DROP_PCT is '-1'"),
])
def test_bad_coverage_settings_are_one_line(env, message):
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_settings({}, env, TODAY)


def test_the_section_comes_right_after_the_summaries():
    names = [s.name for s in SECTIONS]
    assert names.index("tag_coverage") == names.index("summaries") + 1
