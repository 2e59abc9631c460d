"""Rendering: plots and pages of the report site, for the demo account and hostile names."""
from __future__ import annotations

import dataclasses
import datetime as dt
import json
import os
import struct
import subprocess
import sys
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest

import procAmzAlerts
import procPlotting
import procSummaries
from _util.alert_kinds import ALERT_KINDS, DOWN, SPIKE, TREND, UP
from _util.report import Alert, Report, Rules
from _util.sections import summaries
from _util.sections.base import SiteContext, public_url
from _util.site import pages as site_pages
from _util.site import plot_drawing, plot_workers
from _util.site.slugs import is_safe
from _util.sources.demo_account import demo_history
from tests.test_plot_likeness import plot_jobs

DEMO_DAY = dt.date(2024, 5, 18)  # the demo plants spikes and both kinds of trend by then
SITE_URL = "http://costs.example.com/bot"


# ---------------------------------------------------------------- helpers


class _Links(HTMLParser):
    """Every href and src in a page, and the text outside tags."""

    def __init__(self) -> None:
        super().__init__()
        self.links: list[str] = []
        self.images: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        for name, value in attrs:
            if name == "href":
                self.links.append(value)
            if name == "src":
                self.images.append(value)

    def handle_data(self, data):
        self.text.append(data)


def parse(path: Path) -> _Links:
    parser = _Links()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def png_size(path: Path) -> tuple[int, int]:
    """Width and height from the PNG signature and IHDR chunk."""
    data = path.read_bytes()[:24]
    assert data[:8] == b"\x89PNG\r\n\x1a\n", f"{path.name} is not a PNG"
    assert data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def report_for(history: pd.DataFrame, day: dt.date, alerts=None, rules: Rules = Rules()) -> Report:
    if alerts is None:
        alerts = procAmzAlerts.detect_alerts(history, day, rules)
    return Report(day=day, metric="UnblendedCost", group_by="TAG:team", rules=rules,
                  summary=procSummaries.summarise(history, day), alerts=tuple(alerts))


def synthetic_history(day: dt.date, series: dict[tuple[str, str], float],
                      days: int = 120) -> pd.DataFrame:
    """Flat noisy daily costs per (service, group), with the last day tripled."""
    rng = np.random.default_rng(7)
    dates = pd.date_range(end=pd.Timestamp(day), periods=days, freq="D")
    rows = []
    for (service, group), level in series.items():
        amounts = level * (1 + 0.05 * rng.standard_normal(days))
        amounts[-1] *= 3
        rows.append(pd.DataFrame({"usage_date": dates, "service": service, "group_value": group,
                                  "amount": amounts, "estimated": dates == dates[-1]}))
    return pd.concat(rows, ignore_index=True)


def spike(service: str, group: str | None, usd: float = 300.0) -> Alert:
    return Alert(kind=SPIKE, direction=UP, service=service, group=group, usd=usd,
                 baseline_mean=100.0, baseline_std=5.0, delta_usd=usd - 100.0, zscore=40.0)


def trend(service: str, group: str | None, direction: str = DOWN) -> Alert:
    return Alert(kind=TREND, direction=direction, service=service, group=group, usd=90.0,
                 baseline_mean=100.0, baseline_std=5.0, delta_usd=-10.0, macd=-1.0, signal=-0.5)


def local_targets(page: Path, values: list[str]) -> list[Path]:
    """The files a page's relative links point at (fragments and queries dropped)."""
    out = []
    for value in values:
        parts = urlsplit(value)
        assert not parts.scheme and not parts.netloc, f"{page.name} links to another host: {value}"
        out.append((page.parent / parts.path).resolve())
    return out


# ---------------------------------------------------------------- the demo site


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory):
    site = tmp_path_factory.mktemp("demo") / "site"
    history = demo_history(DEMO_DAY)
    report = report_for(history, DEMO_DAY)
    rendered = procPlotting.render(report, history, site, SITE_URL, workers=2)
    return site, report, rendered


def test_demo_report_has_spike_and_trend_alerts_at_both_levels(demo_site):
    _, report, _ = demo_site
    kinds = {(a.kind, a.level) for a in report.alerts}
    assert {(SPIKE, "service"), (SPIKE, "group"), (TREND, "service"), (TREND, "group")} <= kinds


