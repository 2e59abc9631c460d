"""Where every output goes, in one place (the README's "Outputs" section lists them).

<output>/cost_tracking.db, site/ (index.html, reports/<date>/..., backtest/), slack/<date>.json,
runs/<date>.json, logs/, backtest/<first>_<last>.csv, cache/ (the history cache), and the run
lock.
"""
from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

REPORTS = "reports"
REPORT_JSON = "report.json"
REPORT_PAGE = "index.html"
SLACK_PREVIEW = "slack.html"


def site_index(site_dir: Path) -> Path:
    """The site's front page, listing every report."""
    return Path(site_dir) / REPORT_PAGE


def reports_dir(site_dir: Path) -> Path:
    """The folder of every day's report: site_dir/reports/."""
    return Path(site_dir) / REPORTS


def report_dir(site_dir: Path, day: dt.date) -> Path:
    """Where one day's report lives: site_dir/reports/<date>/."""
    return reports_dir(site_dir) / day.isoformat()


def backtest_dir(site_dir: Path) -> Path:
    """The backtest pages: site_dir/backtest/."""
    return Path(site_dir) / "backtest"


def report_rel_dir(day: dt.date) -> str:
    """The same folder as a path relative to the site's root (for URLs)."""
    return f"{REPORTS}/{day.isoformat()}"


@dataclass(frozen=True)
class OutputPaths:
    """The output folder's layout."""

    root: Path

    @property
    def database(self) -> Path:
        return self.root / "cost_tracking.db"

    @property
    def site(self) -> Path:
        return self.root / "site"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def lock(self) -> Path:
        return self.root / ".run.lock"

    @property
    def history_cache(self) -> Path:
        """The daily run's copy of the history window (`_util/store/history_cache.py`):
        checked against the database on every read, deleted and rebuilt whenever it
        disagrees, so removing the folder only costs the next run time."""
        return self.root / "cache"

    def report_dir(self, day: dt.date) -> Path:
        return report_dir(self.site, day)

    def slack_payload(self, day: dt.date, route: str | None = None) -> Path:
        """The exact payload of the run of `day` (what was, or would be, posted) to the
        main channel, or to a route's channel (slack/<date>.<route>.json)."""
        name = day.isoformat() if route is None else f"{day.isoformat()}.{route}"
        return self.root / "slack" / f"{name}.json"

    def slack_preview(self, day: dt.date) -> Path:
        return self.report_dir(day) / SLACK_PREVIEW

    def backtest_csv(self, name: str) -> Path:
        return self.root / "backtest" / f"{name}.csv"

