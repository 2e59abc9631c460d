"""A real browser reads the demo site: index -> report page -> plot page, every image loads.

Headless Chromium (Debian's `chromium`) driven by Playwright, over a local HTTP server,
the way a person opens the S3 website. Skips where Chromium is not installed.
"""
from __future__ import annotations

import datetime as dt
import functools
import http.server
import threading
from pathlib import Path

import pytest

import procAmzAlerts
import procPlotting
import procSummaries
from _util.report import Report, Rules
from _util.site import pages as site_pages
from _util.slack.preview import preview_page
from _util.sources.demo_account import demo_history

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
DAY = dt.date(2024, 5, 18)

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="no /usr/bin/chromium here")


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass


@pytest.fixture(scope="module")
def site_server(tmp_path_factory):
    """The demo site rendered and served on 127.0.0.1 at a random port."""
    site = tmp_path_factory.mktemp("browser") / "site"
    history = demo_history(DAY)
    rules = Rules()
    report = Report(day=DAY, metric="UnblendedCost", group_by="TAG:team", rules=rules,
                    summary=procSummaries.summarise(history, DAY),
                    alerts=procAmzAlerts.detect_alerts(history, DAY, rules))
    procPlotting.render(report, history, site, None, workers=2)
    # The Slack stage writes this page after rendering; a stand-in keeps the link whole.
    slack = procPlotting.report_dir(site, DAY) / site_pages.SLACK_PREVIEW
    slack.write_text(preview_page({"text": "preview", "blocks": []}, DAY), encoding="utf-8")
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _broken_images(page) -> list[str]:
    return page.eval_on_selector_all(
        "img", "imgs => imgs.filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)"
    )


def _image_count(page) -> int:
    return page.eval_on_selector_all("img", "imgs => imgs.length")


def test_browser_follows_index_to_report_to_plot_page_and_every_image_loads(site_server, browser):
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    failed: list[str] = []
    page.on("requestfailed", lambda request: failed.append(request.url))
    page.on("response", lambda r: failed.append(r.url) if r.status >= 400 else None)

    page.goto(f"{site_server}/index.html")
    assert page.title() == "AWS cost reports"
    page.get_by_role("link", name=DAY.isoformat()).first.click()
    page.wait_for_load_state("load")
    assert page.url.endswith(f"/reports/{DAY.isoformat()}/index.html")
    assert page.title() == f"AWS cost report for {DAY.isoformat()}"
    assert _image_count(page) == 2 and _broken_images(page) == []

    page.get_by_role("link", name="Plot").first.click()
    page.wait_for_load_state("load")
    assert "/reports/" in page.url and page.url.endswith(".html")
    assert _image_count(page) == 1 and _broken_images(page) == []
    width = page.eval_on_selector("img", "i => i.naturalWidth")
    assert 600 <= width <= 1600

    page.get_by_role("link", name="All reports").click()
    page.wait_for_load_state("load")
    assert page.title() == "AWS cost reports"
    assert failed == []
    page.close()


def test_browser_every_report_link_opens_a_page_with_loaded_images(site_server, browser):
    page = browser.new_page()
    page.goto(f"{site_server}/reports/{DAY.isoformat()}/index.html")
    hrefs = page.eval_on_selector_all("a", "links => links.map(a => a.href)")
    pages = sorted({h for h in hrefs if h.endswith(".html")})
    # The site index, two summaries, the Slack preview and at least two alert pages.
    assert len(pages) >= 6 and sum("/spike-" in h or "/trend-" in h for h in pages) >= 2
    for href in pages:
        response = page.goto(href)
        assert response is not None and response.status == 200, href
        assert _broken_images(page) == [], href
    page.close()


def test_report_page_fits_a_phone_screen_without_sideways_scrolling(site_server, browser):
    page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
    page.goto(f"{site_server}/reports/{DAY.isoformat()}/index.html")
    # Wide tables scroll inside their own box; the page itself stays phone-wide.
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 390
    image_width = page.eval_on_selector("img", "i => i.getBoundingClientRect().width")
    assert image_width <= 390
    page.close()


CHAR_LEFTS = """(needle) => {
  const p = [...document.querySelectorAll('p')].find(e => e.textContent.includes(needle));
  const walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const at = node.data.indexOf(needle);
    if (at < 0) continue;
    const lefts = [];
    for (let k = 0; k < needle.length; k++) {
      const range = document.createRange();
      range.setStart(node, at + k);
      range.setEnd(node, at + k + 1);
      lefts.push(range.getBoundingClientRect().left);
    }
    return lefts;
  }
  return null;
}"""


def test_browser_a_right_to_left_override_in_a_name_reverses_nothing_after_it(tmp_path, browser):
    # A service whose name holds U+202E (RIGHT-TO-LEFT OVERRIDE) spikes to $94.42: the
    # sentence of its plot page, drawn by Chromium, must still read "$94.42" left to right.
    import pandas as pd

    from tests.test_alerts import frame

    name = "Evil \u202eService"
    history = frame({(name, ""): [50.0 + (i % 3) for i in range(60)] + [94.42]}, day=DAY)
    rules = Rules()
    report = Report(day=DAY, metric="UnblendedCost", group_by="TAG:team", rules=rules,
                    summary=procSummaries.summarise(history, DAY),
                    alerts=procAmzAlerts.detect_alerts(history, DAY, rules))
    assert report.alerts and isinstance(history, pd.DataFrame)
    site = tmp_path / "site"
    procPlotting.render(report, history, site, None, workers=1)
    [plot_page] = [p for p in procPlotting.report_dir(site, DAY).glob("spike-*.html")][:1]
    page = browser.new_page()
    page.goto(plot_page.as_uri())
    lefts = page.evaluate(CHAR_LEFTS, "$94.42")
    title, alt = page.title(), page.get_attribute("img", "alt")
    page.close()
    assert lefts is not None and lefts == sorted(lefts) and len(set(lefts)) == 6, lefts
    # The title and the alt text hold the name as isolated text, never markup.
    assert "<bdi>" not in title and "Spike up: \u2068Evil \u202eService\u2069" in title
    assert "<bdi>" not in alt and "\\u202e" in alt  # the plot's own title marks the control


def test_the_idle_resources_page_loads_its_plots_and_fits_a_phone(tmp_path, browser,
                                                                  tmp_path_factory, clean_env):
    """The demo's idle resources (its stand-ins answer the section's calls): the report
    page links the page, whose every plot loads, and the page stays phone-wide."""
    from tests.ops_support import QUIET, TODAY, copy_template, run_bot

    copy_template(tmp_path_factory, "demo", tmp_path)
    assert run_bot(["--demo", "--dry-run"], tmp_path, TODAY, COST_TRACKING_IDLE="on", **QUIET) == 0
    handler = functools.partial(_QuietHandler, directory=str(tmp_path / "site"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}/reports/2026-11-22"
        page = browser.new_page(viewport={"width": 390, "height": 844}, device_scale_factor=1)
        page.goto(f"{base}/index.html")
        page.click("text=Every idle resource, with its CPU and network")
        page.wait_for_load_state("load")  # a click does not wait for the images
        assert page.url == f"{base}/idle-resources.html"
        assert _image_count(page) == 8 and _broken_images(page) == []
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
        assert "metrics-collector" in page.inner_text("table")
        page.close()
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