def crawl(start: Path) -> set[Path]:
    """Every local file reachable from `start` by links and images; asserts each exists.

    slack.html is the one exception: the Slack stage writes it after rendering.
    """
    seen: set[Path] = set()
    todo = [start.resolve()]
    while todo:
        page = todo.pop()
        if page in seen:
            continue
        seen.add(page)
        parsed = parse(page)
        for target in local_targets(page, parsed.links + parsed.images):
            if target.name == site_pages.SLACK_PREVIEW:
                continue
            assert target.is_file(), f"{page} links to missing {target}"
            if target.suffix == ".html":
                todo.append(target)
            else:
                seen.add(target)
    return seen


def test_demo_every_page_linked_from_index_and_report_page_exists(demo_site):
    site, _, rendered = demo_site
    reachable = crawl(site / "index.html")
    # Everything render wrote is reachable from the site index, so nothing is orphaned.
    assert {p.resolve() for p in rendered.files} <= reachable


def test_demo_report_page_links_the_slack_preview_and_report_json(demo_site):
    site, _, _ = demo_site
    links = parse(site / "reports" / DEMO_DAY.isoformat() / "index.html").links
    assert "slack.html" in links and "report.json" in links


def test_demo_report_page_links_a_plot_page_for_every_alert(demo_site):
    site, _, rendered = demo_site
    day_dir = site / "reports" / DEMO_DAY.isoformat()
    links = set(parse(day_dir / "index.html").links)
    for alert in rendered.report.alerts:
        assert alert.plot_url.rsplit("/", 1)[1] in links
    assert {"daily-by-service.html", "mtd-by-service.html"} <= links


def test_demo_images_are_pngs_of_a_sensible_size(demo_site):
    _, _, rendered = demo_site
    pngs = [f for f in rendered.files if f.suffix == ".png"]
    assert len(pngs) == rendered.plots_rendered == len(rendered.report.alerts) + 2
    for png in pngs:
        width, height = png_size(png)
        assert 600 <= width <= 1600 and 250 <= height <= 1400, (png.name, width, height)
        assert png.stat().st_size < 400_000


def test_demo_plot_urls_are_absolute_under_the_site_url_and_exist_locally(demo_site):
    site, _, rendered = demo_site
    prefix = f"{SITE_URL}/reports/{DEMO_DAY.isoformat()}/"
    report = rendered.report
    assert report.report_url == prefix + "index.html"
    assert report.page_urls == {"daily_by_service": prefix + "daily-by-service.html",
                                   "mtd_by_service": prefix + "mtd-by-service.html"}
    for alert in report.alerts:
        assert alert.plot_url.startswith(prefix)
        assert (site / alert.plot_url[len(SITE_URL) + 1:]).is_file()
    assert len({a.plot_url for a in report.alerts}) == len(report.alerts)


def test_demo_report_json_carries_plot_urls(demo_site):
    site, _, rendered = demo_site
    data = json.loads((site / "reports" / DEMO_DAY.isoformat() / "report.json").read_text())
    assert [a["plot_url"] for a in data["alerts"]] == [a.plot_url for a in rendered.report.alerts]
    assert data["report_url"] == rendered.report.report_url
    assert data["summary_urls"] == rendered.report.page_urls


def test_demo_files_list_everything_written(demo_site):
    site, _, rendered = demo_site
    on_disk = {p.resolve() for p in site.rglob("*") if p.is_file()}
    assert on_disk == {p.resolve() for p in rendered.files}
    assert len(rendered.plot_ms) == rendered.plots_rendered
    assert all(ms > 0 for ms in rendered.plot_ms)


def test_demo_pages_load_nothing_from_other_hosts_and_run_no_script(demo_site):
    site, _, _ = demo_site
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert "<script" not in html.lower()
        assert 'name="viewport"' in html
        parsed = parse(page)
        local_targets(page, parsed.images)  # asserts no scheme or host
        assert all(not src.startswith("//") for src in parsed.images)


def test_plot_page_says_what_the_alert_means_and_shows_its_numbers(demo_site):
    site, _, rendered = demo_site
    alert = next(a for a in rendered.report.alerts if a.kind == SPIKE and a.group is None)
    page = site / alert.plot_url[len(SITE_URL) + 1:]
    text = " ".join(parse(page).text)
    assert f"cost {site_pages.money(alert.usd)}" in text
    assert "standard deviations" in text
    assert f"{alert.zscore:.2f}" in text
    assert site_pages.money(alert.baseline_mean) in text


