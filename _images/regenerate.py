"""Regenerate the README's sample images from a real demo run.

    .venv/bin/python _images/regenerate.py [--date YYYY-MM-DD]

Runs `runCostReporting.py --demo --dry-run` (the day is the driver's default, yesterday,
unless --date says otherwise) into a temporary output folder, so nothing is posted or
uploaded; copies a spike plot, a trend plot and both summary plots into _images/; and
takes a screenshot of the day's report page with headless Chromium (Playwright driving
/usr/bin/chromium). Should the driver not run, the script renders the demo report for the
day directly with procPlotting, so the plots can still be made.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))

import procPlotting  # noqa: E402
from _util.alert_kinds import RULES  # noqa: E402
from _util.report import Alert  # noqa: E402

log = logging.getLogger("regenerate")

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


def run_driver(output: Path, day: dt.date | None) -> Path | None:
    """The demo through the real driver; the report folder it wrote, or None."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("COST_TRACKING_", "SLACK_", "AWS_"))}
    env["COST_TRACKING_OUTPUT_DIR"] = str(output)
    cmd = [sys.executable, str(ROOT / "runCostReporting.py"), "--demo", "--dry-run"]
    if day is not None:
        cmd += ["--date", day.isoformat()]
    done = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        log.warning("driver exited %d: %s", done.returncode, done.stderr.strip()[-500:])
    reports = sorted((output / "site" / "reports").glob("*/report.json"))
    return reports[-1].parent if reports else None


def render_directly(output: Path, day: dt.date) -> Path:
    """The same report made without the driver: demo history -> alerts -> render."""
    import procAmzAlerts
    import procSummaries
    from _util.report import Report, Rules
    from _util.sources.demo_account import demo_history

    history = demo_history(day)
    rules = Rules()
    report = Report(day=day, metric="UnblendedCost", group_by="TAG:Name", rules=rules,
                    summary=procSummaries.summarise(history, day),
                    alerts=procAmzAlerts.detect_alerts(history, day, rules))
    procPlotting.render(report, history, output / "site", None)
    return procPlotting.report_dir(output / "site", day)


def _alerts(report_json: Path) -> list[Alert]:
    data = json.loads(report_json.read_text(encoding="utf-8"))
    return [Alert(kind=a["kind"], direction=a["direction"], service=a["service"],
                  group=a["group"], usd=a["usd"], baseline_mean=a["baseline_mean"],
                  baseline_std=a["baseline_std"], delta_usd=a["delta_usd"],
                  echo_of=a.get("echo_of"))
            for a in data["alerts"]]


def pick_samples(day_dir: Path) -> dict[str, Path]:
    """The first (largest) service-level spike and trend (not an echo of a spike when
    there is another), and the two summaries."""
    alerts = _alerts(day_dir / "report.json")
    slugs = procPlotting.alert_slugs(alerts)
    samples = {"mtd_by_service.png": day_dir / "mtd-by-service.png",
               "daily_by_service.png": day_dir / "daily-by-service.png"}
    for kind in RULES:
        ranked = sorted((a for a in alerts if a.kind == kind),
                        key=lambda a: (a.echo_of is not None, a.group is not None))
        chosen = ranked[0] if ranked else None
        if chosen is None:
            log.warning("no %s alert on this day: no %s sample", kind, kind)
            continue
        samples[f"{kind}_plot.png"] = day_dir / f"{slugs[chosen.key]}.png"
    return samples


def screenshot(page_path: Path, target: Path, width: int = 1100, height: int = 1500) -> None:
    """The top of a page as a browser shows it (file:// is enough: every link is relative)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": height})
        page.goto(page_path.as_uri())
        page.screenshot(path=str(target))
        browser.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--date", type=dt.date.fromisoformat, default=None,
                        help="demo day to show (default: the driver's, yesterday UTC)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    with tempfile.TemporaryDirectory() as tmp:
        output = Path(tmp)
        day_dir = run_driver(output, args.date)
        if day_dir is None:
            day = args.date or dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)
            log.warning("falling back to rendering the demo report for %s directly", day)
            day_dir = render_directly(output, day)
        log.info("samples from %s", day_dir.name)
        for name, source in pick_samples(day_dir).items():
            shutil.copyfile(source, HERE / name)
            log.info("wrote _images/%s", name)
        if CHROMIUM.exists():
            screenshot(day_dir / "index.html", HERE / "report_page.png")
            log.info("wrote _images/report_page.png")
        else:
            log.warning("no %s: report page screenshot not taken", CHROMIUM)
    return 0


if __name__ == "__main__":
    sys.exit(main())
