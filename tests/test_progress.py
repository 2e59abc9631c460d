"""Signs of life during a long fetch: a bar on a terminal, a log line per 50 pages under
cron, nothing for a daily run's short fetch."""
from __future__ import annotations

import datetime as dt
import io
import logging
import os
import pty

from _util.sources.progress import LOG_EVERY_PAGES, FetchProgress, with_progress
from _util.store.cost_store import CostRow

START = dt.date(2026, 1, 1)


class PagedFetch:
    """A source's fetch: `rows_per_day` rows a day, a page (a request) every `per_page`
    rows, `requests` counting the pages asked for so far, as a real fetch counts them."""

    def __init__(self, days: int, rows_per_day: int, per_page: int) -> None:
        self.days, self.rows_per_day, self.per_page = days, rows_per_day, per_page
        self.requests = 0

    def __iter__(self):
        n = 0
        for d in range(self.days):
            for r in range(self.rows_per_day):
                if n % self.per_page == 0:
                    self.requests += 1
                n += 1
                yield CostRow(START + dt.timedelta(days=d), f"S{r}", "", 1.0, "USD", False)


def test_under_cron_a_long_fetch_logs_a_line_every_50_pages(caplog):
    fetch = PagedFetch(days=120, rows_per_day=100, per_page=50)  # 240 pages
    caplog.set_level(logging.INFO)
    rows = list(with_progress(fetch, START, START + dt.timedelta(days=119),
                              stream=io.StringIO()))
    assert len(rows) == 12_000
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("fetching ")]
    assert len(lines) == 240 // LOG_EVERY_PAGES
    assert lines[0].startswith("fetching 2026-01-01..2026-04-30: 25 of 120 days, 51 pages, "
                               "2,501 rows in ")
    assert "s left" in lines[0]


def test_a_daily_runs_short_fetch_shows_nothing(caplog):
    fetch = PagedFetch(days=2, rows_per_day=5000, per_page=10)
    caplog.set_level(logging.INFO)
    stream = io.StringIO()
    assert len(list(with_progress(fetch, START, START + dt.timedelta(days=1),
                                  stream=stream))) == 10_000
    assert stream.getvalue() == "" and not caplog.records


def test_on_a_terminal_a_bar_shows_days_pages_and_rows():
    import fcntl
    import struct
    import termios
    import threading

    master, slave = pty.openpty()
    # A terminal of 120 columns, as a person's would be (a new pty has none).
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    terminal = os.fdopen(slave, "w")
    received: list[bytes] = []

    def read_terminal() -> None:  # a terminal's buffer is small: keep it drained
        while True:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=read_terminal, daemon=True)
    reader.start()
    try:
        fetch = PagedFetch(days=30, rows_per_day=10, per_page=20)
        assert len(list(with_progress(fetch, START, START + dt.timedelta(days=29),
                                      stream=terminal))) == 300
        terminal.flush()
    finally:
        terminal.close()
        reader.join(timeout=5)
        os.close(master)
    shown = b"".join(received).decode("utf-8", "replace")
    assert "fetching 2026-01-01..2026-01-30" in shown
    assert "/30" in shown and "pages" in shown and "rows" in shown


def test_the_estimate_is_the_time_per_day_so_far_times_the_days_left():
    progress = FetchProgress(START, START + dt.timedelta(days=99), started=100.0,
                             days_done=25, rows=1000, pages=10)
    assert progress.line(now=150.0) == ("fetching 2026-01-01..2026-04-10: 25 of 100 days, "
                                        "10 pages, 1,000 rows in 50s, about 150s left")