# ---------------------------------------------------------------- hand-made reports

HOSTILE = [
    "<script>alert('svc')</script>",
    'Quote "double" & \'single\'',
    "slash/and\\back",
    "Emoji 💸 service",
    "Служба хранения данных",
    "Amazon " + "Very Long Service Name " * 13,
]


@pytest.fixture(scope="module")
def hostile_site(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("hostile")
    day = dt.date(2024, 3, 10)
    series = {(name, grp): 100.0 for name in HOSTILE for grp in ("", "<b>team&co</b>")}
    history = synthetic_history(day, series)
    alerts = [spike(HOSTILE[0], None), spike(HOSTILE[0], "<b>team&co</b>"), spike(HOSTILE[0], "")]
    alerts += [spike(n, None) for n in HOSTILE[1:]]
    alerts += [trend(n, "<b>team&co</b>") for n in HOSTILE[1:3]]
    report = report_for(history, day, alerts)
    rendered = procPlotting.render(report, history, tmp_path / "site", None, workers=1)
    return tmp_path / "site", rendered


def test_hostile_names_are_escaped_in_every_page(hostile_site):
    site, _ = hostile_site
    for page in site.rglob("*.html"):
        html = page.read_text(encoding="utf-8")
        assert "<script>" not in html and "<b>team" not in html, page.name
    report_html = next(site.glob("reports/*/index.html")).read_text(encoding="utf-8")
    assert "&lt;script&gt;alert(&#x27;svc&#x27;)&lt;/script&gt;" in report_html
    assert "Quote &quot;double&quot; &amp; &#x27;single&#x27;" in report_html
    assert "Служба хранения данных" in report_html and "💸" in report_html
    text = " ".join(parse(next(site.glob("reports/*/index.html"))).text)
    assert "<script>alert('svc')</script>" in text  # the reader sees the name as written


def test_hostile_names_get_safe_unique_file_names(hostile_site):
    _, rendered = hostile_site
    names = [p.name for p in rendered.files if p.parent.name != "site"]
    assert all(is_safe(n) for n in names), names
    plot_pages = [a.plot_url for a in rendered.report.alerts]
    assert plot_pages == [None] * len(rendered.report.alerts)  # no site URL: no links at all


def test_without_site_url_the_report_has_no_links_but_pages_link_each_other(hostile_site):
    site, rendered = hostile_site
    report = rendered.report
    assert report.report_url is None and report.page_urls == {}
    report_page = next(site.glob("reports/*/index.html"))
    plot_links = [t for t in local_targets(report_page, parse(report_page).links)
                  if t.name.startswith(("spike-", "trend-"))]
    assert len(plot_links) == len(report.alerts)
    assert all(t.is_file() for t in plot_links)


def test_untagged_and_whole_service_alerts_are_listed_apart(hostile_site):
    site, _ = hostile_site
    text = " ".join(parse(next(site.glob("reports/*/index.html"))).text)
    assert "(untagged)" in text and "all groups" in text


def test_alert_on_a_series_without_history_still_gets_a_plot(tmp_path):
    day = dt.date(2024, 3, 10)
    history = synthetic_history(day, {("Known", ""): 50.0})
    report = report_for(history, day, [spike("Vanished", None), trend("Vanished", "")])
    rendered = procPlotting.render(report, history, tmp_path, None, workers=1)
    assert all(png_size(p)[0] > 0 for p in rendered.files if p.suffix == ".png")


def test_day_without_alerts_says_so(tmp_path):
    day = dt.date(2024, 3, 10)
    history = synthetic_history(day, {("Known", ""): 50.0})
    rendered = procPlotting.render(report_for(history, day, []), history, tmp_path, None)
    text = " ".join(parse(tmp_path / "reports" / "2024-03-10" / "index.html").text)
    assert "No spikes or trend reversals on 2024-03-10" in text
    assert rendered.plots_rendered == 2


def test_site_index_lists_every_report_latest_first(tmp_path):
    history = synthetic_history(dt.date(2024, 3, 12), {("Known", ""): 50.0})
    for day in [dt.date(2024, 3, 11), dt.date(2024, 3, 12), dt.date(2024, 3, 10)]:
        part = history[history["usage_date"] <= pd.Timestamp(day)]
        procPlotting.render(report_for(part, day, []), part, tmp_path, None)
    (tmp_path / "reports" / "not-a-date").mkdir()
    links = [h for h in parse(tmp_path / "index.html").links if h.startswith("reports/")]
    assert links[0] == "reports/2024-03-12/index.html"  # "Latest:" line
    assert links[1:] == [f"reports/2024-03-{d}/index.html" for d in ("12", "11", "10")]


def test_forty_five_services_with_long_names_summarise_as_top_and_other(tmp_path):
    day = dt.date(2024, 3, 10)
    names = [f"Service {i:02d} " + "x" * 190 for i in range(45)]
    history = synthetic_history(day, {(n, ""): 10.0 + i for i, n in enumerate(names)}, days=40)
    report = report_for(history, day, [])
    part = summaries.summary_site(report, SiteContext(tmp_path, "reports/2024-03-10", None))
    daily, mtd = jobs = part.jobs
    daily_html, mtd_html = part.pages["daily-by-service.html"], part.pages["mtd-by-service.html"]
    assert mtd.names[-1] == "Other" and len(mtd.names) == summaries.TOP_SERVICES + 1
    assert daily.names == mtd.names
    assert mtd.colours == tuple(dict(zip(daily.names, daily.colours))[n] for n in mtd.names)
    assert mtd.usd[0] == max(mtd.usd[:-1])  # sorted, largest first
    assert sum(mtd.usd) == pytest.approx(report.summary.headline.mtd_usd)
    assert np.asarray(daily.matrix).sum() == pytest.approx(report.summary.headline.mtd_usd)
    for job in jobs:
        plot_drawing.draw_and_save(job)
        width, height = png_size(job.path)
        assert 600 <= width <= 1400 and 250 <= height <= 1000
    # The page behind the plot names every service in full, not just the top ones.
    assert all(name in mtd_html for name in names)
    # Figures table (header + 2 rows), then the days table (header + each day so far).
    assert daily_html.count("<tr>") == 3 + 1 + 10


def test_an_alert_key_listed_twice_gets_one_plot_and_the_same_url(tmp_path):
    day = dt.date(2024, 3, 10)
    history = synthetic_history(day, {("Known", ""): 50.0})
    twice = spike("Known", None)
    rendered = procPlotting.render(report_for(history, day, [twice, twice]), history, tmp_path,
                                   SITE_URL)
    assert rendered.plots_rendered == 3
    assert len(set(rendered.files)) == len(rendered.files)
    assert rendered.report.alerts[0].plot_url == rendered.report.alerts[1].plot_url


def test_alerts_planned_in_blocks_give_the_pages_and_plots_of_one_block(tmp_path,
                                                                       monkeypatch):
    """Plans are made PLAN_BLOCK alerts at a time (each block's trend lines in one walk):
    blocks of 2 over a mix of spikes and trends write the same files as one block."""
    day = dt.date(2024, 3, 10)
    history = synthetic_history(day, {(f"S{i}", ""): 50.0 + i for i in range(5)})
    alerts = [spike("S0", None), trend("S1", None), trend("S2", None), spike("S3", None),
              trend("S4", None)]
    report = report_for(history, day, alerts)

    def written(folder, block):
        monkeypatch.setattr(procPlotting, "PLAN_BLOCK", block)
        rendered = procPlotting.render(report, history, folder, SITE_URL, workers=1)
        return {p.relative_to(folder): p.read_bytes() for p in rendered.files
                if p.suffix in (".png", ".html") and p.name != "index.html"}

    one, blocks = written(tmp_path / "one", 100), written(tmp_path / "blocks", 2)
    assert len(one) == 2 * (len(alerts) + 2) and one == blocks


def test_parallel_rendering_writes_every_plot_in_order(tmp_path):
    day = dt.date(2024, 3, 10)
    history = synthetic_history(day, {(f"S{i}", ""): 50.0 for i in range(6)})
    report = report_for(history, day, [spike(f"S{i}", None) for i in range(6)])
    rendered = procPlotting.render(report, history, tmp_path, SITE_URL, workers=2)
    assert rendered.plots_rendered == 8 and len(rendered.plot_ms) == 8
    assert [a.service for a in rendered.report.alerts] == [f"S{i}" for i in range(6)]


# ---------------------------------------------------------------- the run's plot workers


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"  # not a zombie


def test_the_runs_workers_draw_every_plot_and_stop_when_the_block_ends(tmp_path):
    day = dt.date(2024, 3, 10)
    history = synthetic_history(day, {(f"S{i}", ""): 50.0 for i in range(3)})
    report = report_for(history, day, [spike(f"S{i}", None) for i in range(3)])
    with plot_workers.PlotWorkers(2) as pool:
        pids = set(pool.pids())
        # Fewer jobs than MIN_PARALLEL_JOBS still go to the run's workers.
        rendered = procPlotting.render(report, history, tmp_path, SITE_URL, workers=2,
                                       pool=pool)
    assert rendered.plots_rendered == 5 and all(ms > 0 for ms in rendered.plot_ms)
    assert all(png_size(p)[0] > 0 for p in rendered.files if p.suffix == ".png")
    assert pids and os.getpid() not in pids
    assert not any(_alive(pid) for pid in pids)


def test_plots_are_drawn_in_the_runs_process_once_its_workers_are_gone(tmp_path):
    day = dt.date(2024, 3, 10)
    history = synthetic_history(day, {("Known", ""): 50.0})
    pool = plot_workers.PlotWorkers(1).start()
    pool.close()
    rendered = procPlotting.render(report_for(history, day, [spike("Known", None)]), history,
                                   tmp_path, None, workers=1, pool=pool)
    assert rendered.plots_rendered == 3
    assert all(png_size(p)[0] > 0 for p in rendered.files if p.suffix == ".png")


@dataclasses.dataclass(frozen=True)
class DiesInAWorker:
    """A plot job that ends any process but the run's that draws it."""

    path: Path
    run_pid: int

    def draw(self):
        from matplotlib.figure import Figure

        if os.getpid() != self.run_pid:
            os._exit(1)
        return Figure(figsize=(2, 1))


def test_plots_whose_worker_died_are_drawn_in_the_runs_process(tmp_path):
    jobs = [DiesInAWorker(tmp_path / f"p{i}.png", os.getpid()) for i in range(3)]
    with plot_workers.PlotWorkers(2) as pool:
        plot_ms = plot_drawing.run_jobs(jobs, 2, pool)
    assert len(plot_ms) == 3 and all(ms > 0 for ms in plot_ms)
    assert all(png_size(job.path) == (200, 100) for job in jobs)


def test_workers_forked_before_the_runs_imports_are_the_ones_the_run_draws_with(tmp_path):
    plot_workers.start_early_plot_workers(["--demo", "--dry-run"], {})
    try:
        early = set(plot_workers._early.pids())
        with plot_workers.PlotWorkers(2) as pool:
            assert plot_workers._early is None
            assert set(pool.pids()) == early and len(early) == 2
            job = plot_jobs(tmp_path)["spike"]
            assert plot_drawing.run_jobs([job], 2, pool)[0] > 0
        assert png_size(job.path)[0] > 0
        assert not any(_alive(pid) for pid in early)
    finally:
        plot_workers.stop_early_plot_workers()


def test_early_workers_of_another_count_are_stopped_and_the_run_forks_its_own():
    plot_workers.start_early_plot_workers([], {"COST_TRACKING_PLOT_WORKERS": "3"})
    early = set(plot_workers._early.pids())
    assert len(early) == 3
    with plot_workers.PlotWorkers(2) as pool:
        own = set(pool.pids())
        assert len(own) == 2 and not own & early
        assert not any(_alive(pid) for pid in early)


@pytest.mark.parametrize("argv", [["--schedule"], ["--backtest-from=2026-01-01"], ["--help"],
                                  ["--write-demo-labels", "x.csv"]])
def test_runs_that_draw_no_report_fork_no_early_workers(argv):
    plot_workers.start_early_plot_workers(argv, {})
    assert plot_workers._early is None


def test_early_workers_the_run_never_took_are_stopped():
    plot_workers.start_early_plot_workers([], {"COST_TRACKING_PLOT_WORKERS": "x"})  # default
    early = set(plot_workers._early.pids())
    assert len(early) == plot_workers.DEFAULT_PLOT_WORKERS
    plot_workers.stop_early_plot_workers()
    assert plot_workers._early is None and not any(_alive(pid) for pid in early)


KILLED_RUN = """
import os, sys, time
sys.path.insert(0, sys.argv[1])
from _util.site.plot_workers import PlotWorkers
pool = PlotWorkers(2).start()
print(*sorted(pool.pids()), flush=True)
time.sleep(60)
"""


def test_workers_of_a_killed_run_stop_instead_of_holding_its_files():
    """Forked workers share the run's open files (its lock among them): when the run is
    killed, they must not live on."""
    root = str(Path(__file__).resolve().parent.parent)
    run = subprocess.Popen([sys.executable, "-c", KILLED_RUN, root], stdout=subprocess.PIPE,
                           text=True)
    try:
        workers = [int(pid) for pid in run.stdout.readline().split()]
        assert workers and all(_alive(pid) for pid in workers)
    finally:
        run.kill()
        run.wait()
    deadline = time.monotonic() + 10
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not any(_alive(pid) for pid in workers)


# ---------------------------------------------------------------- small pieces


def test_labels_are_one_line_truncated_with_an_ellipsis_and_keep_dollars_literal():
    assert plot_drawing.label("a" * 200) == "a" * 39 + "…"
    assert plot_drawing.label("line\nbreak") == "line break"
    assert plot_drawing.label("$5 plan $6") == r"\$5 plan \$6"


def test_service_colours_are_stable_distinct_and_grey_for_other():
    names = [f"Service {i}" for i in range(12)] + ["Other"]
    first = plot_drawing.service_colours(names)
    assert first == plot_drawing.service_colours(list(reversed(names)))
    assert first["Other"] == plot_drawing.OTHER_COLOUR
    assert len(set(first.values())) == len(names)


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "$0"), (2.5, "$2.50"), (250, "$250"), (12_345, "$12,345"), (250_000, "$250k"),
     (3_400_000, "$3.4M"), (-40, "−$40")],
)
def test_money_axis_ticks(value, text):
    assert plot_drawing._money_tick(value) == text


