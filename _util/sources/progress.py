"""Signs of life during a long fetch: a first backfill of a large account takes minutes.

On a terminal a progress bar (tqdm) shows the days fetched of the range, the pages, the
rows, the time so far and an estimate of the rest. Under cron (stderr is not a terminal)
the log gets one line every LOG_EVERY_PAGES pages instead, with the same figures. A short
fetch (a daily run's one or two days) shows nothing.
"""
from __future__ import annotations

import datetime as dt
import logging
import sys
import time
from dataclasses import dataclass, field
from typing import Iterator, TextIO

from _util.sources.base import SourceFetch
from _util.store.cost_store import CostRow

log = logging.getLogger(__name__)

# A fetch of fewer days than this is a daily run's: no progress shown.
MIN_DAYS = 14
LOG_EVERY_PAGES = 50


@dataclass
class FetchProgress:
    """What a fetch has done so far, and how it reads in a line."""

    start: dt.date
    end: dt.date
    started: float = field(default_factory=time.monotonic)
    days_done: int = 0
    rows: int = 0
    pages: int = 0

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def line(self, now: float | None = None) -> str:
        elapsed = (now if now is not None else time.monotonic()) - self.started
        text = (f"fetching {self.start}..{self.end}: {self.days_done} of {self.days} days, "
                f"{self.pages} pages, {self.rows:,} rows in {elapsed:.0f}s")
        if 0 < self.days_done < self.days:
            text += f", about {elapsed / self.days_done * (self.days - self.days_done):.0f}s left"
        return text


def with_progress(fetch: SourceFetch, start: dt.date, end: dt.date,
                  stream: TextIO | None = None) -> Iterator[CostRow]:
    """The fetch's rows unchanged, reporting progress as they pass (see the module's
    docstring); its `requests` count the pages."""
    progress = FetchProgress(start, end)
    if progress.days < MIN_DAYS:
        yield from fetch
        return
    stream = stream or sys.stderr
    bar = _bar(progress, stream) if stream.isatty() else None
    logged_pages = 0
    last_day = None
    try:
        for row in fetch:
            progress.rows += 1
            if row.usage_date != last_day:
                last_day = row.usage_date
                progress.days_done = (last_day - start).days
                progress.pages = fetch.requests
                if bar is not None:
                    bar.n = progress.days_done
                    bar.set_postfix_str(f"{progress.pages} pages, {progress.rows:,} rows",
                                        refresh=True)
                elif progress.pages >= logged_pages + LOG_EVERY_PAGES:
                    logged_pages = progress.pages
                    log.info("%s", progress.line())
            yield row
        progress.days_done, progress.pages = progress.days, fetch.requests
        if bar is not None:
            bar.n = progress.days
            bar.refresh()
    finally:
        if bar is not None:
            bar.close()


def _bar(progress: FetchProgress, stream: TextIO):
    from tqdm import tqdm

    return tqdm(total=progress.days, unit="day", desc=f"fetching {progress.start}..{progress.end}",
                file=stream, leave=False, dynamic_ncols=True)