def test_public_url_joins_site_url_and_path():
    assert public_url("http://h/p/", "reports/x.html") == "http://h/p/reports/x.html"
    assert public_url(None, "reports/x.html") is None


def test_render_does_not_change_the_report_it_was_given(tmp_path):
    day = dt.date(2024, 3, 10)
    history = synthetic_history(day, {("Known", ""): 50.0})
    report = report_for(history, day, [spike("Known", None)])
    before = dataclasses.asdict(report)
    procPlotting.render(report, history, tmp_path, SITE_URL)
    assert dataclasses.asdict(report) == before


def test_an_account_without_any_cost_still_gets_summary_plots_and_pages(tmp_path):
    day = dt.date(2024, 3, 1)
    empty = pd.DataFrame({
        "usage_date": pd.Series([], dtype="datetime64[ns]"),
        "service": pd.Series([], dtype=object), "group_value": pd.Series([], dtype=object),
        "amount": pd.Series([], dtype=float), "estimated": pd.Series([], dtype=bool)})
    rendered = procPlotting.render(report_for(empty, day, []), empty, tmp_path, None)
    assert rendered.plots_rendered == 2
    assert all(png_size(p)[0] > 0 for p in rendered.files if p.suffix == ".png")
    crawl(tmp_path / "index.html")


def test_a_section_with_more_alerts_than_the_page_lists_shows_the_largest_and_points_to_report_json():
    day = dt.date(2024, 3, 10)
    history = synthetic_history(day, {("Known", ""): 50.0}, days=40)
    extra = 7
    alerts = [spike(f"S{i:03d}", None, usd=200.0 + i)
              for i in range(site_pages.SECTION_MAX_ROWS + extra)]
    report = report_for(history, day, alerts + [trend("Known", None)])
    # S001 is small but has a plot (the Slack message links it): it is listed anyway.
    entries = [site_pages.AlertEntry(a, f"#{i}", plotted=a.service in ("S001", "Known"))
               for i, a in enumerate(report.alerts)]
    page = "\n".join(site_pages.report_alert_section(kind, entries) for kind in ALERT_KINDS)

    # The heading counts every alert of the section.
    assert f"({site_pages.SECTION_MAX_ROWS + extra})</h2>" in page
    listed = [f"S{i:03d}" for i in range(site_pages.SECTION_MAX_ROWS + extra) if f">S{i:03d}<" in page]
    # The largest dollar changes are the ones listed, and the plotted one.
    assert listed == ["S001"] + [f"S{i:03d}" for i in range(extra, site_pages.SECTION_MAX_ROWS + extra)]
    assert f"{extra - 1} more are in" in page and 'href="report.json"' in page
    assert ">Known<" in page  # other sections are unaffected


def _text_picture(canvas_class) -> np.ndarray:
    """Text at many sizes, angles and positions within a pixel, some not anti-aliased, and
    a name without glyphs in the default font, drawn on a canvas of `canvas_class`."""
    import warnings

    from matplotlib.figure import Figure

    fig = Figure(figsize=(4, 3), dpi=100)
    canvas = canvas_class(fig)
    for i in range(12):
        fig.text(0.03 + i * 0.0731, 0.1 + i * 0.0613, "EMA12 · €1.2k − 7-day\nsecond 漢",
                 fontsize=6 + i * 0.7, rotation=(0, 90, 33)[i % 3], antialiased=i % 4 != 3)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Glyph .* missing")
        canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def test_text_drawn_from_the_renderers_caches_is_agg_s_pixel_for_pixel():
    """The plots' renderer keeps each string's layout and each glyph's bitmap
    (plot_drawing._canvas_class); what it draws, the first time and from its caches, is
    what matplotlib's own Agg renderer draws."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    agg = _text_picture(FigureCanvasAgg)
    cached = plot_drawing._canvas_class()
    assert np.array_equal(_text_picture(cached), agg)
    assert np.array_equal(_text_picture(cached), agg)


def _legend_picture(measured_once: bool, labels: list[str]) -> tuple[np.ndarray, int]:
    """Two axes with legends of several columns over lines, a title and a marker, drawn
    with matplotlib's legend or with `plot_drawing._legend`; the pixels, and how many times
    the legends' texts were measured."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.offsetbox import TextArea

    measured = 0
    original = TextArea.get_bbox

    def counted(self, renderer):
        nonlocal measured
        measured += 1
        return original(self, renderer)

    fig = Figure(figsize=(5, 3), dpi=100)
    canvas = FigureCanvasAgg(fig)
    TextArea.get_bbox = counted  # (before the legends are made: they keep their methods)
    try:
        for ax, loc in zip(fig.subplots(2, 1), ("upper left", "lower right")):
            for i, name in enumerate(labels):
                ax.plot([0, 1, 2], [i, i + 1, i * 0.5], label=name)
            ax.plot([2], [1], marker="^", linestyle="none", label="the day")
            kwargs = dict(loc=loc, fontsize=8, ncol=3, framealpha=0.9, edgecolor="none",
                          title="legend")
            if measured_once:
                plot_drawing._legend(ax, **kwargs)
            else:
                ax.legend(**kwargs)
        measured = 0
        canvas.draw()
    finally:
        TextArea.get_bbox = original
    return np.asarray(canvas.buffer_rgba()).copy(), measured


def test_legends_measured_once_per_drawing_are_matplotlib_s_pixel_for_pixel():
    """plot_drawing._legend keeps each legend box's size for one drawing of it instead of
    measuring every box again for each level above it: the same pixels, each text
    measured once per drawing (matplotlib measures them several times)."""
    labels = ["EMA12", "EMA26 · €1.2k", "7-day average", "28-day average", "MACD"]
    theirs, measured_by_matplotlib = _legend_picture(False, labels)
    ours, measured_once = _legend_picture(True, labels)
    assert np.array_equal(ours, theirs)
    texts = 2 * (len(labels) + 2)  # entries, "the day" and the title, in each legend
    assert measured_once == texts < measured_by_matplotlib


def test_a_legend_measured_once_is_measured_again_when_drawn_again():
    """The sizes are kept for one drawing only: a legend whose text changes between two
    drawings is drawn as matplotlib draws the changed one."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    def drawn(measured_once: bool) -> np.ndarray:
        fig = Figure(figsize=(4, 2), dpi=100)
        canvas = FigureCanvasAgg(fig)
        ax = fig.add_subplot()
        ax.plot([0, 1], [0, 1], label="short")
        if measured_once:
            plot_drawing._legend(ax, loc="upper left")
        else:
            ax.legend(loc="upper left")
        canvas.draw()
        ax.get_legend().get_texts()[0].set_text("a much longer label than before")
        canvas.draw()
        return np.asarray(canvas.buffer_rgba()).copy()

    assert np.array_equal(drawn(True), drawn(False))


def _text_caches_in_child(queue) -> None:
    from _util.site import plot_drawing

    queue.put((len(plot_drawing._LAYOUTS), len(plot_drawing._GLYPHS), len(plot_drawing._FRAMES),
               sorted(plot_drawing._PREPARED)))


@pytest.fixture
def own_figures(monkeypatch):
    """This process's figures, drawn and prepared, as they were before the test."""
    from collections import OrderedDict

    monkeypatch.setattr(plot_drawing, "_FRAMES", OrderedDict())
    monkeypatch.setattr(plot_drawing, "_PREPARED", {})


def test_a_forked_plot_worker_starts_without_the_parents_fonts_and_figures(tmp_path,
                                                                           own_figures):
    """The text caches hold FreeType fonts whose open files share their read offset across
    a fork: two workers loading glyphs through the parent's fonts read each other's
    positions ("FT_Load_Glyph ... invalid outline", seen in a full test run)."""
    import multiprocessing

    from _util.site.plot_drawing import SpikePlot

    job = SpikePlot(tmp_path / "spike.png", "a title with text", np.array(
        [np.datetime64("2026-11-01") + np.timedelta64(i, "D") for i in range(40)]),
        np.linspace(1.0, 5.0, 40), 2.0, 1.0, 3.0, UP)
    plot_drawing.draw_and_save(job)
    assert plot_drawing._LAYOUTS and plot_drawing._FRAMES  # the parent has drawn text
    # Figures prepared for workers (never drawn) are kept; drawn ones are not.
    drawn = dict(plot_drawing._FRAMES)
    plot_drawing._FRAMES.clear()
    plot_drawing.prepare_frames()
    plot_drawing._FRAMES.update(drawn)
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_text_caches_in_child, args=(queue,))
    child.start()
    child.join(timeout=30)
    assert queue.get(timeout=5) == (0, 0, 0, sorted(plot_drawing._PREPARED))
    assert len(plot_drawing._PREPARED) == 4


@pytest.mark.parametrize("kind", ["spike", "spike_down", "trend", "mtd", "daily"])
def test_a_plot_drawn_on_a_prepared_figure_is_the_plot_drawn_on_a_new_one(tmp_path, kind,
                                                                          own_figures):
    """The plot workers find the common plots' figures made, ticks and all, by the process
    they are forked from (plot_drawing.prepare_frames): a plot's first drawing on one is
    the same PNG, byte for byte, as on a figure made for it."""
    job = plot_jobs(tmp_path)[kind]
    pngs = []
    for prepared in (False, True):
        plot_drawing._FRAMES.clear()
        plot_drawing._PREPARED.clear()
        if prepared:
            plot_drawing.prepare_frames()
            before = set(plot_drawing._PREPARED)
        plot_drawing.draw_and_save(job)
        pngs.append(job.path.read_bytes())
    assert len(before - set(plot_drawing._PREPARED)) == 1  # the plot took its prepared figure
    assert pngs[0] == pngs[1]


def test_the_prepared_month_to_date_figure_has_the_summaries_rows():
    assert plot_drawing.PREPARED_MTD_ROWS == summaries.TOP_SERVICES + 1  # and Other


def test_preparing_the_figures_opens_no_font():
    """Fonts opened before a fork would be shared by the workers (see the test above);
    prepared figures are made, never drawn."""
    code = ("from _util.site import plot_drawing as p\n"
            "p.import_matplotlib()\n"
            "p.prepare_frames()\n"
            "from matplotlib import font_manager as f\n"
            "print(f._get_font.cache_info().currsize, len(p._PREPARED), len(p._FRAMES))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).parent.parent,
                         capture_output=True, text=True, check=True).stdout
    assert out.split() == ["0", "4", "0"]
